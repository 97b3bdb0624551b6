//! PCI devices from sysfs: what the inventory reports, and binding devices to `vfio-pci` before
//! QEMU passes them through (issue 5).
//!
//! Everything reads and writes under a sysfs root given by the caller: `/sys` ([`SYSFS_ROOT`]) on a
//! host, a tree built in a temporary directory in tests. Parsing, the reporting policy and the binding
//! plan are pure functions over [`SysfsPci`]; [`scan`] and [`apply`] are the only I/O.
//!
//! **What the inventory reports** ([`reportable`]): a device worth passing through is
//! - a **GPU** (PCI base class `0x03`, display or 3D controller), except the firmware's boot console
//!   (`boot_vga` = 1 — on servers that is the BMC's VGA, e.g. ASPEED `1a03:2000`), or
//! - any non-bridge device the operator already bound to **`vfio-pci`** (an explicit opt-in:
//!   `driver_override`, `vfio-pci.ids=` on the kernel command line).
//!
//! Not "everything with an IOMMU group": with the IOMMU on, the host's own NICs, NVMe and SATA
//! controllers all have groups, and reporting them as allocatable invites a request that unbinds the
//! host's boot disk or management NIC. GPUs are taken from their host driver on demand; anything
//! else must be handed over by the operator first. Bridges (base class `0x06`) are never reported.
//!
//! **Binding** ([`plan_bind`], executed by [`bind_to_vfio`]): for each device, `vfio-pci` into its
//! `driver_override`, its address into `drivers/<current driver>/unbind` (if it has a driver), then
//! into `drivers_probe`, which binds it to the overriding driver. The kernel lets QEMU open an IOMMU
//! group only when every device in it is bound to `vfio-pci` (or `pci-stub`), to no driver, or is a
//! bridge; so other functions of the same card (the HDMI audio function of a GPU) are bound too, and
//! any other device sharing the group with a host driver is an error naming it — kumo never takes a
//! device that is not part of the card it was asked for. Bindings are kept after the instance stops
//! (the device stays reserved for guests).

use std::collections::BTreeSet;
use std::path::Path;

use kumo_types::{Error, PciDevice, Result};

/// Where the kernel's sysfs is mounted on a host.
pub const SYSFS_ROOT: &str = "/sys";
/// The kernel driver QEMU's `vfio-pci` device needs a passed-through device bound to.
pub const VFIO_PCI: &str = "vfio-pci";
/// Drivers whose devices may share an IOMMU group with a passed-through one (they do no DMA).
const GROUP_SAFE_DRIVERS: [&str; 2] = [VFIO_PCI, "pci-stub"];
/// PCI base class of display controllers (VGA `0x0300`, XGA, 3D `0x0302`, other `0x0380`).
const BASE_CLASS_DISPLAY: u32 = 0x03;
/// PCI base class of bridges (host `0x0600`, ISA, PCI-to-PCI `0x0604`, …).
const BASE_CLASS_BRIDGE: u32 = 0x06;

/// What sysfs says about one PCI function (`<root>/bus/pci/devices/<address>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsPci {
    /// `domain:bus:slot.function` (`0000:65:00.0`).
    pub address: String,
    /// Vendor ID, 4 lowercase hex digits (`10de`).
    pub vendor: String,
    /// Device ID, 4 lowercase hex digits (`2236`).
    pub device: String,
    /// 24-bit class code (`0x030200`).
    pub class: u32,
    /// The `iommu_group` link's group number; `None` without an IOMMU.
    pub iommu_group: Option<u32>,
    /// The `driver` link's driver name; `None` if unbound.
    pub driver: Option<String>,
    /// `boot_vga` reads `1`: the firmware's console display.
    pub boot_vga: bool,
}

impl SysfsPci {
    /// `vendor:device`, the model users request.
    pub fn model(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }
    /// A display or 3D controller.
    pub fn is_gpu(&self) -> bool {
        self.class >> 16 == BASE_CLASS_DISPLAY
    }
    /// Any kind of bridge (host, PCI-to-PCI, ISA, …).
    pub fn is_bridge(&self) -> bool {
        self.class >> 16 == BASE_CLASS_BRIDGE
    }
    /// Bound to `vfio-pci`.
    pub fn on_vfio(&self) -> bool {
        self.driver.as_deref() == Some(VFIO_PCI)
    }
    /// The inventory's view.
    pub fn to_inventory(&self) -> PciDevice {
        PciDevice {
            address: self.address.clone(),
            model: self.model(),
            class: format!("0x{:06x}", self.class),
            iommu_group: self.iommu_group,
            driver: self.driver.clone(),
            gpu: self.is_gpu(),
        }
    }
}

