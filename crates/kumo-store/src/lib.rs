//! The store: a key/value interface with a global revision, compare-and-swap transactions, prefix
//! listing with pagination, watch from a revision, and leases — in the manner of k3s's kine.
//!
//! Two backends implement [`Kv`]: [`sqlite::SqliteKv`] (embedded, the default) and [`etcd::EtcdKv`]
//! (an etcd v3 cluster). [`conformance`] holds the one test suite both must pass.
//!
//! Semantics (identical in both backends — the conformance suite checks each):
//! - Every successful write (a txn whose chosen branch puts at least one key or deletes at least one
//!   existing key) advances the global revision by exactly one; all its puts/deletes share that
//!   revision. Failed txns, read-only txns and deletes that remove nothing leave it unchanged (as in
//!   etcd). Lease grant/keepalive do not write; revoking or expiring a lease with keys is one write.
//! - `KeyValue::create_revision` is the revision that created the key, `mod_revision` the last that
//!   changed it, `version` counts changes since creation (1 on create).
//! - A [`Compare`] on a missing key sees `mod_revision == 0`, `create_revision == 0`, `version == 0`
//!   and no value (so a `Value` compare on a missing key is false whatever the operator).
//! - A write returns only after it is durable.
//! - A watch from revision `r` yields every event with `revision >= r` in order, then live events; if
//!   `r` has been compacted away the stream yields [`StoreError::Compacted`] first. `compact(rev)`
//!   keeps `rev` itself: watching from `rev` still works, from `rev - 1` gets `Compacted`. An error
//!   item ends the stream; consumers re-watch from the last revision they saw + 1.
//! - Keys attached to a lease are deleted (with delete events) when the lease expires or is revoked.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub type Revision = i64;
pub type LeaseId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("revision {requested} has been compacted (oldest available is {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store backend error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    /// 0 when the key has no lease.
    pub lease: LeaseId,
}

/// What a compare looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(Revision),
    CreateRevision(Revision),
    Version(i64),
    Value(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        }
    }
    /// The key was last modified at exactly `rev` (0 = absent).
    pub fn mod_revision(key: impl Into<String>, rev: Revision) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(rev),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
    },
    Delete {
        key: String,
    },
    /// Delete every key with this prefix.
    DeletePrefix {
        prefix: String,
    },
    Get {
        key: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
    pub fn get(key: impl Into<String>) -> Self {
        Op::Get { key: key.into() }
    }
}

/// If every compare holds, run `success`, else `failure`. Atomic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Put {
        prev: Option<KeyValue>,
    },
    /// Number of keys deleted.
    Delete {
        deleted: i64,
    },
    Get {
        kv: Option<KeyValue>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    /// Store revision after the txn (the new one if it wrote).
    pub revision: Revision,
    pub results: Vec<OpResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub kvs: Vec<KeyValue>,
    /// Revision the page was read at.
    pub revision: Revision,
    /// True if more keys follow the last one returned.
    pub more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For deletes: the key with `mod_revision` = the delete's revision and an empty value.
    pub kv: KeyValue,
    /// Previous value, when the backend has it.
    pub prev: Option<KeyValue>,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// Current global revision.
    async fn revision(&self) -> Result<Revision>;
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys with `prefix`, in byte order, strictly after `start_after` (if given), at most `limit`
    /// (0 = no limit).
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize)
    -> Result<ListPage>;
    async fn txn(&self, txn: Txn) -> Result<TxnResult>;
    /// Events for keys with `prefix` from revision `from` (inclusive; 0 = from now on).
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;
    async fn lease_grant(&self, ttl_secs: i64) -> Result<LeaseId>;
    /// Refresh a lease; returns its TTL. `LeaseNotFound` once it has expired.
    async fn lease_keepalive(&self, id: LeaseId) -> Result<i64>;
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;
    /// Drop history older than `rev` (watches from before it get `Compacted`).
    async fn compact(&self, rev: Revision) -> Result<()>;

    /// Unconditional put; returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let r = self
            .txn(Txn {
                success: vec![Op::put(key, value)],
                ..Default::default()
            })
            .await?;
        Ok(r.revision)
    }
    /// Unconditional delete; returns true if the key existed.
    async fn delete(&self, key: &str) -> Result<bool> {
        let r = self
            .txn(Txn {
                success: vec![Op::delete(key)],
                ..Default::default()
            })
            .await?;
        Ok(matches!(r.results.first(), Some(OpResult::Delete { deleted }) if *deleted > 0))
    }
}

pub mod conformance;
pub mod etcd;
mod keys;
pub mod sqlite;

pub use etcd::EtcdKv;
pub use keys::prefix_end;
pub use sqlite::SqliteKv;
