//! Images: imported once into the `local` dir pool; instances boot from overlays on them.
//!
//! Sources: a file on the server host (`disk_path`, `kernel_path`+`initrd_path`) or a volume or
//! snapshot, imported before the answer; or an http(s) URL (`url`, `kernel_url`+`initrd_url`),
//! imported in the background by [`url`]: the record is written `importing` first, then turns
//! `available` or `error`. A server restart marks unfinished URL imports `error`
//! ([`recover_interrupted`]). A failed import (`error`) keeps its name, so that its message can be
//! read, until it is deleted or a new import under the same name replaces it.

pub mod replica;
mod url;

use std::path::PathBuf;

use kumo_store::{Compare, Op, Revision, Txn};
use kumo_types::{
    DiskFormat, Error, Image, ImageKind, ImageState, ImportImageRequest, Instance, Page, Result,
    UpdateImageRequest, Visibility, ids, now_rfc3339, validate,
};

use super::App;
use super::scope::Scope;
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

const KIND: &str = "images";

/// Where an import's data comes from (the request's shape, checked by [`source_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(reqwest::Url),
    KernelUrls {
        kernel: reqwest::Url,
        initrd: reqwest::Url,
    },
    DiskPath(String),
    KernelPaths {
        kernel: String,
        initrd: String,
    },
    Volume(String),
    Snapshot(String),
}

impl Source {
    fn kind(&self) -> ImageKind {
        match self {
            Source::KernelUrls { .. } | Source::KernelPaths { .. } => ImageKind::KernelInitrd,
            _ => ImageKind::Disk,
        }
    }
}

/// The single source a request names, with its URLs parsed (pure). Every refusal names a field.
pub fn source_of(req: &ImportImageRequest) -> Result<Source> {
    let pairs = [
        ("kernel_url", &req.kernel_url, "initrd_url", &req.initrd_url),
        (
            "kernel_path",
            &req.kernel_path,
            "initrd_path",
            &req.initrd_path,
        ),
    ];
    for (a, av, b, bv) in pairs {
        match (av, bv) {
            (Some(_), None) => return Err(Error::invalid(b, format!("required with {a}"))),
            (None, Some(_)) => return Err(Error::invalid(a, format!("required with {b}"))),
            _ => {}
        }
    }
    let given: Vec<&str> = [
        ("url", req.url.is_some()),
        ("kernel_url", req.kernel_url.is_some()),
        ("disk_path", req.disk_path.is_some()),
        ("kernel_path", req.kernel_path.is_some()),
        ("volume", req.volume.is_some()),
        ("snapshot", req.snapshot.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    match given.as_slice() {
        [] => {
            return Err(Error::invalid(
                "url",
                "give one source: url, kernel_url+initrd_url, disk_path, kernel_path+initrd_path, \
                 volume or snapshot",
            ));
        }
        [_] => {}
        [first, second, ..] => {
            return Err(Error::invalid(
                *second,
                format!("give one source: `{first}` or `{second}`, not both"),
            ));
        }
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let source = match given[0] {
        "url" => Source::Url(http_url("url", &text(&req.url))?),
        "kernel_url" => Source::KernelUrls {
            kernel: http_url("kernel_url", &text(&req.kernel_url))?,
            initrd: http_url("initrd_url", &text(&req.initrd_url))?,
        },
        "disk_path" => Source::DiskPath(text(&req.disk_path)),
        "kernel_path" => Source::KernelPaths {
            kernel: text(&req.kernel_path),
            initrd: text(&req.initrd_path),
        },
        "volume" => Source::Volume(text(&req.volume)),
        _ => Source::Snapshot(text(&req.snapshot)),
    };
    match &source {
        Source::Volume(_) | Source::Snapshot(_) => {
            if req.cmdline.is_some() || req.format.is_some() {
                return Err(Error::invalid(
                    "format",
                    "an image made from a volume is a qcow2 disk image; omit format and cmdline",
                ));
            }
            if req.sha256.is_some() {
                return Err(Error::invalid(
                    "sha256",
                    "only imports from a URL or a file check a sha256",
                ));
            }
        }
        s if s.kind() == ImageKind::Disk && req.cmdline.is_some() => {
            return Err(Error::invalid(
                "cmdline",
                "only kernel+initrd images take a kernel command line",
            ));
        }
        s if s.kind() == ImageKind::KernelInitrd && req.format.is_some() => {
            return Err(Error::invalid("format", "only disk images have a format"));
        }
        _ => {}
    }
    Ok(source)
}

/// Parse an http(s) URL; anything else is refused naming `field` (pure).
pub fn http_url(field: &str, s: &str) -> Result<reqwest::Url> {
    let u = reqwest::Url::parse(s)
        .map_err(|e| Error::invalid(field, format!("{s:?} is not a URL: {e}")))?;
    match u.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Error::invalid(
                field,
                format!("scheme `{other}` is not supported; use http or https"),
            ));
        }
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, format!("{s:?} has no host")));
    }
    Ok(u)
}

