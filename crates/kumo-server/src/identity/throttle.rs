//! Login throttling: wrong passwords for one user name slow down further attempts on that name, so
//! a password cannot be guessed online at speed (and argon2's cost is not spent on a flood).
//!
//! Policy ([`Throttle`], pure; `now` is passed in): the first [`FREE_FAILURES`] failures within
//! [`WINDOW`] cost nothing; each further failure locks the name for [`BASE_LOCK`], doubling per
//! failure up to [`MAX_LOCK`]. An attempt on a locked name is refused before its password is
//! checked (429 with `Retry-After`) and does not count. A success clears the name. The cap keeps a
//! stranger who knows a user name from locking its owner out for long: at worst the owner waits a
//! minute, and API tokens and access keys are not affected.
//!
//! State is in memory, per server: a restart forgets it, and each server of a cluster counts on its
//! own (three servers allow three times the attempts).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures within [`WINDOW`] that cost nothing.
pub const FREE_FAILURES: u32 = 5;
/// How long failures are remembered, counted from the first.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The lock after the first failure beyond the free ones; it doubles with each further failure.
pub const BASE_LOCK: Duration = Duration::from_secs(1);
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(60);
/// Names remembered at most: made-up names cannot fill memory (expired entries go first, then the
/// oldest).
pub const MAX_NAMES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Failed logins by user name.
#[derive(Debug, Default)]
pub struct Throttle {
    names: HashMap<String, Entry>,
}

impl Throttle {
    /// `Err(wait)` while `user` is locked.
    pub fn check(&self, user: &str, now: Instant) -> Result<(), Duration> {
        match self.names.get(user).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Count a wrong password for `user`; the lock it starts, if any.
    pub fn failed(&mut self, user: &str, now: Instant) -> Option<Duration> {
        if !self.names.contains_key(user) && self.names.len() >= MAX_NAMES {
            self.make_room(now);
        }
        let fresh = Entry {
            failures: 0,
            first: now,
            locked_until: None,
        };
        let e = self.names.entry(user.to_string()).or_insert(fresh);
        if now.saturating_duration_since(e.first) > WINDOW {
            *e = fresh;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures <= FREE_FAILURES {
            return None;
        }
        let doublings = (e.failures - FREE_FAILURES - 1).min(16);
        let lock = BASE_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
        e.locked_until = Some(now + lock);
        Some(lock)
    }

    /// A correct password: `user` starts afresh.
    pub fn succeeded(&mut self, user: &str) {
        self.names.remove(user);
    }

    fn make_room(&mut self, now: Instant) {
        self.names.retain(|_, e| {
            now.saturating_duration_since(e.first) <= WINDOW
                || e.locked_until.is_some_and(|u| u > now)
        });
        if self.names.len() >= MAX_NAMES
            && let Some(oldest) = self
                .names
                .iter()
                .min_by_key(|(_, e)| e.first)
                .map(|(k, _)| k.clone())
        {
            self.names.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_then_doubling_locks_up_to_the_cap() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed("mia", t0), None);
            assert!(t.check("mia", t0).is_ok());
        }
        assert_eq!(t.failed("mia", t0), Some(Duration::from_secs(1)));
        assert_eq!(t.check("mia", t0), Err(Duration::from_secs(1)));
        // Another name is not affected.
        assert!(t.check("olga", t0).is_ok());
        // After the lock, the next failure locks for twice as long, and so on up to the cap.
        let mut now = t0 + Duration::from_secs(1);
        assert!(t.check("mia", now).is_ok());
        let mut locks = Vec::new();
        for _ in 0..9 {
            let lock = t.failed("mia", now).expect("locked");
            locks.push(lock.as_secs());
            now += lock;
        }
        assert_eq!(locks, [2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn success_clears_and_the_window_forgets() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..=FREE_FAILURES {
            t.failed("mia", t0);
        }
        assert!(t.check("mia", t0).is_err());
        t.succeeded("mia");
        assert!(t.check("mia", t0).is_ok());
        assert_eq!(t.failed("mia", t0), None);
        // Failures older than the window are forgotten.
        for _ in 0..FREE_FAILURES {
            t.failed("olga", t0);
        }
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(t.failed("olga", later), None);
    }

    #[test]
    fn made_up_names_cannot_grow_it_without_bound() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_NAMES + 50 {
            t.failed(&format!("u{i}"), t0);
        }
        assert!(t.names.len() <= MAX_NAMES);
        // A name still locked survives the pruning of expired ones; an unlocked expired one goes.
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            t.failed("mia", t0);
            t.failed("olga", t0);
        }
        let late = t0 + WINDOW - Duration::from_millis(500);
        assert_eq!(t.failed("mia", late), Some(BASE_LOCK));
        let prune = t0 + WINDOW + Duration::from_millis(1);
        t.make_room(prune);
        assert!(t.check("mia", prune).is_err());
        assert!(!t.names.contains_key("olga"));
    }
}
