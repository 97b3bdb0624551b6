//! Volumes on a running VM, against a real QEMU (TCG, no OS): hot-plug a volume file, write through
//! QEMU, grow it online, snapshot it online; an unplug the guest does not acknowledge times out and
//! leaves the disk in place; after QEMU exits the file holds what was written, at the new size.

use std::path::Path;
use std::time::Duration;

use kumo_agent::runtime::launch;
use kumo_agent::runtime::qemu::{DiskCache, DiskSpec};
use kumo_agent::storage::DirPool;
use kumo_agent::volume::{VolumeSource, VolumeSpec};
use kumo_testutil::{PidGuard, require};
use kumo_types::DiskFormat;

mod runtime_common;
use runtime_common::config;

const MIB: u64 = 1 << 20;

fn qemu_io_ok(file: &Path, cmd: &str) -> bool {
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(file)
        .output()
        .expect("qemu-io (Debian package qemu-utils)");
    out.status.success()
        && !String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotplug_grow_snapshot_and_unplug_timeout() {
    require("qemu-system-x86_64", "qemu-system-x86");
    require("qemu-io", "qemu-utils");
    let tmp = tempfile::tempdir().expect("tempdir");
    let pool = DirPool::new(tmp.path().join("pool"));
    let file = pool
        .ensure_volume(&VolumeSpec {
            id: "vol-hp".into(),
            size_bytes: 64 * MIB,
            source: VolumeSource::Blank,
        })
        .expect("volume");
    assert!(qemu_io_ok(&file, "write -P 0x11 0 64k"));

    let cfg = config(tmp.path(), "i-disk1");
    let mut guard = PidGuard::new();
    let vm = launch(&cfg).await.expect("launch");
    guard.add(vm.pid());

    let disk = DiskSpec {
        id: "vol-hp".into(),
        source: kumo_agent::runtime::qemu::DiskSource::File(file.clone()),
        format: DiskFormat::Qcow2,
        readonly: false,
        cache: DiskCache::Writeback,
        bus: None,
    };
    vm.hotplug_disk(&disk, &kumo_agent::runtime::qemu::hotplug_bus(1))
        .await
        .expect("hot-plug");
    assert_eq!(
        vm.disk_sizes().await.expect("sizes").get("vol-hp"),
        Some(&(64 * MIB))
    );
    // The same bus twice is refused by QEMU, and the half-made disk is cleaned up.
    let other = DiskSpec {
        id: "vol-dup".into(),
        ..disk.clone()
    };
    assert!(
        vm.hotplug_disk(&other, &kumo_agent::runtime::qemu::hotplug_bus(1))
            .await
            .is_err()
    );
    assert!(
        !vm.disk_sizes()
            .await
            .expect("sizes")
            .contains_key("vol-dup")
    );

    // Write through the device's own block backend (the path a guest write takes).
    let hmp = serde_json::json!({
        "command-line": "qemu-io -d /machine/peripheral/virtio-vol-hp/virtio-backend \"write -P 0x5a 1M 64k\"",
    });
    let out = vm
        .qmp()
        .execute("human-monitor-command", Some(hmp))
        .await
        .expect("HMP qemu-io");
    // (qemu-io prints its report on QEMU's stdout; errors come back here.) The read-back after QEMU
    // exits checks the data.
    assert!(!out.as_str().unwrap_or("").contains("Error"), "{out}");

    // Grow online; snapshot online (twice: idempotent).
    vm.resize_disk("vol-hp", 128 * MIB).await.expect("grow");
    assert_eq!(
        vm.disk_sizes().await.expect("sizes").get("vol-hp"),
        Some(&(128 * MIB))
    );
    vm.snapshot_disk("vol-hp", "snap-live").await.expect("snap");
    vm.snapshot_disk("vol-hp", "snap-live")
        .await
        .expect("snap again");
    assert_eq!(
        pool.volume_snapshots("vol-hp").expect("list"),
        vec!["snap-live"]
    );

    // No OS answers the unplug request: it times out and the disk stays attached.
    let e = vm
        .unplug_disk("vol-hp", Duration::from_secs(2))
        .await
        .expect_err("no guest to release the disk");
    assert!(e.to_string().contains("did not release"), "{e}");
    assert!(vm.disk_sizes().await.expect("sizes").contains_key("vol-hp"));

    vm.force_stop().await.expect("stop");
    // What QEMU wrote is in the file, at the new size, with the snapshot.
    assert!(qemu_io_ok(&file, "read -P 0x11 0 64k"));
    assert!(qemu_io_ok(&file, "read -P 0x5a 1M 64k"));
    assert_eq!(pool.volume_size("vol-hp").expect("size"), Some(128 * MIB));
}
