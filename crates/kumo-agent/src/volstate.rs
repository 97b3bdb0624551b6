//! Converging the volumes of this host (decision 0007).
//!
//! Two owners, never both for one change:
//! - [`VolumeKeeper`] (the agent loop) makes, grows and deletes the files of the volumes that live on
//!   this host, and reports their status, except for volumes attached to an instance that should be
//!   running here: for those it only makes sure the file exists.
//! - [`sync_plugged`] (the instance's worker) makes the running VM's volumes match the attachments:
//!   hot-plug, unplug, online grow; it reports those volumes' status.

use std::collections::HashMap;
use std::time::Duration;

use kumo_types::{
    DiskFormat, Error, Result, Snapshot, SnapshotState, SnapshotStatus, Volume, VolumeAssignment,
    VolumeState, VolumeStatus,
};

use crate::control::ControlPlane;
use crate::runtime::RunningVm;
use crate::runtime::qemu::{DiskCache, DiskSpec, volume_bus};
use crate::storage::DirPool;
use crate::volume::{VolumeSource, VolumeSpec};

const GIB: u64 = 1 << 30;

/// How long a guest gets to let go of an unplugged volume.
pub const UNPLUG_TIMEOUT: Duration = Duration::from_secs(20);

/// The file-level spec of a volume (pure).
pub fn spec_of(pool: &DirPool, va: &VolumeAssignment) -> Result<VolumeSpec> {
    let v = &va.volume;
    let source = match (&v.image_id, &va.image, &v.snapshot_id, &va.snapshot_source) {
        (Some(_), Some(img), _, _) => VolumeSource::Image {
            path: pool.image_disk(&img.id, img.format.unwrap_or(DiskFormat::Qcow2)),
            format: img.format.unwrap_or(DiskFormat::Qcow2),
        },
        (Some(id), None, _, _) => {
            return Err(Error::unavailable(format!(
                "image {id} of volume {} is gone",
                v.id
            )));
        }
        (None, _, Some(snap), Some(src)) => VolumeSource::Snapshot {
            volume: pool.volume_path(src),
            snapshot: snap.clone(),
        },
        (None, _, Some(snap), None) => {
            return Err(Error::unavailable(format!(
                "snapshot {snap} of volume {} is gone",
                v.id
            )));
        }
        (None, _, None, _) => VolumeSource::Blank,
    };
    Ok(VolumeSpec {
        id: va.volume.id.clone(),
        size_bytes: va.volume.size_gib * GIB,
        source,
    })
}

/// The QEMU disk of an attached volume (on its own hot-plug port).
pub fn disk_of(pool: &DirPool, v: &Volume) -> Option<DiskSpec> {
    let slot = v.attachment.as_ref()?.slot;
    Some(DiskSpec {
        id: v.id.clone(),
        path: pool.volume_path(&v.id),
        format: DiskFormat::Qcow2,
        readonly: false,
        cache: DiskCache::default(),
        bus: Some(volume_bus(slot)),
    })
}

/// The agent loop's side: files and the status of volumes not in a running instance.
#[derive(Default)]
pub struct VolumeKeeper {
    reported: HashMap<String, VolumeStatus>,
    snapshots: SnapshotReports,
}

/// The snapshot statuses last reported (to report changes only).
#[derive(Default)]
pub struct SnapshotReports(HashMap<String, SnapshotStatus>);

impl SnapshotReports {
    async fn report(&mut self, cp: &dyn ControlPlane, id: &str, st: SnapshotStatus) {
        if self.0.get(id) != Some(&st) && cp.report_snapshot_status(id, st.clone()).await.is_ok() {
            self.0.insert(id.to_string(), st);
        }
    }
}

fn snapshot_result(r: Result<()>) -> SnapshotStatus {
    match r {
        Ok(()) => SnapshotStatus {
            state: SnapshotState::Completed,
            message: None,
        },
        Err(e) => SnapshotStatus {
            state: SnapshotState::Error,
            message: Some(e.to_string()),
        },
    }
}

/// Take or delete the snapshots of a volume whose file no running VM has open (`qemu-img`).
async fn sync_offline_snapshots(
    cp: &dyn ControlPlane,
    pool: &DirPool,
    volume_id: &str,
    snaps: &[Snapshot],
    reports: &mut SnapshotReports,
) {
    for s in snaps {
        if !s.deleting && reports.0.get(&s.id).map(|r| r.state) == Some(SnapshotState::Completed) {
            continue;
        }
        let (p, vid, sid) = (pool.clone(), volume_id.to_string(), s.id.clone());
        let deleting = s.deleting;
        let r = tokio::task::spawn_blocking(move || {
            if deleting {
                p.delete_volume_snapshot(&vid, &sid)
            } else {
                p.snapshot_volume(&vid, &sid)
            }
        })
        .await
        .map_err(|e| Error::internal_with("snapshot task", e))
        .and_then(|r| r);
        if deleting {
            if r.is_ok() && cp.snapshot_removed(&s.id).await.is_ok() {
                reports.0.remove(&s.id);
            }
        } else {
            reports.report(cp, &s.id, snapshot_result(r)).await;
        }
    }
}

/// Take or delete the snapshots of a volume plugged into a running VM (QMP).
pub async fn sync_online_snapshots(
    cp: &dyn ControlPlane,
    vm: &RunningVm,
    volume_id: &str,
    snaps: &[Snapshot],
    reports: &mut SnapshotReports,
) {
    for s in snaps.iter().filter(|s| s.volume_id == volume_id) {
        if s.deleting {
            if vm.delete_disk_snapshot(volume_id, &s.id).await.is_ok()
                && cp.snapshot_removed(&s.id).await.is_ok()
            {
                reports.0.remove(&s.id);
            }
        } else if reports.0.get(&s.id).map(|r| r.state) != Some(SnapshotState::Completed) {
            let r = vm.snapshot_disk(volume_id, &s.id).await;
            reports.report(cp, &s.id, snapshot_result(r)).await;
        }
    }
}

