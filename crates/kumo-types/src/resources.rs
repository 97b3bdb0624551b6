//! Resource records as stored and as served by `/v1`.
//!
//! Store layout (keys are UTF-8, values JSON):
//! - `/instances/<id>` → [`Instance`] (desired state, written by the API)
//! - `/instance-status/<id>` → [`InstanceStatus`] (observed state, written on behalf of the agent)
//! - `/names/<kind>/<project>/<name>` → id (uniqueness index, created in the same txn as the record)
//! - `/images/<id>`, `/instance-types/<name>`, `/key-pairs/<id>`, `/networks/<id>`, `/hosts/<id>`
//! - `/ipam/<network-id>/<ipv4>` → instance id (an address is taken iff its key exists)
//! - `/host-alloc/<host-id>` → [`HostAllocation`] (CAS-guarded sum of what is placed on the host)
//! - `/events/<zero-padded-seq>` → [`Event`]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const DEFAULT_PROJECT: &str = "default";

/// Current time as RFC 3339 (UTC, millisecond precision).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------- instances

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

/// What the agent does when QEMU exits without being asked to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart; a crashed instance stays `crashed`.
    Never,
    /// Restart after a crash (QEMU died without a guest shutdown). A guest-initiated shutdown stops it.
    #[default]
    OnFailure,
    /// Restart after a crash and after a guest-initiated shutdown.
    Always,
}

/// One network interface of an instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Nic {
    /// The port (see [`crate::Port`]) this NIC is.
    #[serde(default)]
    pub port_id: String,
    pub network_id: String,
    #[serde(default)]
    pub subnet_id: String,
    /// Fixed MAC, `52:54:00:xx:xx:xx`.
    pub mac: String,
    /// Fixed IPv4 allocated by kumo's IPAM and served by DHCP.
    pub ipv4: String,
    /// Stable slot of the NIC in its instance (names its tap and QEMU device; survives unplugging
    /// other NICs).
    #[serde(default)]
    pub slot: u8,
    /// The port existed before the NIC (attached with `port`): detaching the NIC or deleting the
    /// instance leaves it, unattached, with its address; otherwise the port goes with the NIC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_port: bool,
}

/// Desired state of an instance, written by the API only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub project: String,
    pub image_id: String,
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub root_disk_gib: u64,
    /// Boots from this volume (made from the image at launch) instead of a root disk file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume_id: Option<String>,
    /// High availability: restart on another host when this one fails (after fencing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ha: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ha_priority: u32,
    /// PCI addresses of the host devices (GPUs) the scheduler gave it, passed through with vfio-pci.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// User data as given (UTF-8 text, e.g. a shell script or cloud-config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    pub desired_state: DesiredState,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Host the scheduler placed the instance on.
    pub host: Option<String>,
    pub nics: Vec<Nic>,
    /// Incremented by every reboot request; the agent reboots when it sees a larger value than it
    /// last applied.
    #[serde(default)]
    pub reboot_seq: u64,
    /// Set by a delete request; the agent tears everything down, then the record is removed.
    #[serde(default)]
    pub deleting: bool,
    /// The last stop request asked to skip the ACPI shutdown.
    #[serde(default)]
    pub force_stop: bool,
    pub created_at: String,
    /// A move to another host in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<crate::Migration>,
    /// How the last move ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<crate::MigrationResult>,
}

/// Observed state of an instance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Accepted, not yet started by an agent.
    #[default]
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Rebooting,
    /// QEMU exited without being asked to and the restart policy does not restart it.
    Crashed,
    /// The agent could not start it; `message` says why.
    Failed,
    Deleting,
}

