//! The single writer thread and its group commit.
//!
//! Every mutation (txns, lease grant/keepalive/revoke, compaction, lease expiry) is a [`Request`] on
//! one channel. The thread takes the first queued request, drains up to [`MAX_BATCH`] more, and
//! applies them in order inside ONE SQLite transaction, each under its own savepoint: a request that
//! fails is rolled back alone, and every request sees the effects of those before it in the batch
//! (each write gets its own revision). One COMMIT (one WAL fsync with `synchronous=FULL`) makes the
//! whole batch durable; only then are the events broadcast and the callers answered. If the commit
//! fails, every caller of the batch gets the error and nothing is broadcast.
//!
//! Invariant: `self.rev` equals `meta.rev` in the database outside a batch.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use super::rows::{self, db_err};
use crate::keys::compare_holds;
use crate::{
    EventKind, KeyValue, LeaseId, Op, OpResult, Result, Revision, StoreError, Txn, TxnResult,
    WatchEvent,
};

/// Most requests committed together.
pub(crate) const MAX_BATCH: usize = 256;
/// How often expired leases are looked for.
pub(crate) const EXPIRY_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) type EventBatch = Arc<Vec<WatchEvent>>;

pub(crate) enum Body {
    Txn(Txn),
    LeaseGrant(i64),
    LeaseKeepalive(LeaseId),
    LeaseRevoke(LeaseId),
    Compact(Revision),
}

pub(crate) enum Outcome {
    Txn(TxnResult),
    Lease(LeaseId),
    Ttl(i64),
    Done,
}

pub(crate) struct Request {
    pub body: Body,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

pub(crate) struct Writer {
    conn: Connection,
    rev: Revision,
    compacted: Revision,
    events: broadcast::Sender<EventBatch>,
}

pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Writer {
    pub(crate) fn new(conn: Connection, events: broadcast::Sender<EventBatch>) -> Result<Self> {
        let rev = rows::meta(&conn, "rev")?;
        let compacted = rows::meta(&conn, "compacted")?;
        Ok(Writer {
            conn,
            rev,
            compacted,
            events,
        })
    }

    /// Serve requests until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        let mut last_expiry = Instant::now();
        loop {
            let mut batch = Vec::new();
            match rx.recv_timeout(EXPIRY_INTERVAL) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let mut expired = Vec::new();
            if last_expiry.elapsed() >= EXPIRY_INTERVAL {
                last_expiry = Instant::now();
                match self.expired_leases() {
                    Ok(ids) => expired = ids,
                    Err(e) => tracing::warn!("lease expiry scan failed: {e}"),
                }
            }
            if !batch.is_empty() || !expired.is_empty() {
                self.run_batch(batch, &expired);
            }
        }
    }

    fn expired_leases(&self) -> Result<Vec<LeaseId>> {
        self.conn
            .prepare_cached("SELECT id FROM leases WHERE expires_at_ms <= ?1")
            .and_then(|mut s| s.query_map([now_ms()], |r| r.get(0))?.collect())
            .map_err(db_err("scan leases"))
    }

