//! Images on hosts other than the control plane's: fetched from the control plane on first use into
//! the host's own pool (`<pool>/images/<id>/`), checked against the image's sha256, kept for the next
//! instance. On the control-plane host the files are already there and nothing is fetched.

use kumo_types::{DiskFormat, Error, Image, ImageKind, Result};
use sha2::{Digest, Sha256};

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

/// Make `image`'s files present in `pool`, fetching the missing ones (idempotent).
pub async fn ensure_local(cp: &dyn ControlPlane, pool: &DirPool, image: &Image) -> Result<()> {
    let dir = pool.image_dir(&image.id);
    let files = files_of(image);
    if files.iter().all(|f| dir.join(f).is_file()) {
        return Ok(());
    }
    tokio::fs::create_dir_all(&dir).await?;
    let mut fetched = Vec::new();
    for f in &files {
        let dest = dir.join(f);
        if dest.is_file() {
            continue;
        }
        let tmp = dir.join(format!("{f}.fetch"));
        let r = cp.fetch_image_file(&image.id, f, &tmp).await;
        if let Err(e) = r {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        fetched.push((tmp, dest));
    }
    // Check the whole image against its recorded digest before any file takes its final name.
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
            "image {} fetched from the control plane has sha256 {digest}, expected {}",
            image.id, image.sha256
        )));
    }
    for (tmp, dest) in fetched {
        tokio::fs::rename(&tmp, &dest).await?;
    }
    tracing::info!(image = %image.id, "image fetched from the control plane");
    Ok(())
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