/// A URL as it may be shown and stored: without user and password (pure).
pub fn redact(u: &reqwest::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// A sha256 given by a user, lower-cased; anything but 64 hex digits is refused (pure).
pub fn normalize_sha256(s: &str) -> Result<String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            "sha256",
            format!(
                "must be 64 hexadecimal digits (a sha256 digest); got {} characters",
                s.chars().count()
            ),
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// What a new image is for, when it is checked by [`require_usable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Instance,
    Volume,
}

/// Refuse an image that is not `available` (409) or that cannot serve `what` (ISO images: 422). The
/// errors name the field `image` (pure).
pub fn require_usable(img: &Image, what: Use) -> Result<()> {
    match img.state {
        ImageState::Available => {}
        ImageState::Importing => {
            let done = img
                .progress
                .and_then(|p| p.percent())
                .map(|p| format!(" ({p}% downloaded)"))
                .unwrap_or_default();
            return Err(Error::conflict_field(
                "image",
                format!(
                    "image `{}` is still importing{done}; wait until it is available \
                     (`kumo image show {}`)",
                    img.name, img.name
                ),
            ));
        }
        ImageState::Error => {
            return Err(Error::conflict_field(
                "image",
                format!(
                    "image `{}` failed to import ({}); import it again or delete it",
                    img.name,
                    img.status_message.as_deref().unwrap_or("no message")
                ),
            ));
        }
    }
    // An instance boots an ISO from a CD-ROM with a blank root disk; a volume cannot start from one.
    if img.format == Some(DiskFormat::Iso) && what == Use::Volume {
        return Err(Error::invalid(
            "image",
            format!(
                "image `{}` is an ISO image (installation media); volumes cannot be made from ISO \
                 images: use a qcow2 or raw disk image",
                img.name
            ),
        ));
    }
    Ok(())
}

/// Who holds an image name in a project: nobody, or a failed import that a new import replaces.
struct NameClaim {
    project: String,
    key: String,
    held: Option<(Revision, Image, Revision)>,
}

impl NameClaim {
    async fn take(app: &App, project: &str, name: &str) -> Result<NameClaim> {
        let key = keys::name(KIND, project, name);
        let project = project.to_string();
        let Some(kv) = app.kv().get(&key).await.map_err(store_err)? else {
            return Ok(NameClaim {
                project,
                key,
                held: None,
            });
        };
        let id = String::from_utf8_lossy(&kv.value).into_owned();
        let taken = || Error::conflict_field("name", format!("image `{name}` already exists"));
        match get_json::<Image>(app.kv(), &keys::image(&id)).await? {
            Some((img, rev)) if img.state == ImageState::Error => Ok(NameClaim {
                project,
                key,
                held: Some((kv.mod_revision, img, rev)),
            }),
            _ => Err(taken()),
        }
    }
    fn compare(&self) -> Vec<Compare> {
        match &self.held {
            None => vec![Compare::absent(&self.key)],
            Some((name_rev, img, rev)) => vec![
                Compare::mod_revision(&self.key, *name_rev),
                Compare::mod_revision(keys::image(&img.id), *rev),
            ],
        }
    }
    /// The txn that writes `image` in its place.
    fn txn(&self, image: &Image) -> Result<Txn> {
        let mut success = vec![
            Op::put(&self.key, image.id.clone()),
            Op::put(keys::image(&image.id), encode(image)?),
        ];
        if let Some((_, old, _)) = &self.held {
            success.push(Op::delete(keys::image(&old.id)));
        }
        Ok(Txn {
            compare: self.compare(),
            success,
            failure: vec![],
        })
    }
    /// After the txn: the replaced image's leftovers go, and the event says so.
    async fn replaced(&self, app: &App) -> Result<()> {
        if let Some((_, old, _)) = &self.held {
            let pool = app.pool.clone();
            let id = old.id.clone();
            let _ = tokio::task::spawn_blocking(move || pool.delete_image(&id)).await;
            super::event::record_in(
                app,
                Some(&old.project),
                &old.id,
                "image.deleted",
                &format!("failed image `{}` replaced by a new import", old.name),
            )
            .await?;
        }
        Ok(())
    }
}

