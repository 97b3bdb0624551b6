//! Small process and file helpers shared by the daemons the agent supervises (dnsmasq).

use std::path::Path;
use std::time::{Duration, Instant};

use kumo_types::{Error, Result};

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::internal_with(what, e)
}

pub(crate) fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::internal_with(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

/// Write a file atomically: `<path>.tmp`, fsync, rename.
pub(crate) fn write_atomic(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    f.write_all(content.as_bytes())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

/// True if the PID is a live (non-zombie) process.
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

pub(crate) fn signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions; the PID was verified to be our dnsmasq.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        return Err(Error::internal_with(
            format!("kill({pid}, {sig})"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
