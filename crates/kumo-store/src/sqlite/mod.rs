//! The embedded SQLite backend (the default store).
//!
//! - One database file in WAL mode with `synchronous=FULL`: a write is acknowledged only after the
//!   WAL commit has been fsynced, so it survives `kill -9` and power loss.
//! - All mutations go through one writer thread that group-commits (see [`writer`]); reads use a small
//!   pool of separate connections (WAL readers never block the writer and see only committed data).
//! - Watch: the writer broadcasts each committed batch of events; a watcher subscribes first, then
//!   replays the `log` table up to a snapshot revision, then forwards live events newer than that
//!   snapshot. A watcher that falls behind the broadcast re-subscribes and replays the gap from the
//!   log, so it never silently loses events (if the gap has been compacted it gets `Compacted`).
//! - One `SqliteKv` per database file (and per process): the writer caches the current revision, so
//!   a second writer on the same file would corrupt the numbering. Reads may be many.
//! - Leases expire in the writer thread (checked every 500 ms); on open every lease's expiry is reset
//!   to now + TTL, as etcd does after a leader change, so downtime does not expire them all.

mod rows;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, oneshot};

use self::rows::db_err;
use self::writer::{Body, EventBatch, Outcome, Request, Writer};
use crate::keys::prefix_end;
use crate::{Kv, LeaseId, ListPage, Result, Revision, StoreError, Txn, TxnResult, WatchStream};

/// Most idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Broadcast buffer, in committed batches; a slower watcher catches up from the log.
const EVENT_BUFFER: usize = 1024;

/// The SQLite-backed [`Kv`]. Cheap to share behind an `Arc`; dropping the last handle stops the
/// writer thread after it has finished the requests already queued.
pub struct SqliteKv {
    requests: mpsc::Sender<Request>,
    readers: Arc<Readers>,
    events: broadcast::Sender<EventBatch>,
}

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err("busy_timeout"))?;
    Ok(())
}

impl Readers {
    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db_err("open reader"))?;
        configure(&conn)?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(db_err("query_only"))?;
        Ok(conn)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().map_err(|_| poisoned())?.pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&mut conn);
        let mut idle = self.idle.lock().map_err(|_| poisoned())?;
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    /// Run a read on a blocking thread with a pooled connection.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.with(f))
            .await
            .map_err(|e| StoreError::Backend(format!("sqlite read task failed: {e}")))?
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("sqlite reader pool lock poisoned".into())
}

impl SqliteKv {
    /// Open (creating if needed) the database at `path` and start the writer thread.
    ///
    /// Synchronous (it does blocking file I/O once); it needs no tokio runtime, but the returned
    /// store's methods must be called from one.
    pub fn open(path: &Path) -> Result<SqliteKv> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("open sqlite db {}: {e}", path.display())))?;
        configure(&conn)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(db_err("set WAL + synchronous=FULL"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(db_err("read journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "sqlite refused WAL mode (got {mode})"
            )));
        }
        conn.execute_batch(rows::SCHEMA)
            .map_err(db_err("create schema"))?;
        conn.execute(
            "UPDATE leases SET expires_at_ms = ?1 + ttl * 1000",
            [writer::now_ms()],
        )
        .map_err(db_err("refresh leases"))?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let writer = Writer::new(conn, events.clone())?;
        let (requests, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kumo-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(format!("spawn sqlite writer thread: {e}")))?;
        let readers = Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(SqliteKv {
            requests,
            readers,
            events,
        })
    }

    async fn submit(&self, body: Body) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request { body, reply })
            .map_err(|_| StoreError::Unavailable("sqlite writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("sqlite writer thread dropped a request".into()))?
    }
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Backend(format!(
        "sqlite writer answered {what} with the wrong outcome"
    ))
}

#[async_trait]
impl Kv for SqliteKv {
    async fn revision(&self) -> Result<Revision> {
        self.readers.read(|c| rows::meta(c, "rev")).await
    }

    async fn get(&self, key: &str) -> Result<Option<crate::KeyValue>> {
        // A point read by primary key on a small, cached database takes microseconds: run it inline
        // rather than paying a blocking-pool hand-off (decision 0006). Ranges still go to the pool.
        self.readers.with(|c| rows::get(c, key))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let prefix = prefix.as_bytes().to_vec();
        let start_after = start_after.map(|s| s.as_bytes().to_vec());
        self.readers
            .read(move |c| {
                let tx = c.transaction().map_err(db_err("begin read"))?;
                let revision = rows::meta(&tx, "rev")?;
                let start = match start_after {
                    // The smallest key strictly after `s` is `s` + NUL.
                    Some(mut s) if s >= prefix => {
                        s.push(0);
                        s
                    }
                    _ => prefix.clone(),
                };
                let end = prefix_end(&prefix);
                let fetch = if limit == 0 { 0 } else { limit + 1 };
                let mut kvs = rows::range(&tx, &start, end.as_deref(), fetch)?;
                let more = limit != 0 && kvs.len() > limit;
                kvs.truncate(if limit == 0 { kvs.len() } else { limit });
                tx.finish().map_err(db_err("end read"))?;
                Ok(ListPage {
                    kvs,
                    revision,
                    more,
                })
            })
            .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        match self.submit(Body::Txn(txn)).await? {
            Outcome::Txn(r) => Ok(r),
            _ => Err(unexpected("txn")),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        watch::start(
            self.events.clone(),
            Arc::clone(&self.readers),
            prefix.to_owned(),
            from,
        )
        .await
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<LeaseId> {
        match self.submit(Body::LeaseGrant(ttl_secs)).await? {
            Outcome::Lease(id) => Ok(id),
            _ => Err(unexpected("lease_grant")),
        }
    }

    async fn lease_keepalive(&self, id: LeaseId) -> Result<i64> {
        match self.submit(Body::LeaseKeepalive(id)).await? {
            Outcome::Ttl(ttl) => Ok(ttl),
            _ => Err(unexpected("lease_keepalive")),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        match self.submit(Body::LeaseRevoke(id)).await? {
            Outcome::Done => Ok(()),
            _ => Err(unexpected("lease_revoke")),
        }
    }

    async fn compact(&self, rev: Revision) -> Result<()> {
        match self.submit(Body::Compact(rev)).await? {
            Outcome::Done => Ok(()),
            _ => Err(unexpected("compact")),
        }
    }
}
