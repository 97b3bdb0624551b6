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

/// A dead endpoint listed first is skipped: requests fail over to the live one.
#[tokio::test]
async fn fails_over_past_a_dead_endpoint() {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("start etcd");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let kv = EtcdKv::connect(&[dead, server.endpoint.clone()])
        .await
        .expect("connect with failover");
    let rev = kv.put("/fo/k", b"v".to_vec()).await.expect("put");
    let got = kv.get("/fo/k").await.expect("get").expect("key present");
    assert_eq!((got.value.as_slice(), got.mod_revision), (&b"v"[..], rev));
    drop(server);
    assert!(
        matches!(
            kv.get("/fo/k").await,
            Err(kumo_store::StoreError::Unavailable(_))
        ),
        "with every endpoint down the error is Unavailable"
    );
}
