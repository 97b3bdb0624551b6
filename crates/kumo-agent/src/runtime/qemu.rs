//! QEMU configuration as data.
//!
//! A [`VmConfig`] says everything about one QEMU process; [`argv`] turns it into the argument vector,
//! built by one small pure function per concern (machine, boot, disks, NICs, passed-through host
//! devices, serial, QMP, identity, daemonizing). Golden tests (`tests/runtime_argv.rs`) pin the output.
//!
//! Invariants:
//! - The process is identifiable: `-name guest=<name>,process=kumo-<instance id>` puts the marker
//!   [`process_marker`] into `/proc/<pid>/cmdline`; adoption after an agent restart checks it, so a
//!   recycled PID is never mistaken for our QEMU.
//! - Block node names are stable per disk: `file-<disk id>` (protocol) under `drive-<disk id>`
//!   (format), and the device is `virtio-<disk id>`. Hot-plug/unplug and snapshots address them by
//!   these names.
//! - Disks default to [`DiskCache::Writeback`]: `cache.direct=off`, `cache.no-flush=off` and a
//!   virtio-blk device with `write-cache=on`. The guest sees a volatile write cache and sends flushes;
//!   QEMU turns every flush into an `fdatasync` of the image file, so a guest `fsync` reaches the host
//!   disk before it returns.
//! - All runtime files (pidfile, QMP and serial sockets, serial log) live in `run_dir`; see
//!   [`RunFiles`].
//! - Option values embedded in QEMU's `key=value,...` syntax have their commas doubled
//!   ([`escape_opt`]); block devices are given as JSON, which needs no escaping.

use std::path::{Path, PathBuf};

use kumo_types::DiskFormat;
use serde_json::json;

/// The QEMU binary the agent runs.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// CPU virtualization backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization; use only when the KVM probe (`inventory`) said it works.
    Kvm,
    /// Software emulation (multi-threaded TCG). Slow but always available.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Machine {
    /// Modern PCIe chipset; the default.
    #[default]
    Q35,
    /// i440FX; only for guests that need it.
    Pc,
}

impl Machine {
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// How the guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot (`-kernel/-initrd/-append`); disks are still attached.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// Firmware boots the first disk (it gets `bootindex=0`).
    Disk,
}

/// Host cache behaviour of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskCache {
    /// Host page cache, guest flushes honored (`cache.direct=off`, `cache.no-flush=off`). Default.
    #[default]
    Writeback,
    /// O_DIRECT, guest flushes honored (`cache.direct=on`). Needs a filesystem that supports it.
    Direct,
}

/// Where a disk's bytes are: QEMU's protocol layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A regular file (`file` driver).
    File(PathBuf),
    /// A block device such as an LVM logical volume (`host_device` driver).
    HostDevice(PathBuf),
    /// A Ceph RBD image (`rbd` driver). The keyring is named by `ceph.conf` (`[global] keyring`).
    Rbd {
        pool: String,
        image: String,
        conf: String,
        user: String,
    },
}

impl DiskSource {
    /// The protocol-layer blockdev options (without node name, cache and read-only).
    fn blockdev(&self) -> serde_json::Value {
        match self {
            DiskSource::File(p) => json!({ "driver": "file", "filename": p.to_string_lossy() }),
            DiskSource::HostDevice(p) => {
                json!({ "driver": "host_device", "filename": p.to_string_lossy() })
            }
            DiskSource::Rbd {
                pool,
                image,
                conf,
                user,
            } => {
                json!({ "driver": "rbd", "pool": pool, "image": image, "conf": conf, "user": user })
            }
        }
    }
}

/// One virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Stable short id (`root`, `vol-…`, `seed`): node names derive from it and it is the disk's
    /// serial (visible in the guest as `/dev/disk/by-id/virtio-<id>`, truncated to 20 bytes).
    pub id: String,
    pub source: DiskSource,
    pub format: DiskFormat,
    pub readonly: bool,
    pub cache: DiskCache,
    /// The PCIe root port it sits on (volumes: their hot-plug port, so they can be unplugged later);
    /// `None`: the machine's root bus.
    pub bus: Option<String>,
}

