//! Golden tests of the QEMU argument vector (`runtime::qemu::argv`). The snapshots live in
//! `tests/snapshots/`; review any change with `cargo insta review` (or `INSTA_UPDATE=always`).

use kumo_agent::runtime::qemu::{
    Accel, Boot, DiskCache, DiskSpec, Machine, NicSpec, VmConfig, argv,
};
use kumo_types::DiskFormat;

fn kernel_guest(accel: Accel) -> VmConfig {
    VmConfig {
        instance_id: "i-0123456789abcdef".into(),
        name: "tiny-1".into(),
        vcpus: 1,
        memory_mib: 256,
        accel,
        machine: Machine::Q35,
        boot: Boot::Kernel {
            kernel: "/var/lib/kumo/pool/images/ami-tiny/kernel".into(),
            initrd: Some("/var/lib/kumo/pool/images/ami-tiny/initrd".into()),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
        },
        disks: vec![DiskSpec {
            id: "root".into(),
            source: kumo_agent::runtime::qemu::DiskSource::File(
                "/var/lib/kumo/pool/instances/i-0123456789abcdef/root.qcow2".into(),
            ),
            format: DiskFormat::Qcow2,
            readonly: false,
            cache: DiskCache::Writeback,
            bus: None,
        }],
        nics: vec![NicSpec {
            id: "net0".into(),
            ifname: "kt-0123456789".into(),
            mac: "52:54:00:12:34:56".into(),
            bus: Some("hp0".into()),
        }],
        seed_iso: None,
        cdrom: None,
        host_devices: vec![],
        run_dir: "/var/lib/kumo/run/i-0123456789abcdef".into(),
        incoming: false,
    }
}

fn disk_guest(accel: Accel) -> VmConfig {
    VmConfig {
        instance_id: "i-00000000000000a1".into(),
        name: "web,1".into(), // a comma must be escaped
        vcpus: 2,
        memory_mib: 2048,
        accel,
        machine: Machine::Q35,
        boot: Boot::Disk,
        disks: vec![
            DiskSpec {
                id: "root".into(),
                source: kumo_agent::runtime::qemu::DiskSource::File(
                    "/var/lib/kumo/pool/instances/i-00000000000000a1/root.qcow2".into(),
                ),
                format: DiskFormat::Qcow2,
                readonly: false,
                cache: DiskCache::Writeback,
                bus: None,
            },
            DiskSpec {
                id: "vol-0a1b2c".into(),
                source: kumo_agent::runtime::qemu::DiskSource::File(
                    "/srv/volumes/vol-0a1b2c.raw".into(),
                ),
                format: DiskFormat::Raw,
                readonly: false,
                cache: DiskCache::Direct,
                bus: Some(kumo_agent::runtime::qemu::volume_bus(0)),
            },
            DiskSpec {
                id: "vol-0ceph".into(),
                source: kumo_agent::runtime::qemu::DiskSource::Rbd {
                    pool: "kumo".into(),
                    image: "vol-0ceph".into(),
                    conf: "/etc/ceph/ceph.conf".into(),
                    user: "admin".into(),
                },
                format: DiskFormat::Raw,
                readonly: false,
                cache: DiskCache::Writeback,
                bus: Some(kumo_agent::runtime::qemu::volume_bus(1)),
            },
            DiskSpec {
                id: "vol-0lvm".into(),
                source: kumo_agent::runtime::qemu::DiskSource::HostDevice(
                    "/dev/vg0/vol-0lvm".into(),
                ),
                format: DiskFormat::Raw,
                readonly: false,
                cache: DiskCache::Direct,
                bus: Some(kumo_agent::runtime::qemu::volume_bus(2)),
            },
        ],
        nics: vec![
            NicSpec {
                id: "net0".into(),
                ifname: "kt-a1-0".into(),
                mac: "52:54:00:00:00:a1".into(),
                bus: Some("hp0".into()),
            },
            NicSpec {
                id: "net1".into(),
                ifname: "kt-a1-1".into(),
                mac: "52:54:00:00:01:a1".into(),
                bus: Some("hp1".into()),
            },
        ],
        seed_iso: Some("/var/lib/kumo/run/i-00000000000000a1/seed.iso".into()),
        cdrom: Some("/var/lib/kumo/pool/images/ami-0150/disk.iso".into()),
        host_devices: vec![],
        run_dir: "/var/lib/kumo/run/i-00000000000000a1".into(),
        incoming: false,
    }
}