/// A new image record of `project` for `req` (sizes and hash filled in once stored).
fn new_image(
    project: &str,
    id: &str,
    kind: ImageKind,
    req: &ImportImageRequest,
    state: ImageState,
) -> Image {
    Image {
        id: id.to_string(),
        name: req.name.clone(),
        project: project.to_string(),
        kind,
        state,
        status_message: None,
        format: None,
        source_format: None,
        cmdline: req.cmdline.clone(),
        size_bytes: 0,
        virtual_size_bytes: 0,
        sha256: String::new(),
        source_url: None,
        progress: None,
        pool: "local".into(),
        visibility: req.visibility.unwrap_or_default(),
        created_at: now_rfc3339(),
    }
}

/// Only a cloud admin makes an image public.
fn may_set(scope: &Scope, v: Option<Visibility>) -> Result<()> {
    if v == Some(Visibility::Public) && !scope.admin {
        return Err(Error::Forbidden {
            message: "only a cloud admin may make an image public".into(),
        });
    }
    Ok(())
}

/// `POST /v1/images`. File, volume and snapshot sources are imported before this returns (the image is
/// `available`); URL sources are checked (the web server must answer the GET), recorded `importing`
/// and imported in the background.
pub async fn import(app: &App, scope: &Scope, req: ImportImageRequest) -> Result<Image> {
    validate::name("name", &req.name)?;
    may_set(scope, req.visibility)?;
    let source = source_of(&req)?;
    let sha256 = req.sha256.as_deref().map(normalize_sha256).transpose()?;
    let claim = NameClaim::take(app, &scope.project, &req.name).await?;
    let id = ids::new_id(ids::IMAGE);
    let kind = source.kind();
    let pool = app.pool.clone();
    let (id2, sha2) = (id.clone(), sha256.clone());
    let imported = match source {
        Source::Url(u) => return url::start(app, &id, &req, claim, vec![u], sha256).await,
        Source::KernelUrls { kernel, initrd } => {
            return url::start(app, &id, &req, claim, vec![kernel, initrd], sha256).await;
        }
        Source::Volume(_) | Source::Snapshot(_) => return from_volume(app, &id, &req, claim).await,
        Source::DiskPath(p) => {
            let format = req.format;
            tokio::task::spawn_blocking(move || {
                let path = PathBuf::from(&p);
                let src = kumo_agent::storage::DiskSource {
                    path: &path,
                    field: "disk_path",
                    label: &p,
                    owned: false,
                    sha256: None,
                };
                pool.import_disk_from(&id2, &src, format, sha2.as_deref())
            })
            .await
        }
        Source::KernelPaths { kernel, initrd } => {
            tokio::task::spawn_blocking(move || {
                pool.import_kernel(
                    &id2,
                    &PathBuf::from(kernel),
                    &PathBuf::from(initrd),
                    sha2.as_deref(),
                )
            })
            .await
        }
    }
    .map_err(|e| Error::internal_with("import task", e))??;
    let image = stored(
        new_image(&claim.project, &id, kind, &req, ImageState::Available),
        imported,
    );
    record(app, image, &claim).await
}

/// The image once its files are stored.
fn stored(mut image: Image, imported: kumo_agent::storage::Imported) -> Image {
    image.state = ImageState::Available;
    image.status_message = None;
    image.format = imported.format;
    image.source_format = imported.source_format;
    image.size_bytes = imported.size_bytes;
    image.virtual_size_bytes = imported.virtual_size_bytes;
    image.sha256 = imported.sha256;
    image
}