/// Observed status, written on behalf of the agent that runs the instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema, Default)]
pub struct InstanceStatus {
    pub state: InstanceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `kvm` or `tcg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// The last reboot request the agent applied.
    #[serde(default)]
    pub reboot_seq: u64,
    /// How many times the agent has (re)started QEMU for this instance.
    #[serde(default)]
    pub boot_count: u64,
    #[serde(default)]
    pub updated_at: String,
    /// The host whose agent reported it: a report from a host the instance has left (it moved) is
    /// ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// An instance as the API shows it: desired state and observed status side by side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub project: String,
    /// Observed state.
    pub state: InstanceState,
    pub desired_state: DesiredState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    pub host: Option<String>,
    /// IPv4 of the first NIC.
    pub ipv4: Option<String>,
    pub mac: Option<String>,
    pub image_id: String,
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub root_disk_gib: u64,
    /// The volume it boots from (instead of a root disk file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    pub restart_policy: RestartPolicy,
    pub nics: Vec<Nic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub boot_count: u64,
    /// PCI addresses of the host GPUs passed through to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_devices: Vec<String>,
    /// The placement group it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
    /// Host labels it required.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub host_selector: std::collections::BTreeMap<String, String>,
    /// Why it is on its host (the scheduler's decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::PlacementDecision>,
    /// A move to another host in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<crate::Migration>,
    /// How the last move ended (downtime of a live migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<crate::MigrationResult>,
    pub created_at: String,
}

impl InstanceView {
    pub fn new(i: &Instance, s: Option<&InstanceStatus>) -> Self {
        let default = InstanceStatus::default();
        let s = s.unwrap_or(&default);
        let state = if i.deleting {
            InstanceState::Deleting
        } else {
            s.state
        };
        InstanceView {
            id: i.id.clone(),
            name: i.name.clone(),
            project: i.project.clone(),
            state,
            desired_state: i.desired_state,
            status_message: s.message.clone(),
            host: i.host.clone(),
            ipv4: i.nics.first().map(|n| n.ipv4.clone()),
            mac: i.nics.first().map(|n| n.mac.clone()),
            image_id: i.image_id.clone(),
            instance_type: i.instance_type.clone(),
            vcpus: i.vcpus,
            memory_mib: i.memory_mib,
            root_disk_gib: i.root_disk_gib,
            boot_volume_id: i.boot_volume_id.clone(),
            key_name: i.key_name.clone(),
            restart_policy: i.restart_policy,
            nics: i.nics.clone(),
            accel: s.accel.clone(),
            pid: s.pid,
            boot_count: s.boot_count,
            gpu_devices: i.gpu_devices.clone(),
            placement_group: None,
            host_selector: Default::default(),
            placement: None,
            migration: i.migration.clone().map(|mut m| {
                m.secret.clear();
                m
            }),
            last_migration: i.last_migration.clone(),
            created_at: i.created_at.clone(),
        }
    }

    /// The view with what the instance asked of the scheduler and its decision.
    pub fn with_placement(mut self, p: Option<&crate::InstancePlacement>) -> Self {
        if let Some(p) = p {
            self.placement_group = p.placement_group.clone();
            self.host_selector = p.host_selector.clone();
            self.placement = Some(p.decision.clone());
        }
        self
    }
}

/// Body of `POST /v1/instances`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunInstanceRequest {
    pub name: String,
    /// Image ID or name.
    pub image: String,
    /// Instance type name.
    pub instance_type: String,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    /// Root disk size in GiB; defaults to the instance type's and may not be smaller than the image.
    #[serde(default)]
    pub root_disk_gib: Option<u64>,
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// Network ID or name for a single NIC; defaults to the default network. Use `nics` for more.
    #[serde(default)]
    pub network: Option<String>,
    /// One entry per NIC, in order (eth0, eth1, …). Overrides `network`.
    #[serde(default)]
    pub nics: Option<Vec<NicRequest>>,
    /// Security groups (IDs or names) for NICs that do not name their own; default: `default`.
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// Create it stopped.
    #[serde(default)]
    pub start: Option<bool>,
    /// High availability: restart on another host when this one fails (needs shared storage: boot
    /// from a volume in a `shared-dir` or `rbd` pool).
    #[serde(default)]
    pub ha: Option<bool>,
    /// HA restart order (higher first; default 0).
    #[serde(default)]
    pub ha_priority: Option<u32>,
    /// Boot from a volume made from the image at launch (in any pool), instead of a root disk
    /// file on the host: the EBS-backed instance.
    #[serde(default)]
    pub root_volume: Option<RootVolumeRequest>,
    /// Placement group (name) the instance joins: placed apart from or together with its other
    /// members, as the group says.
    #[serde(default)]
    pub placement_group: Option<String>,
    /// Host labels the instance requires (`{"rack": "a"}`): only hosts with every one of them, with
    /// exactly that value, can take it.
    #[serde(default)]
    pub host_selector: Option<std::collections::BTreeMap<String, String>>,
}

/// The boot volume of `RunInstanceRequest.root_volume`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RootVolumeRequest {
    /// Volume type (default `default`).
    #[serde(default)]
    pub volume_type: Option<String>,
    /// Size in GiB (default: the instance's root disk size).
    #[serde(default)]
    pub size_gib: Option<u64>,
    /// Delete the volume with the instance (default true).
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
}

/// One NIC of a new instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NicRequest {
    /// Network ID or name (its first subnet unless `subnet` is given).
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub subnet: Option<String>,
    /// A fixed IPv4 to request.
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// Attach this existing, unattached port instead of creating one.
    #[serde(default)]
    pub port: Option<String>,
}

/// Body of `POST /v1/instances/{id}/stop`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StopInstanceRequest {
    /// Skip the ACPI shutdown and stop QEMU at once.
    #[serde(default)]
    pub force: bool,
}

// ---------------------------------------------------------------- images

/// What an image boots as.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A kernel and an initrd booted directly (`-kernel/-initrd`); instances get a blank root disk.
    KernelInitrd,
    /// A disk image: a bootable disk (`qcow2`, `raw`; instances get a qcow2 overlay on it) or an
    /// installation CD (`iso`; see [`DiskFormat::Iso`]).
    Disk,
}

/// Format of a disk image as the pool stores it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Qcow2,
    Raw,
    /// An ISO 9660 CD image, stored unchanged (installation media). Instances and volumes cannot be
    /// made from it yet.
    Iso,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
            DiskFormat::Iso => "iso",
        }
    }
    /// The QEMU block driver that reads it (an ISO is a raw file).
    pub fn qemu_driver(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw | DiskFormat::Iso => "raw",
        }
    }
}

/// Format of a disk image given to an import. `vmdk`, `vdi` and `vhdx` are converted to `qcow2`;
/// the others are stored unchanged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Qcow2,
    Raw,
    /// ISO 9660 (`CD001` at byte 0x8001). A hybrid ISO declared as `raw` is stored as a raw disk.
    Iso,
    /// VMware (single-file variants only: every extent must be in the file itself).
    Vmdk,
    /// VirtualBox.
    Vdi,
    /// Hyper-V.
    Vhdx,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Qcow2 => "qcow2",
            ImportFormat::Raw => "raw",
            ImportFormat::Iso => "iso",
            ImportFormat::Vmdk => "vmdk",
            ImportFormat::Vdi => "vdi",
            ImportFormat::Vhdx => "vhdx",
        }
    }
    /// The format the pool stores an image of this format in.
    pub fn stored(self) -> DiskFormat {
        match self {
            ImportFormat::Qcow2 | ImportFormat::Vmdk | ImportFormat::Vdi | ImportFormat::Vhdx => {
                DiskFormat::Qcow2
            }
            ImportFormat::Raw => DiskFormat::Raw,
            ImportFormat::Iso => DiskFormat::Iso,
        }
    }
}

impl From<DiskFormat> for ImportFormat {
    fn from(f: DiskFormat) -> Self {
        match f {
            DiskFormat::Qcow2 => ImportFormat::Qcow2,
            DiskFormat::Raw => ImportFormat::Raw,
            DiskFormat::Iso => ImportFormat::Iso,
        }
    }
}

/// Where an image is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    /// A URL import is downloading or storing it (`progress` shows how far). Not usable yet.
    Importing,
    /// Stored and usable.
    #[default]
    Available,
    /// The import failed (`status_message` says why); no files are kept. Delete it, or import again
    /// under the same name, which replaces it.
    Error,
}

/// How far a URL import has got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
pub struct ImportProgress {
    /// Bytes downloaded so far.
    pub bytes_done: u64,
    /// Bytes to download, when the web server said (`Content-Length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
}