/// A 16-bit ID file (`vendor`, `device`): `0x10DE\n` → `10de`.
pub fn parse_id(s: &str) -> Option<String> {
    let hex = s.trim().strip_prefix("0x")?;
    (hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

/// The `class` file: `0x030200\n` → `0x030200`.
pub fn parse_class(s: &str) -> Option<u32> {
    let hex = s.trim().strip_prefix("0x")?;
    if hex.len() != 6 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// The name a sysfs link points at: `../../../kernel/iommu_groups/30` → `30`,
/// `../../../bus/pci/drivers/nvidia` → `nvidia`.
pub fn link_name(target: &Path) -> Option<String> {
    target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
}

/// True for a full PCI address `dddd:bb:ss.f` in lowercase hex (the only form that becomes a path).
pub fn valid_address(s: &str) -> bool {
    let b = s.as_bytes();
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && matches!(b[11], b'0'..=b'7')
}

/// Two functions of one card: same `domain:bus:slot`, any function.
pub fn same_slot(a: &str, b: &str) -> bool {
    match (a.rsplit_once('.'), b.rsplit_once('.')) {
        (Some((sa, _)), Some((sb, _))) => sa == sb,
        _ => false,
    }
}

/// The reporting policy (see the module docs): GPUs other than the boot console, and non-bridge
/// devices the operator bound to `vfio-pci`.
pub fn reportable(d: &SysfsPci) -> bool {
    if d.is_bridge() {
        return false;
    }
    d.on_vfio() || (d.is_gpu() && !d.boot_vga)
}

/// Read one device directory. An unreadable or malformed `vendor`, `device` or `class` is an error;
/// missing `iommu_group`, `driver` or `boot_vga` mean no group, no driver, not the console.
pub fn read_device(root: &Path, address: &str) -> Result<SysfsPci> {
    let dir = root.join("bus/pci/devices").join(address);
    let read = |name: &str| -> Result<String> {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| Error::internal_with(format!("reading {}", dir.join(name).display()), e))
    };
    let bad = |name: &str, v: &str| {
        Error::internal(format!(
            "{}: unexpected content {v:?}",
            dir.join(name).display()
        ))
    };
    let vendor = read("vendor")?;
    let device = read("device")?;
    let class = read("class")?;
    Ok(SysfsPci {
        address: address.to_string(),
        vendor: parse_id(&vendor).ok_or_else(|| bad("vendor", &vendor))?,
        device: parse_id(&device).ok_or_else(|| bad("device", &device))?,
        class: parse_class(&class).ok_or_else(|| bad("class", &class))?,
        iommu_group: std::fs::read_link(dir.join("iommu_group"))
            .ok()
            .and_then(|t| link_name(&t))
            .and_then(|n| n.parse().ok()),
        driver: std::fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|t| link_name(&t)),
        boot_vga: std::fs::read_to_string(dir.join("boot_vga")).is_ok_and(|s| s.trim() == "1"),
    })
}

/// Every PCI function under `<root>/bus/pci/devices`, sorted by address. No PCI bus (a container)
/// is an empty list; a device that cannot be read is skipped with a warning.
pub fn scan(root: &Path) -> Result<Vec<SysfsPci>> {
    let dir = root.join("bus/pci/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => {
            return Err(Error::internal_with(
                format!("listing {}", dir.display()),
                e,
            ));
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::internal_with(format!("listing {}", dir.display()), e))?;
        let Some(address) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !valid_address(&address) {
            continue;
        }
        match read_device(root, &address) {
            Ok(d) => out.push(d),
            Err(e) => tracing::warn!(device = %address, error = %e, "skipping PCI device"),
        }
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// The devices the inventory reports (see [`reportable`]).
pub fn discover(root: &Path) -> Result<Vec<PciDevice>> {
    Ok(scan(root)?
        .iter()
        .filter(|d| reportable(d))
        .map(SysfsPci::to_inventory)
        .collect())
}

/// [`discover`] for the inventory: an error is logged and reported as no devices.
pub fn discover_or_warn(root: &Path) -> Vec<PciDevice> {
    discover(root).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "PCI discovery failed; reporting no PCI devices");
        vec![]
    })
}