/// Write the record of an image whose files are in the pool (removing them if that fails).
async fn record(app: &App, image: Image, claim: &NameClaim) -> Result<Image> {
    let ok = app.kv().txn(claim.txn(&image)?).await.map_err(store_err);
    if !matches!(ok, Ok(ref r) if r.succeeded) {
        // Leave nothing half-created.
        let _ = app.pool.delete_image(&image.id);
        ok?;
        return Err(Error::conflict_field(
            "name",
            format!("image `{}` already exists", image.name),
        ));
    }
    claim.replaced(app).await?;
    replica::held_here(app, &image.id).await?;
    let converted = image
        .source_format
        .map(|f| format!(", converted from {}", f.as_str()))
        .unwrap_or_default();
    super::event::record_in(
        app,
        Some(&image.project),
        &image.id,
        "image.imported",
        &format!(
            "image `{}` imported ({} bytes{converted})",
            image.name, image.size_bytes
        ),
    )
    .await?;
    Ok(image)
}

/// An image from a volume's data or a snapshot's (flattened: it depends on nothing).
async fn from_volume(
    app: &App,
    id: &str,
    req: &ImportImageRequest,
    claim: NameClaim,
) -> Result<Image> {
    let within = Scope::within(&claim.project);
    let (volume, snapshot) = match (&req.volume, &req.snapshot) {
        (Some(v), _) => {
            let (v, _) = super::volume::find(app, &within, v)
                .await
                .map_err(|_| Error::invalid("volume", format!("no volume `{v}`")))?;
            (v, None)
        }
        (None, Some(s)) => {
            let (s, _) = super::snapshot::usable(app, &within, s).await?;
            (
                super::volume::find_any(app, &s.volume_id).await?.0,
                Some(s.id),
            )
        }
        (None, None) => return Err(Error::internal("from_volume without a source")),
    };
    // The volume's pool, as this (the control-plane) host reaches it: any shared pool, or a local
    // pool's volumes that live here.
    let backend = kumo_agent::backend::VolumeBackend::of(
        &super::pool::find(app, &volume.pool).await?,
        &app.pool,
    )?;
    let pool = app.pool.clone();
    let id2 = id.to_string();
    let imported = tokio::task::spawn_blocking(move || {
        pool.import_from_volume(&id2, &backend, &volume.id, snapshot.as_deref())
    })
    .await
    .map_err(|e| Error::internal_with("import task", e))??;
    let image = stored(
        new_image(
            &claim.project,
            id,
            ImageKind::Disk,
            req,
            ImageState::Available,
        ),
        imported,
    );
    record(app, image, &claim).await
}

/// At start-up: URL imports that were running when the server stopped cannot go on (the download
/// was in this process), so they turn `error`, and every unfinished import's files go.
pub async fn recover_interrupted(app: &App) -> Result<()> {
    for kv in crate::storeutil::list_raw(app.kv(), keys::IMAGES).await? {
        let Ok(mut img) = serde_json::from_slice::<Image>(&kv.value) else {
            continue;
        };
        if img.state != ImageState::Importing {
            continue;
        }
        img.state = ImageState::Error;
        img.status_message = Some(
            "interrupted by a server restart; import it again (the same name replaces this image) \
             or delete it"
                .into(),
        );
        let key = keys::image(&img.id);
        let written = crate::storeutil::commit(
            app.kv(),
            vec![Compare::mod_revision(&key, kv.mod_revision)],
            vec![Op::put(&key, encode(&img)?)],
        )
        .await?;
        app.pool.delete_image(&img.id)?;
        if written {
            tracing::warn!(image = %img.id, name = %img.name, "image import interrupted by a restart");
            super::event::record_in(
                app,
                Some(&img.project),
                &img.id,
                "image.import_failed",
                &format!(
                    "import of image `{}` interrupted by a server restart",
                    img.name
                ),
            )
            .await?;
        }
    }
    app.pool.remove_import_leftovers()?;
    Ok(())
}

/// Whether `scope` sees `img`: its project's, or public.
fn sees(scope: &Scope, img: &Image) -> bool {
    img.visibility == Visibility::Public || scope.sees(&img.project)
}

/// The images `scope` lists: its project's and the public ones (every image for `all`).
pub async fn list(app: &App, scope: &Scope) -> Result<Page<Image>> {
    let mut items: Vec<Image> = list_json::<Image>(app.kv(), keys::IMAGES)
        .await?
        .into_iter()
        .filter(|i| i.visibility == Visibility::Public || scope.lists(&i.project))
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items,
        next_token: None,
    })
}

