//! Builds the real tiny guest from Debian packages and checks what ends up in it.

#![allow(clippy::unwrap_used)]

mod common;

use kumo_guest::cpio::{self, Kind};

#[test]
fn build_is_reproducible_and_complete() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ga = common::build(a.path());
    let gb = common::build(b.path());

    let initrd = std::fs::read(&ga.initrd).unwrap();
    assert_eq!(
        initrd,
        std::fs::read(&gb.initrd).unwrap(),
        "initrd must be byte-for-byte reproducible"
    );
    let kernel = std::fs::read(&ga.kernel).unwrap();
    assert_eq!(kernel, std::fs::read(&gb.kernel).unwrap());
    assert!(
        kernel.len() > 1_000_000,
        "kernel suspiciously small: {} bytes",
        kernel.len()
    );
    assert!(ga.cmdline.contains("console=ttyS0"));

    let entries = cpio::parse(&initrd).unwrap();
    let file = |p: &str| match &entries
        .iter()
        .find(|e| e.path == p)
        .unwrap_or_else(|| panic!("no {p}"))
        .kind
    {
        Kind::File(d) => d.clone(),
        other => panic!("{p} is {other:?}"),
    };
    assert!(file("bin/busybox").starts_with(b"\x7fELF"));
    let list = String::from_utf8(file("etc/kumo/modules")).unwrap();
    let order: Vec<&str> = list.lines().collect();
    for m in [
        "virtio_ring",
        "virtio",
        "virtio_pci",
        "net_failover",
        "virtio_net",
        "virtio_blk",
    ] {
        assert!(order.contains(&m), "module {m} missing from {order:?}");
        assert!(
            file(&format!("lib/modules/{m}.ko")).starts_with(b"\x7fELF"),
            "{m}.ko is not plain ELF"
        );
    }
    let pos = |m: &str| order.iter().position(|x| *x == m).unwrap();
    assert!(pos("virtio_ring") < pos("virtio") && pos("virtio") < pos("virtio_pci"));
    assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
    // No leftovers from the build in the output directory.
    let names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "unexpected files in out_dir: {names:?}");

    // A rebuild with the same inputs is skipped: the outputs are not rewritten.
    let mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = (mtime(&ga.kernel), mtime(&ga.initrd));
    let again = common::build(a.path());
    assert_eq!(again, ga);
    assert_eq!(
        (mtime(&ga.kernel), mtime(&ga.initrd)),
        before,
        "cached build rewrote its outputs"
    );
    // A stale stamp forces a rebuild that again gives identical bytes.
    std::fs::write(a.path().join(kumo_guest::STAMP_FILE), "stale").unwrap();
    common::build(a.path());
    assert_eq!(std::fs::read(&ga.initrd).unwrap(), initrd);
}
