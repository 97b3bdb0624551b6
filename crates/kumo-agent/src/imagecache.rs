//! Images on hosts other than the control plane's: fetched from the control plane on first use into
//! the host's own pool (`<pool>/images/<id>/`), checked against the image's sha256, kept for the next
//! instance. On the control-plane host the files are already there and nothing is fetched. Servers
//! copy images from each other the same way ([`ensure_local_from`] with another [`FetchFile`]).

use kumo_types::{DiskFormat, Error, Image, ImageKind, Result};
use sha2::{Digest, Sha256};

use crate::backend::VolumeBackend;
use crate::control::ControlPlane;
use crate::storage::DirPool;

/// The files of `image`, in the order its sha256 covers them.
pub fn files_of(image: &Image) -> Vec<String> {
    match image.kind {
        ImageKind::Disk => vec![format!(
            "disk.{}",
            image.format.unwrap_or(DiskFormat::Qcow2).as_str()
        )],
        ImageKind::KernelInitrd => vec!["kernel".into(), "initrd".into()],
    }
}

/// Where image files come from: the control plane for hosts, a peer server for servers.
#[async_trait::async_trait]
pub trait FetchFile: Send + Sync {
    /// Write file `file` (`disk.qcow2`, `kernel`, …) of stored image `image_id` to `dest`.
    async fn fetch_image_file(
        &self,
        image_id: &str,
        file: &str,
        dest: &std::path::Path,
    ) -> Result<()>;
}

/// Whether all of `image`'s files are in `pool`.
pub fn is_complete(pool: &DirPool, image: &Image) -> bool {
    let dir = pool.image_dir(&image.id);
    files_of(image).iter().all(|f| dir.join(f).is_file())
}

/// Make `image`'s files present in `pool`, fetching the missing ones from the control plane
/// (idempotent).
pub async fn ensure_local(cp: &dyn ControlPlane, pool: &DirPool, image: &Image) -> Result<()> {
    ensure_local_from(cp, pool, image, "fetch").await
}

/// Make `image`'s files present in `pool`, fetching the missing ones from `src` into `<file>.<tag>`
/// first (callers sharing a pool use different tags) and checking the whole image against its
/// recorded sha256 before any file takes its final name (idempotent).
pub async fn ensure_local_from(
    src: &dyn FetchFile,
    pool: &DirPool,
    image: &Image,
    tag: &str,
) -> Result<()> {
    if is_complete(pool, image) {
        return Ok(());
    }
    let dir = pool.image_dir(&image.id);
    let files = files_of(image);
    tokio::fs::create_dir_all(&dir).await?;
    let mut fetched = Vec::new();
    for f in &files {
        let dest = dir.join(f);
        if dest.is_file() {
            continue;
        }
        let tmp = dir.join(format!("{f}.{tag}"));
        let r = src.fetch_image_file(&image.id, f, &tmp).await;
        if let Err(e) = r {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        fetched.push((tmp, dest));
    }
    let paths: Vec<std::path::PathBuf> = files
        .iter()
        .map(|f| {
            fetched
                .iter()
                .find(|(_, d)| d.ends_with(f))
                .map(|(t, _)| t.clone())
                .unwrap_or_else(|| dir.join(f))
        })
        .collect();
    let digest = tokio::task::spawn_blocking(move || sha256_of(&paths))
        .await
        .map_err(|e| Error::internal_with("hash task", e))??;
    if !image.sha256.is_empty() && digest != image.sha256 {
        for (tmp, _) in &fetched {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        return Err(Error::unavailable(format!(
            "image {} fetched has sha256 {digest}, expected {}",
            image.id, image.sha256
        )));
    }
    for (tmp, dest) in fetched {
        tokio::fs::rename(&tmp, &dest).await?;
    }
    tracing::info!(image = %image.id, "image fetched");
    Ok(())
}

/// Stream an HTTP answer's body into `dest` (synced); `what` names it in errors.
pub async fn write_body(resp: reqwest::Response, dest: &std::path::Path, what: &str) -> Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::fs::File::create(dest).await?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::unavailable(format!("fetching {what}: {e}")))?;
        out.write_all(&chunk).await?;
    }
    out.sync_all().await?;
    Ok(())
}

/// How often a host looks for copies of deleted images.
pub const GC_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Drop the copies of images that no longer exist: this host's cache (`<pool>/images/<id>/`) and
/// the bases in the pools it uses (`<dir>/images/<id>/` of directory pools, `kumo-image-<id>` in
/// Ceph). An image is deleted only when no instance or volume uses it, so nothing still needs them.
/// A host whose pool is the control plane's image store leaves that pool to the server. Only a
/// definite "gone" removes anything: when the control plane cannot be asked, everything stays.
pub async fn drop_deleted(cp: &dyn ControlPlane, local: &DirPool, pools: &[kumo_types::Pool]) {
    let mut backends: Vec<VolumeBackend> = Vec::new();
    if !cp.shares_image_store() {
        backends.push(VolumeBackend::Files {
            dir: local.clone(),
            shared: false,
        });
    }
    for p in pools {
        let Ok(b) = VolumeBackend::of(p, local) else {
            continue;
        };
        // The local pool is the cache above (or the server's store).
        if matches!(&b, VolumeBackend::Files { dir, .. } if dir.root() == local.root()) {
            continue;
        }
        backends.push(b);
    }
    for b in backends {
        let b2 = b.clone();
        let Ok(Ok(ids)) = tokio::task::spawn_blocking(move || b2.image_bases()).await else {
            continue;
        };
        for id in ids {
            if !matches!(cp.image_exists(&id).await, Ok(false)) {
                continue;
            }
            let (b2, id2) = (b.clone(), id.clone());
            match tokio::task::spawn_blocking(move || b2.drop_image_base(&id2)).await {
                Ok(Ok(())) => tracing::info!(image = %id, "dropped a copy of a deleted image"),
                Ok(Err(e)) => {
                    tracing::warn!(image = %id, error = %e, "dropping a deleted image's copy")
                }
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "dropping a deleted image's copy")
                }
            }
        }
    }
}

/// Run [`drop_deleted`] every [`GC_EVERY`], over the pools last seen in `pools`.
pub fn spawn_gc(
    cp: std::sync::Arc<dyn ControlPlane>,
    local: DirPool,
    pools: tokio::sync::watch::Receiver<Vec<kumo_types::Pool>>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(GC_EVERY).await;
            let now = pools.borrow().clone();
            drop_deleted(cp.as_ref(), &local, &now).await;
        }
    });
}

fn sha256_of(paths: &[std::path::PathBuf]) -> Result<String> {
    use std::io::Read;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        let mut f = std::fs::File::open(p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}
