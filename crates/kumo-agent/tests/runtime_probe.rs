//! The KVM probe and host inventory against the real QEMU of this machine.

use std::path::Path;
use std::time::{Duration, Instant};

use kumo_agent::inventory::{
    KVM_PROBE_TIMEOUT, PROBE_CACHE_FILE, TCG_PROBE_TIMEOUT, collect, collect_with, probe,
    read_cache,
};
use kumo_agent::runtime::qemu::{Accel, QEMU_BINARY};
use kumo_testutil::require;

/// Slack for process start/kill on a busy 2-core machine; only guards against a hang, not speed.
const SLACK: Duration = Duration::from_secs(10);

#[test]
fn kvm_probe_gives_a_definite_answer_within_its_timeout() {
    require(QEMU_BINARY, "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let out = probe(
        Path::new(QEMU_BINARY),
        Accel::Kvm,
        KVM_PROBE_TIMEOUT,
        tmp.path(),
    );
    let took = start.elapsed();
    assert!(took < KVM_PROBE_TIMEOUT + SLACK, "probe took {took:?}");
    assert!(!out.detail.is_empty());
    if out.usable {
        assert_eq!(out.detail, "probe boot under KVM ok");
    } else {
        assert!(out.detail.contains("KVM"), "{}", out.detail);
    }
    eprintln!(
        "KVM probe: usable={} ({}) in {took:?}",
        out.usable, out.detail
    );
    // The temporary boot image is removed.
    assert_eq!(std::fs::read_dir(tmp.path()).expect("read_dir").count(), 0);
}

#[test]
fn tcg_probe_boots_the_probe_sector() {
    require(QEMU_BINARY, "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = probe(
        Path::new(QEMU_BINARY),
        Accel::Tcg,
        TCG_PROBE_TIMEOUT,
        tmp.path(),
    );
    assert!(out.usable, "{}", out.detail);
    assert_eq!(out.detail, "probe boot under TCG ok");
}

#[test]
fn a_hanging_probe_is_killed_at_the_timeout() {
    require(QEMU_BINARY, "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    // A zero timeout can never see the exit: the probe QEMU is killed and reported as hung.
    let out = probe(
        Path::new(QEMU_BINARY),
        Accel::Tcg,
        Duration::ZERO,
        tmp.path(),
    );
    assert!(!out.usable);
    assert_eq!(out.detail, "probe boot under TCG did not finish in 0s");
}

#[test]
fn collect_reports_the_host_and_caches_the_probe() {
    require(QEMU_BINARY, "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let inv = collect(tmp.path());
    assert!(!inv.hostname.is_empty());
    assert!(inv.cpus >= 1);
    assert!(inv.memory_mib > 0);
    assert!(inv.disk_total_bytes > 0 && inv.disk_free_bytes <= inv.disk_total_bytes);
    assert!(
        inv.qemu_version.starts_with(|c: char| c.is_ascii_digit()),
        "{}",
        inv.qemu_version
    );
    assert!(!inv.kernel.is_empty());
    assert!(!inv.kvm_probe.is_empty());
    let rec = read_cache(tmp.path()).expect("probe cached");
    assert!(tmp.path().join(PROBE_CACHE_FILE).is_file());
    assert_eq!(rec.kvm.usable, inv.kvm_usable);
    assert!(rec.tcg.usable, "TCG sanity probe: {}", rec.tcg.detail);
    assert_eq!(rec.kernel, inv.kernel);
    assert_eq!(rec.qemu_version, inv.qemu_version);

    // The second collection reuses the cache (no probe boot: a tampered record shows through).
    let mut tampered = rec.clone();
    tampered.kvm.detail = "from cache".into();
    std::fs::write(
        tmp.path().join(PROBE_CACHE_FILE),
        serde_json::to_vec(&tampered).expect("json"),
    )
    .expect("write");
    assert_eq!(collect(tmp.path()).kvm_probe, "from cache");
    assert_eq!(collect_with(tmp.path(), false).kvm_probe, "from cache");

    // A record made with another QEMU version is re-probed.
    tampered.qemu_version = "0.0.1".into();
    std::fs::write(
        tmp.path().join(PROBE_CACHE_FILE),
        serde_json::to_vec(&tampered).expect("json"),
    )
    .expect("write");
    assert_eq!(
        collect_with(tmp.path(), false).kvm_probe,
        "KVM not probed (TCG forced by configuration)"
    );
    assert_ne!(collect(tmp.path()).kvm_probe, "from cache");
    assert_eq!(
        read_cache(tmp.path()).expect("cache").qemu_version,
        inv.qemu_version
    );
}