impl ImportProgress {
    /// Whole percent done, when the total is known.
    pub fn percent(&self) -> Option<u64> {
        match self.bytes_total {
            Some(0) => Some(100),
            Some(t) => Some((u128::from(self.bytes_done) * 100 / u128::from(t)).min(100) as u64),
            None => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub project: String,
    pub kind: ImageKind,
    /// `available` when usable; `importing` while a URL import runs; `error` when it failed.
    /// Instances and volumes are made only from `available` images.
    #[serde(default)]
    pub state: ImageState,
    /// Why the import failed (`error`), or what it is doing (`importing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Disk format as stored (disk images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DiskFormat>,
    /// Format of the source when the import converted it (e.g. `vmdk` stored as `qcow2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_format: Option<ImportFormat>,
    /// Kernel command line (kernel+initrd images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Bytes stored in the pool.
    pub size_bytes: u64,
    /// Size of the disk the image describes (disk images), in bytes.
    pub virtual_size_bytes: u64,
    /// sha256 of the stored files (hex; kernel and initrd hashed in that order). Empty until the image
    /// is `available`.
    pub sha256: String,
    /// The URL the image was downloaded from (user and password removed); the disk image's, or the
    /// kernel's for a kernel+initrd pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Download progress of a URL import (kept once it is done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ImportProgress>,
    /// Pool the files live in (`local` for the built-in dir pool).
    pub pool: String,
    /// `private`: seen by its project only; `public`: seen (and booted) by every project, changed and
    /// deleted by its project or a cloud admin. Only a cloud admin makes an image public.
    #[serde(default)]
    pub visibility: Visibility,
    pub created_at: String,
}

/// Who sees an image.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Its own project only.
    #[default]
    Private,
    /// Every project.
    Public,
}

/// Body of `PATCH /v1/images/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateImageRequest {
    /// `public` needs a cloud admin.
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

/// Body of `POST /v1/images`. Give exactly one source: `url`, `kernel_url`+`initrd_url`,
/// `disk_path`, `kernel_path`+`initrd_path`, `volume` or `snapshot`.
///
/// URL imports are asynchronous: the server checks the request and that the web server answers the
/// GET, then answers `202` with the image `importing`, and downloads, verifies and stores it in the
/// background (`progress`); the image becomes `available` or `error`. The other sources are imported
/// before the answer (`201`, `available`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ImportImageRequest {
    pub name: String,
    /// `http://` or `https://` URL of a disk image (qcow2, raw, iso, vmdk, vdi or vhdx) that the server
    /// downloads.
    #[serde(default)]
    pub url: Option<String>,
    /// `http://` or `https://` URL of a kernel (with `initrd_url`).
    #[serde(default)]
    pub kernel_url: Option<String>,
    /// `http://` or `https://` URL of an initrd (with `kernel_url`).
    #[serde(default)]
    pub initrd_url: Option<String>,
    /// Expected sha256 of the source (64 hex digits): of the file at `url` or `disk_path`, or of the
    /// kernel then the initrd. A mismatch fails the import and keeps nothing.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Path of a disk image on the server host.
    #[serde(default)]
    pub disk_path: Option<String>,
    /// Format of the disk image; detected with `qemu-img info` (and the ISO 9660 signature) when
    /// omitted. `vmdk`, `vdi` and `vhdx` are converted to `qcow2`.
    #[serde(default)]
    pub format: Option<ImportFormat>,
    /// Path of a kernel on the server host (with `initrd_path`).
    #[serde(default)]
    pub kernel_path: Option<String>,
    #[serde(default)]
    pub initrd_path: Option<String>,
    /// Kernel command line (kernel+initrd images only).
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Make the image from a volume's current data (ID or name; crash-consistent if it is in use).
    #[serde(default)]
    pub volume: Option<String>,
    /// Make the image from a completed snapshot (ID or name): the AMI workflow.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// `private` (the default) or `public` (every project sees it; cloud admins only).
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

// ---------------------------------------------------------------- instance types

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct InstanceType {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub root_disk_gib: u64,
    /// GPUs passed through to instances of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<crate::GpuRequest>,
    /// Built-in types cannot be deleted.
    #[serde(default)]
    pub builtin: bool,
}

/// The built-in set, nano to 2xlarge.
pub fn builtin_instance_types() -> Vec<InstanceType> {
    [
        ("nano", 1, 256, 1),
        ("micro", 1, 512, 2),
        ("small", 1, 1024, 4),
        ("medium", 2, 2048, 8),
        ("large", 2, 4096, 16),
        ("xlarge", 4, 8192, 32),
        ("2xlarge", 8, 16384, 64),
    ]
    .into_iter()
    .map(|(name, vcpus, memory_mib, root_disk_gib)| InstanceType {
        name: name.to_string(),
        vcpus,
        memory_mib,
        root_disk_gib,
        gpus: None,
        builtin: true,
    })
    .collect()
}

/// Body of `POST /v1/instance-types`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceTypeRequest {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub root_disk_gib: u64,
    /// GPUs passed through to each instance: `count` devices of `model` (`vendor:device`).
    #[serde(default)]
    pub gpus: Option<crate::GpuRequest>,
}

