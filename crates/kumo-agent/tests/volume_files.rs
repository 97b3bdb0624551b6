//! Volume files in the dir pool with the real `qemu-img` / `qemu-io`: blank and image-backed volumes,
//! growing (never shrinking), internal snapshots and clones that show the snapshot's data only.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use kumo_agent::storage::DirPool;
use kumo_agent::volume::{VolumeSource, VolumeSpec};
use kumo_types::DiskFormat;

const MIB: u64 = 1 << 20;

fn qemu_io(file: &Path, cmd: &str) -> bool {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(file)
        .output()
        .expect("qemu-io (Debian package qemu-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !text.contains("Pattern verification failed")
}

fn spec(id: &str, size: u64, source: VolumeSource) -> VolumeSpec {
    VolumeSpec {
        id: id.into(),
        size_bytes: size,
        source,
    }
}

#[test]
fn snapshot_then_clone_shows_the_old_data_only() {
    kumo_testutil::require("qemu-img", "qemu-utils");
    kumo_testutil::require("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let pool = DirPool::new(dir.path());

    let v = pool
        .ensure_volume(&spec("vol-a", 64 * MIB, VolumeSource::Blank))
        .unwrap();
    assert_eq!(pool.volume_size("vol-a").unwrap(), Some(64 * MIB));
    assert!(qemu_io(&v, "write -P 0xab 0 1M"));
    pool.snapshot_volume("vol-a", "snap-1").unwrap();
    pool.snapshot_volume("vol-a", "snap-1").unwrap(); // idempotent
    assert_eq!(pool.volume_snapshots("vol-a").unwrap(), vec!["snap-1"]);
    // Write more after the snapshot.
    assert!(qemu_io(&v, "write -P 0xcd 0 1M"));
    assert!(qemu_io(&v, "write -P 0xee 8M 1M"));

    let c = pool
        .ensure_volume(&spec(
            "vol-c",
            128 * MIB,
            VolumeSource::Snapshot {
                volume_id: "vol-a".into(),
                snapshot: "snap-1".into(),
            },
        ))
        .unwrap();
    assert_eq!(pool.volume_size("vol-c").unwrap(), Some(128 * MIB));
    assert!(
        qemu_io(&c, "read -P 0xab 0 1M"),
        "the clone has the old data"
    );
    assert!(qemu_io(&c, "read -P 0 8M 1M"), "and not what came later");
    assert!(
        qemu_io(&v, "read -P 0xcd 0 1M"),
        "the source keeps its new data"
    );
    // The clone is independent of its source.
    pool.delete_volume_snapshot("vol-a", "snap-1").unwrap();
    pool.delete_volume("vol-a").unwrap();
    assert!(qemu_io(&c, "read -P 0xab 0 1M"));

    // A clone smaller than the snapshot is refused and leaves nothing.
    pool.snapshot_volume("vol-c", "snap-2").unwrap();
    let e = pool
        .ensure_volume(&spec(
            "vol-d",
            32 * MIB,
            VolumeSource::Snapshot {
                volume_id: "vol-c".into(),
                snapshot: "snap-2".into(),
            },
        ))
        .unwrap_err();
    assert_eq!(e.field(), Some("size"), "{e}");
    assert_eq!(pool.volume_size("vol-d").unwrap(), None);
    let mut ids = pool.volume_ids();
    ids.sort();
    assert_eq!(ids, vec!["vol-c"]);
}

#[test]
fn grow_only_and_image_backed_volumes() {
    kumo_testutil::require("qemu-img", "qemu-utils");
    kumo_testutil::require("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let pool = DirPool::new(dir.path());

    // Grow; a shrink is refused and changes nothing.
    let v = pool
        .ensure_volume(&spec("vol-g", 16 * MIB, VolumeSource::Blank))
        .unwrap();
    assert!(qemu_io(&v, "write -P 0x11 0 1M"));
    pool.ensure_volume(&spec("vol-g", 32 * MIB, VolumeSource::Blank))
        .unwrap();
    assert_eq!(pool.volume_size("vol-g").unwrap(), Some(32 * MIB));
    let e = pool
        .ensure_volume(&spec("vol-g", 16 * MIB, VolumeSource::Blank))
        .unwrap_err();
    assert!(e.to_string().contains("only grow"), "{e}");
    assert_eq!(pool.volume_size("vol-g").unwrap(), Some(32 * MIB));
    assert!(qemu_io(&v, "read -P 0x11 0 1M"));

    // From an image: an overlay that reads the image's data, no smaller than the image.
    let img = dir.path().join("image.raw");
    std::fs::write(&img, vec![0x42u8; 4 * MIB as usize]).unwrap();
    let from_image = VolumeSource::Image {
        path: img.clone(),
        format: DiskFormat::Raw,
    };
    let e = pool
        .ensure_volume(&spec("vol-i", MIB, from_image.clone()))
        .unwrap_err();
    assert!(e.to_string().contains("smaller than the source"), "{e}");
    let vi = pool
        .ensure_volume(&spec("vol-i", 8 * MIB, from_image))
        .unwrap();
    assert!(qemu_io(&vi, "read -P 0x42 0 4M"));
    assert!(qemu_io(&vi, "read -P 0 4M 4M"));
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&vi)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename"], img.to_string_lossy().as_ref());
}
