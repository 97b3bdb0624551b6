//! Volume backends: one per pool driver, behind one enum so the agent's volume logic
//! ([`crate::volstate`]) does not care where a volume's bytes are.
//!
//! - `dir` and `shared-dir` pools are [`DirPool`]s: qcow2 files (see [`crate::volume`]).
//! - `rbd` pools are [`RbdPool`]s: Ceph RBD images named by the volume ID, driven with the `rbd`
//!   CLI, opened by QEMU's own rbd driver (see [`crate::rbd`]).
//!
//! Every backend keeps the invariants of [`crate::volume`]: a volume appears only complete, never
//! shrinks, and a snapshot is named by the snapshot's ID.

use std::path::Path;

use kumo_types::{DiskFormat, Error, Pool, PoolDriver, PoolHostStatus, Result, now_rfc3339};

use crate::rbd::RbdPool;
use crate::runtime::qemu::DiskSource;
use crate::storage::DirPool;
use crate::volume::{VolumeSource, VolumeSpec};

/// Where one pool keeps its volumes, on this host.
#[derive(Debug, Clone)]
pub enum VolumeBackend {
    /// qcow2 files in a directory (`dir`, `shared-dir`). A shared directory is never created by the
    /// agent: if it is missing, the share is not mounted, and writing there would fill the local disk.
    Files { dir: DirPool, shared: bool },
    /// Ceph RBD images (`rbd`).
    Rbd(RbdPool),
}

impl VolumeBackend {
    /// The backend of `pool`; `local` is the host's own data directory pool.
    pub fn of(pool: &Pool, local: &DirPool) -> Result<VolumeBackend> {
        match pool.driver {
            PoolDriver::Dir | PoolDriver::SharedDir => Ok(VolumeBackend::Files {
                dir: match &pool.path {
                    Some(p) => DirPool::new(p),
                    None => local.clone(),
                },
                shared: pool.driver.shared(),
            }),
            PoolDriver::Rbd => Ok(VolumeBackend::Rbd(RbdPool {
                pool: pool.rbd_pool.clone().unwrap_or_default(),
                conf: pool.ceph_conf.clone().unwrap_or_default(),
                user: pool.ceph_user.clone().unwrap_or_else(|| "admin".into()),
            })),
            PoolDriver::LvmThin => Err(Error::unavailable(format!(
                "pool `{}`: the lvm-thin driver is not built yet",
                pool.name
            ))),
        }
    }

    /// Size in bytes of volume `id`, or `None` if it does not exist.
    pub fn size(&self, id: &str) -> Result<Option<u64>> {
        match self {
            VolumeBackend::Files { dir: p, .. } => p.volume_size(id),
            VolumeBackend::Rbd(r) => r.size(id),
        }
    }

    /// Make `spec` exist with at least its size (idempotent; grows a volume no VM has open).
    pub fn ensure(&self, spec: &VolumeSpec) -> Result<()> {
        match self {
            VolumeBackend::Files { dir, shared } => {
                if !*shared {
                    return dir.ensure_volume(spec).map(|_| ());
                }
                dir_space(dir.root())?;
                // A volume every host opens must not point into one host's own image store: its
                // image's base is copied into the shared directory once, and the overlay sits on that.
                let spec = match &spec.source {
                    VolumeSource::Image { path, format } => VolumeSpec {
                        id: spec.id.clone(),
                        size_bytes: spec.size_bytes,
                        source: VolumeSource::Image {
                            path: shared_image_base(dir, path, *format)?,
                            format: *format,
                        },
                    },
                    _ => spec.clone(),
                };
                dir.ensure_volume(&spec).map(|_| ())
            }
            VolumeBackend::Rbd(r) => r.ensure(spec),
        }
    }

    /// Whether a VM has volume `id` open.
    pub fn in_use(&self, id: &str) -> Result<bool> {
        match self {
            VolumeBackend::Files { dir: p, .. } => p.volume_locked(id),
            VolumeBackend::Rbd(r) => r.in_use(id),
        }
    }

    /// Whether snapshots of a volume a running VM has open must go through that VM (QMP): qcow2
    /// internal snapshots must; RBD snapshots are taken by Ceph, crash-consistent, at any time.
    pub fn snapshots_through_vm(&self) -> bool {
        matches!(self, VolumeBackend::Files { .. })
    }

    /// Take snapshot `name` of volume `id` (no-op if it exists).
    pub fn snapshot(&self, id: &str, name: &str) -> Result<()> {
        match self {
            VolumeBackend::Files { dir: p, .. } => p.snapshot_volume(id, name),
            VolumeBackend::Rbd(r) => r.snapshot(id, name),
        }
    }

    /// Delete snapshot `name` of volume `id` (no-op if it is gone).
    pub fn delete_snapshot(&self, id: &str, name: &str) -> Result<()> {
        match self {
            VolumeBackend::Files { dir: p, .. } => p.delete_volume_snapshot(id, name),
            VolumeBackend::Rbd(r) => r.delete_snapshot(id, name),
        }
    }

