//! GPUs (issue 5): `instance-type create --gpu`, and PCI devices in `host show`.

use super::*;
use crate::syntax::parse_gpu;

#[test]
fn gpu_flag_parses_model_and_count() {
    let g = parse_gpu("10de:2236x2").expect("parses");
    assert_eq!((g.model.as_str(), g.count), ("10de:2236", 2));
    let g = parse_gpu("10DE:2236").expect("parses");
    assert_eq!((g.model.as_str(), g.count), ("10de:2236", 1));
    assert_eq!(parse_gpu("10de:2236x8").map(|g| g.count), Ok(8));
    for (bad, says) in [
        ("10de:2236x0", "not a number from 1 to 8"),
        ("10de:2236x9", "not a number from 1 to 8"),
        ("10de:2236xtwo", "not a number from 1 to 8"),
        ("10de-2236", "not a GPU model"),
        ("nvidia:a100", "not a GPU model"),
        ("10de:22x2", "not a GPU model"),
    ] {
        let e = parse_gpu(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
    let cli = parse(&[
        "instance-type",
        "create",
        "--name",
        "gpu2",
        "--vcpus",
        "8",
        "--memory-mib",
        "65536",
        "--root-disk-gib",
        "100",
        "--gpu",
        "10de:2236x2",
    ])
    .expect("parses");
    let Command::InstanceType(misc::InstanceTypeCmd::Create { gpu: Some(g), .. }) = cli.cmd else {
        panic!("wrong command: {:?}", cli.cmd);
    };
    assert_eq!((g.model.as_str(), g.count), ("10de:2236", 2));
    let e = parse(&[
        "instance-type",
        "create",
        "--name",
        "g",
        "--vcpus",
        "1",
        "--memory-mib",
        "64",
        "--root-disk-gib",
        "1",
        "--gpu",
        "10de:2236x12",
    ])
    .expect_err("refused")
    .to_string();
    assert!(e.contains("--gpu") && e.contains("1 to 8"), "{e}");
}

#[test]
fn host_show_lists_pci_devices_and_types_show_gpus() {
    let dev = |address: &str, group: Option<u32>, driver: &str| kumo_types::PciDevice {
        address: address.into(),
        model: "10de:2236".into(),
        class: "0x030200".into(),
        iommu_group: group,
        driver: Some(driver.into()),
        gpu: true,
    };
    let lines = render::pci_devices(&[
        dev("0000:65:00.0", Some(30), "nvidia"),
        dev("0000:b3:00.0", None, "vfio-pci"),
    ]);
    assert_eq!(
        lines,
        "0000:65:00.0 10de:2236 gpu iommu group 30 driver nvidia\n\
         0000:b3:00.0 10de:2236 gpu no iommu group driver vfio-pci"
    );
    assert_eq!(render::pci_devices(&[]), "-");
    // `host show` has them (a host as the API returns it).
    let host: kumo_types::Host = serde_json::from_value(serde_json::json!({
        "id": "host-1", "name": "gpu-1", "state": "ready", "accel": "kvm",
        "registered_at": "2026-11-25T00:00:00Z", "last_heartbeat": "2026-11-25T00:00:01Z",
        "inventory": {
            "hostname": "gpu-1", "cpus": 64, "memory_mib": 524288, "disk_free_bytes": 1,
            "disk_total_bytes": 2, "qemu_version": "7.2.22", "kernel": "6.1.0", "kvm_usable": true,
            "kvm_probe": "ok",
            "pci_devices": [{"address": "0000:65:00.0", "model": "10de:2236", "class": "0x030200",
                             "iommu_group": 30, "driver": "nvidia", "gpu": true}],
        },
    }))
    .expect("a host");
    let s = render::host_detail(&host).to_string();
    assert!(
        s.contains("pci devices") && s.contains("0000:65:00.0 10de:2236 gpu iommu group 30"),
        "{s}"
    );
    let mut t = kumo_types::builtin_instance_types()
        .into_iter()
        .next()
        .expect("a builtin");
    t.gpus = Some(kumo_types::GpuRequest {
        model: "10de:2236".into(),
        count: 2,
    });
    let s = render::instance_type_detail(&t).to_string();
    assert!(s.contains("GPUS") && s.contains("2x 10de:2236"), "{s}");
}
