//! A small time-bounded cache for credential lookups (tokens, access keys, project existence), so a
//! busy client does not cost a store read (or a decryption) per request. An entry lives `ttl`: a
//! revoked credential stops working within that time on other servers (at once on the server that
//! revoked it, which evicts its own entry).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(t, _)| t.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: String, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.max {
            let ttl = self.ttl;
            entries.retain(|_, (t, _)| t.elapsed() < ttl);
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    pub fn evict(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Drop every entry (a user or membership changed: what was resolved from it is stale).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_evict() {
        let c = TtlCache::new(Duration::from_millis(50), 2);
        c.put("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        c.evict("a");
        assert_eq!(c.get("a"), None);
        c.put("b".into(), 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("b"), None, "expired");
        c.put("c".into(), 3);
        c.put("d".into(), 4);
        c.put("e".into(), 5);
        assert_eq!(c.get("e"), Some(5), "bounded, newest kept");
    }
}