/// One write into sysfs: `value` into `<root>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsWrite {
    /// Relative to the sysfs root (`bus/pci/drivers_probe`).
    pub path: String,
    pub value: String,
}

impl SysfsWrite {
    fn new(path: impl Into<String>, value: impl Into<String>) -> Self {
        SysfsWrite {
            path: path.into(),
            value: value.into(),
        }
    }
}

/// The writes that bind one function to `vfio-pci`; none if it already is.
pub fn bind_writes(d: &SysfsPci) -> Vec<SysfsWrite> {
    if d.on_vfio() {
        return vec![];
    }
    let mut w = vec![SysfsWrite::new(
        format!("bus/pci/devices/{}/driver_override", d.address),
        VFIO_PCI,
    )];
    if let Some(driver) = &d.driver {
        w.push(SysfsWrite::new(
            format!("bus/pci/drivers/{driver}/unbind"),
            &d.address,
        ));
    }
    w.push(SysfsWrite::new("bus/pci/drivers_probe", &d.address));
    w
}

/// The precise error for a host without an IOMMU (or with it off).
fn no_iommu(address: &str) -> Error {
    Error::unavailable(format!(
        "PCI device {address} has no IOMMU group, so it cannot be passed through: enable the IOMMU \
         (VT-d / AMD-Vi) in the firmware and add intel_iommu=on (Intel) or amd_iommu=on (AMD) to \
         the kernel command line, then reboot"
    ))
}

/// Plan binding `addresses` (and the other functions of their cards) to `vfio-pci` (pure).
/// `devices`: every PCI function of the host ([`scan`]); `vfio_loaded`: the `vfio-pci` driver exists
/// (`<root>/bus/pci/drivers/vfio-pci`).
pub fn plan_bind(
    devices: &[SysfsPci],
    addresses: &[String],
    vfio_loaded: bool,
) -> Result<Vec<SysfsWrite>> {
    let mut targets = Vec::new();
    for a in addresses {
        if !valid_address(a) {
            return Err(Error::invalid(
                "gpu_devices",
                format!("{a:?} is not a PCI address like 0000:65:00.0"),
            ));
        }
        let d = devices
            .iter()
            .find(|d| &d.address == a)
            .ok_or_else(|| Error::not_found("PCI device", a.clone()))?;
        if d.iommu_group.is_none() {
            return Err(no_iommu(a));
        }
        targets.push(d);
    }
    if !vfio_loaded && targets.iter().any(|d| !d.on_vfio()) {
        return Err(Error::unavailable(format!(
            "the {VFIO_PCI} driver is not loaded (no /sys/bus/pci/drivers/{VFIO_PCI}): run \
             `modprobe {VFIO_PCI}` and list it in /etc/modules-load.d/ so it loads at boot"
        )));
    }
    // Everything that must end up on vfio-pci: the targets and the other functions of their cards.
    let mut bind: BTreeSet<&str> = targets.iter().map(|d| d.address.as_str()).collect();
    for t in &targets {
        for m in devices
            .iter()
            .filter(|m| m.iommu_group == t.iommu_group && m.address != t.address)
        {
            if addresses.contains(&m.address) {
                continue;
            }
            // Another function of the same card (the GPU's audio function) goes with it.
            if same_slot(&m.address, &t.address) && !m.is_bridge() {
                bind.insert(&m.address);
                continue;
            }
            let safe = m.is_bridge()
                || m.driver
                    .as_deref()
                    .is_none_or(|d| GROUP_SAFE_DRIVERS.contains(&d));
            if safe {
                continue;
            }
            let group = t.iommu_group.unwrap_or_default();
            return Err(Error::unavailable(format!(
                "IOMMU group {group} of PCI device {} also holds {} ({}, driver {}), which is not \
                 part of that card; a group is passed through whole, and kumo does not take a \
                 device from the host: bind {} to {VFIO_PCI} yourself if the host can spare it, \
                 or move the card to a slot with its own IOMMU group",
                t.address,
                m.address,
                m.model(),
                m.driver.as_deref().unwrap_or("none"),
                m.address,
            )));
        }
    }
    Ok(devices
        .iter()
        .filter(|d| bind.contains(d.address.as_str()))
        .flat_map(bind_writes)
        .collect())
}