impl VolumeKeeper {
    pub async fn sync(
        &mut self,
        cp: &dyn ControlPlane,
        pool: &DirPool,
        volumes: &[VolumeAssignment],
    ) {
        for va in volumes {
            let id = va.volume.id.clone();
            if va.volume.deleting {
                let p = pool.clone();
                let vid = id.clone();
                let r = tokio::task::spawn_blocking(move || p.delete_volume(&vid)).await;
                if matches!(r, Ok(Ok(()))) && cp.volume_removed(&id).await.is_ok() {
                    self.reported.remove(&id);
                }
                continue;
            }
            if !va.in_running_instance && pool.volume_path(&id).exists() {
                sync_offline_snapshots(cp, pool, &id, &va.snapshots, &mut self.snapshots).await;
            }
            let st = match self.ensure(pool, va).await {
                Ok(None) => continue, // the worker reports it
                Ok(Some(size)) => VolumeStatus {
                    state: if va.volume.attachment.is_some() {
                        VolumeState::InUse
                    } else {
                        VolumeState::Available
                    },
                    message: None,
                    size_bytes: size,
                    plugged_into: None,
                },
                // Still open by a VM that is letting go of it: in use until then.
                Err(e) if e.code() == "conflict" => VolumeStatus {
                    state: VolumeState::InUse,
                    message: Some(e.to_string()),
                    ..Default::default()
                },
                Err(e) => VolumeStatus {
                    state: VolumeState::Error,
                    message: Some(e.to_string()),
                    ..Default::default()
                },
            };
            if self.reported.get(&id) != Some(&st)
                && cp.report_volume_status(&id, st.clone()).await.is_ok()
            {
                self.reported.insert(id, st);
            }
        }
        let live: Vec<&str> = volumes.iter().map(|v| v.volume.id.as_str()).collect();
        self.reported.retain(|id, _| live.contains(&id.as_str()));
    }

    /// Make the file (and grow it unless a running VM has it). `None`: the worker owns the status.
    async fn ensure(&self, pool: &DirPool, va: &VolumeAssignment) -> Result<Option<u64>> {
        let spec = spec_of(pool, va)?;
        let p = pool.clone();
        let running = va.in_running_instance;
        tokio::task::spawn_blocking(move || -> Result<Option<u64>> {
            if running {
                if p.volume_size(&spec.id)?.is_none() {
                    p.ensure_volume(&spec)?;
                }
                return Ok(None);
            }
            // Detached but still open in a VM (the guest has not released it yet): not available.
            if p.volume_path(&spec.id).exists() && p.volume_locked(&spec.id)? {
                return Err(Error::conflict(
                    "still open by a running VM: waiting for the guest to release it",
                ));
            }
            p.ensure_volume(&spec)?;
            p.volume_size(&spec.id)
        })
        .await
        .map_err(|e| Error::internal_with("volume task", e))?
    }
}

/// The worker's side: make the running VM's volumes match `wanted` (the volumes attached to it).
/// Returns the status of every volume it plugged or kept, and the first failure.
pub async fn sync_plugged(
    pool: &DirPool,
    instance_id: &str,
    vm: &RunningVm,
    wanted: &[Volume],
) -> (Vec<(String, VolumeStatus)>, Option<String>) {
    let mut failed = None;
    let mut statuses = Vec::new();
    let plugged = match vm.disk_sizes().await {
        Ok(p) => p,
        Err(e) => return (statuses, Some(format!("reading the VM's disks: {e}"))),
    };
    for id in plugged.keys().filter(|k| k.starts_with("vol-")) {
        if !wanted.iter().any(|v| &v.id == id) {
            match vm.unplug_disk(id, UNPLUG_TIMEOUT).await {
                Ok(()) => statuses.push((
                    id.clone(),
                    VolumeStatus {
                        state: VolumeState::Available,
                        size_bytes: plugged.get(id).copied().unwrap_or(0),
                        ..Default::default()
                    },
                )),
                Err(e) => failed = Some(format!("unplugging volume {id}: {e}")),
            }
        }
    }
    for v in wanted {
        let want = v.size_gib * GIB;
        let r = async {
            match plugged.get(&v.id) {
                Some(&size) if size < want => vm.resize_disk(&v.id, want).await.map(|()| want),
                Some(&size) => Ok(size),
                None => {
                    if !pool.volume_path(&v.id).exists() {
                        return Err(Error::unavailable(format!(
                            "volume {} has no file yet",
                            v.id
                        )));
                    }
                    let disk = disk_of(pool, v)
                        .ok_or_else(|| Error::internal("attached volume without attachment"))?;
                    let bus = disk.bus.clone().unwrap_or_default();
                    vm.hotplug_disk(&disk, &bus).await?;
                    let now = vm.disk_sizes().await?.get(&v.id).copied().unwrap_or(0);
                    if now < want {
                        vm.resize_disk(&v.id, want).await?;
                        return Ok(want);
                    }
                    Ok(now)
                }
            }
        }
        .await;
        match r {
            Ok(size) => statuses.push((
                v.id.clone(),
                VolumeStatus {
                    state: VolumeState::InUse,
                    message: None,
                    size_bytes: size,
                    plugged_into: Some(instance_id.to_string()),
                },
            )),
            Err(e) => failed = Some(format!("volume {}: {e}", v.id)),
        }
    }
    (statuses, failed)
}
