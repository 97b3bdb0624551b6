//! Launching, adopting, stopping and watching QEMU processes.
//!
//! Invariants:
//! - QEMU runs daemonized (`-daemonize -pidfile`), so it survives the agent. [`launch`] waits for the
//!   launcher parent to exit (QEMU has then finished machine init and written its pidfile), reads the
//!   pid and connects QMP. If anything after the start fails, the new QEMU is killed: no half-started
//!   VM is left behind.
//! - A pid is acted on (adopted, signalled) only after `/proc/<pid>/cmdline` shows the instance's
//!   marker ([`super::qemu::cmdline_matches`]); a recycled pid is never killed.
//! - [`launch`] refuses to start a second QEMU for an instance whose QEMU is alive.
//! - Exit detection: a monitor task waits for QMP EOF, then for the pid to disappear (QEMU is not our
//!   child, so it cannot be `wait`ed; a zombie counts as gone). The exit is classified from the last
//!   `SHUTDOWN` event seen before EOF and whether the agent asked for the stop ([`classify_exit`]).
//! - Dropping a [`RunningVm`] only closes the QMP connection; QEMU keeps running and a new handle can
//!   [`adopt`] it (QEMU serves one QMP client at a time, so drop the old handle first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kumo_types::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::qemu::{QEMU_BINARY, RunFiles, VmConfig, argv, cmdline_matches};
use super::qmp::{Qmp, ShutdownEvent};

/// How long the daemonizing launcher may take before it is considered hung.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the QMP greeting.
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for QEMU to exit after `quit` and after SIGKILL.
const HARD_STOP_WAIT: Duration = Duration::from_secs(10);

/// `sun_path` size: a unix socket path must be shorter.
const MAX_SOCKET_PATH: usize = 108;

/// Why QEMU exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The agent asked it to stop ([`RunningVm::shutdown`]/[`RunningVm::force_stop`]), or someone on
    /// the host did (QMP `quit`, SIGTERM: a `SHUTDOWN` event with `guest: false`).
    Requested,
    /// The guest powered itself off (`SHUTDOWN` with `guest: true`, other than a panic).
    GuestShutdown,
    /// It died without a shutdown event (SIGKILL, QEMU crash) or the guest panicked.
    Crash,
}

/// What the agent knows about an exited QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmExit {
    /// The last `SHUTDOWN` event seen before the QMP connection ended.
    pub shutdown: Option<ShutdownEvent>,
    /// The agent had asked for the stop.
    pub requested: bool,
    pub kind: ExitKind,
}

/// Classify an exit (pure).
pub fn classify_exit(shutdown: Option<&ShutdownEvent>, requested: bool) -> ExitKind {
    if requested {
        return ExitKind::Requested;
    }
    match shutdown {
        Some(sd) if sd.guest && sd.reason != "guest-panic" => ExitKind::GuestShutdown,
        Some(sd) if !sd.guest => ExitKind::Requested,
        _ => ExitKind::Crash,
    }
}

/// A QEMU process started or adopted by this agent.
pub struct RunningVm {
    instance_id: String,
    run_dir: PathBuf,
    pid: i32,
    qmp: Qmp,
    requested: Arc<AtomicBool>,
    exit: watch::Receiver<Option<VmExit>>,
    monitor: JoinHandle<()>,
}

impl std::fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningVm")
            .field("instance_id", &self.instance_id)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// True if `pid` is alive and is the QEMU of `instance_id`.
pub fn is_our_qemu(pid: i32, instance_id: &str) -> bool {
    // A zombie's cmdline reads empty, so it does not match either.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| cmdline_matches(&c, instance_id))
}

/// From a `/proc/<pid>/stat` line: the process's start time (clock ticks after boot, which tells
/// it from a later process given the same pid) and whether it has finished exiting (a zombie, or
/// dead) (pure).
fn parse_stat(stat: &str) -> Option<(u64, bool)> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, matches!(state, "Z" | "X" | "x")))
}

fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether the process `pid` that started at `start` is still exiting: its cmdline empties when
/// the kernel frees its memory, before it closes its files (and with them the disk images' locks).
fn still_exiting(pid: i32, start: Option<u64>) -> bool {
    match (start, proc_stat(pid)) {
        (Some(start), Some((s, done))) => s == start && !done,
        _ => false,
    }
}