/// An image by ID or name: `scope`'s project's own, or public (a name names the project's own image
/// first, then a public one).
pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<Image> {
    Ok(find(app, scope, id_or_name).await?.0)
}

async fn find(app: &App, scope: &Scope, id_or_name: &str) -> Result<(Image, Revision)> {
    let nf = || Error::not_found("image", id_or_name);
    let id =
        match crate::storeutil::resolve_id(app.kv(), ids::IMAGE, KIND, &scope.project, id_or_name)
            .await?
        {
            Some(id) => id,
            None => {
                let all: Vec<Image> = list_json(app.kv(), keys::IMAGES).await?;
                let mut public = all
                    .into_iter()
                    .filter(|i| i.visibility == Visibility::Public && i.name == id_or_name);
                match (public.next(), public.next()) {
                    (Some(i), None) => i.id,
                    (Some(_), Some(_)) => {
                        return Err(Error::conflict(format!(
                            "several public images are named `{id_or_name}`; use the image ID"
                        )));
                    }
                    _ => return Err(nf()),
                }
            }
        };
    match get_json::<Image>(app.kv(), &keys::image(&id)).await? {
        Some((img, rev)) if sees(scope, &img) => Ok((img, rev)),
        _ => Err(nf()),
    }
}

/// An image by ID, whatever its project (agents' assignments, volumes made from it).
pub async fn get_any(app: &App, id: &str) -> Result<Image> {
    get_json(app.kv(), &keys::image(id))
        .await?
        .map(|(i, _)| i)
        .ok_or_else(|| Error::not_found("image", id))
}

/// An image `scope` may change or delete: its project's own (a public image of another project is
/// only seen), or any for a cloud admin.
async fn owned(app: &App, scope: &Scope, id_or_name: &str) -> Result<(Image, Revision)> {
    let (img, rev) = find(app, scope, id_or_name).await?;
    if !scope.sees(&img.project) {
        return Err(Error::Forbidden {
            message: format!(
                "image `{}` is a public image of another project; only that project or a cloud \
                 admin may change or delete it",
                img.name
            ),
        });
    }
    Ok((img, rev))
}

/// Change an image's visibility (`public` needs a cloud admin).
pub async fn update(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: UpdateImageRequest,
) -> Result<Image> {
    may_set(scope, req.visibility)?;
    for _ in 0..20 {
        let (mut img, rev) = owned(app, scope, id_or_name).await?;
        let Some(v) = req.visibility else {
            return Ok(img);
        };
        img.visibility = v;
        let key = keys::image(&img.id);
        if crate::storeutil::commit(
            app.kv(),
            vec![Compare::mod_revision(&key, rev)],
            vec![Op::put(&key, encode(&img)?)],
        )
        .await?
        {
            let what = match v {
                Visibility::Public => "public",
                Visibility::Private => "private",
            };
            super::event::record_in(
                app,
                Some(&img.project),
                &img.id,
                "image.updated",
                &format!("image `{}` is {what}", img.name),
            )
            .await?;
            return Ok(img);
        }
    }
    Err(Error::unavailable(
        "too much contention updating the image; retry",
    ))
}

