//! Identity and audit through the app layer on a real (SQLite) store: access keys are looked up
//! with their secret and caller (what the EC2 front end verifies SigV4 with), deleted keys and
//! removed members stop working, and the audit chain stays one chain when two servers append at
//! once — and a record changed behind the API's back is found.

#![allow(clippy::unwrap_used)]

mod support;
use std::collections::BTreeMap;

use kumo_server::app::App;
use kumo_server::audit::{self, AuditEntry};
use kumo_server::identity::{Caller, Role, access_key, project, resolve, token, user};
use kumo_server::storeutil::keys;
use kumo_types::{
    CreateAccessKeyRequest, CreateProjectRequest, CreateTokenRequest, CreateUserRequest,
    ProjectRole,
};

use support::{app_on, store};

async fn booted(dir: &std::path::Path) -> App {
    let app = app_on(store(dir), dir);
    kumo_server::auth::bootstrap(&app, dir).await.unwrap();
    app
}

fn as_user(name: &str, project: &str, role: Role) -> Caller {
    Caller {
        user: name.into(),
        project: project.into(),
        role,
        credential: None,
        source: None,
    }
}

#[tokio::test]
async fn access_keys_are_looked_up_with_secret_and_caller_until_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let app = booted(dir.path()).await;
    let admin = Caller::system();
    project::create(
        &app,
        &admin,
        CreateProjectRequest {
            name: "team".into(),
            description: String::new(),
        },
    )
    .await
    .unwrap();
    user::create(
        &app,
        &admin,
        CreateUserRequest {
            name: "alice".into(),
            memberships: BTreeMap::from([("team".to_string(), ProjectRole::Member)]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let alice = as_user("alice", "team", Role::Member);
    let k = access_key::create(&app, &alice, CreateAccessKeyRequest::default())
        .await
        .unwrap();
    assert!(access_key::is_id(&k.access_key_id));
    assert_eq!(k.secret_access_key.len(), 40);
    assert_eq!((k.user.as_str(), k.project.as_str()), ("alice", "team"));

    // The store holds no clear secret.
    let raw = app
        .kv()
        .get(&keys::access_key(&k.access_key_id))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw.value).contains(&k.secret_access_key));

    let (secret, caller) = access_key::lookup(&app, &k.access_key_id)
        .await
        .unwrap()
        .expect("known key");
    assert_eq!(secret, k.secret_access_key);
    assert_eq!(caller.user, "alice");
    assert_eq!(caller.project, "team");
    assert_eq!(caller.role, Role::Member);
    assert_eq!(caller.credential.as_deref(), Some(k.access_key_id.as_str()));
    assert!(
        access_key::lookup(&app, "AKIAAAAAAAAAAAAAAAAA")
            .await
            .unwrap()
            .is_none()
    );

    // Listed without the secret; another member does not see it.
    let listed = access_key::list(&app, &alice, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    let bob = as_user("bob", "team", Role::Member);
    assert!(access_key::list(&app, &bob, None).await.unwrap().is_empty());

    // A second server with another server.key cannot decrypt it, and says which file to copy.
    let other_dir = tempfile::tempdir().unwrap();
    let other = app_on(app.kv.clone(), other_dir.path());
    let e = access_key::lookup(&other, &k.access_key_id)
        .await
        .expect_err("another server key");
    assert!(e.to_string().contains("server.key"), "{e}");

    access_key::delete(&app, &alice, &k.access_key_id)
        .await
        .unwrap();
    assert!(
        access_key::lookup(&app, &k.access_key_id)
            .await
            .unwrap()
            .is_none(),
        "deleted keys stop at once on this server"
    );
}

#[tokio::test]
async fn tokens_act_in_their_project_and_stop_with_the_membership() {
    let dir = tempfile::tempdir().unwrap();
    let app = booted(dir.path()).await;
    let admin = Caller::system();
    for p in ["a", "b"] {
        project::create(
            &app,
            &admin,
            CreateProjectRequest {
                name: p.into(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    }
    user::create(
        &app,
        &admin,
        CreateUserRequest {
            name: "carol".into(),
            memberships: BTreeMap::from([
                ("a".to_string(), ProjectRole::Reader),
                ("b".to_string(), ProjectRole::Admin),
            ]),
            password: Some("a long password".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let t = token::create(
        &app,
        &admin,
        CreateTokenRequest {
            user: Some("carol".into()),
            project: Some("a".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(t.api_token.pinned, "made for another user: pinned");
    let c = resolve::caller_for_token(&app, &t.token, None, None)
        .await
        .unwrap();
    assert_eq!((c.project.as_str(), c.role), ("a", Role::Reader));
    let e = resolve::caller_for_token(&app, &t.token, Some("b"), None)
        .await
        .expect_err("pinned");
    assert_eq!(e.code(), "forbidden");

    // Passwords: right and wrong.
    assert!(
        user::check_password(&app, "carol", "a long password".into())
            .await
            .is_ok()
    );
    assert_eq!(
        user::check_password(&app, "carol", "wrong password".into())
            .await
            .expect_err("wrong")
            .code(),
        "unauthenticated"
    );

    // Removing the membership ends the token's use in that project.
    user::remove_role(&app, &admin, "carol", "a").await.unwrap();
    let e = resolve::caller_for_token(&app, &t.token, None, None)
        .await
        .expect_err("no longer a member");
    assert_eq!(e.code(), "forbidden");

    // A project with members cannot be deleted; without, it can.
    assert_eq!(
        project::delete(&app, &admin, "b")
            .await
            .expect_err("members")
            .code(),
        "conflict"
    );
    project::delete(&app, &admin, "a").await.unwrap();
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        user: Some(format!("u{i}")),
        project: Some("default".into()),
        api: "ec2".into(),
        method: "POST".into(),
        path: "/".into(),
        action: "RunInstances".into(),
        status: 200,
        ..Default::default()
    }
}

/// Rewrite audit record `seq` directly in the store (its user becomes `mallory`), as someone with
/// access to the store but not the API could.
async fn tamper(app: &App, seq: u64) {
    let key = keys::audit(seq);
    let item = app.kv().get(&key).await.unwrap().unwrap();
    let mut rec: serde_json::Value = serde_json::from_slice(&item.value).unwrap();
    rec["user"] = "mallory".into();
    kumo_server::storeutil::commit(
        app.kv(),
        vec![],
        vec![kumo_store::Op::put(&key, serde_json::to_vec(&rec).unwrap())],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn two_servers_appending_at_once_make_one_chain_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let kv = store(dir.path());
    let (a, b) = (
        app_on(kv.clone(), &dir.path().join("a")),
        app_on(kv, &dir.path().join("b")),
    );
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            audit::record(&app, &entry(i)).await.unwrap().seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>(), "no fork, no gap");
    let v = audit::verify(&a).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checked, v.head_seq), (40, 40));

    // Rewrite record 17 directly in the store.
    tamper(&a, 17).await;
    let v = audit::verify(&b).await.unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_broken_seq, Some(17), "{v:?}");
}

/// `POST /v1/login` through the router: five wrong passwords are free, the sixth locks the name for
/// a second — during which even the right password gets 429 with `Retry-After` (and is not
/// checked) — and the lock and the failures go once a login succeeds. Each attempt is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_the_name_for_a_while() {
    use axum::body::Body;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let app = booted(dir.path()).await;
    user::create(
        &app,
        &Caller::system(),
        CreateUserRequest {
            name: "mia".into(),
            memberships: BTreeMap::from([("default".to_string(), ProjectRole::Member)]),
            password: Some("correct horse battery".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let router = kumo_server::api::router(app.clone());
    let login = |password: &str| {
        let router = router.clone();
        let body = serde_json::json!({"user": "mia", "password": password}).to_string();
        async move {
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/v1/login")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            (status, retry, v)
        }
    };
    for _ in 0..6 {
        let (s, retry, v) = login("wrong password").await;
        assert_eq!((s, retry), (401, None), "{v}");
    }
    let (s, retry, v) = login("correct horse battery").await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(retry.as_deref(), Some("1"), "{v}");
    assert_eq!(v["code"], "too_many_requests", "{v}");
    assert!(v["message"].as_str().unwrap().contains("mia"), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _, v) = login("correct horse battery").await;
    assert_eq!(s, 201, "{v}");
    // Cleared: the next wrong password is one of five free ones again.
    let (s, _, v) = login("wrong password").await;
    assert_eq!(s, 401, "{v}");
    let (s, _, v) = login("correct horse battery").await;
    assert_eq!(s, 201, "{v}");

    let records = audit::list(
        &app,
        &Caller::system(),
        &audit::AuditQuery {
            user: Some("mia".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .items;
    let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
}

/// Pruning removes the oldest records and the rest verify from the anchor; a stretch that does not
/// verify is not pruned (pruning cannot launder tampering); a gap after the anchor is still found.
#[tokio::test]
async fn pruning_keeps_the_rest_verifiable_and_refuses_a_broken_stretch() {
    use kumo_types::AuditPruneRequest;
    let dir = tempfile::tempdir().unwrap();
    let app = app_on(store(dir.path()), dir.path());
    let mut recs = Vec::new();
    for i in 0..10 {
        recs.push(audit::record(&app, &entry(i)).await.unwrap());
    }
    let e = audit::prune(&app, &AuditPruneRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("through_seq"), "{e:?}");
    let e = audit::prune(
        &app,
        &AuditPruneRequest {
            before: Some("last tuesday".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.field(), Some("before"), "{e:?}");
    // Nothing is older than the first record.
    let p = audit::prune(
        &app,
        &AuditPruneRequest {
            before: Some(recs[0].time.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((p.pruned, p.pruned_through), (0, 0));

    let p = audit::prune(
        &app,
        &AuditPruneRequest {
            through_seq: Some(4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((p.pruned, p.pruned_through), (4, 4));
    assert_eq!(p.anchor_hash, recs[3].hash);
    assert_eq!(recs[4].prev_hash, p.anchor_hash);
    let v = audit::verify(&app).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checked, v.pruned_through, v.head_seq), (6, 4, 10));
    let left = audit::list(&app, &Caller::system(), &Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(left.first().map(|r| r.seq), Some(5));
    // The chain goes on after a prune.
    let r = audit::record(&app, &entry(10)).await.unwrap();
    assert_eq!(r.seq, 11);
    assert!(audit::verify(&app).await.unwrap().ok);

    // Record 6 rewritten behind the API's back: a prune through 8 refuses and removes nothing.
    tamper(&app, 6).await;
    let e = audit::prune(
        &app,
        &AuditPruneRequest {
            through_seq: Some(8),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "conflict", "{e:?}");
    assert!(e.to_string().contains("record 6"), "{e}");
    let v = audit::verify(&app).await.unwrap();
    assert_eq!(
        (v.ok, v.first_broken_seq, v.pruned_through),
        (false, Some(6), 4)
    );

    // Record 5 deleted (a gap right after the anchor) is found too.
    let dir2 = tempfile::tempdir().unwrap();
    let app2 = app_on(store(dir2.path()), dir2.path());
    for i in 0..6 {
        audit::record(&app2, &entry(i)).await.unwrap();
    }
    let through2 = AuditPruneRequest {
        through_seq: Some(2),
        ..Default::default()
    };
    audit::prune(&app2, &through2).await.unwrap();
    kumo_server::storeutil::commit(
        app2.kv(),
        vec![],
        vec![kumo_store::Op::delete(keys::audit(3))],
    )
    .await
    .unwrap();
    let v = audit::verify(&app2).await.unwrap();
    assert_eq!((v.ok, v.first_broken_seq), (false, Some(3)), "{v:?}");
}
