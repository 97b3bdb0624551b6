//! PCI discovery and vfio-pci binding (`kumo_agent::pci`) against a sysfs tree built in a temporary
//! directory, shaped like the kernel's: device directories under `devices/`, `bus/pci/devices/*`
//! links to them, `iommu_group` and `driver` links, driver directories with `unbind`, and
//! `bus/pci/drivers_probe`. Real passthrough needs an IOMMU and a spare GPU, which CI machines lack.
//!
//! The host modelled: two NVIDIA A10 (`10de:2236`, class 0x030200) in IOMMU groups 30 and 31, the
//! first on the `nvidia` driver with its audio function (`10de:1aef`) in the same group, the second
//! already on `vfio-pci`; a host bridge; an Intel NIC on `igb`; the BMC's VGA, the boot console.

use std::os::unix::fs::symlink;
use std::path::Path;

use kumo_agent::pci::{self, SysfsWrite};
use kumo_types::PciDevice;

struct Dev {
    address: &'static str,
    vendor: &'static str,
    device: &'static str,
    class: &'static str,
    group: u32,
    driver: Option<&'static str>,
    boot_vga: bool,
}

const HOST: [Dev; 6] = [
    Dev {
        address: "0000:00:00.0",
        vendor: "0x8086",
        device: "0x09a2",
        class: "0x060000",
        group: 0,
        driver: None,
        boot_vga: false,
    },
    Dev {
        address: "0000:02:00.0",
        vendor: "0x1a03",
        device: "0x2000",
        class: "0x030000",
        group: 20,
        driver: Some("ast"),
        boot_vga: true,
    },
    Dev {
        address: "0000:17:00.0",
        vendor: "0x8086",
        device: "0x1521",
        class: "0x020000",
        group: 12,
        driver: Some("igb"),
        boot_vga: false,
    },
    Dev {
        address: "0000:65:00.0",
        vendor: "0x10de",
        device: "0x2236",
        class: "0x030200",
        group: 30,
        driver: Some("nvidia"),
        boot_vga: false,
    },
    Dev {
        address: "0000:65:00.1",
        vendor: "0x10de",
        device: "0x1aef",
        class: "0x040300",
        group: 30,
        driver: Some("snd_hda_intel"),
        boot_vga: false,
    },
    Dev {
        address: "0000:b3:00.0",
        vendor: "0x10de",
        device: "0x2236",
        class: "0x030200",
        group: 31,
        driver: Some("vfio-pci"),
        boot_vga: false,
    },
];

/// How the modelled host is set up.
#[derive(Clone, Copy)]
struct Setup {
    /// IOMMU on: devices have `iommu_group` links.
    iommu: bool,
    /// The vfio-pci module is loaded: `bus/pci/drivers/vfio-pci` exists.
    vfio_loaded: bool,
}

const READY: Setup = Setup {
    iommu: true,
    vfio_loaded: true,
};

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, s).expect("write");
}

fn build(root: &Path, setup: Setup) {
    let mut drivers: Vec<&str> = HOST.iter().filter_map(|d| d.driver).collect();
    drivers.extend(["pcieport", "vfio-pci"]);
    for drv in drivers {
        if drv == "vfio-pci" && !setup.vfio_loaded {
            continue;
        }
        let dir = root.join("bus/pci/drivers").join(drv);
        write(&dir.join("bind"), "");
        write(&dir.join("unbind"), "");
    }
    write(&root.join("bus/pci/drivers_probe"), "");
    std::fs::create_dir_all(root.join("bus/pci/devices")).expect("mkdir");
    for d in &HOST {
        let dir = root.join("devices/pci0000:00").join(d.address);
        write(&dir.join("vendor"), &format!("{}\n", d.vendor));
        write(&dir.join("device"), &format!("{}\n", d.device));
        write(&dir.join("class"), &format!("{}\n", d.class));
        write(&dir.join("driver_override"), "(null)\n");
        if d.class.starts_with("0x03") {
            write(
                &dir.join("boot_vga"),
                if d.boot_vga { "1\n" } else { "0\n" },
            );
        }
        if setup.iommu {
            let group = root.join(format!("kernel/iommu_groups/{}/devices", d.group));
            std::fs::create_dir_all(&group).expect("mkdir");
            symlink(
                format!("../../../../devices/pci0000:00/{}", d.address),
                group.join(d.address),
            )
            .expect("link");
            symlink(
                format!("../../../kernel/iommu_groups/{}", d.group),
                dir.join("iommu_group"),
            )
            .expect("link");
        }
        if let Some(drv) = d.driver {
            symlink(
                format!("../../../bus/pci/drivers/{drv}"),
                dir.join("driver"),
            )
            .expect("link");
        }
        symlink(
            format!("../../../devices/pci0000:00/{}", d.address),
            root.join("bus/pci/devices").join(d.address),
        )
        .expect("link");
    }
}

fn host(setup: Setup) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    build(t.path(), setup);
    t
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).expect("read")
}

/// What the kernel does on `drivers_probe` with an override: move the `driver` link.
fn kernel_binds(root: &Path, address: &str, driver: &str) {
    let link = root.join("bus/pci/devices").join(address).join("driver");
    let _ = std::fs::remove_file(&link);
    symlink(format!("../../../bus/pci/drivers/{driver}"), link).expect("link");
}

