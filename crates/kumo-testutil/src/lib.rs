//! Helpers for kumo's tests.
//!
//! Network safety: every test that creates interfaces, bridges or VMs first calls
//! [`enter_private_netns`]. It moves the calling thread (and so every thread and process it starts
//! afterwards) into a fresh, anonymous network namespace with only `lo` up. Nothing it creates is
//! visible outside, no route leads to the machine's uplink, and the kernel removes the namespace with
//! everything in it once the last process inside exits. Tests run one per process under nextest.
//!
//! Call it at the very start of a plain `#[test]` fn, before building a tokio runtime, so the runtime's
//! threads are created inside the namespace.

pub mod etcd;

use std::process::Command;

/// Move this thread into a new network namespace and bring `lo` up. Panics (naming the missing
/// privilege or package) if that is not possible: such a test must fail, never pass silently.
pub fn enter_private_netns() {
    // SAFETY: unshare has no memory-safety preconditions; it only changes this thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        panic!(
            "unshare(CLONE_NEWNET) failed: {} — network tests need root (CAP_SYS_ADMIN)",
            std::io::Error::last_os_error()
        );
    }
    run("ip", &["link", "set", "lo", "up"]);
}

/// Panic with the Debian package to install if `binary` is not on PATH.
pub fn require(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false)
        || std::path::Path::new(binary).is_file();
    assert!(
        found,
        "`{binary}` not found: install the Debian package `{package}` (scripts/setup.sh does)"
    );
}

/// Run a command, panicking with its output if it fails. Returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the PIDs registered with it when dropped (SIGKILL), so a failing test leaves no process.
#[derive(Default)]
pub struct PidGuard {
    pids: Vec<i32>,
}

impl PidGuard {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, pid: i32) {
        self.pids.push(pid);
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: kill(2) with a PID this test started; no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// True if a process with this PID exists (and is not a zombie we could reap).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
