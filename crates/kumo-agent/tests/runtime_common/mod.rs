//! Shared by the runtime tests: the VM they boot (TCG, q35, no disks or NICs unless a test adds them).

use std::path::Path;

use kumo_agent::runtime::qemu::{Accel, Boot, Machine, VmConfig};

pub fn config(dir: &Path, id: &str) -> VmConfig {
    VmConfig {
        instance_id: id.into(),
        name: format!("test-{id}"),
        vcpus: 1,
        memory_mib: 64,
        accel: Accel::Tcg,
        machine: Machine::Q35,
        boot: Boot::Disk,
        disks: vec![],
        nics: vec![],
        seed_iso: None,
        cdrom: None,
        host_devices: vec![],
        run_dir: dir.join("run").join(id),
        incoming: false,
    }
}