/// One virtio-net NIC backed by an existing tap device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// Stable short id (`net0`, `eni-…`); the netdev is `<id>`, the device `dev-<id>`.
    pub id: String,
    /// Host tap interface (created by the network module; QEMU does not run scripts).
    pub ifname: String,
    pub mac: String,
    /// PCI(e) bus to plug into (`hp<slot>` on q35, so every NIC can be unplugged); `None`: default.
    pub bus: Option<String>,
}

/// Everything about one QEMU process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub instance_id: String,
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub accel: Accel,
    pub machine: Machine,
    pub boot: Boot,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    /// NoCloud seed ISO (volume label `cidata`), attached read-only as the last disk `seed`.
    pub seed_iso: Option<PathBuf>,
    /// Installation media: an ISO image on an AHCI CD-ROM drive, booted after the (blank) first
    /// disk, so the guest boots the CD until something is installed on the disk.
    pub cdrom: Option<PathBuf>,
    /// Host PCI devices (full addresses, `0000:65:00.0`) passed through with vfio-pci; each must be
    /// bound to the `vfio-pci` driver first (`crate::pci`).
    pub host_devices: Vec<String>,
    /// Directory for the pidfile, sockets and serial log.
    pub run_dir: PathBuf,
    /// Start as the target of a live migration: the VM waits (`-incoming defer`) until the agent
    /// names the address to receive on (QMP `migrate-incoming`), then runs once the state arrived.
    pub incoming: bool,
}

/// The files QEMU keeps in a run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFiles {
    pub pidfile: PathBuf,
    pub qmp_sock: PathBuf,
    pub serial_sock: PathBuf,
    pub serial_log: PathBuf,
}

impl RunFiles {
    pub fn new(run_dir: &Path) -> Self {
        RunFiles {
            pidfile: run_dir.join("qemu.pid"),
            qmp_sock: run_dir.join("qmp.sock"),
            serial_sock: run_dir.join("serial.sock"),
            serial_log: run_dir.join("serial.log"),
        }
    }
}

/// The marker in QEMU's command line that identifies the process of an instance.
pub fn process_marker(instance_id: &str) -> String {
    format!("process=kumo-{instance_id}")
}

/// True if a NUL-separated `/proc/<pid>/cmdline` belongs to the QEMU of `instance_id` (exact match of
/// the marker, so `i-1` does not match `i-10`).
pub fn cmdline_matches(cmdline: &[u8], instance_id: &str) -> bool {
    let marker = process_marker(instance_id);
    cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .any(|arg| arg.split(',').any(|kv| kv == marker) && arg.starts_with("guest="))
}

/// Double the commas of a value embedded in QEMU's `key=value,...` option syntax.
pub fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_opt(p: &Path) -> String {
    escape_opt(&p.to_string_lossy())
}

fn s(v: &str) -> String {
    v.to_string()
}

/// The full argument vector (without the binary name).
pub fn argv(cfg: &VmConfig) -> Vec<String> {
    let mut a = Vec::new();
    a.extend(identity_args(cfg));
    a.extend(machine_args(cfg));
    a.extend(device_defaults_args());
    // Root ports first: NICs (and hot-plugged devices) plug into them.
    a.extend(hotplug_args(cfg.machine));
    a.extend(boot_args(&cfg.boot));
    a.extend(disk_args(&all_disks(cfg), matches!(cfg.boot, Boot::Disk)));
    a.extend(cdrom_args(cfg.cdrom.as_deref()));
    a.extend(nic_args(&cfg.nics));
    a.extend(host_device_args(cfg.machine, &cfg.host_devices));
    let files = RunFiles::new(&cfg.run_dir);
    a.extend(serial_args(&files));
    a.extend(qmp_args(&files));
    a.extend(daemon_args(&files));
    if cfg.incoming {
        a.extend([s("-incoming"), s("defer")]);
    }
    a
}