// ---------------------------------------------------------------- key pairs

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct KeyPair {
    pub id: String,
    pub name: String,
    pub project: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// SHA256 fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`).
    pub fingerprint: String,
    pub created_at: String,
}

/// Body of `POST /v1/key-pairs` (import of an existing public key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyPairRequest {
    pub name: String,
    pub public_key: String,
}

// ---------------------------------------------------------------- hosts

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    #[default]
    Ready,
    Draining,
    Maintenance,
    Down,
}

/// What an agent reports about its host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema, Default)]
pub struct HostInventory {
    pub hostname: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Free bytes in the data directory's filesystem.
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    pub qemu_version: String,
    pub kernel: String,
    /// True only if a real probe boot under KVM finished in time.
    pub kvm_usable: bool,
    /// What the KVM probe saw (e.g. "/dev/kvm missing", "probe boot timed out after 5s").
    pub kvm_probe: String,
    /// This host's VXLAN tunnel endpoint (agent flag `--vxlan-local-ip`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_ip: Option<String>,
    /// PCI devices that can be passed through: GPUs (not the boot console) and devices the operator
    /// bound to `vfio-pci` (the policy is in `kumo_agent::pci`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci_devices: Vec<crate::PciDevice>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Host {
    pub id: String,
    pub name: String,
    pub state: HostState,
    pub inventory: HostInventory,
    /// How to power the host off when it is down (HA fencing); none: agent self-fencing only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing: Option<crate::Fencing>,
    /// Operator labels (`rack=a`, `gpu=a100`, `zone=1`) that placement can require.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `kvm` or `tcg`: what instances on this host run with.
    pub accel: String,
    pub registered_at: String,
    pub last_heartbeat: String,
}

