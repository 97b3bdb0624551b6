//! Converging the volumes of this host (decision 0007).
//!
//! Two owners, never both for one change:
//! - [`VolumeKeeper`] (the agent loop) makes, grows and deletes the files of the volumes that live on
//!   this host, and reports their status, except for volumes attached to an instance that should be
//!   running here: for those it only makes sure the file exists.
//! - [`sync_plugged`] (the instance's worker) makes the running VM's volumes match the attachments:
//!   hot-plug, unplug, online grow; it reports those volumes' status.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kumo_types::{
    Assignment, DiskFormat, Error, Pool, PoolHostStatus, Result, Snapshot, SnapshotState,
    SnapshotStatus, Volume, VolumeAssignment, VolumeState, VolumeStatus,
};

use crate::backend::VolumeBackend;
use crate::control::ControlPlane;
use crate::runtime::RunningVm;
use crate::runtime::qemu::{DiskCache, DiskSpec, volume_bus};
use crate::storage::DirPool;
use crate::volume::{VolumeSource, VolumeSpec};

const GIB: u64 = 1 << 30;

/// How long a guest gets to let go of an unplugged volume.
pub const UNPLUG_TIMEOUT: Duration = Duration::from_secs(20);

/// The spec of a volume (pure). Images are files in the host's own `local` pool.
pub fn spec_of(local: &DirPool, va: &VolumeAssignment) -> Result<VolumeSpec> {
    let v = &va.volume;
    let source = match (&v.image_id, &va.image, &v.snapshot_id, &va.snapshot_source) {
        (Some(_), Some(img), _, _) => VolumeSource::Image {
            path: local.image_disk(&img.id, img.format.unwrap_or(DiskFormat::Qcow2)),
            format: img.format.unwrap_or(DiskFormat::Qcow2),
        },
        (Some(id), None, _, _) => {
            return Err(Error::unavailable(format!(
                "image {id} of volume {} is gone",
                v.id
            )));
        }
        (None, _, Some(snap), Some(src)) => VolumeSource::Snapshot {
            volume_id: src.clone(),
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

/// The backend of the pool volume `v` lives in, among `pools` (those of an assignment).
pub fn backend_of(local: &DirPool, pools: &[Pool], v: &Volume) -> Result<VolumeBackend> {
    let pool = pools
        .iter()
        .find(|p| p.name == v.pool)
        .ok_or_else(|| Error::internal(format!("pool `{}` missing from assignment", v.pool)))?;
    VolumeBackend::of(pool, local)
}

/// The QEMU disk of an attached volume: on its own hot-plug port, or on the root bus for a boot
/// volume.
pub fn disk_of(backend: &VolumeBackend, v: &Volume) -> Option<DiskSpec> {
    let a = v.attachment.as_ref()?;
    let (source, format) = backend.disk(&v.id);
    Some(DiskSpec {
        id: v.id.clone(),
        source,
        format,
        readonly: false,
        cache: DiskCache::default(),
        bus: (!a.boot).then(|| volume_bus(a.slot)),
    })
}

/// Run blocking storage work (tools, files) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal_with("storage task", e))?
}

/// The attached volumes of assignment `a` that exist.
pub async fn present_volumes(local: &DirPool, a: &Assignment) -> HashSet<String> {
    let mut out = HashSet::new();
    for v in a.volumes.iter().filter(|v| !v.deleting) {
        let Ok(b) = backend_of(local, &a.pools, v) else {
            continue;
        };
        let id = v.id.clone();
        if matches!(blocking(move || b.size(&id)).await, Ok(Some(_))) {
            out.insert(v.id.clone());
        }
    }
    out
}

/// How often each pool's capacity is reported.
const POOL_REPORT_EVERY: Duration = Duration::from_secs(30);

/// The agent loop's side: files and the status of volumes not in a running instance.
#[derive(Default)]
pub struct VolumeKeeper {
    reported: HashMap<String, VolumeStatus>,
    snapshots: SnapshotReports,
    /// When each pool was last reported, and what.
    pools: HashMap<String, (std::time::Instant, PoolHostStatus)>,
    /// The desired state each volume was last converged to without error: an unchanged volume is
    /// not looked at again (no storage tool runs for it) until its record or snapshots change, or
    /// [`RECHECK_EVERY`] passes.
    converged: HashMap<String, (String, std::time::Instant)>,
}

/// How often a converged, unchanged volume is checked anyway (its file or image could have been
/// touched behind kumo's back).
const RECHECK_EVERY: Duration = Duration::from_secs(300);

/// What a volume should be, as a comparable fingerprint.
fn desired_key(va: &VolumeAssignment) -> String {
    serde_json::to_string(&(&va.volume, &va.snapshots, va.in_running_instance, &va.pool))
        .unwrap_or_default()
}

/// The snapshot statuses last reported (to report changes only).
#[derive(Default)]
pub struct SnapshotReports(HashMap<String, SnapshotStatus>);

impl SnapshotReports {
    fn completed(&self, id: &str) -> bool {
        self.0
            .get(id)
            .is_some_and(|s| s.state == SnapshotState::Completed)
    }

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

/// Take or delete the snapshots of a volume with the pool's own tools: one no running VM has open
/// (`qemu-img`), or any volume of a pool whose snapshots need no VM (RBD).
async fn sync_offline_snapshots(
    cp: &dyn ControlPlane,
    pool: &VolumeBackend,
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
        let r = blocking(move || {
            if deleting {
                p.delete_snapshot(&vid, &sid)
            } else {
                p.snapshot(&vid, &sid)
            }
        })
        .await;
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
        local: &DirPool,
        volumes: &[VolumeAssignment],
    ) {
        for va in volumes {
            let id = va.volume.id.clone();
            let backend = match VolumeBackend::of(&va.pool, local) {
                Ok(b) => b,
                Err(e) => {
                    self.report(cp, &id, error_status(&e)).await;
                    continue;
                }
            };
            let key = desired_key(va);
            if self
                .converged
                .get(&id)
                .is_some_and(|(k, at)| k == &key && at.elapsed() < RECHECK_EVERY)
            {
                continue;
            }
            if va.volume.deleting {
                let (b, vid) = (backend.clone(), id.clone());
                if blocking(move || b.delete(&vid)).await.is_ok()
                    && cp.volume_removed(&id).await.is_ok()
                {
                    self.reported.remove(&id);
                }
                continue;
            }
            if let Some(img) = &va.image
                && let Err(e) = crate::imagecache::ensure_local(cp, local, img).await
            {
                self.report(cp, &id, error_status(&e)).await;
                continue;
            }
            let st = match self.ensure(local, &backend, va).await {
                Ok(None) => {
                    // The worker reports it; snapshots that need no VM are still taken here.
                    if !backend.snapshots_through_vm() {
                        sync_offline_snapshots(
                            cp,
                            &backend,
                            &id,
                            &va.snapshots,
                            &mut self.snapshots,
                        )
                        .await;
                    }
                    continue;
                }
                Ok(Some(size)) => {
                    sync_offline_snapshots(cp, &backend, &id, &va.snapshots, &mut self.snapshots)
                        .await;
                    VolumeStatus {
                        state: if va.volume.attachment.is_some() {
                            VolumeState::InUse
                        } else {
                            VolumeState::Available
                        },
                        message: None,
                        size_bytes: size,
                        plugged_into: None,
                    }
                }
                // Still open by a VM that is letting go of it: in use until then.
                Err(e) if e.code() == "conflict" => VolumeStatus {
                    state: VolumeState::InUse,
                    message: Some(e.to_string()),
                    ..Default::default()
                },
                Err(e) => error_status(&e),
            };
            let settled = matches!(st.state, VolumeState::Available | VolumeState::InUse)
                && st.message.is_none()
                && va
                    .snapshots
                    .iter()
                    .all(|s| !s.deleting && self.snapshots.completed(&s.id));
            self.report(cp, &id, st).await;
            if settled && self.reported.contains_key(&id) {
                self.converged
                    .insert(id.clone(), (key, std::time::Instant::now()));
            } else {
                self.converged.remove(&id);
            }
        }
        let live: Vec<&str> = volumes.iter().map(|v| v.volume.id.as_str()).collect();
        self.reported.retain(|id, _| live.contains(&id.as_str()));
        self.converged.retain(|id, _| live.contains(&id.as_str()));
    }

    async fn report(&mut self, cp: &dyn ControlPlane, id: &str, st: VolumeStatus) {
        if self.reported.get(id) != Some(&st)
            && cp.report_volume_status(id, st.clone()).await.is_ok()
        {
            self.reported.insert(id.to_string(), st);
        }
    }

    /// Make the volume (and grow it unless a running VM has it). `None`: the worker owns the status.
    async fn ensure(
        &self,
        local: &DirPool,
        backend: &VolumeBackend,
        va: &VolumeAssignment,
    ) -> Result<Option<u64>> {
        let spec = spec_of(local, va)?;
        let b = backend.clone();
        let running = va.in_running_instance;
        blocking(move || -> Result<Option<u64>> {
            let size = b.size(&spec.id)?;
            if running {
                if size.is_none() {
                    b.ensure(&spec)?;
                }
                return Ok(None);
            }
            // Detached but still open in a VM (the guest has not released it yet): not available.
            if size.is_some() && b.in_use(&spec.id)? {
                return Err(Error::conflict(
                    "still open by a running VM: waiting for the guest to release it",
                ));
            }
            b.ensure(&spec)?;
            b.size(&spec.id)
        })
        .await
    }

    /// Report what this host sees of each operator-defined pool, when it changed or every
    /// [`POOL_REPORT_EVERY`].
    pub async fn report_pools(
        &mut self,
        cp: &dyn ControlPlane,
        host_id: &str,
        local: &DirPool,
        pools: &[Pool],
    ) {
        for pool in pools {
            let due = self
                .pools
                .get(&pool.name)
                .is_none_or(|(at, _)| at.elapsed() >= POOL_REPORT_EVERY);
            if !due {
                continue;
            }
            let st = match VolumeBackend::of(pool, local) {
                Ok(b) => {
                    blocking(move || Ok(b.status()))
                        .await
                        .unwrap_or_else(|e| PoolHostStatus {
                            error: Some(e.to_string()),
                            ..Default::default()
                        })
                }
                Err(e) => PoolHostStatus {
                    error: Some(e.to_string()),
                    checked_at: kumo_types::now_rfc3339(),
                    ..Default::default()
                },
            };
            if cp
                .report_pool_status(&pool.name, host_id, st.clone())
                .await
                .is_ok()
            {
                self.pools
                    .insert(pool.name.clone(), (std::time::Instant::now(), st));
            }
        }
        self.pools
            .retain(|name, _| pools.iter().any(|p| &p.name == name));
    }
}

fn error_status(e: &Error) -> VolumeStatus {
    VolumeStatus {
        state: VolumeState::Error,
        message: Some(e.to_string()),
        ..Default::default()
    }
}

/// The worker's side: make the running VM's volumes match `wanted` (the volumes attached to it).
/// Returns the status of every volume it plugged or kept, and the first failure.
pub async fn sync_plugged(
    local: &DirPool,
    pools: &[Pool],
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
                None if v.attachment.as_ref().is_some_and(|a| a.boot) => Err(Error::internal(
                    format!("boot volume {} is not in the running VM", v.id),
                )),
                None => {
                    let backend = backend_of(local, pools, v)?;
                    let (b, vid) = (backend.clone(), v.id.clone());
                    if blocking(move || b.size(&vid)).await?.is_none() {
                        return Err(Error::unavailable(format!(
                            "volume {} is not made yet",
                            v.id
                        )));
                    }
                    let disk = disk_of(&backend, v)
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
