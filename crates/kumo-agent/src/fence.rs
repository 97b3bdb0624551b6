//! Self-fencing: an agent that has not reached the control plane for a lease period stops its HA
//! instances at once (SIGKILL), and starts none until it reaches the control plane again. By then
//! the control plane has declared the host down; it restarts those instances elsewhere only after
//! its own, longer, fencing wait — so an instance never runs on two hosts at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the agent knows about its contact with the control plane.
#[derive(Debug)]
pub struct SelfFence {
    after: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    last_ok: Instant,
    fenced: bool,
    /// The HA instances assigned to this host (from the latest assignments).
    ha: Vec<String>,
}

impl SelfFence {
    /// Fence after `after` without contact (the host lease's TTL).
    pub fn new(after: Duration) -> Self {
        SelfFence {
            after,
            inner: Mutex::new(Inner {
                last_ok: Instant::now(),
                fenced: false,
                ha: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The control plane answered. Returns true if this ends a fence.
    pub fn contact(&self) -> bool {
        let mut g = self.lock();
        g.last_ok = Instant::now();
        std::mem::replace(&mut g.fenced, false)
    }

    /// Record the HA instances currently assigned here.
    pub fn set_ha(&self, ids: Vec<String>) {
        self.lock().ha = ids;
    }

    /// True while fenced: HA instances must not start.
    pub fn fenced(&self) -> bool {
        self.lock().fenced
    }

    /// Check the deadline (pure apart from the clock): the HA instances to kill if fencing starts now.
    pub fn check(&self, now: Instant) -> Option<Vec<String>> {
        let mut g = self.lock();
        if g.fenced || now.duration_since(g.last_ok) < self.after {
            return None;
        }
        g.fenced = true;
        Some(g.ha.clone())
    }
}

/// SIGKILL the QEMUs of `ids` on this host (each checked to be that instance's QEMU).
pub fn kill_all(data_dir: &std::path::Path, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        let pidfile = crate::paths::run_dir(data_dir, id).join("qemu.pid");
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| crate::runtime::process::parse_pidfile(&s))
        else {
            continue;
        };
        if crate::runtime::process::is_our_qemu(pid, id) {
            // SAFETY: kill(2) of the QEMU of our instance, verified by its command line just above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            n += 1;
        }
    }
    n
}

/// Watch the deadline every second; fence when it passes.
pub fn spawn_watchdog(fence: std::sync::Arc<SelfFence>, data_dir: std::path::PathBuf) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(ids) = fence.check(Instant::now()) {
                let n = kill_all(&data_dir, &ids);
                tracing::error!(
                    killed = n,
                    "SELF-FENCING: no contact with the control plane for a lease period; stopped \
                     this host's HA instances (they may be restarted on another host)"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_once_after_the_deadline_and_contact_ends_it() {
        let f = SelfFence::new(Duration::from_secs(15));
        f.set_ha(vec!["i-1".into()]);
        let t0 = Instant::now();
        assert_eq!(f.check(t0 + Duration::from_secs(14)), None);
        assert_eq!(
            f.check(t0 + Duration::from_secs(16)),
            Some(vec!["i-1".to_string()])
        );
        assert!(f.fenced());
        assert_eq!(f.check(t0 + Duration::from_secs(20)), None, "once");
        assert!(f.contact(), "contact ends the fence");
        assert!(!f.fenced());
    }
}