/// Resources the scheduler has placed on a host; updated with compare-and-swap on every placement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default, ToSchema)]
pub struct HostAllocation {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub instances: u64,
    /// PCI addresses of the host's GPUs given to instances (each to exactly one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_devices: Vec<String>,
}

// ---------------------------------------------------------------- events

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Event {
    pub id: String,
    pub time: String,
    /// ID of the resource the event is about.
    pub resource: String,
    /// The project of that resource; absent for cluster-wide resources (hosts, pools), whose events
    /// only cloud admins see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// e.g. `instance.created`, `instance.started`, `instance.crashed`.
    pub kind: String,
    pub message: String,
}

// ---------------------------------------------------------------- agent assignments

/// Everything an agent needs to run one instance, resolved by the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub instance: Instance,
    pub image: Image,
    pub networks: Vec<crate::Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair: Option<KeyPair>,
    /// The status last recorded for it (so a restarted agent knows the boot count, reboot seq…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<InstanceStatus>,
    /// Volumes attached to it (desired), with their slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::Volume>,
    /// The pools those volumes live in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::Pool>,
    /// Snapshots of those volumes (the worker takes and deletes them while the VM runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<crate::Snapshot>,
}

/// A host's full set of assignments at a store revision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssignmentSnapshot {
    pub revision: i64,
    pub assignments: Vec<Assignment>,
    /// The network topology the host's ports live in.
    #[serde(default)]
    pub topology: crate::NetworkTopology,
    /// The volumes whose home is this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::VolumeAssignment>,
    /// Every storage pool but the built-in `local` (the agent reports what it sees of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::Pool>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