/// `-name` with the process marker.
pub fn identity_args(cfg: &VmConfig) -> Vec<String> {
    vec![
        s("-name"),
        format!(
            "guest={},{},debug-threads=on",
            escape_opt(&cfg.name),
            process_marker(&cfg.instance_id)
        ),
    ]
}

/// Machine, accelerator, CPU model, vCPUs and memory.
pub fn machine_args(cfg: &VmConfig) -> Vec<String> {
    let (accel, cpu) = match cfg.accel {
        Accel::Kvm => (s("kvm"), "host"),
        // One host thread per vCPU (MTTCG). Measured here with a 1-vCPU kernel boot: single and
        // multi are equal within noise (~3 s); multi lets more vCPUs run in parallel. `-cpu max`
        // exposes every feature TCG emulates.
        Accel::Tcg => (s("tcg,thread=multi"), "max"),
    };
    vec![
        s("-machine"),
        s(cfg.machine.as_str()),
        s("-accel"),
        accel,
        s("-cpu"),
        s(cpu),
        s("-smp"),
        cfg.vcpus.max(1).to_string(),
        s("-m"),
        format!("{}M", cfg.memory_mib),
    ]
}

/// Spare slots for hot-plugged devices: ports 0–7 for NICs (by NIC slot), 8–15 for volumes.
pub const HOTPLUG_SLOTS: u32 = 16;

/// The hot-plug port of volume slot `slot` (after the eight NIC ports).
pub fn volume_bus(slot: u8) -> String {
    hotplug_bus(8 + u32::from(slot))
}

/// Bus name of hot-plug slot `i` (`hp0`…).
pub fn hotplug_bus(i: u32) -> String {
    format!("hp{i}")
}

/// q35 cannot hot-plug onto its root bus: give it empty PCIe root ports to plug into. The `pc`
/// machine hot-plugs onto `pci.0` through ACPI and needs nothing.
pub fn hotplug_args(machine: Machine) -> Vec<String> {
    match machine {
        Machine::Q35 => (0..HOTPLUG_SLOTS)
            .flat_map(|i| {
                [
                    s("-device"),
                    format!("pcie-root-port,id={},chassis={}", hotplug_bus(i), i + 1),
                ]
            })
            .collect(),
        Machine::Pc => vec![],
    }
}

// ---- host devices (PCI passthrough, issue 5)

/// Root port of passed-through device `i` on q35 (after the hot-plug ports).
pub fn host_device_port(i: u32) -> String {
    format!("hostport{i}")
}

/// QOM id of passed-through device `i`.
pub fn host_device_id(i: u32) -> String {
    format!("hostdev{i}")
}

/// `-device vfio-pci` per host device. On q35 each sits behind its own PCIe root port (chassis after
/// the hot-plug ports'), as on real hardware: guest GPU drivers expect a PCIe link above the card,
/// which the root bus (integrated endpoints) does not give. These ports are not for hot-plug; the
/// devices are there from boot. The `pc` machine puts them on its root bus.
pub fn host_device_args(machine: Machine, devices: &[String]) -> Vec<String> {
    let mut a = Vec::new();
    for (i, host) in (0u32..).zip(devices) {
        let mut dev = format!(
            "vfio-pci,host={},id={}",
            escape_opt(host),
            host_device_id(i)
        );
        if machine == Machine::Q35 {
            a.extend([
                s("-device"),
                format!(
                    "pcie-root-port,id={},chassis={}",
                    host_device_port(i),
                    HOTPLUG_SLOTS + 1 + i
                ),
            ]);
            dev.push_str(&format!(",bus={}", host_device_port(i)));
        }
        a.extend([s("-device"), dev]);
    }
    a
}

/// No default devices, no display, no user config files.
pub fn device_defaults_args() -> Vec<String> {
    [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "none",
    ]
    .map(s)
    .to_vec()
}

/// Direct kernel boot arguments (none for [`Boot::Disk`]; the first disk gets `bootindex=0`).
pub fn boot_args(boot: &Boot) -> Vec<String> {
    match boot {
        Boot::Disk => Vec::new(),
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let mut a = vec![s("-kernel"), kernel.to_string_lossy().into_owned()];
            if let Some(initrd) = initrd {
                a.extend([s("-initrd"), initrd.to_string_lossy().into_owned()]);
            }
            a.extend([s("-append"), cmdline.clone()]);
            a
        }
    }
}