    fn run_batch(&mut self, batch: Vec<Request>, expired: &[LeaseId]) {
        let (start_rev, start_compacted) = (self.rev, self.compacted);
        if let Err(e) = self
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(db_err("begin"))
        {
            for r in batch {
                let _ = r.reply.send(Err(clone_err(&e)));
            }
            return;
        }
        let mut events = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for req in batch {
            let res = self.isolated(|w, ev| w.apply(&req.body, ev), &mut events);
            answers.push((req.reply, res));
        }
        for &id in expired {
            if let Err(e) = self.isolated(
                |w, ev| w.revoke(id, ev).map(|()| Outcome::Done),
                &mut events,
            ) {
                tracing::warn!("expiring lease {id}: {e}");
            }
        }
        let commit = rows::set_meta(&self.conn, "rev", self.rev)
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(db_err("commit")));
        match commit {
            Ok(()) => {
                if !events.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.events.send(Arc::new(events));
                }
                for (reply, res) in answers {
                    let _ = reply.send(res);
                }
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.rev = start_rev;
                self.compacted = start_compacted;
                for (reply, _) in answers {
                    let _ = reply.send(Err(clone_err(&e)));
                }
            }
        }
    }

    /// Run `f` under a savepoint; on error undo its database changes, revision and events.
    fn isolated(
        &mut self,
        f: impl FnOnce(&mut Self, &mut Vec<WatchEvent>) -> Result<Outcome>,
        events: &mut Vec<WatchEvent>,
    ) -> Result<Outcome> {
        let (rev, compacted) = (self.rev, self.compacted);
        self.conn
            .execute_batch("SAVEPOINT req")
            .map_err(db_err("savepoint"))?;
        let mut mine = Vec::new();
        match f(self, &mut mine) {
            Ok(out) => {
                self.conn
                    .execute_batch("RELEASE req")
                    .map_err(db_err("release"))?;
                events.extend(mine);
                Ok(out)
            }
            Err(e) => {
                self.rev = rev;
                self.compacted = compacted;
                self.conn
                    .execute_batch("ROLLBACK TO req; RELEASE req")
                    .map_err(db_err("rollback to savepoint"))?;
                Err(e)
            }
        }
    }

    fn apply(&mut self, body: &Body, events: &mut Vec<WatchEvent>) -> Result<Outcome> {
        match body {
            Body::Txn(t) => self.txn(t, events).map(Outcome::Txn),
            Body::LeaseGrant(ttl) => self.lease_grant(*ttl).map(Outcome::Lease),
            Body::LeaseKeepalive(id) => self.lease_keepalive(*id).map(Outcome::Ttl),
            Body::LeaseRevoke(id) => self.revoke(*id, events).map(|()| Outcome::Done),
            Body::Compact(rev) => self.compact(*rev).map(|()| Outcome::Done),
        }
    }

    fn txn(&mut self, t: &Txn, events: &mut Vec<WatchEvent>) -> Result<TxnResult> {
        let mut succeeded = true;
        for c in &t.compare {
            if !compare_holds(c, rows::get(&self.conn, &c.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &t.success } else { &t.failure };
        let rev = self.rev + 1;
        let first_event = events.len();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                Op::Put { key, value, lease } => {
                    if *lease != 0 && !self.lease_exists(*lease)? {
                        return Err(StoreError::LeaseNotFound(*lease));
                    }
                    let prev = rows::get(&self.conn, key)?;
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    rows::put_kv(&self.conn, &kv)?;
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv,
                        prev: prev.clone(),
                    });
                    OpResult::Put { prev }
                }
                Op::Delete { key } => {
                    let prev = rows::get(&self.conn, key)?;
                    let deleted = prev
                        .map(|p| self.delete(p, rev, events))
                        .transpose()?
                        .is_some();
                    OpResult::Delete {
                        deleted: i64::from(deleted),
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let victims = rows::prefix_keys(&self.conn, prefix)?;
                    let deleted = i64::try_from(victims.len()).unwrap_or(i64::MAX);
                    for p in victims {
                        self.delete(p, rev, events)?;
                    }
                    OpResult::Delete { deleted }
                }
                Op::Get { key } => OpResult::Get {
                    kv: rows::get(&self.conn, key)?,
                },
            });
        }
        self.commit_events(rev, &events[first_event..])?;
        Ok(TxnResult {
            succeeded,
            revision: self.rev,
            results,
        })
    }

    fn delete(&self, prev: KeyValue, rev: Revision, events: &mut Vec<WatchEvent>) -> Result<()> {
        rows::delete_kv(&self.conn, &prev.key)?;
        let kv = KeyValue {
            key: prev.key.clone(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: 0,
        };
        events.push(WatchEvent {
            kind: EventKind::Delete,
            kv,
            prev: Some(prev),
        });
        Ok(())
    }

    /// Log the events of one write and advance the revision if there were any.
    fn commit_events(&mut self, rev: Revision, events: &[WatchEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        for (seq, ev) in events.iter().enumerate() {
            rows::append_log(&self.conn, i64::try_from(seq).unwrap_or(i64::MAX), ev)?;
        }
        self.rev = rev;
        Ok(())
    }

    fn lease_exists(&self, id: LeaseId) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM leases WHERE id = ?1")
            .and_then(|mut s| s.exists([id]))
            .map_err(db_err("lease lookup"))
    }

    fn lease_grant(&mut self, ttl: i64) -> Result<LeaseId> {
        let ttl = ttl.max(1);
        self.conn
            .prepare_cached("INSERT INTO leases (ttl, expires_at_ms) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![ttl, now_ms() + ttl * 1000]))
            .map_err(db_err("grant lease"))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn lease_keepalive(&mut self, id: LeaseId) -> Result<i64> {
        let now = now_ms();
        let ttl: Option<i64> = self
            .conn
            .prepare_cached("SELECT ttl FROM leases WHERE id = ?1 AND expires_at_ms > ?2")
            .and_then(|mut s| s.query_row(params![id, now], |r| r.get(0)).optional())
            .map_err(db_err("keepalive lookup"))?;
        let ttl = ttl.ok_or(StoreError::LeaseNotFound(id))?;
        self.conn
            .prepare_cached("UPDATE leases SET expires_at_ms = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, now + ttl * 1000]))
            .map_err(db_err("keepalive"))?;
        Ok(ttl)
    }

    /// Delete the lease and its keys (one revision if it had keys).
    fn revoke(&mut self, id: LeaseId, events: &mut Vec<WatchEvent>) -> Result<()> {
        let removed = self
            .conn
            .prepare_cached("DELETE FROM leases WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(db_err("revoke"))?;
        if removed == 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        let keys: Vec<String> = self
            .conn
            .prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")
            .and_then(|mut s| {
                s.query_map([id], |r| rows::key_string(r.get(0)?))?
                    .collect()
            })
            .map_err(db_err("lease keys"))?;
        let ops = keys.into_iter().map(Op::delete).collect();
        self.txn(
            &Txn {
                success: ops,
                ..Default::default()
            },
            events,
        )
        .map(drop)
    }

    fn compact(&mut self, rev: Revision) -> Result<()> {
        if rev > self.rev {
            return Err(StoreError::Backend(format!(
                "cannot compact to revision {rev}: it is in the future (current {})",
                self.rev
            )));
        }
        if rev <= self.compacted {
            return Err(StoreError::Compacted {
                requested: rev,
                oldest: self.compacted,
            });
        }
        self.conn
            .prepare_cached("DELETE FROM log WHERE rev < ?1")
            .and_then(|mut s| s.execute([rev]))
            .map_err(db_err("compact"))?;
        rows::set_meta(&self.conn, "compacted", rev)?;
        self.compacted = rev;
        Ok(())
    }
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Compacted { requested, oldest } => StoreError::Compacted {
            requested: *requested,
            oldest: *oldest,
        },
        StoreError::LeaseNotFound(id) => StoreError::LeaseNotFound(*id),
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Backend(s) => StoreError::Backend(s.clone()),
    }
}