/// Parse a pidfile's content.
pub fn parse_pidfile(s: &str) -> Option<i32> {
    s.trim().parse::<i32>().ok().filter(|p| *p > 1)
}

fn read_pid(files: &RunFiles) -> Option<i32> {
    std::fs::read_to_string(&files.pidfile)
        .ok()
        .as_deref()
        .and_then(parse_pidfile)
}

/// SIGKILL the pid, but only if it still is the QEMU of `instance_id`.
fn kill_ours(pid: i32, instance_id: &str) {
    if is_our_qemu(pid, instance_id) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid was verified just above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Start QEMU for `cfg` and connect to it.
pub async fn launch(cfg: &VmConfig) -> Result<RunningVm, Error> {
    launch_with(Path::new(QEMU_BINARY), cfg).await
}

/// [`launch`] with an explicit QEMU binary.
pub async fn launch_with(qemu: &Path, cfg: &VmConfig) -> Result<RunningVm, Error> {
    let files = RunFiles::new(&cfg.run_dir);
    for sock in [&files.qmp_sock, &files.serial_sock] {
        if sock.as_os_str().len() >= MAX_SOCKET_PATH {
            return Err(Error::invalid(
                "run_dir",
                format!(
                    "socket path {} is longer than {} bytes (unix socket limit)",
                    sock.display(),
                    MAX_SOCKET_PATH - 1
                ),
            ));
        }
    }
    std::fs::create_dir_all(&cfg.run_dir).map_err(|e| {
        Error::internal_with(format!("create run dir {}", cfg.run_dir.display()), e)
    })?;
    if let Some(pid) = read_pid(&files).filter(|p| is_our_qemu(*p, &cfg.instance_id)) {
        return Err(Error::conflict(format!(
            "QEMU for instance {} is already running (pid {pid})",
            cfg.instance_id
        )));
    }
    for stale in [&files.pidfile, &files.qmp_sock, &files.serial_sock] {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::internal_with(
                    format!("remove stale {}", stale.display()),
                    e,
                ));
            }
        }
    }
    let out = tokio::process::Command::new(qemu)
        .args(argv(cfg))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LAUNCH_TIMEOUT, out)
        .await
        .map_err(|_| {
            Error::unavailable(format!(
                "QEMU launcher did not finish within {LAUNCH_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| Error::internal_with(format!("run {}", qemu.display()), e))?;
    if !out.status.success() {
        // The daemon may have been forked before the failure; make sure nothing is left.
        if let Some(pid) = read_pid(&files) {
            kill_ours(pid, &cfg.instance_id);
        }
        return Err(Error::internal(format!(
            "QEMU failed to start ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let Some(pid) = read_pid(&files) else {
        return Err(Error::internal(format!(
            "QEMU started but wrote no pid to {}",
            files.pidfile.display()
        )));
    };
    match attach(cfg.instance_id.clone(), cfg.run_dir.clone(), pid).await {
        Ok(vm) => Ok(vm),
        Err(e) => {
            kill_ours(pid, &cfg.instance_id);
            Err(e)
        }
    }
}

/// Re-attach to the QEMU of `instance_id` after an agent restart. `Ok(None)` if there is no pidfile
/// or it is stale (the process is gone or is not our QEMU); an error if QEMU is alive but its QMP
/// socket does not answer.
pub async fn adopt(run_dir: &Path, instance_id: &str) -> Result<Option<RunningVm>, Error> {
    let files = RunFiles::new(run_dir);
    let Some(pid) = read_pid(&files) else {
        return Ok(None);
    };
    if !is_our_qemu(pid, instance_id) {
        tracing::info!(instance_id, pid, "stale QEMU pidfile; not adopting");
        return Ok(None);
    }
    attach(instance_id.to_string(), run_dir.to_path_buf(), pid)
        .await
        .map(Some)
}

async fn attach(instance_id: String, run_dir: PathBuf, pid: i32) -> Result<RunningVm, Error> {
    let files = RunFiles::new(&run_dir);
    let qmp = Qmp::connect(&files.qmp_sock, QMP_CONNECT_TIMEOUT).await?;
    let requested = Arc::new(AtomicBool::new(false));
    let (tx, exit) = watch::channel(None);
    let monitor = tokio::spawn(monitor(
        qmp.clone(),
        pid,
        instance_id.clone(),
        requested.clone(),
        tx,
    ));
    Ok(RunningVm {
        instance_id,
        run_dir,
        pid,
        qmp,
        requested,
        exit,
        monitor,
    })
}

/// Wait for QMP EOF, then for the pid to vanish; publish the classified exit.
async fn monitor(
    qmp: Qmp,
    pid: i32,
    instance_id: String,
    requested: Arc<AtomicBool>,
    tx: watch::Sender<Option<VmExit>>,
) {
    let started = proc_stat(pid).map(|(s, _)| s);
    let state = qmp.closed().await;
    // Only the watch state is needed from here on; let the connection go.
    drop(qmp);
    let mut delay = Duration::from_millis(10);
    while is_our_qemu(pid, &instance_id) || still_exiting(pid, started) {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
    let requested = requested.load(Ordering::SeqCst);
    let kind = classify_exit(state.last_shutdown.as_ref(), requested);
    tx.send_replace(Some(VmExit {
        shutdown: state.last_shutdown,
        requested,
        kind,
    }));
}

impl RunningVm {
    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
    pub fn files(&self) -> RunFiles {
        RunFiles::new(&self.run_dir)
    }
    pub fn qmp(&self) -> &Qmp {
        &self.qmp
    }

    /// The exit, once it has happened (QMP EOF and pid gone).
    pub fn exit_info(&self) -> Option<VmExit> {
        self.exit.borrow().clone()
    }

    /// A receiver that turns `Some` when QEMU has exited.
    pub fn exit_watch(&self) -> watch::Receiver<Option<VmExit>> {
        self.exit.clone()
    }

    /// Wait until QEMU has exited.
    pub async fn wait_exit(&self) -> VmExit {
        let mut rx = self.exit.clone();
        let r = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        match r {
            Some(exit) => exit,
            // The monitor cannot be gone while `self` lives (it is aborted only on drop); fall back
            // to what is known.
            None => {
                let st = self.qmp.state().borrow().clone();
                let requested = self.requested.load(Ordering::SeqCst);
                VmExit {
                    kind: classify_exit(st.last_shutdown.as_ref(), requested),
                    shutdown: st.last_shutdown,
                    requested,
                }
            }
        }
    }

    async fn wait_exit_for(&self, d: Duration) -> Option<VmExit> {
        tokio::time::timeout(d, self.wait_exit()).await.ok()
    }

    /// Hot-plug a virtio NIC backed by an existing tap onto `bus` (see `qemu::hotplug_bus`).
    pub async fn hotplug_nic(
        &self,
        nic: &crate::runtime::qemu::NicSpec,
        bus: &str,
    ) -> Result<(), Error> {
        let netdev = serde_json::json!({
            "type": "tap", "id": nic.id, "ifname": nic.ifname, "script": "no", "downscript": "no",
        });
        self.qmp.execute("netdev_add", Some(netdev)).await?;
        let dev = serde_json::json!({
            "driver": "virtio-net-pci", "id": format!("dev-{}", nic.id), "netdev": nic.id, "mac": nic.mac, "bus": bus,
        });
        if let Err(e) = self.qmp.execute("device_add", Some(dev)).await {
            let _ = self
                .qmp
                .execute("netdev_del", Some(serde_json::json!({ "id": nic.id })))
                .await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Unplug a NIC: `device_del`, wait for the guest to release it (`DEVICE_DELETED`), then drop its
    /// netdev. A guest that does not cooperate within `timeout` leaves the device in place (error).
    pub async fn unplug_nic(&self, nic_id: &str, timeout: Duration) -> Result<(), Error> {
        self.device_del_wait(&format!("dev-{nic_id}"), timeout)
            .await?;
        let _ = self
            .qmp
            .execute("netdev_del", Some(serde_json::json!({ "id": nic_id })))
            .await;
        Ok(())
    }

    /// Hot-plug a virtio-blk disk (a volume) onto `bus` (see `qemu::hotplug_bus`): `blockdev-add` of
    /// its node graph, then `device_add` with the disk ID as serial (the guest finds it as
    /// `/dev/disk/by-id/virtio-<id>`). A failed `device_add` removes the nodes again.
    pub async fn hotplug_disk(
        &self,
        disk: &crate::runtime::qemu::DiskSpec,
        bus: &str,
    ) -> Result<(), Error> {
        use crate::runtime::qemu::{blockdev_json, disk_device_id, drive_node};
        self.qmp
            .execute("blockdev-add", Some(blockdev_json(disk)))
            .await?;
        let dev = serde_json::json!({
            "driver": "virtio-blk-pci", "id": disk_device_id(&disk.id), "drive": drive_node(&disk.id),
            "serial": disk.id, "write-cache": "on", "bus": bus,
        });
        if let Err(e) = self.qmp.execute("device_add", Some(dev)).await {
            let _ = self
                .qmp
                .execute(
                    "blockdev-del",
                    Some(serde_json::json!({ "node-name": drive_node(&disk.id) })),
                )
                .await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Unplug a hot-plugged disk: `device_del`, wait for the guest to release it (`DEVICE_DELETED`),
    /// then `blockdev-del` (which closes the file: what the guest flushed is on disk). A guest that
    /// does not let go within `timeout` keeps the disk (error; retry later).
    pub async fn unplug_disk(&self, disk_id: &str, timeout: Duration) -> Result<(), Error> {
        use crate::runtime::qemu::{disk_device_id, drive_node};
        self.device_del_wait(&disk_device_id(disk_id), timeout)
            .await?;
        match self
            .qmp
            .execute(
                "blockdev-del",
                Some(serde_json::json!({ "node-name": drive_node(disk_id) })),
            )
            .await
        {
            Err(e) if !e.to_string().contains("not found") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Grow a disk while the VM runs (`block_resize`); the guest sees the new size at once.
    pub async fn resize_disk(&self, disk_id: &str, size_bytes: u64) -> Result<(), Error> {
        let args = serde_json::json!({
            "node-name": crate::runtime::qemu::drive_node(disk_id), "size": size_bytes,
        });
        self.qmp.execute("block_resize", Some(args)).await?;
        Ok(())
    }

    /// Take internal snapshot `name` of a qcow2 disk while the VM runs (no-op if it exists).
    pub async fn snapshot_disk(&self, disk_id: &str, name: &str) -> Result<(), Error> {
        let args = serde_json::json!({
            "device": crate::runtime::qemu::drive_node(disk_id), "name": name,
        });
        match self
            .qmp
            .execute("blockdev-snapshot-internal-sync", Some(args))
            .await
        {
            Err(e) if !e.to_string().contains("already exists") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Delete internal snapshot `name` of a disk while the VM runs (no-op if it is gone).
    pub async fn delete_disk_snapshot(&self, disk_id: &str, name: &str) -> Result<(), Error> {
        let args = serde_json::json!({
            "device": crate::runtime::qemu::drive_node(disk_id), "name": name,
        });
        match self
            .qmp
            .execute("blockdev-snapshot-delete-internal-sync", Some(args))
            .await
        {
            Err(e) if !e.to_string().contains("not found") && !e.to_string().contains("find") => {
                Err(e.into())
            }
            _ => Ok(()),
        }
    }

    /// Virtual sizes of the disks QEMU has open, by disk ID (from `query-named-block-nodes`).
    pub async fn disk_sizes(&self) -> Result<std::collections::BTreeMap<String, u64>, Error> {
        let v = self.qmp.execute("query-named-block-nodes", None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                let id = n["node-name"].as_str()?.strip_prefix("drive-")?;
                Some((id.to_string(), n["image"]["virtual-size"].as_u64()?))
            })
            .collect())
    }

    /// `device_del` and wait for `DEVICE_DELETED` (a device already gone counts as done).
    async fn device_del_wait(&self, dev: &str, timeout: Duration) -> Result<(), Error> {
        let mut events = self.qmp.subscribe();
        match self
            .qmp
            .execute("device_del", Some(serde_json::json!({ "id": dev })))
            .await
        {
            Ok(_) => {
                let wait = async {
                    while let Ok(ev) = events.recv().await {
                        if ev.name == "DEVICE_DELETED" && ev.data["device"] == dev {
                            return true;
                        }
                    }
                    false
                };
                if tokio::time::timeout(timeout, wait).await.unwrap_or(false) {
                    Ok(())
                } else {
                    Err(Error::unavailable(format!(
                        "the guest did not release {dev} within {timeout:?}"
                    )))
                }
            }
            // Already gone (e.g. a retry after a crash between the two steps).
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Hard reset of the guest.
    pub async fn reboot(&self) -> Result<(), Error> {
        Ok(self.qmp.system_reset().await?)
    }

    /// Clean stop: ACPI power button, wait up to `timeout` for the guest to power off, then QMP `quit`,
    /// then SIGKILL as a last resort.
    pub async fn shutdown(&self, timeout: Duration) -> Result<VmExit, Error> {
        self.requested.store(true, Ordering::SeqCst);
        if let Some(exit) = self.exit_info() {
            return Ok(exit);
        }
        match self.qmp.system_powerdown().await {
            Ok(()) => {
                if let Some(exit) = self.wait_exit_for(timeout).await {
                    return Ok(exit);
                }
                tracing::info!(instance_id = %self.instance_id, "guest did not power off in {timeout:?}; quitting QEMU");
            }
            Err(e) => {
                tracing::warn!(instance_id = %self.instance_id, error = %e, "system_powerdown failed")
            }
        }
        self.force_stop().await
    }

    /// Hard stop: QMP `quit`, then SIGKILL if QEMU is still there.
    pub async fn force_stop(&self) -> Result<VmExit, Error> {
        self.requested.store(true, Ordering::SeqCst);
        if let Err(e) = self.qmp.quit().await {
            tracing::warn!(instance_id = %self.instance_id, error = %e, "QMP quit failed; killing");
        } else if let Some(exit) = self.wait_exit_for(HARD_STOP_WAIT).await {
            return Ok(exit);
        }
        kill_ours(self.pid, &self.instance_id);
        self.wait_exit_for(HARD_STOP_WAIT).await.ok_or_else(|| {
            Error::internal(format!(
                "QEMU pid {} of {} survived SIGKILL for {HARD_STOP_WAIT:?}",
                self.pid, self.instance_id
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd(guest: bool, reason: &str) -> ShutdownEvent {
        ShutdownEvent {
            guest,
            reason: reason.into(),
        }
    }

    #[test]
    fn stat_lines_give_start_time_and_whether_exiting_is_done() {
        let line = |state: &str| {
            format!(
                "4242 (qemu-system-x86 (a) b) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 \
                 20 0 3 0 987654 123456 789 18446744073709551615"
            )
        };
        assert_eq!(parse_stat(&line("S")), Some((987654, false)));
        assert_eq!(parse_stat(&line("R")), Some((987654, false)));
        assert_eq!(parse_stat(&line("Z")), Some((987654, true)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn exit_classification() {
        assert_eq!(classify_exit(None, false), ExitKind::Crash);
        assert_eq!(classify_exit(None, true), ExitKind::Requested);
        assert_eq!(
            classify_exit(Some(&sd(true, "guest-shutdown")), false),
            ExitKind::GuestShutdown
        );
        assert_eq!(
            classify_exit(Some(&sd(true, "guest-panic")), false),
            ExitKind::Crash
        );
        assert_eq!(
            classify_exit(Some(&sd(false, "host-signal")), false),
            ExitKind::Requested
        );
        assert_eq!(
            classify_exit(Some(&sd(false, "host-qmp-quit")), true),
            ExitKind::Requested
        );
        assert_eq!(
            classify_exit(Some(&sd(true, "guest-shutdown")), true),
            ExitKind::Requested
        );
    }

    #[test]
    fn pidfile_parsing() {
        assert_eq!(parse_pidfile("1234\n"), Some(1234));
        assert_eq!(parse_pidfile(""), None);
        assert_eq!(parse_pidfile("x"), None);
        assert_eq!(parse_pidfile("1"), None);
        assert_eq!(parse_pidfile("-5"), None);
    }
}