/// Delete an image: refused (409) while instances boot from it or volumes are overlays on it (only
/// the caller's project's are named). Deleting an `importing` image cancels the import.
pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    let (image, _) = owned(app, scope, id_or_name).await?;
    let insts: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let users: Vec<(&str, &str)> = insts
        .iter()
        .filter(|i| i.image_id == image.id)
        .map(|i| (i.name.as_str(), i.project.as_str()))
        .collect();
    if !users.is_empty() {
        return Err(Error::conflict(format!(
            "image `{}` is in use by {}",
            image.name,
            in_use("instance", scope, &users)
        )));
    }
    let vols: Vec<kumo_types::Volume> = list_json(app.kv(), keys::VOLUMES).await?;
    let volumes: Vec<(&str, &str)> = vols
        .iter()
        .filter(|v| v.image_id.as_deref() == Some(image.id.as_str()))
        .map(|v| (v.name.as_str(), v.project.as_str()))
        .collect();
    if !volumes.is_empty() {
        return Err(Error::conflict(format!(
            "image `{}` is in use by {}",
            image.name,
            in_use("volume", scope, &volumes)
        )));
    }
    // Its tags and front-end attributes go with it.
    let mut success = vec![
        Op::delete(keys::image(&image.id)),
        Op::delete(keys::name(KIND, &image.project, &image.name)),
        // Other servers drop their copies when they see the record gone (`replica::tick`).
        replica::forget_here(app, &image.id),
    ];
    success.extend(super::attrs::cleanup_ops(app, &image.id).await?);
    let txn = Txn {
        compare: vec![],
        success,
        failure: vec![],
    };
    app.kv().txn(txn).await.map_err(store_err)?;
    // A running import notices that its record is gone, stops and removes what it wrote.
    let pool = app.pool.clone();
    let id = image.id.clone();
    tokio::task::spawn_blocking(move || pool.delete_image(&id))
        .await
        .map_err(|e| Error::internal_with("delete task", e))??;
    let cancelled = if image.state == ImageState::Importing {
        " (import cancelled)"
    } else {
        ""
    };
    super::event::record_in(
        app,
        Some(&image.project),
        &image.id,
        "image.deleted",
        &format!("image `{}` deleted{cancelled}", image.name),
    )
    .await
}

/// `instance(s) a, b and 2 of other projects` (pure): names only of what `scope` sees.
fn in_use(what: &str, scope: &Scope, users: &[(&str, &str)]) -> String {
    let (mine, others): (Vec<_>, Vec<_>) = users.iter().partition(|(_, p)| scope.sees(p));
    let names: Vec<&str> = mine.iter().map(|(n, _)| *n).collect();
    match (names.is_empty(), others.len()) {
        (false, 0) => format!("{what}(s) {}", names.join(", ")),
        (true, n) => format!("{n} {what}(s) of other projects"),
        (false, n) => format!("{what}(s) {} and {n} of other projects", names.join(", ")),
    }
}

/// The path of file `file` of image `id` in this server's pool, copied from a server that holds
/// the image first if this one does not yet ([`replica::ensure_here`]).
pub async fn local_file(app: &App, id: &str, file: &str) -> Result<std::path::PathBuf> {
    match stored_file(app, id, file) {
        Err(Error::NotFound { .. }) => {
            let Ok(image) = get_any(app, id).await else {
                return Err(Error::not_found("image file", format!("{id}/{file}")));
            };
            replica::ensure_here(app, &image).await?;
            stored_file(app, id, file)
        }
        r => r,
    }
}

