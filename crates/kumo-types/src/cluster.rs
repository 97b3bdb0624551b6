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