    /// Delete volume `id` and its snapshots (no-op if it is gone).
    pub fn delete(&self, id: &str) -> Result<()> {
        match self {
            VolumeBackend::Files { dir: p, .. } => p.delete_volume(id),
            VolumeBackend::Rbd(r) => r.delete(id),
        }
    }

    /// The images whose base copy this pool holds (made when a volume was created from them).
    pub fn image_bases(&self) -> Result<Vec<String>> {
        match self {
            VolumeBackend::Files { dir, .. } => {
                Ok(crate::storage::read_dir_names(&dir.root().join("images"))
                    .into_iter()
                    .filter(|n| kumo_types::ids::is_id(kumo_types::ids::IMAGE, n))
                    .collect())
            }
            VolumeBackend::Rbd(r) => r.image_bases(),
        }
    }

    /// Remove this pool's base copy of image `id` (no-op if there is none). An RBD base with clones
    /// left is refused by Ceph (the error says so).
    pub fn drop_image_base(&self, id: &str) -> Result<()> {
        match self {
            VolumeBackend::Files { dir, .. } => dir.delete_image(id),
            VolumeBackend::Rbd(r) => r.delete(&crate::rbd::image_base(id)),
        }
    }

    /// What QEMU opens for volume `id`, and in which format.
    pub fn disk(&self, id: &str) -> (DiskSource, DiskFormat) {
        match self {
            VolumeBackend::Files { dir: p, .. } => {
                (DiskSource::File(p.volume_path(id)), DiskFormat::Qcow2)
            }
            VolumeBackend::Rbd(r) => (r.source(id), DiskFormat::Raw),
        }
    }

    /// Copy volume `id` (or its snapshot `snapshot`) into a new, flat qcow2 file `dest` (images from
    /// volumes). Reads what a running VM has flushed: crash-consistent.
    pub fn export_qcow2(&self, id: &str, snapshot: Option<&str>, dest: &Path) -> Result<()> {
        let mut cmd = std::process::Command::new("qemu-img");
        cmd.args(["convert", "-U", "-q", "-O", "qcow2"]);
        match self {
            VolumeBackend::Files { dir, .. } => {
                if let Some(s) = snapshot {
                    cmd.arg("-l").arg(format!("snapshot.name={s}"));
                }
                cmd.arg(dir.volume_path(id));
            }
            VolumeBackend::Rbd(r) => {
                cmd.arg(r.qemu_json(id, snapshot));
            }
        }
        crate::storage::run_tool(cmd.arg(dest), "qemu-img convert (export a volume)").map(|_| ())
    }

    /// What this host sees of the pool: capacity and free space, or why it cannot use it.
    pub fn status(&self) -> PoolHostStatus {
        let r = match self {
            VolumeBackend::Files { dir, shared } => {
                if !*shared {
                    // A local directory pool is the agent's own: made on first use.
                    let _ = std::fs::create_dir_all(dir.root());
                }
                dir_space(dir.root())
            }
            VolumeBackend::Rbd(r) => r.space(),
        };
        match r {
            Ok((capacity_bytes, free_bytes)) => PoolHostStatus {
                capacity_bytes,
                free_bytes,
                error: None,
                checked_at: now_rfc3339(),
            },
            Err(e) => PoolHostStatus {
                error: Some(e.to_string()),
                checked_at: now_rfc3339(),
                ..Default::default()
            },
        }
    }
}

/// The copy of a stored image inside shared directory pool `dir`
/// (`<dir>/images/<image id>/disk.<format>`), made on first use.
fn shared_image_base(
    dir: &DirPool,
    local: &Path,
    format: DiskFormat,
) -> Result<std::path::PathBuf> {
    let image_id = local
        .parent()
        .and_then(|d| d.file_name())
        .ok_or_else(|| Error::internal(format!("odd image path {}", local.display())))?;
    let base = dir.image_disk(&image_id.to_string_lossy(), format);
    if base.is_file() {
        return Ok(base);
    }
    if let Some(parent) = base.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = base.with_extension("copying");
    std::fs::copy(local, &tmp)?;
    std::fs::rename(&tmp, &base)?;
    Ok(base)
}

/// `(capacity, free)` of the filesystem holding a directory pool; the directory must exist (a
/// `shared-dir` pool whose share is not mounted is reported, not created).
fn dir_space(root: &Path) -> Result<(u64, u64)> {
    if !root.is_dir() {
        return Err(Error::unavailable(format!(
            "directory {} does not exist on this host (is the share mounted?)",
            root.display()
        )));
    }
    let (free, total) = crate::inventory::disk_space(root)
        .map_err(|e| Error::unavailable(format!("statvfs {}: {e}", root.display())))?;
    Ok((total, free))
}