/// Check that every one of `addresses` is bound to `vfio-pci` (pure).
pub fn check_bound(devices: &[SysfsPci], addresses: &[String]) -> Result<()> {
    for a in addresses {
        let d = devices
            .iter()
            .find(|d| &d.address == a)
            .ok_or_else(|| Error::not_found("PCI device", a.clone()))?;
        if !d.on_vfio() {
            return Err(Error::unavailable(format!(
                "PCI device {a} is bound to {} after binding it to {VFIO_PCI}: something holds it \
                 (a process using the GPU, nvidia-persistenced); stop that and retry",
                d.driver.as_deref().unwrap_or("no driver"),
            )));
        }
    }
    Ok(())
}

/// Carry out `writes` under `root`, in order. Each file must exist (sysfs creates them; a missing one
/// means the device or driver vanished), and each value goes in one `write`.
pub fn apply(root: &Path, writes: &[SysfsWrite]) -> Result<()> {
    use std::io::Write;
    for w in writes {
        let path = root.join(&w.path);
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(w.value.as_bytes()))
            .map_err(|e| {
                Error::internal_with(format!("writing {:?} to {}", w.value, path.display()), e)
            })?;
    }
    Ok(())
}

/// Read the host's devices, plan and apply the binding of `addresses` to `vfio-pci`; the writes made.
/// Blocking (a driver's unbind can take a while): call it from `spawn_blocking`.
pub fn bind_to_vfio(root: &Path, addresses: &[String]) -> Result<Vec<SysfsWrite>> {
    let devices = scan(root)?;
    let vfio_loaded = root.join("bus/pci/drivers").join(VFIO_PCI).is_dir();
    let writes = plan_bind(&devices, addresses, vfio_loaded)?;
    apply(root, &writes)?;
    Ok(writes)
}

/// Read the host's devices again and check that `addresses` are bound to `vfio-pci`.
pub fn verify_bound(root: &Path, addresses: &[String]) -> Result<()> {
    check_bound(&scan(root)?, addresses)
}