fn addrs(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn discovery_reports_the_two_gpus_and_nothing_else() {
    let h = host(READY);
    let found = pci::discover(h.path()).expect("discover");
    assert_eq!(
        found,
        [
            PciDevice {
                address: "0000:65:00.0".into(),
                model: "10de:2236".into(),
                class: "0x030200".into(),
                iommu_group: Some(30),
                driver: Some("nvidia".into()),
                gpu: true,
            },
            PciDevice {
                address: "0000:b3:00.0".into(),
                model: "10de:2236".into(),
                class: "0x030200".into(),
                iommu_group: Some(31),
                driver: Some("vfio-pci".into()),
                gpu: true,
            },
        ]
    );
    // The scan itself sees everything, links resolved.
    let all = pci::scan(h.path()).expect("scan");
    assert_eq!(all.len(), HOST.len());
    let audio = all
        .iter()
        .find(|d| d.address == "0000:65:00.1")
        .expect("audio");
    assert_eq!(
        (audio.iommu_group, audio.driver.as_deref()),
        (Some(30), Some("snd_hda_intel"))
    );
    assert!(all.iter().any(|d| d.boot_vga && d.model() == "1a03:2000"));
}

#[test]
fn discovery_without_iommu_or_pci_bus() {
    let h = host(Setup {
        iommu: false,
        vfio_loaded: true,
    });
    let found = pci::discover(h.path()).expect("discover");
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|d| d.iommu_group.is_none()));
    // A container without /sys/bus/pci: no devices, no error.
    let empty = tempfile::tempdir().expect("tempdir");
    assert_eq!(pci::discover(empty.path()).expect("discover"), []);
}

#[test]
fn binding_takes_the_gpu_and_its_audio_function_and_nothing_else() {
    let h = host(READY);
    let root = h.path();
    let gpu = addrs(&["0000:65:00.0"]);
    let writes = pci::bind_to_vfio(root, &gpu).expect("bind");
    let w = |p: &str, v: &str| SysfsWrite {
        path: p.into(),
        value: v.into(),
    };
    assert_eq!(
        writes,
        [
            w("bus/pci/devices/0000:65:00.0/driver_override", "vfio-pci"),
            w("bus/pci/drivers/nvidia/unbind", "0000:65:00.0"),
            w("bus/pci/drivers_probe", "0000:65:00.0"),
            w("bus/pci/devices/0000:65:00.1/driver_override", "vfio-pci"),
            w("bus/pci/drivers/snd_hda_intel/unbind", "0000:65:00.1"),
            w("bus/pci/drivers_probe", "0000:65:00.1"),
        ]
    );
    // The files hold what was written (through the device links, as on a host).
    for d in ["0000:65:00.0", "0000:65:00.1"] {
        assert_eq!(
            read(root, &format!("bus/pci/devices/{d}/driver_override")),
            "vfio-pci"
        );
    }
    assert_eq!(read(root, "bus/pci/drivers/nvidia/unbind"), "0000:65:00.0");
    assert_eq!(
        read(root, "bus/pci/drivers/snd_hda_intel/unbind"),
        "0000:65:00.1"
    );
    assert_eq!(read(root, "bus/pci/drivers_probe"), "0000:65:00.1");
    // Nothing else was touched.
    assert_eq!(read(root, "bus/pci/drivers/igb/unbind"), "");
    for d in ["0000:b3:00.0", "0000:17:00.0", "0000:02:00.0"] {
        assert_eq!(
            read(root, &format!("bus/pci/devices/{d}/driver_override")),
            "(null)\n"
        );
    }

    // The tree is not a kernel: nothing moved, and verification says so precisely.
    let e = pci::verify_bound(root, &gpu).unwrap_err().to_string();
    assert!(e.contains("0000:65:00.0 is bound to nvidia"), "{e}");
    // Once the kernel has bound both functions, all is well and binding again writes nothing.
    kernel_binds(root, "0000:65:00.0", "vfio-pci");
    kernel_binds(root, "0000:65:00.1", "vfio-pci");
    pci::verify_bound(root, &gpu).expect("bound");
    assert_eq!(pci::bind_to_vfio(root, &gpu).expect("bind"), []);
    // The bound audio function is now reported too (a device held by vfio-pci).
    assert_eq!(pci::discover(root).expect("discover").len(), 3);
}

#[test]
fn a_gpu_already_on_vfio_needs_nothing() {
    let h = host(READY);
    let gpu = addrs(&["0000:b3:00.0"]);
    assert_eq!(pci::bind_to_vfio(h.path(), &gpu).expect("bind"), []);
    pci::prepare_passthrough(h.path(), &gpu).expect("ready");
}

#[test]
fn precise_errors_for_what_the_host_lacks() {
    let gpu = addrs(&["0000:65:00.0"]);
    let no_iommu = host(Setup {
        iommu: false,
        vfio_loaded: true,
    });
    let e = pci::prepare_passthrough(no_iommu.path(), &gpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("0000:65:00.0 has no IOMMU group")
            && e.contains("intel_iommu=on")
            && e.contains("amd_iommu=on"),
        "{e}"
    );

    let no_vfio = host(Setup {
        iommu: true,
        vfio_loaded: false,
    });
    let e = pci::prepare_passthrough(no_vfio.path(), &gpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("modprobe vfio-pci"), "{e}");

    let h = host(READY);
    let e = pci::prepare_passthrough(h.path(), &addrs(&["0000:66:00.0"])).unwrap_err();
    assert_eq!(e.to_string(), "PCI device `0000:66:00.0` not found");
    // Nothing was written on any failure.
    for root in [no_iommu.path(), no_vfio.path(), h.path()] {
        assert_eq!(read(root, "bus/pci/drivers_probe"), "");
    }
}
