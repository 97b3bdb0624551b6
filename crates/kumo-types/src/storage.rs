//! Volumes: block devices that live apart from instances (EBS-like). See decision 0007.
//!
//! Key layout: `/volumes/<id>` (desired: [`Volume`], written by the API), `/volume-status/<id>`
//! (observed: [`VolumeStatus`], written by the agent of the volume's host),
//! `/names/volumes/<project>/<name>`.
//!
//! Invariants:
//! - A volume has a home host (`host`) whose agent makes, grows, snapshots and deletes it while no
//!   running instance has it. In a local pool (`dir`, `lvm-thin`) its data is there and it attaches
//!   only to instances on that host; in a shared pool (`shared-dir`, `rbd`) it attaches anywhere, and
//!   attaching moves its home to the instance's host.
//! - `attachment` is the desired attachment; the agent hot-plugs or unplugs to match it. A volume with
//!   an attachment cannot be deleted.
//! - Sizes only grow.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The built-in pool: qcow2 files in each host's data directory (driver `dir`).
pub const LOCAL_POOL: &str = "local";

/// At most this many volumes per instance (each gets its own hot-plug root port).
pub const MAX_VOLUMES_PER_INSTANCE: u8 = 8;

/// Desired state of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub project: String,
    pub size_gib: u64,
    /// Storage pool (`local`: qcow2 files on the host's disk).
    pub pool: String,
    /// Volume type (what users choose; it names the pool and tier).
    #[serde(default = "default_volume_type")]
    pub volume_type: String,
    /// Image the volume was made from (a copy-on-write overlay on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Snapshot the volume was cloned from (an independent copy of its data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Home host: where its data lives (local pools), or whose agent looks after it (shared pools).
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<VolumeAttachment>,
    /// Set by `DELETE`; the agent removes the file, then the record goes.
    #[serde(default)]
    pub deleting: bool,
    pub created_at: String,
}

/// Where a volume is attached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct VolumeAttachment {
    pub instance_id: String,
    /// Delete the volume with the instance (else it is detached and kept).
    #[serde(default)]
    pub delete_on_termination: bool,
    /// Volume slot in its instance (0–7; names its hot-plug root port; stable while attached).
    pub slot: u8,
    /// The instance boots from it (it sits on the root bus, not a hot-plug port, and stays attached
    /// for the instance's life).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot: bool,
}

/// Observed state of a volume (agent-written).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    #[default]
    Creating,
    Available,
    InUse,
    Deleting,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
pub struct VolumeStatus {
    pub state: VolumeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Size of the volume as its host sees it.
    #[serde(default)]
    pub size_bytes: u64,
    /// The instance whose running QEMU has it plugged in right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugged_into: Option<String>,
}

/// What the API shows: the volume with its observed state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct VolumeView {
    #[serde(flatten)]
    pub volume: Volume,
    pub state: VolumeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugged_into: Option<String>,
}

impl VolumeView {
    pub fn new(v: &Volume, st: Option<&VolumeStatus>) -> VolumeView {
        let st = st.cloned().unwrap_or_default();
        VolumeView {
            volume: v.clone(),
            state: if v.deleting {
                VolumeState::Deleting
            } else {
                st.state
            },
            status_message: st.message,
            size_bytes: st.size_bytes,
            plugged_into: st.plugged_into,
        }
    }
}

/// Body of `POST /v1/volumes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeRequest {
    pub name: String,
    /// Size in GiB (default: the image's virtual size rounded up to GiB; required without an image).
    #[serde(default)]
    pub size_gib: Option<u64>,
    /// A disk image (ID or name) to start from.
    #[serde(default)]
    pub image: Option<String>,
    /// A completed snapshot (ID or name) to clone; the volume is an independent copy of its data.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Storage pool; default: the volume type's pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Volume type (default `default`); its pool must match `pool` when both are given.
    #[serde(default)]
    pub volume_type: Option<String>,
    /// Host to create it on (ID or name; default: the only or first ready host).
    #[serde(default)]
    pub host: Option<String>,
}

/// Body of `POST /v1/volumes/{id}/attach`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AttachVolumeRequest {
    /// Instance ID or name.
    pub instance: String,
    #[serde(default)]
    pub delete_on_termination: bool,
}

/// Body of `PATCH /v1/volumes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateVolumeRequest {
    /// A larger size in GiB (volumes only grow; online while attached to a running instance).
    #[serde(default)]
    pub size_gib: Option<u64>,
}

/// A point-in-time copy of a volume, kept inside the volume's file (a qcow2 internal snapshot named
/// by the snapshot's ID). Key layout: `/snapshots/<id>`, `/snapshot-status/<id>`,
/// `/names/snapshots/<project>/<name>`. A volume with snapshots cannot be deleted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub project: String,
    pub volume_id: String,
    /// The volume's size when the snapshot was requested.
    pub size_gib: u64,
    #[serde(default)]
    pub deleting: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    #[default]
    Pending,
    Completed,
    Deleting,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
