//! Volumes: block devices that live apart from instances (EBS-like). See decision 0007.
//!
//! Key layout: `/volumes/<id>` (desired: [`Volume`], written by the API), `/volume-status/<id>`
//! (observed: [`VolumeStatus`], written by the agent of the volume's host),
//! `/names/volumes/<project>/<name>`.
//!
//! Invariants:
//! - A volume of the `local` pool lives on one host (`host`): its file is there, and it attaches only
//!   to instances on that host.
//! - `attachment` is the desired attachment; the agent hot-plugs or unplugs to match it. A volume with
//!   an attachment cannot be deleted.
//! - Sizes only grow.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The only pool so far: qcow2 files in each host's data directory.
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
    /// Host whose pool holds the volume.
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
    /// Storage pool (only `local` so far); default: the volume type's pool.
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
    /// The instance it is attached to should be running here: its worker then owns online changes
    /// (plug, unplug, grow); otherwise the agent grows the file itself.
    #[serde(default)]
    pub in_running_instance: bool,
}

/// A storage pool as the API shows it, with capacity and usage per host (a `dir` pool is one directory
/// per host: `<data-dir>/pool`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PoolView {
    pub name: String,
    /// `dir`: qcow2 files on each host's local disk.
    pub driver: String,
    /// Built-in pools cannot be deleted.
    pub builtin: bool,
    /// Volumes in the pool, and the GiB they were given.
    pub volumes: u64,
    pub allocated_gib: u64,
    /// Summed over hosts.
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub hosts: Vec<PoolHostUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PoolHostUsage {
    pub host: String,
    /// Size and free space of the filesystem holding the pool (as the host last reported).
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub volumes: u64,
    pub allocated_gib: u64,
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