/// The path of file `file` of stored image `id` in the control plane's pool: one of the files an
/// image has (`disk.<format>`, `kernel`, `initrd`), never anything else.
pub fn stored_file(app: &App, id: &str, file: &str) -> Result<std::path::PathBuf> {
    let allowed = ["disk.qcow2", "disk.raw", "disk.iso", "kernel", "initrd"];
    if !allowed.contains(&file) || !id.starts_with("ami-") || id.contains('/') || id.contains("..")
    {
        return Err(Error::not_found("image file", format!("{id}/{file}")));
    }
    let p = app.pool.image_dir(id).join(file);
    if !p.is_file() {
        return Err(Error::not_found("image file", format!("{id}/{file}")));
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kumo_types::{ImportFormat, ImportProgress};

    fn req(json: serde_json::Value) -> ImportImageRequest {
        serde_json::from_value(json).unwrap()
    }

    fn field(r: Result<Source>) -> String {
        r.unwrap_err().field().unwrap_or_default().to_string()
    }

    #[test]
    fn one_source_with_its_partner() {
        let s = source_of(&req(
            serde_json::json!({"name": "a", "url": "https://h/x.qcow2"}),
        ));
        assert!(matches!(s, Ok(Source::Url(u)) if u.as_str() == "https://h/x.qcow2"));
        let s = source_of(&req(serde_json::json!({
            "name": "a", "kernel_url": "http://h/k", "initrd_url": "http://h/i"})));
        assert!(matches!(s, Ok(Source::KernelUrls { .. })), "{s:?}");
        assert_eq!(
            field(source_of(&req(
                serde_json::json!({"name": "a", "kernel_url": "http://h/k"})
            ))),
            "initrd_url"
        );
        assert_eq!(
            field(source_of(&req(
                serde_json::json!({"name": "a", "initrd_path": "/i"})
            ))),
            "kernel_path"
        );
        assert_eq!(
            field(source_of(&req(serde_json::json!({"name": "a"})))),
            "url"
        );
        assert_eq!(
            field(source_of(&req(
                serde_json::json!({"name": "a", "url": "http://h/x", "disk_path": "/x"})
            ))),
            "disk_path"
        );
        assert_eq!(
            field(source_of(&req(
                serde_json::json!({"name": "a", "volume": "v", "snapshot": "s"})
            ))),
            "snapshot"
        );
        assert_eq!(
            field(source_of(&req(
                serde_json::json!({"name": "a", "volume": "v", "sha256": "00"})
            ))),
            "sha256"
        );
        assert_eq!(
            field(source_of(&req(
                serde_json::json!({"name": "a", "url": "http://h/x", "cmdline": "quiet"})
            ))),
            "cmdline"
        );
        assert_eq!(
            field(source_of(&req(serde_json::json!({
                "name": "a", "kernel_url": "http://h/k", "initrd_url": "http://h/i", "format": "raw"
            })))),
            "format"
        );
        let s = source_of(&req(
            serde_json::json!({"name": "a", "url": "http://h/x.iso", "format": "iso"}),
        ));
        assert!(s.is_ok(), "{s:?}");
    }

    #[test]
    fn only_http_and_https_urls() {
        let e = http_url("url", "ftp://h/x.qcow2").unwrap_err();
        assert_eq!(e.field(), Some("url"));
        assert!(
            e.to_string()
                .contains("scheme `ftp` is not supported; use http or https"),
            "{e}"
        );
        let e = http_url("kernel_url", "file:///etc/passwd").unwrap_err();
        assert_eq!(e.field(), Some("kernel_url"));
        assert!(http_url("url", "not a url").is_err());
        assert!(http_url("url", "http://").is_err());
        assert!(http_url("url", "HTTPS://Example.org/a.img").is_ok());
        let u = http_url("url", "https://me:secret@h:8443/a.img?x=1").unwrap();
        assert_eq!(redact(&u), "https://h:8443/a.img?x=1");
    }

    #[test]
    fn sha256_is_64_hex_digits() {
        let a = "AB".repeat(32);
        assert_eq!(normalize_sha256(&a).unwrap(), "ab".repeat(32));
        let e = normalize_sha256("abc").unwrap_err();
        assert_eq!(e.field(), Some("sha256"));
        assert!(e.to_string().contains("got 3 characters"), "{e}");
        assert!(normalize_sha256(&"g".repeat(64)).is_err());
    }

    fn image(state: ImageState, format: Option<DiskFormat>) -> Image {
        let mut i = new_image(
            "default",
            "ami-1",
            ImageKind::Disk,
            &ImportImageRequest {
                name: "deb".into(),
                ..Default::default()
            },
            state,
        );
        i.format = format;
        i
    }

    #[test]
    fn only_available_non_iso_images_are_usable() {
        let ok = image(ImageState::Available, Some(DiskFormat::Qcow2));
        assert!(require_usable(&ok, Use::Instance).is_ok());
        let mut importing = image(ImageState::Importing, None);
        importing.progress = Some(ImportProgress {
            bytes_done: 1,
            bytes_total: Some(4),
        });
        let e = require_usable(&importing, Use::Volume).unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
        assert_eq!(e.field(), Some("image"));
        assert!(e.to_string().contains("still importing (25%"), "{e}");
        let mut failed = image(ImageState::Error, None);
        failed.status_message = Some("sha256 mismatch".into());
        let e = require_usable(&failed, Use::Instance).unwrap_err();
        assert!(e.to_string().contains("sha256 mismatch"), "{e}");
        let iso = image(ImageState::Available, Some(DiskFormat::Iso));
        assert!(
            require_usable(&iso, Use::Instance).is_ok(),
            "booted from a CD-ROM"
        );
        let e = require_usable(&iso, Use::Volume).unwrap_err();
        assert!(e.to_string().contains("volumes cannot be made"), "{e}");
        assert_eq!(ImportFormat::Iso.stored(), DiskFormat::Iso);
    }
}
