//! The conformance suite against a real etcd (Debian `etcd-server`), one fresh etcd per test,
//! listening on loopback only and killed by PID when the test ends.

use std::sync::Arc;

use kumo_store::{EtcdKv, Kv};
use kumo_testutil::etcd::EtcdServer;

async fn setup() -> (Arc<dyn Kv>, EtcdServer) {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("start etcd");
    let kv = EtcdKv::connect(std::slice::from_ref(&server.endpoint))
        .await
        .expect("connect to etcd");
    (Arc::new(kv), server)
}

kumo_store::conformance_suite!(setup);
