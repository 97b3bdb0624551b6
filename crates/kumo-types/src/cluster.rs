//! Many hosts (issue 5): PCI devices hosts can pass through, GPU requests, host labels.
//!
//! Invariants:
//! - A PCI device is named by its full address (`0000:65:00.0`), stable across reboots of its host.
//! - A GPU model is what users ask for: the lowercase `vendor:device` ID pair (`10de:2236`), which is
//!   what sysfs shows and what is the same on every host with that card.
//! - A device passed through to an instance is allocated to it by the scheduler
//!   (`Instance.gpu_devices`) and never given to two instances at once.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A PCI device of a host, as its agent reads it from sysfs (`/sys/bus/pci/devices/*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PciDevice {
    /// Full PCI address, `domain:bus:slot.function` (`0000:65:00.0`).
    pub address: String,
    /// `vendor:device` in lowercase hex (`10de:2236`): the model users request.
    pub model: String,
    /// PCI class code (`0x030200`: 3D controller; `0x030000`: VGA).
    pub class: String,
    /// The IOMMU group, if the host has an IOMMU on (passthrough needs one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<u32>,
    /// The bound kernel driver (`nvidia`, `vfio-pci`, …), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// A display or 3D controller (class 0x03): counted as a GPU.
    pub gpu: bool,
}

/// GPUs an instance type asks for: `count` devices of `model` (`vendor:device`, e.g. `10de:2236`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct GpuRequest {
    pub model: String,
    pub count: u32,
}

/// How the control plane powers a host off before restarting its HA instances elsewhere: a
/// Redfish-style BMC (iLO, iDRAC, OpenBMC). Without one, kumo relies on the host's agent fencing
/// itself (it stops its HA instances once it has lost the control plane for a lease period).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Fencing {
    /// The BMC's Redfish system URL, e.g. `https://10.0.0.5/redfish/v1/Systems/1`. kumo POSTs
    /// `{"ResetType": "ForceOff"}` to `<url>/Actions/ComputerSystem.Reset`.
    pub redfish_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Write-only: never shown by the API.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

/// Where a down host is in being fenced (`/host-fence/<id>`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FenceState {
    /// Declared down; waiting for the power-off or for the self-fencing deadline.
    Pending,
    /// Powered off, or past the self-fencing deadline: its HA instances may run elsewhere.
    Fenced,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct HostFence {
    pub state: FenceState,
    /// When the host was declared down (its lease expired).
    pub down_at: String,
    /// How it was fenced (`redfish ForceOff`, `self-fencing deadline passed`), or why not yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a drain does with running instances whose disks only their host reaches (a root disk file,
/// volumes in host-local pools): instances on shared storage are live-migrated either way.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalDiskAction {
    /// Shut them down; they stay on the host and `undrain` starts them again.
    #[default]
    Stop,
    /// Cold-migrate them: shut down, root disk copied to another host, started there. One that
    /// cannot move (a volume in a host-local pool) is stopped instead, with an event saying why.
    Migrate,
}

/// `POST /v1/hosts/{id}/drain` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// `stop` (the default) or `migrate`.
    #[serde(default)]
    pub local_disks: LocalDiskAction,
}

/// An instance's high-availability policy: restarted on another host (after its host is fenced) if
/// its storage allows it; higher priorities restart first.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
pub struct HaPolicy {
    pub enabled: bool,
    #[serde(default)]
    pub priority: u32,
}

/// A request the control plane relays to a host's agent (`GET /internal/v1/hosts/{id}/relay`): for
/// what only that host has, such as the serial log of an instance running there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayRequest {
    /// Names the request (and its answer).
    pub id: String,
    pub instance_id: String,
    /// Byte offset in the serial log.
    pub offset: u64,
    /// At most this many bytes.
    pub max: u64,
    /// Set for an interactive console session instead of a log read: the agent connects the
    /// instance's serial socket to the session's two streams on its server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleRelay>,
}

/// An interactive console session relayed to the host an instance runs on. The agent opens
/// `GET …/consoles/{session}/input` (what the user types) and `POST …/consoles/{session}/output`
/// (what the guest prints) on whichever server it talks to; that server forwards them to `server`,
/// where the user's WebSocket is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsoleRelay {
    pub session: String,
    /// The server holding the user's end (its id in `GET /v1/cluster/status`).
    pub server: String,
}

/// An agent's answer to a [`RelayRequest`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayResponse {
    /// The bytes read, base64.
    #[serde(default)]
    pub data_b64: String,
    /// The log's size now.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer of the agents' `GET /internal/v1/images/{id}/exists`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageExists {
    pub exists: bool,
}

/// A live server of the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ServerInfo {
    /// `hostname@listen-address`.
    pub id: String,
    /// Where the other servers reach this one (`--advertise-url`); without one it cannot hand
    /// the images imported through it to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub started_at: String,
}

/// `GET /v1/cluster/status`: the control plane's servers as the answering one sees them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ClusterStatus {
    /// The answering server's id.
    pub server: String,
    /// The server that leads (runs the reconcilers).
    pub leader: Option<String>,
    pub is_leader: bool,
    /// The live servers (registered in the store under a lease).
    #[serde(default)]
    pub servers: Vec<ServerInfo>,
}