/// The configured disks plus the seed ISO as a read-only raw disk named `seed`.
pub fn all_disks(cfg: &VmConfig) -> Vec<DiskSpec> {
    let mut disks = cfg.disks.clone();
    if let Some(iso) = &cfg.seed_iso {
        disks.push(DiskSpec {
            id: s("seed"),
            source: DiskSource::File(iso.clone()),
            format: DiskFormat::Raw,
            readonly: true,
            cache: DiskCache::Writeback,
            bus: None,
        });
    }
    disks
}

/// Node name of a disk's format layer (what devices and block jobs refer to).
pub fn drive_node(disk_id: &str) -> String {
    format!("drive-{disk_id}")
}

/// Node name of a disk's protocol (file) layer.
pub fn file_node(disk_id: &str) -> String {
    format!("file-{disk_id}")
}

/// QOM id of a disk's virtio-blk device.
pub fn disk_device_id(disk_id: &str) -> String {
    format!("virtio-{disk_id}")
}

/// The `-blockdev` JSON for one disk (also usable as `blockdev-add` arguments for hot-plug).
pub fn blockdev_json(d: &DiskSpec) -> serde_json::Value {
    let direct = d.cache == DiskCache::Direct;
    let cache = json!({ "direct": direct, "no-flush": false });
    let mut file = d.source.blockdev();
    file["node-name"] = json!(file_node(&d.id));
    file["read-only"] = json!(d.readonly);
    file["cache"] = cache.clone();
    if !matches!(d.source, DiskSource::Rbd { .. }) {
        file["discard"] = json!("unmap");
    }
    json!({
        "driver": d.format.as_str(),
        "node-name": drive_node(&d.id),
        "read-only": d.readonly,
        "discard": "unmap",
        "cache": cache,
        "file": file,
    })
}

/// The `-device` value for one disk; `boot_index` only for the boot disk.
pub fn disk_device(d: &DiskSpec, boot_index: Option<u32>) -> String {
    let mut dev = format!(
        "virtio-blk-pci,id={},drive={},serial={},write-cache=on",
        disk_device_id(&d.id),
        drive_node(&d.id),
        escape_opt(&d.id)
    );
    if let Some(i) = boot_index {
        dev.push_str(&format!(",bootindex={i}"));
    }
    if let Some(bus) = &d.bus {
        dev.push_str(&format!(",bus={}", escape_opt(bus)));
    }
    dev
}

/// `-blockdev` + `-device virtio-blk-pci` per disk.
pub fn disk_args(disks: &[DiskSpec], boot_from_first: bool) -> Vec<String> {
    let mut a = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        a.extend([s("-blockdev"), blockdev_json(d).to_string()]);
        let boot = (boot_from_first && i == 0).then_some(0);
        a.extend([s("-device"), disk_device(d, boot)]);
    }
    a
}

/// The CD-ROM: a read-only raw ISO on the q35 AHCI controller's first port, second in boot order.
pub fn cdrom_args(iso: Option<&Path>) -> Vec<String> {
    let Some(iso) = iso else {
        return vec![];
    };
    let node = json!({
        "driver": "raw",
        "node-name": drive_node("cdrom"),
        "read-only": true,
        "file": {
            "driver": "file",
            "node-name": file_node("cdrom"),
            "filename": iso.to_string_lossy(),
            "read-only": true,
        },
    });
    vec![
        s("-blockdev"),
        node.to_string(),
        s("-device"),
        format!(
            "ide-cd,id=cdrom,drive={},bus=ide.0,bootindex=1",
            drive_node("cdrom")
        ),
    ]
}

