//! Images: imported once into the `local` dir pool; instances boot from overlays on them.

use std::path::PathBuf;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    DEFAULT_PROJECT, Error, Image, ImageKind, ImportImageRequest, Instance, Page, Result, ids,
    now_rfc3339, validate,
};

use super::App;
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

const KIND: &str = "images";

pub async fn import(app: &App, req: ImportImageRequest) -> Result<Image> {
    validate::name("name", &req.name)?;
    let name_key = keys::name(KIND, DEFAULT_PROJECT, &req.name);
    if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
        return Err(Error::conflict_field(
            "name",
            format!("image `{}` already exists", req.name),
        ));
    }
    if req.volume.is_some() || req.snapshot.is_some() {
        return from_volume(app, req, name_key).await;
    }
    let kind = match (&req.disk_path, &req.kernel_path, &req.initrd_path) {
        (Some(_), None, None) => ImageKind::Disk,
        (None, Some(_), Some(_)) => ImageKind::KernelInitrd,
        (None, Some(_), None) => {
            return Err(Error::invalid("initrd_path", "required with kernel_path"));
        }
        (None, None, Some(_)) => {
            return Err(Error::invalid("kernel_path", "required with initrd_path"));
        }
        (None, None, None) => {
            return Err(Error::invalid(
                "disk_path",
                "give disk_path, or kernel_path and initrd_path",
            ));
        }
        _ => {
            return Err(Error::invalid(
                "disk_path",
                "give either disk_path or kernel_path+initrd_path, not both",
            ));
        }
    };
    if kind == ImageKind::Disk && req.cmdline.is_some() {
        return Err(Error::invalid(
            "cmdline",
            "only kernel+initrd images take a kernel command line",
        ));
    }
    if kind == ImageKind::KernelInitrd && req.format.is_some() {
        return Err(Error::invalid("format", "only disk images have a format"));
    }
    let id = ids::new_id(ids::IMAGE);
    let pool = app.pool.clone();
    let (id2, r2) = (id.clone(), req.clone());
    let imported = tokio::task::spawn_blocking(move || match kind {
        ImageKind::Disk => pool.import_disk(
            &id2,
            &PathBuf::from(r2.disk_path.unwrap_or_default()),
            r2.format,
        ),
        ImageKind::KernelInitrd => pool.import_kernel(
            &id2,
            &PathBuf::from(r2.kernel_path.unwrap_or_default()),
            &PathBuf::from(r2.initrd_path.unwrap_or_default()),
        ),
    })
    .await
    .map_err(|e| Error::internal_with("import task", e))??;
    record(app, &id, kind, &req, imported, name_key).await
}

/// Write the record of an image whose files are in the pool (removing them if that fails).
async fn record(
    app: &App,
    id: &str,
    kind: ImageKind,
    req: &ImportImageRequest,
    imported: kumo_agent::storage::Imported,
    name_key: String,
) -> Result<Image> {
    let id = id.to_string();
    let image = Image {
        id: id.clone(),
        name: req.name.clone(),
        project: DEFAULT_PROJECT.into(),
        kind,
        format: imported.format,
        cmdline: req.cmdline.clone(),
        size_bytes: imported.size_bytes,
        virtual_size_bytes: imported.virtual_size_bytes,
        sha256: imported.sha256,
        pool: "local".into(),
        created_at: now_rfc3339(),
    };
    let txn = Txn {
        compare: vec![Compare::absent(&name_key)],
        success: vec![
            Op::put(&name_key, id.clone()),
            Op::put(keys::image(&id), encode(&image)?),
        ],
        failure: vec![],
    };
    let ok = app.kv().txn(txn).await.map_err(store_err);
    if !matches!(ok, Ok(ref r) if r.succeeded) {
        // Leave nothing half-created.
        let _ = app.pool.delete_image(&id);
        ok?;
        return Err(Error::conflict_field(
            "name",
            format!("image `{}` already exists", req.name),
        ));
    }
    super::event::record(
        app,
        &id,
        "image.imported",
        &format!(
            "image `{}` imported ({} bytes)",
            image.name, image.size_bytes
        ),
    )
    .await?;
    Ok(image)
}

/// An image from a volume's data or a snapshot's (flattened: it depends on nothing).
async fn from_volume(app: &App, req: ImportImageRequest, name_key: String) -> Result<Image> {
    if req.disk_path.is_some() || req.kernel_path.is_some() || req.initrd_path.is_some() {
        return Err(Error::invalid(
            "volume",
            "give one source: disk_path, kernel_path+initrd_path, volume or snapshot",
        ));
    }
    if req.volume.is_some() && req.snapshot.is_some() {
        return Err(Error::invalid(
            "snapshot",
            "give `volume` or `snapshot`, not both",
        ));
    }
    if req.cmdline.is_some() || req.format.is_some() {
        return Err(Error::invalid(
            "format",
            "an image made from a volume is a qcow2 disk image; omit format and cmdline",
        ));
    }
    let (volume_id, snapshot) = match (&req.volume, &req.snapshot) {
        (Some(v), _) => {
            let (v, _) = super::volume::find(app, v)
                .await
                .map_err(|_| Error::invalid("volume", format!("no volume `{v}`")))?;
            (v.id, None)
        }
        (None, Some(s)) => {
            let (s, _) = super::snapshot::usable(app, s).await?;
            (s.volume_id, Some(s.id))
        }
        (None, None) => return Err(Error::internal("from_volume without a source")),
    };
    let id = ids::new_id(ids::IMAGE);
    let pool = app.pool.clone();
    let id2 = id.clone();
    let imported = tokio::task::spawn_blocking(move || {
        pool.import_from_volume(&id2, &volume_id, snapshot.as_deref())
    })
    .await
    .map_err(|e| Error::internal_with("import task", e))??;
    record(app, &id, ImageKind::Disk, &req, imported, name_key).await
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
    let pool = app.pool.clone();
    let id = image.id.clone();
    tokio::task::spawn_blocking(move || pool.delete_image(&id))
        .await
        .map_err(|e| Error::internal_with("delete task", e))??;
    super::event::record(
        app,
        &image.id,
        "image.deleted",
        &format!("image `{}` deleted", image.name),
    )
    .await
}