pub struct SnapshotStatus {
    pub state: SnapshotState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SnapshotView {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    pub state: SnapshotState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

impl SnapshotView {
    pub fn new(s: &Snapshot, st: Option<&SnapshotStatus>) -> SnapshotView {
        let st = st.cloned().unwrap_or_default();
        SnapshotView {
            snapshot: s.clone(),
            state: if s.deleting {
                SnapshotState::Deleting
            } else {
                st.state
            },
            status_message: st.message,
        }
    }
}

/// Body of `POST /v1/snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    pub name: String,
    /// Volume ID or name.
    pub volume: String,
}

/// A volume as its host's agent must keep it, resolved by the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeAssignment {
    pub volume: Volume,
    /// Its snapshots (taken or to take, and those being deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Snapshot>,
    /// For a clone: the volume whose file holds the snapshot (`volume.snapshot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_source: Option<String>,
    /// The stored image it is an overlay on (`image_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::Image>,
    /// The pool it lives in.
    pub pool: Pool,
    /// The instance it is attached to should be running here: its worker then owns online changes
    /// (plug, unplug, grow); otherwise the agent grows the file itself.
    #[serde(default)]
    pub in_running_instance: bool,
}

/// How a pool stores volumes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PoolDriver {
    /// qcow2 files in a directory on each host's own disk: a volume lives on one host.
    Dir,
    /// qcow2 files in a directory every host mounts (NFS, CephFS…): a volume attaches on any host.
    SharedDir,
    /// Thin logical volumes in an LVM thin pool on each host (raw block devices): one host.
    LvmThin,
    /// Ceph RBD images, opened by QEMU's rbd driver: a volume attaches on any host.
    Rbd,
}

impl PoolDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolDriver::Dir => "dir",
            PoolDriver::SharedDir => "shared-dir",
            PoolDriver::LvmThin => "lvm-thin",
            PoolDriver::Rbd => "rbd",
        }
    }

    /// Whether every host reaches the same volumes (attach anywhere, live migration, HA restart).
    pub fn shared(self) -> bool {
        matches!(self, PoolDriver::SharedDir | PoolDriver::Rbd)
    }
}

/// A storage pool (desired state). Key layout: `/pools/<name>`; `local` is built in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Pool {
    pub name: String,
    pub driver: PoolDriver,
    /// `dir`, `shared-dir`: the directory (the same path on every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `lvm-thin`: the volume group and the thin pool LV in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin_pool: Option<String>,
    /// `rbd`: the Ceph pool, the `ceph.conf` path on every host (its `[global] keyring` names the
    /// client's keyring), and the Ceph client id (`admin` for `client.admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbd_pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_conf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_user: Option<String>,
    /// Built-in pools cannot be deleted.
    #[serde(default)]
    pub builtin: bool,
    #[serde(default)]
    pub created_at: String,
}

/// Body of `POST /v1/pools`. Which fields a driver needs: `dir`/`shared-dir`: `path`; `lvm-thin`:
/// `volume_group`, `thin_pool`; `rbd`: `rbd_pool`, `ceph_conf` (`ceph_user` defaults to `admin`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolRequest {
    pub name: String,
    pub driver: PoolDriver,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub volume_group: Option<String>,
    #[serde(default)]
    pub thin_pool: Option<String>,
    #[serde(default)]
    pub rbd_pool: Option<String>,
    #[serde(default)]
    pub ceph_conf: Option<String>,
    #[serde(default)]
    pub ceph_user: Option<String>,
}

/// What a host's agent last saw of a pool (`/pool-status/<pool>/<host>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
pub struct PoolHostStatus {
    /// Size and free space of what holds the pool (filesystem, thin pool or Ceph pool).
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    /// Why the host cannot use the pool (missing directory, no device-mapper, Ceph unreachable…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub checked_at: String,
}

/// A storage pool as the API shows it, with capacity and usage per host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PoolView {
    #[serde(flatten)]
    pub pool: Pool,
    /// Volumes in the pool, and the GiB they were given.
    pub volumes: u64,
    pub allocated_gib: u64,
    /// Local pools: summed over hosts; shared pools (`shared-dir`, `rbd`): what the hosts see of the
    /// one shared store.
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub hosts: Vec<PoolHostUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PoolHostUsage {
    pub host: String,
    /// Size and free space of what holds the pool (as the host last reported).
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    /// Volumes whose home is this host.
    pub volumes: u64,
    pub allocated_gib: u64,
    /// The host cannot use the pool, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The built-in volume type: the `local` pool.
pub const DEFAULT_VOLUME_TYPE: &str = "default";

fn default_volume_type() -> String {
    DEFAULT_VOLUME_TYPE.to_string()
}

/// A volume type maps what users ask for (`ssd`, `hdd`, `cinder-ssd`…) to a pool and a tier label.
/// Key layout: `/volume-types/<name>`. `default` is built in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct VolumeType {
    pub name: String,
    pub pool: String,
    /// A free label (`ssd`, `hdd`, …) shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub builtin: bool,
}

/// Body of `POST /v1/volume-types`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeTypeRequest {
    pub name: String,
    /// Pool its volumes go to.
    pub pool: String,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}