/// `-netdev tap` + `-device virtio-net-pci` per NIC.
pub fn nic_args(nics: &[NicSpec]) -> Vec<String> {
    let mut a = Vec::new();
    for n in nics {
        a.extend([
            s("-netdev"),
            format!(
                "tap,id={},ifname={},script=no,downscript=no",
                n.id,
                escape_opt(&n.ifname)
            ),
            s("-device"),
            format!(
                "virtio-net-pci,id=dev-{},netdev={},mac={}{}",
                n.id,
                n.id,
                n.mac,
                n.bus
                    .as_ref()
                    .map(|b| format!(",bus={b}"))
                    .unwrap_or_default()
            ),
        ]);
    }
    a
}

/// Serial console on a unix socket (attach any time), mirrored to a log file.
pub fn serial_args(files: &RunFiles) -> Vec<String> {
    vec![
        s("-chardev"),
        format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={}",
            path_opt(&files.serial_sock),
            path_opt(&files.serial_log)
        ),
        s("-serial"),
        s("chardev:serial0"),
    ]
}

/// QMP monitor on a unix socket.
pub fn qmp_args(files: &RunFiles) -> Vec<String> {
    vec![
        s("-chardev"),
        format!(
            "socket,id=qmp,path={},server=on,wait=off",
            path_opt(&files.qmp_sock)
        ),
        s("-mon"),
        s("chardev=qmp,mode=control"),
    ]
}

/// Detach from the agent and write the pidfile.
pub fn daemon_args(files: &RunFiles) -> Vec<String> {
    vec![
        s("-daemonize"),
        s("-pidfile"),
        files.pidfile.to_string_lossy().into_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_matches_exactly() {
        let cmd =
            b"qemu-system-x86_64\0-name\0guest=web,process=kumo-i-1,debug-threads=on\0-m\x00256M\0";
        assert!(cmdline_matches(cmd, "i-1"));
        assert!(!cmdline_matches(cmd, "i-10"));
        assert!(!cmdline_matches(cmd, "i-"));
        let cmd10 = b"qemu\0-name\0guest=x,process=kumo-i-10\0";
        assert!(!cmdline_matches(cmd10, "i-1"));
        assert!(cmdline_matches(cmd10, "i-10"));
        // A different process that merely mentions the marker somewhere else does not match.
        assert!(!cmdline_matches(b"grep\0process=kumo-i-1\0", "i-1"));
    }

    #[test]
    fn commas_are_escaped() {
        assert_eq!(escape_opt("a,b"), "a,,b");
        let files = RunFiles::new(Path::new("/tmp/we,ird"));
        assert!(qmp_args(&files)[1].contains("path=/tmp/we,,ird/qmp.sock"));
    }

    #[test]
    fn seed_is_last_and_readonly() {
        let cfg = VmConfig {
            instance_id: s("i-1"),
            name: s("a"),
            vcpus: 0,
            memory_mib: 64,
            accel: Accel::Tcg,
            machine: Machine::Q35,
            boot: Boot::Disk,
            disks: vec![DiskSpec {
                id: s("root"),
                source: DiskSource::File("/r.qcow2".into()),
                format: DiskFormat::Qcow2,
                readonly: false,
                cache: DiskCache::Writeback,
                bus: None,
            }],
            nics: vec![],
            seed_iso: Some("/seed.iso".into()),
            cdrom: None,
            host_devices: vec![],
            run_dir: "/run/i-1".into(),
            incoming: false,
        };
        let d = all_disks(&cfg);
        assert_eq!(d.len(), 2);
        assert!(d[1].readonly && d[1].id == "seed");
        let a = argv(&cfg);
        // vcpus 0 is clamped to 1; only the first disk is bootable.
        assert!(a.windows(2).any(|w| w[0] == "-smp" && w[1] == "1"));
        assert_eq!(a.iter().filter(|x| x.contains("bootindex")).count(), 1);
    }

    #[test]
    fn host_devices_on_pc_use_the_root_bus() {
        let a = host_device_args(Machine::Pc, &[s("0000:65:00.0")]);
        assert_eq!(a, ["-device", "vfio-pci,host=0000:65:00.0,id=hostdev0"]);
        assert!(host_device_args(Machine::Q35, &[]).is_empty());
    }
}
