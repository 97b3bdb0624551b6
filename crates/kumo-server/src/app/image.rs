//! Images: imported once into the `local` dir pool; instances boot from overlays on them.
//!
//! Sources: a file on the server host (`disk_path`, `kernel_path`+`initrd_path`) or a volume or
//! snapshot, imported before the answer; or an http(s) URL (`url`, `kernel_url`+`initrd_url`),
//! imported in the background by [`url`]: the record is written `importing` first, then turns
//! `available` or `error`. A server restart marks unfinished URL imports `error`
//! ([`recover_interrupted`]). A failed import (`error`) keeps its name, so that its message can be
//! read, until it is deleted or a new import under the same name replaces it.

mod url;

use std::path::PathBuf;

use kumo_store::{Compare, Op, Revision, Txn};
use kumo_types::{
    DEFAULT_PROJECT, DiskFormat, Error, Image, ImageKind, ImageState, ImportImageRequest, Instance,
    Page, Result, ids, now_rfc3339, validate,
};

use super::App;
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

/// Who holds an image name: nobody, or a failed import that a new import replaces.
struct NameClaim {
    key: String,
    held: Option<(Revision, Image, Revision)>,
}

impl NameClaim {
    async fn take(app: &App, name: &str) -> Result<NameClaim> {
        let key = keys::name(KIND, DEFAULT_PROJECT, name);
        let Some(kv) = app.kv().get(&key).await.map_err(store_err)? else {
            return Ok(NameClaim { key, held: None });
        };
        let id = String::from_utf8_lossy(&kv.value).into_owned();
        let taken = || Error::conflict_field("name", format!("image `{name}` already exists"));
        match get_json::<Image>(app.kv(), &keys::image(&id)).await? {
            Some((img, rev)) if img.state == ImageState::Error => Ok(NameClaim {
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
            super::event::record(
                app,
                &old.id,
                "image.deleted",
                &format!("failed image `{}` replaced by a new import", old.name),
            )
            .await?;
        }
        Ok(())
    }
}

/// A new image record for `req` (sizes and hash filled in once stored).
fn new_image(id: &str, kind: ImageKind, req: &ImportImageRequest, state: ImageState) -> Image {
    Image {
        id: id.to_string(),
        name: req.name.clone(),
        project: DEFAULT_PROJECT.into(),
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
        created_at: now_rfc3339(),
    }
}

/// `POST /v1/images`. File, volume and snapshot sources are imported before this returns (the image is
/// `available`); URL sources are checked (the web server must answer the GET), recorded `importing`
/// and imported in the background.
pub async fn import(app: &App, req: ImportImageRequest) -> Result<Image> {
    validate::name("name", &req.name)?;
    let source = source_of(&req)?;
    let sha256 = req.sha256.as_deref().map(normalize_sha256).transpose()?;
    let claim = NameClaim::take(app, &req.name).await?;
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
    let image = stored(new_image(&id, kind, &req, ImageState::Available), imported);
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
    let converted = image
        .source_format
        .map(|f| format!(", converted from {}", f.as_str()))
        .unwrap_or_default();
    super::event::record(
        app,
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
    let (volume, snapshot) = match (&req.volume, &req.snapshot) {
        (Some(v), _) => {
            let (v, _) = super::volume::find(app, v)
                .await
                .map_err(|_| Error::invalid("volume", format!("no volume `{v}`")))?;
            (v, None)
        }
        (None, Some(s)) => {
            let (s, _) = super::snapshot::usable(app, s).await?;
            (super::volume::find(app, &s.volume_id).await?.0, Some(s.id))
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
        new_image(id, ImageKind::Disk, req, ImageState::Available),
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
            super::event::record(
                app,
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

pub async fn list(app: &App) -> Result<Page<Image>> {
    let mut items: Vec<Image> = list_json(app.kv(), keys::IMAGES).await?;
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, id_or_name: &str) -> Result<Image> {
    let id = crate::storeutil::resolve_id(app.kv(), ids::IMAGE, KIND, DEFAULT_PROJECT, id_or_name)
        .await?
        .ok_or_else(|| Error::not_found("image", id_or_name))?;
    get_json(app.kv(), &keys::image(&id))
        .await?
        .map(|(i, _)| i)
        .ok_or_else(|| Error::not_found("image", id_or_name))
}

/// Delete an image: refused (409, naming them) while instances boot from it or volumes are overlays
/// on it. Deleting an `importing` image cancels the import.
pub async fn delete(app: &App, id_or_name: &str) -> Result<()> {
    let image = get(app, id_or_name).await?;
    let users: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let users: Vec<&str> = users
        .iter()
        .filter(|i| i.image_id == image.id)
        .map(|i| i.name.as_str())
        .collect();
    if !users.is_empty() {
        return Err(Error::conflict(format!(
            "image `{}` is in use by instance(s) {}",
            image.name,
            users.join(", ")
        )));
    }
    let volumes: Vec<String> = super::volume::images_in_use(app)
        .await?
        .into_iter()
        .filter(|(i, _)| *i == image.id)
        .map(|(_, name)| name)
        .collect();
    if !volumes.is_empty() {
        return Err(Error::conflict(format!(
            "image `{}` is in use by volume(s) {}",
            image.name,
            volumes.join(", ")
        )));
    }
    let txn = Txn {
        compare: vec![],
        success: vec![
            Op::delete(keys::image(&image.id)),
            Op::delete(keys::name(KIND, &image.project, &image.name)),
        ],
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
    super::event::record(
        app,
        &image.id,
        "image.deleted",
        &format!("image `{}` deleted{cancelled}", image.name),
    )
    .await
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