/// What the worker runs before starting an instance with passed-through devices: bind, then verify.
pub fn prepare_passthrough(root: &Path, addresses: &[String]) -> Result<()> {
    let writes = bind_to_vfio(root, addresses)?;
    if !writes.is_empty() {
        tracing::info!(devices = ?addresses, writes = writes.len(), "bound PCI devices to vfio-pci");
    }
    verify_bound(root, addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(
        address: &str,
        model: &str,
        class: u32,
        group: Option<u32>,
        driver: Option<&str>,
    ) -> SysfsPci {
        let (vendor, device) = model.split_once(':').expect("model");
        SysfsPci {
            address: address.into(),
            vendor: vendor.into(),
            device: device.into(),
            class,
            iommu_group: group,
            driver: driver.map(str::to_string),
            boot_vga: false,
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_id("0x10DE\n").as_deref(), Some("10de"));
        assert_eq!(parse_id("10de"), None);
        assert_eq!(parse_id("0x10d"), None);
        assert_eq!(parse_id("0x10dg"), None);
        assert_eq!(parse_class("0x030200\n"), Some(0x030200));
        assert_eq!(parse_class("0x0302"), None);
        assert_eq!(parse_class("030200"), None);
        assert_eq!(
            link_name(Path::new("../../../kernel/iommu_groups/30")).as_deref(),
            Some("30")
        );
        assert_eq!(
            link_name(Path::new("../../../bus/pci/drivers/vfio-pci")).as_deref(),
            Some("vfio-pci")
        );
    }

    #[test]
    fn addresses() {
        assert!(valid_address("0000:65:00.0"));
        assert!(!valid_address("10000:65:00.0"));
        for bad in [
            "0000:65:00.8",
            "0000:65:00",
            "0000:G5:00.0",
            "0000:65:00.0/..",
            "../../etc/x0",
            "0000:65:00.A",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
        assert!(same_slot("0000:65:00.0", "0000:65:00.1"));
        assert!(!same_slot("0000:65:00.0", "0000:66:00.0"));
    }

    #[test]
    fn policy() {
        let gpu = dev(
            "0000:65:00.0",
            "10de:2236",
            0x030200,
            Some(30),
            Some("nvidia"),
        );
        assert!(reportable(&gpu) && gpu.is_gpu());
        let console = SysfsPci {
            boot_vga: true,
            ..dev("0000:02:00.0", "1a03:2000", 0x030000, Some(20), Some("ast"))
        };
        assert!(!reportable(&console));
        assert!(reportable(&SysfsPci {
            driver: Some(VFIO_PCI.into()),
            ..console
        }));
        let nic = dev("0000:17:00.0", "8086:1521", 0x020000, Some(12), Some("igb"));
        assert!(!reportable(&nic));
        assert!(reportable(&SysfsPci {
            driver: Some(VFIO_PCI.into()),
            ..nic.clone()
        }));
        let bridge = dev(
            "0000:00:01.0",
            "8086:2030",
            0x060400,
            Some(1),
            Some(VFIO_PCI),
        );
        assert!(!reportable(&bridge));
        let inv = gpu.to_inventory();
        assert_eq!(
            (inv.model.as_str(), inv.class.as_str(), inv.gpu),
            ("10de:2236", "0x030200", true)
        );
    }

    #[test]
    fn plans_the_card_and_nothing_else() {
        let devices = vec![
            dev(
                "0000:00:01.0",
                "8086:2030",
                0x060400,
                Some(30),
                Some("pcieport"),
            ),
            dev(
                "0000:65:00.0",
                "10de:2236",
                0x030200,
                Some(30),
                Some("nvidia"),
            ),
            dev(
                "0000:65:00.1",
                "10de:1aef",
                0x040300,
                Some(30),
                Some("snd_hda_intel"),
            ),
            dev(
                "0000:b3:00.0",
                "10de:2236",
                0x030200,
                Some(31),
                Some(VFIO_PCI),
            ),
        ];
        let w = plan_bind(&devices, &["0000:65:00.0".into()], true).expect("plan");
        let got: Vec<(&str, &str)> = w
            .iter()
            .map(|w| (w.path.as_str(), w.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("bus/pci/devices/0000:65:00.0/driver_override", "vfio-pci"),
                ("bus/pci/drivers/nvidia/unbind", "0000:65:00.0"),
                ("bus/pci/drivers_probe", "0000:65:00.0"),
                ("bus/pci/devices/0000:65:00.1/driver_override", "vfio-pci"),
                ("bus/pci/drivers/snd_hda_intel/unbind", "0000:65:00.1"),
                ("bus/pci/drivers_probe", "0000:65:00.1"),
            ]
        );
        // Already bound: nothing to do, even without the module check mattering.
        assert_eq!(
            plan_bind(&devices, &["0000:b3:00.0".into()], false).expect("plan"),
            []
        );
        // Unbound devices get no unbind.
        let free = [dev("0000:65:00.0", "10de:2236", 0x030200, Some(30), None)];
        assert_eq!(
            plan_bind(&free, &["0000:65:00.0".into()], true)
                .expect("plan")
                .len(),
            2
        );
    }

    #[test]
    fn precise_errors() {
        let gpu = dev(
            "0000:65:00.0",
            "10de:2236",
            0x030200,
            Some(30),
            Some("nvidia"),
        );
        let a = vec!["0000:65:00.0".to_string()];
        let e = plan_bind(std::slice::from_ref(&gpu), &a, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("modprobe vfio-pci"), "{e}");
        let no_group = SysfsPci {
            iommu_group: None,
            ..gpu.clone()
        };
        let e = plan_bind(&[no_group], &a, true).unwrap_err().to_string();
        assert!(
            e.contains("intel_iommu=on") && e.contains("amd_iommu=on"),
            "{e}"
        );
        let e = plan_bind(&[], &a, true).unwrap_err();
        assert_eq!(e.code(), "not_found");
        assert_eq!(e.to_string(), "PCI device `0000:65:00.0` not found");
        let e = plan_bind(&[], &["../../x".into()], true).unwrap_err();
        assert_eq!(e.field(), Some("gpu_devices"));
        // A host NIC in the GPU's group is named, never taken.
        let nic = dev("0000:17:00.0", "8086:1521", 0x020000, Some(30), Some("igb"));
        let e = plan_bind(&[gpu.clone(), nic], &a, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("0000:17:00.0 (8086:1521, driver igb)"), "{e}");
        // … unless it is unbound or the operator gave it to vfio-pci.
        let spare = dev(
            "0000:17:00.0",
            "8086:1521",
            0x020000,
            Some(30),
            Some(VFIO_PCI),
        );
        assert_eq!(
            plan_bind(&[gpu.clone(), spare], &a, true)
                .expect("plan")
                .len(),
            3
        );
        let e = check_bound(&[gpu], &a).unwrap_err().to_string();
        assert!(e.contains("bound to nvidia"), "{e}");
    }
}
