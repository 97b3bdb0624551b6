//! The conformance suite against the embedded SQLite backend (a fresh database per test).

use std::sync::Arc;

use kumo_store::{Kv, SqliteKv};

async fn setup() -> (Arc<dyn Kv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let kv = SqliteKv::open(&dir.path().join("store.db")).expect("open sqlite store");
    (Arc::new(kv), dir)
}

kumo_store::conformance_suite!(setup);
