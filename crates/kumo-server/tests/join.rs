//! The cluster CA and joins through the app layer, on a real (SQLite) store: servers sharing a store
//! share one CA (whoever starts first), and a join token is used exactly once even when two joins
//! race with it.

#![allow(clippy::unwrap_used)]

mod support;

use kumo_server::app::join_token;
use kumo_server::tls;
use kumo_types::{CreateJoinTokenRequest, JoinRequest, JoinTokenState};

use support::{app_on, store};

fn csr(name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test]
async fn servers_on_one_store_share_the_first_servers_ca() {
    let dir = tempfile::tempdir().unwrap();
    let kv = store(dir.path());
    let (a, b) = (
        app_on(kv.clone(), &dir.path().join("a")),
        app_on(kv, &dir.path().join("b")),
    );
    // Both start at once on an empty store: one CA wins, the other server loads it.
    let (ca_a, ca_b) = tokio::join!(tls::ensure_ca(&a, None), tls::ensure_ca(&b, None));
    let (ca_a, ca_b) = (ca_a.unwrap(), ca_b.unwrap());
    assert_eq!(ca_a.fingerprint(), ca_b.fingerprint());
    assert_eq!(
        tls::ensure_ca(&a, None).await.unwrap().fingerprint(),
        ca_a.fingerprint(),
        "stable across restarts"
    );
}

#[tokio::test]
async fn a_ca_in_the_data_dir_is_adopted_by_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let old = tls::ClusterCa::generate(chrono::Utc::now().timestamp()).unwrap();
    tls::write_ca_files(dir.path(), &old).unwrap();
    let app = app_on(store(dir.path()), dir.path());
    let ca = tls::ensure_ca(&app, Some(dir.path())).await.unwrap();
    assert_eq!(ca.fingerprint(), old.fingerprint());
}

#[tokio::test]
async fn a_join_token_joins_exactly_one_host_even_when_joins_race() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_on(store(dir.path()), dir.path());
    let created = join_token::create(&app, CreateJoinTokenRequest::default())
        .await
        .unwrap();
    assert_eq!(created.join_token.state, JoinTokenState::Valid);
    let ca = tls::ensure_ca(&app, None).await.unwrap();
    assert_eq!(created.ca_fingerprint, ca.fingerprint());
    let req = |host: &str| JoinRequest {
        token: created.token.clone(),
        host_name: host.into(),
        csr: csr(host),
    };
    let (r1, r2) = tokio::join!(
        join_token::join(&app, req("h1")),
        join_token::join(&app, req("h2"))
    );
    let (ok, refused) = match (r1, r2) {
        (Ok(a), Err(e)) | (Err(e), Ok(a)) => (a, e),
        (a, b) => panic!("exactly one join must win: {a:?} / {b:?}"),
    };
    assert_eq!(refused.code(), "forbidden", "{refused}");
    assert!(refused.to_string().contains("already used"), "{refused}");
    assert_eq!(ok.ca_certificate, ca.cert_pem);
    let t = join_token::get(&app, &created.join_token.id).await.unwrap();
    assert_eq!(t.state, JoinTokenState::Used);
    assert_eq!(t.used_by.as_deref(), Some(ok.host_name.as_str()));
    // The certificate names the host that won.
    let der = tls::ca::first_cert_der(&ok.certificate).unwrap();
    assert_eq!(
        tls::identity::identity_of(&der),
        Some(tls::identity::PeerIdentity::Host(ok.host_name.clone()))
    );
    // Deleted tokens are unknown.
    join_token::delete(&app, &created.join_token.id)
        .await
        .unwrap();
    let e = join_token::join(&app, req("h3")).await.unwrap_err();
    assert_eq!(e.code(), "unauthenticated");
}
