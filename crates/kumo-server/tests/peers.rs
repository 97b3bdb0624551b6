//! Servers on one store know each other (issue 5): each registers itself under a lease, they share
//! one peer secret, and the peer API refuses callers without it.

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use kumo_server::peers::{self, Peers};
use tower::ServiceExt;

use support::{app_on, store};

fn ca_pem() -> String {
    kumo_server::tls::ClusterCa::generate(chrono::Utc::now().timestamp())
        .unwrap()
        .cert_pem
}

#[tokio::test]
async fn servers_register_share_one_secret_and_the_peer_api_wants_it() {
    let dir = tempfile::tempdir().unwrap();
    let kv = store(dir.path());
    let mut a = app_on(kv.clone(), &dir.path().join("a"));
    let ca = ca_pem();
    let (pa, pb) = tokio::join!(
        Peers::start(kv.clone(), "a@x".into(), Some("http://a".into()), &ca),
        Peers::start(kv.clone(), "b@x".into(), None, &ca),
    );
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    // Registration runs in the background: wait for both records.
    let mut live = Vec::new();
    for _ in 0..50 {
        live = peers::live(kv.as_ref()).await.unwrap();
        if live.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ids: Vec<&str> = live.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a@x", "b@x"]);
    assert_eq!(live[0].url.as_deref(), Some("http://a"));
    assert_eq!(live[1].url, None);

    let secret =
        String::from_utf8(kv.get("/cluster/peer-secret").await.unwrap().unwrap().value).unwrap();
    assert_eq!(secret.len(), 64);
    assert!(
        pa.accepts(&secret) && pb.accepts(&secret),
        "one secret for all"
    );
    assert!(!pa.accepts("") && !pa.accepts(&secret[..63]));

    a.peers = pa;
    let router = kumo_server::api::router(a);
    let get = |secret: Option<&str>| {
        let mut b = axum::http::Request::builder().uri("/peer/v1/images/ami-nope/files/kernel");
        if let Some(s) = secret {
            b = b.header(peers::SECRET_HEADER, s);
        }
        router.clone().oneshot(b.body(Body::empty()).unwrap())
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(get(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(get(Some(&secret)).await.unwrap().status(), 404);
}
