//! Volumes in the `local` dir pool: one qcow2 file per volume, `<pool>/volumes/<id>.qcow2`.
//!
//! This is the agent's storage layer for volumes (issue 4); the API and reconcilers build on it. Deciding
//! is pure ([`plan_volume`]); [`DirPool::ensure_volume`] and friends execute with `qemu-img`. What a
//! running VM needs (hot-plug, online grow, online snapshots) is in [`crate::runtime::process`].
//!
//! Invariants:
//! - A volume file appears only complete: it is made as `<id>.qcow2.tmp`, then renamed.
//! - Volumes never shrink: a smaller size is refused (data would be lost) and nothing changes.
//! - A volume from an image is a qcow2 overlay on the stored image (as root disks are), so the image must
//!   outlive it. A volume from a snapshot is an independent copy of the snapshot's data
//!   (`qemu-img convert -l`), so it does not depend on its source volume.
//! - Snapshots are qcow2 internal snapshots named by the snapshot's ID: taken with `qemu-img snapshot
//!   -c` while the volume is detached, with QMP `blockdev-snapshot-internal-sync` while a running VM
//!   has it. Taking one that exists is a no-op.
//! - Sizes are bytes, whole MiB multiples (qcow2 clusters never straddle the end).

use std::path::{Path, PathBuf};
use std::process::Command;

use kumo_types::{DiskFormat, Error, Result};

use crate::storage::{DirPool, img_info_json, read_dir_names, run_tool};

/// Where a new volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// Zeroes.
    Blank,
    /// An overlay on a stored image disk.
    Image { path: PathBuf, format: DiskFormat },
    /// A copy of snapshot `snapshot` of volume `volume_id` (in the same pool).
    Snapshot { volume_id: String, snapshot: String },
}

/// What a volume should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub id: String,
    pub size_bytes: u64,
    pub source: VolumeSource,
}

/// One step towards a [`VolumeSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    /// Make the file from its source, then give it `size` bytes.
    Create { size: u64 },
    /// Grow an existing file to `size` bytes.
    Grow { size: u64 },
}

/// Decide the steps (pure). `current` is the file's virtual size if it exists; `source_size` the
/// virtual size of the source (image or snapshot), which a new volume may not be smaller than.
pub fn plan_volume(
    spec: &VolumeSpec,
    current: Option<u64>,
    source_size: Option<u64>,
) -> Result<Vec<VolumeStep>> {
    const MIB: u64 = 1 << 20;
    if spec.size_bytes == 0 || !spec.size_bytes.is_multiple_of(MIB) {
        return Err(Error::invalid(
            "size",
            format!(
                "{} bytes: a volume is a positive whole number of MiB",
                spec.size_bytes
            ),
        ));
    }
    match current {
        Some(now) if now > spec.size_bytes => Err(Error::invalid(
            "size",
            format!(
                "volume {} has {now} bytes; volumes only grow (asked for {})",
                spec.id, spec.size_bytes
            ),
        )),
        Some(now) if now < spec.size_bytes => Ok(vec![VolumeStep::Grow {
            size: spec.size_bytes,
        }]),
        Some(_) => Ok(vec![]),
        None => {
            if let Some(src) = source_size.filter(|s| *s > spec.size_bytes) {
                return Err(Error::invalid(
                    "size",
                    format!(
                        "{} bytes is smaller than the source's {src} bytes",
                        spec.size_bytes
                    ),
                ));
            }
            Ok(vec![VolumeStep::Create {
                size: spec.size_bytes,
            }])
        }
    }
}

impl DirPool {
    /// The directory of all volume files.
    pub fn volume_dir(&self) -> PathBuf {
        self.root().join("volumes")
    }