/// A KVM guest with two GPUs passed through (issue 5).
fn gpu_guest() -> VmConfig {
    VmConfig {
        host_devices: vec!["0000:65:00.0".into(), "0000:b3:00.0".into()],
        ..kernel_guest(Accel::Kvm)
    }
}

fn render(cfg: &VmConfig) -> String {
    argv(cfg).join("\n")
}

#[test]
fn kernel_boot_tcg() {
    insta::assert_snapshot!(render(&kernel_guest(Accel::Tcg)));
}

#[test]
fn kernel_boot_kvm() {
    insta::assert_snapshot!(render(&kernel_guest(Accel::Kvm)));
}

#[test]
fn disk_boot_tcg() {
    insta::assert_snapshot!(render(&disk_guest(Accel::Tcg)));
}

#[test]
fn disk_boot_kvm() {
    insta::assert_snapshot!(render(&disk_guest(Accel::Kvm)));
}

#[test]
fn gpu_passthrough_kvm() {
    insta::assert_snapshot!(render(&gpu_guest()));
}

#[test]
fn gpus_only_add_their_ports_and_devices() {
    // Passing GPUs through changes nothing else: the other devices keep their order (and thus the
    // PCI addresses the guest sees).
    let plain = argv(&kernel_guest(Accel::Kvm));
    let gpu = argv(&gpu_guest());
    let added: Vec<String> = gpu.iter().filter(|x| !plain.contains(x)).cloned().collect();
    assert_eq!(
        added,
        [
            "pcie-root-port,id=hostport0,chassis=17",
            "vfio-pci,host=0000:65:00.0,id=hostdev0,bus=hostport0",
            "pcie-root-port,id=hostport1,chassis=18",
            "vfio-pci,host=0000:b3:00.0,id=hostdev1,bus=hostport1",
        ]
    );
    // Without those `-device` pairs the argv is exactly the GPU-less one.
    let mut without = gpu.clone();
    for v in &added {
        let i = without.iter().position(|x| x == v).expect("present");
        assert_eq!(without[i - 1], "-device");
        without.drain(i - 1..=i);
    }
    assert_eq!(without, plain);
}

#[test]
fn argv_is_accepted_by_qemu_shape() {
    // Every option flag is followed by its value: no accidental empty strings, no stray values.
    for cfg in [
        kernel_guest(Accel::Tcg),
        disk_guest(Accel::Kvm),
        gpu_guest(),
    ] {
        let a = argv(&cfg);
        assert!(a.iter().all(|x| !x.is_empty()), "{a:?}");
        let flags_without_value = ["-nodefaults", "-no-user-config", "-daemonize"];
        let mut i = 0;
        while i < a.len() {
            assert!(a[i].starts_with('-'), "expected a flag at {i}: {:?}", a[i]);
            i += if flags_without_value.contains(&a[i].as_str()) {
                1
            } else {
                2
            };
        }
    }
}

/// The target of a live migration: the same devices, waiting for the incoming stream (issue 5).
#[test]
fn incoming_migration_tcg() {
    let cfg = VmConfig {
        incoming: true,
        ..disk_guest(Accel::Tcg)
    };
    insta::assert_snapshot!(render(&cfg));
}

#[test]
fn incoming_changes_nothing_but_the_incoming_flag() {
    // The target must have exactly the source's devices, or QEMU refuses the stream.
    let plain = argv(&disk_guest(Accel::Tcg));
    let incoming = argv(&VmConfig {
        incoming: true,
        ..disk_guest(Accel::Tcg)
    });
    assert_eq!(&incoming[..plain.len()], &plain[..]);
    assert_eq!(&incoming[plain.len()..], ["-incoming", "defer"]);
}
