//! Schema and row mapping for the SQLite backend.
//!
//! Tables (kine-like):
//! - `kv`: the current value of every live key (`key` is a BLOB so byte-order range scans on the
//!   primary key serve prefixes).
//! - `log`: one row per event (`rev`, `seq` within the revision), with the previous value, for
//!   watch replay. Rows older than the compacted revision are deleted by `compact`.
//! - `meta`: `rev` (current revision) and `compacted` (oldest revision still replayable).
//! - `leases`: id, TTL and absolute expiry in unix milliseconds.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::keys::prefix_end;
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    prev_value BLOB,
    prev_create INTEGER,
    prev_mod INTEGER,
    prev_version INTEGER,
    prev_lease INTEGER,
    PRIMARY KEY (rev, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('rev', 1), ('compacted', 0);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
";

pub(crate) fn db_err(context: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("sqlite: {context}: {e}"))
}

pub(crate) fn key_string(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

const KV_COLS: &str = "key, value, create_rev, mod_rev, version, lease";

fn kv_from_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_string(row.get(0)?)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        version: row.get(4)?,
        lease: row.get(5)?,
    })
}

pub(crate) fn meta(conn: &Connection, name: &str) -> crate::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
        .map_err(db_err("read meta"))
}

pub(crate) fn set_meta(conn: &Connection, name: &str, value: i64) -> crate::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![name, value]))
        .map(drop)
        .map_err(db_err("write meta"))
}

pub(crate) fn get(conn: &Connection, key: &str) -> crate::Result<Option<KeyValue>> {
    conn.prepare_cached(&format!("SELECT {KV_COLS} FROM kv WHERE key = ?1"))
        .and_then(|mut s| s.query_row([key.as_bytes()], kv_from_row).optional())
        .map_err(db_err("get"))
}

/// Keys in `[start, end)` (end `None` = unbounded), in byte order, at most `limit` (0 = all).
pub(crate) fn range(
    conn: &Connection,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> crate::Result<Vec<KeyValue>> {
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    // Two statements, not `(?2 IS NULL OR key < ?2)`: SQLite cannot bound an index scan by an
    // optional parameter, and would read every key after `start` to the end of the table.
    let rows = match end {
        Some(end) => conn
            .prepare_cached(&format!(
                "SELECT {KV_COLS} FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            ))
            .and_then(|mut s| {
                s.query_map(params![start, end, limit], kv_from_row)?
                    .collect()
            }),
        None => conn
            .prepare_cached(&format!(
                "SELECT {KV_COLS} FROM kv WHERE key >= ?1 ORDER BY key LIMIT ?2"
            ))
            .and_then(|mut s| s.query_map(params![start, limit], kv_from_row)?.collect()),
    };
    rows.map_err(db_err("range"))
}

/// The keys with `prefix`, in byte order.
pub(crate) fn prefix_keys(conn: &Connection, prefix: &str) -> crate::Result<Vec<KeyValue>> {
    let end = prefix_end(prefix.as_bytes());
    range(conn, prefix.as_bytes(), end.as_deref(), 0)
}

pub(crate) fn put_kv(conn: &Connection, kv: &KeyValue) -> crate::Result<()> {
    conn.prepare_cached(
        "INSERT INTO kv (key, value, create_rev, mod_rev, version, lease) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, create_rev = excluded.create_rev,
           mod_rev = excluded.mod_rev, version = excluded.version, lease = excluded.lease",
    )
    .and_then(|mut s| {
        s.execute(params![
            kv.key.as_bytes(),
            kv.value,
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease
        ])
    })
    .map(drop)
    .map_err(db_err("put"))
}

pub(crate) fn delete_kv(conn: &Connection, key: &str) -> crate::Result<()> {
    conn.prepare_cached("DELETE FROM kv WHERE key = ?1")
        .and_then(|mut s| s.execute([key.as_bytes()]))
        .map(drop)
        .map_err(db_err("delete"))
}

pub(crate) fn append_log(conn: &Connection, seq: i64, ev: &WatchEvent) -> crate::Result<()> {
    let kind = match ev.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    };
    let p = ev.prev.as_ref();
    conn.prepare_cached(
        "INSERT INTO log (rev, seq, kind, key, value, create_rev, version, lease,
                          prev_value, prev_create, prev_mod, prev_version, prev_lease)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            ev.kv.mod_revision,
            seq,
            kind,
            ev.kv.key.as_bytes(),
            ev.kv.value,
            ev.kv.create_revision,
            ev.kv.version,
            ev.kv.lease,
            p.map(|p| &p.value),
            p.map(|p| p.create_revision),
            p.map(|p| p.mod_revision),
            p.map(|p| p.version),
            p.map(|p| p.lease),
        ])
    })
    .map(drop)
    .map_err(db_err("append log"))
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, WatchEvent)> {
    let key = key_string(row.get(3)?)?;
    let prev_value: Option<Vec<u8>> = row.get(8)?;
    let prev = match prev_value {
        Some(value) => Some(KeyValue {
            key: key.clone(),
            value,
            create_revision: row.get(9)?,
            mod_revision: row.get(10)?,
            version: row.get(11)?,
            lease: row.get(12)?,
        }),
        None => None,
    };
    let kind: i64 = row.get(2)?;
    Ok((
        row.get(1)?,
        WatchEvent {
            kind: if kind == 0 {
                EventKind::Put
            } else {
                EventKind::Delete
            },
            kv: KeyValue {
                key,
                value: row.get(4)?,
                create_revision: row.get(5)?,
                mod_revision: row.get(0)?,
                version: row.get(6)?,
                lease: row.get(7)?,
            },
            prev,
        },
    ))
}

/// Log events for keys with `prefix` after position `(rev, seq)` (exclusive) up to revision
/// `through` (inclusive), in order, at most `limit`. Returns `(seq, event)` pairs.
pub(crate) fn log_page(
    conn: &Connection,
    prefix: &str,
    after: (Revision, i64),
    through: Revision,
    limit: i64,
) -> crate::Result<Vec<(i64, WatchEvent)>> {
    let end = prefix_end(prefix.as_bytes());
    conn.prepare_cached(
        "SELECT rev, seq, kind, key, value, create_rev, version, lease,
                prev_value, prev_create, prev_mod, prev_version, prev_lease
         FROM log
         WHERE (rev > ?1 OR (rev = ?1 AND seq > ?2)) AND rev <= ?3
           AND key >= ?4 AND (?5 IS NULL OR key < ?5)
         ORDER BY rev, seq LIMIT ?6",
    )
    .and_then(|mut s| {
        s.query_map(
            params![after.0, after.1, through, prefix.as_bytes(), end, limit],
            event_from_row,
        )?
        .collect()
    })
    .map_err(db_err("read log"))
}