    /// The file of volume `id`.
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.volume_dir().join(format!("{id}.qcow2"))
    }

    /// Virtual size of volume `id`, or `None` if it has no file. Works while a VM uses the file.
    pub fn volume_size(&self, id: &str) -> Result<Option<u64>> {
        let p = self.volume_path(id);
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(image_info(&p)?["virtual-size"].as_u64().unwrap_or(0)))
    }

    /// Make volume `spec` exist with at least its size (idempotent; offline grow of a detached volume).
    /// Returns the file's path.
    pub fn ensure_volume(&self, spec: &VolumeSpec) -> Result<PathBuf> {
        let path = self.volume_path(&spec.id);
        let source_size = match &spec.source {
            VolumeSource::Blank => None,
            VolumeSource::Image { path, .. } => image_info(path)?["virtual-size"].as_u64(),
            // Checked after the copy: `qemu-img info` does not show a snapshot's own size.
            VolumeSource::Snapshot { .. } => None,
        };
        for step in plan_volume(spec, self.volume_size(&spec.id)?, source_size)? {
            match step {
                VolumeStep::Create { size } => self.create(&path, &spec.source, size)?,
                VolumeStep::Grow { size } => {
                    run_tool(
                        Command::new("qemu-img")
                            .args(["resize", "-q", "-f", "qcow2"])
                            .arg(&path)
                            .arg(size.to_string()),
                        "qemu-img resize",
                    )?;
                }
            }
        }
        Ok(path)
    }

    fn create(&self, path: &Path, source: &VolumeSource, size: u64) -> Result<()> {
        std::fs::create_dir_all(self.volume_dir())?;
        let tmp = path.with_extension("qcow2.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut cmd = Command::new("qemu-img");
        match source {
            VolumeSource::Blank => {
                cmd.args(["create", "-q", "-f", "qcow2"]).arg(&tmp);
            }
            VolumeSource::Image { path: img, format } => {
                cmd.args(["create", "-q", "-f", "qcow2", "-b"])
                    .arg(img)
                    .args(["-F", format.as_str()])
                    .arg(&tmp);
            }
            VolumeSource::Snapshot {
                volume_id,
                snapshot,
            } => {
                cmd.args(["convert", "-U", "-q", "-O", "qcow2", "-l"])
                    .arg(format!("snapshot.name={snapshot}"))
                    .arg(self.volume_path(volume_id))
                    .arg(&tmp);
            }
        }
        // `create` takes the size; a snapshot copy gets it by a resize below.
        if !matches!(source, VolumeSource::Snapshot { .. }) {
            cmd.arg(size.to_string());
        }
        run_tool(&mut cmd, "qemu-img (new volume)")?;
        if matches!(source, VolumeSource::Snapshot { .. }) {
            let copied = image_info(&tmp)?["virtual-size"].as_u64().unwrap_or(0);
            if copied > size {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::invalid(
                    "size",
                    format!("{size} bytes is smaller than the snapshot's {copied} bytes"),
                ));
            }
            run_tool(
                Command::new("qemu-img")
                    .args(["resize", "-q", "-f", "qcow2"])
                    .arg(&tmp)
                    .arg(size.to_string()),
                "qemu-img resize",
            )?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Whether a process (a QEMU) holds volume `id`'s file open for writing: `qemu-img info` without
    /// `-U` then fails to take its shared lock.
    pub fn volume_locked(&self, id: &str) -> Result<bool> {
        let out = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(self.volume_path(id))
            .output()?;
        Ok(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("lock"))
    }

    /// Take internal snapshot `name` of detached volume `id` (no-op if it exists).
    pub fn snapshot_volume(&self, id: &str, name: &str) -> Result<()> {
        let path = self.volume_path(id);
        if self.volume_snapshots(id)?.iter().any(|s| s == name) {
            return Ok(());
        }
        run_tool(
            Command::new("qemu-img")
                .args(["snapshot", "-q", "-c", name])
                .arg(&path),
            "qemu-img snapshot -c",
        )?;
        Ok(())
    }

    /// Names of volume `id`'s internal snapshots (readable while a VM uses the file).
    pub fn volume_snapshots(&self, id: &str) -> Result<Vec<String>> {
        let info = image_info(&self.volume_path(id))?;
        Ok(info["snapshots"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Delete internal snapshot `name` of detached volume `id` (no-op if it is gone).
    pub fn delete_volume_snapshot(&self, id: &str, name: &str) -> Result<()> {
        if !self.volume_snapshots(id)?.iter().any(|s| s == name) {
            return Ok(());
        }
        run_tool(
            Command::new("qemu-img")
                .args(["snapshot", "-q", "-d", name])
                .arg(self.volume_path(id)),
            "qemu-img snapshot -d",
        )?;
        Ok(())
    }

    /// Make image `image_id` (stored in this pool) from volume `volume_id` of `backend`, or from its
    /// snapshot `snapshot`: a flattened qcow2 copy (it depends on no backing file), stored and
    /// hashed like an import. Reads what a VM has flushed, so a volume in use gives a
    /// crash-consistent image.
    pub fn import_from_volume(
        &self,
        image_id: &str,
        backend: &crate::backend::VolumeBackend,
        volume_id: &str,
        snapshot: Option<&str>,
    ) -> Result<crate::storage::Imported> {
        if backend.size(volume_id)?.is_none() {
            return Err(Error::invalid(
                "volume",
                format!("volume {volume_id} has no data reachable from this host"),
            ));
        }
        let dir = self.root().join("images");
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{image_id}.export.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let converted = backend
            .export_qcow2(volume_id, snapshot, &tmp)
            .and_then(|_| self.import_disk(image_id, &tmp, Some(DiskFormat::Qcow2)));
        let _ = std::fs::remove_file(&tmp);
        converted
    }

    /// Remove volume `id`'s file (no-op if it is gone).
    pub fn delete_volume(&self, id: &str) -> Result<()> {
        match std::fs::remove_file(self.volume_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// IDs of the volumes that have a file in the pool (for garbage collection).
    pub fn volume_ids(&self) -> Vec<String> {
        read_dir_names(&self.volume_dir())
            .into_iter()
            .filter_map(|n| n.strip_suffix(".qcow2").map(str::to_string))
            .collect()
    }
}

/// `qemu-img info` as JSON, sharing the file with a VM that may have it open.
fn image_info(p: &Path) -> Result<serde_json::Value> {
    img_info_json(p, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn spec(size: u64) -> VolumeSpec {
        VolumeSpec {
            id: "vol-1".into(),
            size_bytes: size,
            source: VolumeSource::Blank,
        }
    }

    #[test]
    fn plans_create_grow_or_nothing() {
        assert_eq!(
            plan_volume(&spec(GIB), None, None).unwrap(),
            vec![VolumeStep::Create { size: GIB }]
        );
        assert_eq!(
            plan_volume(&spec(2 * GIB), Some(GIB), None).unwrap(),
            vec![VolumeStep::Grow { size: 2 * GIB }]
        );
        assert!(plan_volume(&spec(GIB), Some(GIB), None).unwrap().is_empty());
    }

    #[test]
    fn refuses_shrinking_odd_sizes_and_smaller_than_the_source() {
        let e = plan_volume(&spec(GIB), Some(2 * GIB), None).unwrap_err();
        assert_eq!(e.field(), Some("size"));
        assert!(e.to_string().contains("only grow"), "{e}");
        assert!(plan_volume(&spec(0), None, None).is_err());
        assert!(plan_volume(&spec(GIB + 1), None, None).is_err());
        let e = plan_volume(&spec(MIB), None, Some(2 * MIB)).unwrap_err();
        assert!(e.to_string().contains("smaller than the source"), "{e}");
        assert!(plan_volume(&spec(2 * MIB), None, Some(2 * MIB)).is_ok());
    }
}
