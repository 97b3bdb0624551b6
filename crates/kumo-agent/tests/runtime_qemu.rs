//! The runtime against a real QEMU (TCG, no NICs, so no network namespace is needed).
//!
//! Most tests boot no OS at all — QMP works without one: SeaBIOS finds no bootable disk and idles.
//! The guest-poweroff test boots a 512-byte boot sector that switches the q35 chipset to ACPI S5, the
//! same register write an OS makes when it powers off.

use std::time::Duration;

use kumo_agent::runtime::qemu::{DiskCache, DiskSpec};
use kumo_agent::runtime::{ExitKind, RunFiles, adopt, launch};
use kumo_testutil::{PidGuard, pid_alive, require};
use kumo_types::DiskFormat;

mod runtime_common;
use runtime_common::config;

/// `mov dx,0x604; mov ax,0x2000; out dx,ax; hlt; jmp hlt` — SLP_EN with SLP_TYP=0 (S5) in the ICH9
/// PM1a control register, which SeaBIOS maps at 0x600 on q35.
fn poweroff_sector() -> Vec<u8> {
    let mut s = vec![0u8; 512];
    s[..9].copy_from_slice(&[0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, 0xF4, 0xEB]);
    s[9] = 0xFD;
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_adopt_reset_quit() {
    require("qemu-system-x86_64", "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), "i-rt1");
    let mut guard = PidGuard::new();

    let vm = launch(&cfg).await.expect("launch");
    guard.add(vm.pid());
    assert!(pid_alive(vm.pid()));
    let st = vm.qmp().query_status().await.expect("query-status");
    assert!(st.running, "{st:?}");
    assert_eq!(st.status, "running");
    let version = vm.qmp().query_version().await.expect("query-version");
    assert!(
        version.starts_with(|c: char| c.is_ascii_digit()),
        "{version}"
    );

    // A second launch for the same instance is refused while the first QEMU lives.
    let again = launch(&cfg)
        .await
        .expect_err("second launch must be refused");
    assert!(again.to_string().contains("already running"), "{again}");

    // Simulate an agent restart: drop the handle (QEMU keeps running), adopt it again.
    let pid = vm.pid();
    drop(vm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pid_alive(pid), "dropping the handle must not stop QEMU");
    let vm = adopt(&cfg.run_dir, &cfg.instance_id)
        .await
        .expect("adopt")
        .expect("a running QEMU to adopt");
    assert_eq!(vm.pid(), pid);
    assert!(
        vm.qmp()
            .query_status()
            .await
            .expect("query-status after adopt")
            .running
    );

    // Another instance's id never adopts this QEMU.
    assert!(
        adopt(&cfg.run_dir, "i-rt")
            .await
            .expect("adopt other id")
            .is_none()
    );

    let mut events = vm.qmp().subscribe();
    vm.reboot().await.expect("system_reset");
    let ev = tokio::time::timeout(WAIT, async {
        loop {
            let ev = events.recv().await.expect("event channel");
            if ev.name == "RESET" {
                return ev;
            }
        }
    })
    .await
    .expect("RESET event");
    assert_eq!(ev.data["guest"], serde_json::json!(false), "{ev:?}");

    let exit = tokio::time::timeout(WAIT, vm.force_stop())
        .await
        .expect("stop in time")
        .expect("force_stop");
    assert_eq!(exit.kind, ExitKind::Requested);
    let sd = exit.shutdown.expect("SHUTDOWN event before EOF");
    assert!(!sd.guest);
    assert_eq!(sd.reason, "host-qmp-quit");
    assert!(!pid_alive(pid));
    assert!(vm.qmp().is_closed());
    assert!(
        adopt(&cfg.run_dir, &cfg.instance_id)
            .await
            .expect("adopt after exit")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_is_noticed_as_crash() {
    require("qemu-system-x86_64", "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path(), "i-rt2");
    let mut guard = PidGuard::new();
    let vm = launch(&cfg).await.expect("launch");
    guard.add(vm.pid());
    assert!(vm.exit_info().is_none());

    // SAFETY: kill(2) of the QEMU this test started.
    assert_eq!(unsafe { libc::kill(vm.pid(), libc::SIGKILL) }, 0);
    let exit = tokio::time::timeout(WAIT, vm.wait_exit())
        .await
        .expect("exit noticed");
    assert_eq!(exit.kind, ExitKind::Crash);
    assert_eq!(exit.shutdown, None);
    assert!(!exit.requested);
    assert!(!pid_alive(vm.pid()));
    assert!(
        vm.qmp().query_status().await.is_err(),
        "QMP must report the closed connection"
    );

    // The pidfile is stale now (SIGKILL leaves it behind): not adopted, and a new launch succeeds.
    assert!(RunFiles::new(&cfg.run_dir).pidfile.exists());
    assert!(
        adopt(&cfg.run_dir, &cfg.instance_id)
            .await
            .expect("adopt")
            .is_none()
    );
    let vm2 = launch(&cfg).await.expect("relaunch over a stale pidfile");
    guard.add(vm2.pid());
    let exit = tokio::time::timeout(WAIT, vm2.shutdown(Duration::from_millis(500)))
        .await
        .expect("in time");
    // No OS answers the ACPI power button: shutdown falls back to quit.
    assert_eq!(exit.expect("shutdown").kind, ExitKind::Requested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_poweroff_is_a_clean_guest_shutdown() {
    require("qemu-system-x86_64", "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = tmp.path().join("boot.raw");
    std::fs::write(&disk, poweroff_sector()).expect("write boot sector");
    // SeaBIOS does not boot a one-sector disk; make it 1 MiB (sparse).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .expect("grow disk");
    let mut cfg = config(tmp.path(), "i-rt3");
    cfg.disks.push(DiskSpec {
        id: "root".into(),
        source: kumo_agent::runtime::qemu::DiskSource::File(disk),
        format: DiskFormat::Raw,
        readonly: false,
        cache: DiskCache::Writeback,
        bus: None,
    });
    let mut guard = PidGuard::new();
    let vm = launch(&cfg).await.expect("launch");
    guard.add(vm.pid());
    let exit = tokio::time::timeout(WAIT, vm.wait_exit())
        .await
        .expect("guest powers off by itself");
    assert_eq!(exit.kind, ExitKind::GuestShutdown, "{exit:?}");
    let sd = exit.shutdown.expect("SHUTDOWN event");
    assert!(sd.guest);
    assert_eq!(sd.reason, "guest-shutdown");
    assert!(!pid_alive(vm.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_or_foreign_pidfiles_are_not_adopted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    assert!(adopt(&run, "i-x").await.expect("no pidfile").is_none());
    // Our own (test) process is alive but is not a QEMU of i-x.
    std::fs::write(run.join("qemu.pid"), format!("{}\n", std::process::id())).expect("write");
    assert!(adopt(&run, "i-x").await.expect("foreign pid").is_none());
    std::fs::write(run.join("qemu.pid"), "garbage").expect("write");
    assert!(adopt(&run, "i-x").await.expect("garbage pidfile").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_fails_with_qemu_message_and_leaves_nothing() {
    require("qemu-system-x86_64", "qemu-system-x86");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path(), "i-rt4");
    cfg.disks.push(DiskSpec {
        id: "root".into(),
        source: kumo_agent::runtime::qemu::DiskSource::File(tmp.path().join("missing.qcow2")),
        format: DiskFormat::Qcow2,
        readonly: false,
        cache: DiskCache::Writeback,
        bus: None,
    });
    let err = launch(&cfg).await.expect_err("missing disk must fail");
    assert!(
        err.to_string().contains("missing.qcow2"),
        "QEMU's message is kept: {err}"
    );
    assert!(
        adopt(&cfg.run_dir, &cfg.instance_id)
            .await
            .expect("adopt")
            .is_none()
    );
}
