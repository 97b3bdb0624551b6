//! Identity, authorization and the audit log against a real `kumo server`: projects and users with
//! each role, tokens, `X-Kumo-Project`, login, access keys through the CLI, and an audit chain that
//! records creates and failed authentications, verifies, and reports a record changed directly in
//! the store.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cloud, KUMO};
use serde_json::{Value, json};

/// Raw HTTP with any token and an optional `X-Kumo-Project`: (status, JSON body or Null).
fn call(
    cloud: &Cloud,
    token: &str,
    project: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    cloud.http_as(token, project, method, path, body.as_ref())
}

/// The CLI with another token (and `--json`).
fn kumo_as(cloud: &Cloud, token: &str, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(KUMO)
        .arg("--json")
        .args(args)
        .env("KUMO_URL", cloud.url())
        .env("KUMO_TOKEN", token)
        .env_remove("KUMO_CONFIG")
        .env_remove("KUMO_PROJECT")
        .stdin(Stdio::null())
        .output()
        .expect("run kumo");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token_for(cloud: &Cloud, user: &str, project: &str) -> String {
    let v = cloud.json(&["--project", project, "token", "create", "--user", user]);
    let t = v["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(t.len(), 64, "token for {user}: {v}");
    assert_eq!(v["api_token"]["pinned"], true, "{v}");
    t
}

fn audit_records(cloud: &Cloud, token: &str) -> Vec<Value> {
    let (s, v) = call(cloud, token, None, "GET", "/v1/audit?limit=1000", None);
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn roles_projects_tokens_access_keys_and_a_verifiable_audit_chain() {
    let mut cloud = Cloud::start();
    let admin = cloud.token.clone();

    // The bootstrap token is user `admin`, cloud-admin, in `default`.
    let (s, me) = call(&cloud, &admin, None, "GET", "/v1/whoami", None);
    assert_eq!(s, 200);
    assert_eq!(me["user"], "admin");
    assert_eq!(me["role"], "cloud-admin");
    assert_eq!(me["project"], "default");

    // Projects and one user per role.
    cloud.ok(&["project", "create", "team", "--description", "the team"]);
    cloud.ok(&["project", "create", "other"]);
    cloud.ok(&["user", "create", "rita", "--role", "team=reader"]);
    cloud.ok(&["user", "create", "mia", "--role", "team=member"]);
    cloud.ok(&["user", "create", "ada", "--role", "team=admin"]);
    cloud.ok(&["user", "create", "olga", "--role", "other=member"]);
    let users = cloud.json(&["user", "list"]);
    assert_eq!(users["items"].as_array().map_or(0, Vec::len), 5, "{users}");
    let rita = token_for(&cloud, "rita", "team");
    let mia = token_for(&cloud, "mia", "team");
    let ada = token_for(&cloud, "ada", "team");

    // A reader cannot create; the message names the role needed.
    let sg = json!({"name": "web"});
    let (s, e) = call(
        &cloud,
        &rita,
        None,
        "POST",
        "/v1/security-groups",
        Some(sg.clone()),
    );
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["code"], "forbidden");
    assert!(
        e["message"].as_str().unwrap_or("").contains("`member`"),
        "{e}"
    );
    // Readers read.
    assert_eq!(
        call(&cloud, &rita, None, "GET", "/v1/instances", None).0,
        200
    );
    // A member can.
    let (s, created) = call(&cloud, &mia, None, "POST", "/v1/security-groups", Some(sg));
    assert!((200..300).contains(&s), "member create: {s} {created}");
    // A member cannot touch cluster-wide resources.
    let (s, e) = call(
        &cloud,
        &mia,
        None,
        "POST",
        "/v1/instance-types",
        Some(json!({"name": "huge", "vcpus": 64, "memory_mib": 65536, "root_disk_gib": 10})),
    );
    assert_eq!(s, 403, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("cloud-admin"),
        "{e}"
    );
    // X-Kumo-Project naming a project the user is not in: 403 (and a pinned token cannot move).
    let (s, e) = call(&cloud, &mia, Some("other"), "GET", "/v1/instances", None);
    assert_eq!(s, 403, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("pinned"),
        "{e}"
    );
    let (s, who) = call(&cloud, &mia, Some("team"), "GET", "/v1/whoami", None);
    assert_eq!(s, 200);
    assert_eq!(
        (who["project"].as_str(), who["role"].as_str()),
        (Some("team"), Some("member"))
    );
    // The cloud admin may act in any project.
    let (s, who) = call(&cloud, &admin, Some("other"), "GET", "/v1/whoami", None);
    assert_eq!((s, who["project"].as_str()), (200, Some("other")));

    // A project admin manages roles in its project only, and no cloud-wide users.
    let (s, u) = call(
        &cloud,
        &ada,
        None,
        "PUT",
        "/v1/users/olga/roles/team",
        Some(json!({"role": "reader"})),
    );
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["memberships"]["team"], "reader");
    let (s, _) = call(
        &cloud,
        &ada,
        None,
        "PUT",
        "/v1/users/olga/roles/other",
        Some(json!({"role": "admin"})),
    );
    assert_eq!(s, 403);
    let (s, _) = call(
        &cloud,
        &ada,
        None,
        "POST",
        "/v1/users",
        Some(json!({"name": "eve"})),
    );
    assert_eq!(s, 403);
    // Project admins see their project's users; members do not list users.
    let (s, l) = call(&cloud, &ada, None, "GET", "/v1/users", None);
    assert_eq!(s, 200);
    assert!(
        l["items"]
            .as_array()
            .is_some_and(|a| a.iter().all(|u| u["memberships"]["team"].is_string())),
        "{l}"
    );
    assert_eq!(call(&cloud, &mia, None, "GET", "/v1/users", None).0, 403);

    // Failed authentication: unknown token.
    let (s, e) = call(&cloud, "not-a-token", None, "GET", "/v1/instances", None);
    assert_eq!(s, 401, "{e}");

    // Login with a password (failures are audited with the user name).
    let (s, _) = call(
        &cloud,
        &admin,
        None,
        "PUT",
        "/v1/users/mia/password",
        Some(json!({"password": "correct horse battery"})),
    );
    assert_eq!(s, 200);
    let (s, _) = call(
        &cloud,
        "",
        None,
        "POST",
        "/v1/login",
        Some(json!({"user": "mia", "password": "wrong horse"})),
    );
    assert_eq!(s, 401);
    let (s, t) = call(
        &cloud,
        "",
        None,
        "POST",
        "/v1/login",
        Some(json!({"user": "mia", "password": "correct horse battery"})),
    );
    assert_eq!(s, 201, "{t}");
    let login_token = t["token"].as_str().unwrap_or_default().to_string();
    let (s, who) = call(&cloud, &login_token, None, "GET", "/v1/whoami", None);
    assert_eq!((s, who["user"].as_str()), (200, Some("mia")));

    // Access keys through the CLI: created for oneself in the current project, listed without the
    // secret, deleted.
    let (ok, k, err) = kumo_as(&cloud, &mia, &["access-key", "create"]);
    assert!(ok, "{err}");
    let id = k["access_key_id"].as_str().unwrap_or_default().to_string();
    let secret = k["secret_access_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(id.starts_with("AKIA") && id.len() == 20, "{k}");
    assert_eq!(secret.len(), 40, "{k}");
    assert_eq!(
        (k["user"].as_str(), k["project"].as_str()),
        (Some("mia"), Some("team"))
    );
    let (ok, l, err) = kumo_as(&cloud, &mia, &["access-key", "list"]);
    assert!(ok, "{err}");
    let text = l.to_string();
    assert!(text.contains(&id) && !text.contains(&secret), "{l}");
    let (ok, _, err) = kumo_as(&cloud, &mia, &["access-key", "delete", &id]);
    assert!(ok, "{err}");
    let (_, l, _) = kumo_as(&cloud, &mia, &["access-key", "list"]);
    assert_eq!(l["items"].as_array().map_or(1, Vec::len), 0, "{l}");
    // Revoking a token ends it.
    let (ok, tl, err) = kumo_as(&cloud, &login_token, &["token", "list"]);
    assert!(ok, "{err}");
    let login_id = tl["items"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["description"] == "login"))
        .and_then(|t| t["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let (ok, _, err) = kumo_as(&cloud, &login_token, &["token", "revoke", &login_id]);
    assert!(ok, "{err}");
    assert_eq!(
        call(&cloud, &login_token, None, "GET", "/v1/whoami", None).0,
        401
    );

    // The audit log has the create, the refusals and the failed authentications.
    let recs = audit_records(&cloud, &admin);
    let find = |pred: &dyn Fn(&Value) -> bool| recs.iter().find(|r| pred(r)).cloned();
    let create = find(&|r| r["action"] == "security-groups.create" && r["user"] == "mia")
        .expect("mia's create is audited");
    assert_eq!(create["project"], "team");
    assert_eq!(create["method"], "POST");
    assert!(
        create["source"].as_str().is_some_and(|s| s == "127.0.0.1"),
        "{create}"
    );
    assert!(
        create["credential"]
            .as_str()
            .is_some_and(|c| c.starts_with("tok-")),
        "{create}"
    );
    let refused = find(&|r| r["user"] == "rita" && r["status"] == 403).expect("rita's refusal");
    assert_eq!(refused["error_code"], "forbidden");
    let unknown = find(&|r| r["status"] == 401 && r["user"].is_null()).expect("unknown token");
    assert!(
        unknown["credential"]
            .as_str()
            .is_some_and(|c| c.starts_with("sha256:")),
        "{unknown}"
    );
    assert_eq!(unknown["path"], "/v1/instances");
    let bad_login =
        find(&|r| r["action"] == "login.create" && r["status"] == 401).expect("failed login");
    assert_eq!(bad_login["user"], "mia");
    assert!(
        find(&|r| r["action"] == "instances.list" && r["status"] == 200).is_none(),
        "successful reads are not audited"
    );
    let seqs: Vec<u64> = recs.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "one chain, no gaps"
    );

    // A project admin reads its own project's records only; a reader none.
    let team = audit_records(&cloud, &ada);
    assert!(
        !team.is_empty() && team.iter().all(|r| r["project"] == "team"),
        "{team:?}"
    );
    assert_eq!(call(&cloud, &rita, None, "GET", "/v1/audit", None).0, 403);

    // Export (JSON lines) and verify through the CLI.
    let out = cloud.kumo(&["audit", "export"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines.len() >= recs.len(),
        "{} < {}",
        lines.len(),
        recs.len()
    );
    let v = cloud.json(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(cloud.ok(&["audit", "verify"]).contains("intact"));

    // Retention: prune the oldest record (cloud admins only); the rest verify from the anchor and
    // the prune itself is in the log.
    let victim = create["seq"].as_u64().expect("seq");
    assert!(victim > 1, "the victim below must survive the prune");
    let (s, e) = call(
        &cloud,
        &rita,
        None,
        "POST",
        "/v1/audit/prune",
        Some(json!({"through_seq": 1})),
    );
    assert_eq!(s, 403, "{e}");
    let pruned = cloud.ok(&["audit", "prune", "--through-seq", "1"]);
    assert!(pruned.contains("pruned 1 records"), "{pruned}");
    let v = cloud.json(&["audit", "verify"]);
    assert_eq!(
        (v["ok"].as_bool(), v["pruned_through"].as_u64()),
        (Some(true), Some(1)),
        "{v}"
    );
    assert!(
        audit_records(&cloud, &admin)
            .iter()
            .any(|r| r["action"] == "audit.prune" && r["status"] == 200),
        "the prune is audited"
    );

    // Change one record behind the server's back: verify names it.
    cloud.kill9();
    {
        common::block_on(async {
            use kumo_store::Kv;
            let kv = kumo_store::sqlite::SqliteKv::open(&cloud.data_dir().join("store.db"))
                .expect("open the store");
            let key = format!("/audit/{victim:020}");
            let item = kv.get(&key).await.expect("get").expect("the record");
            let mut rec: Value = serde_json::from_slice(&item.value).expect("json");
            rec["user"] = "somebody-else".into();
            kv.txn(kumo_store::Txn {
                compare: vec![],
                success: vec![kumo_store::Op::put(
                    &key,
                    serde_json::to_vec(&rec).expect("json"),
                )],
                failure: vec![],
            })
            .await
            .expect("rewrite");
        });
    }
    cloud.spawn_server();
    let out = cloud.kumo(&["--json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "a broken chain exits 1");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken_seq"].as_u64(), Some(victim), "{v}");
}

/// A free TCP port on loopback.
fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// GET `url` trusting only `ca_pem`, with `name` resolving to 127.0.0.1: the status.
fn https_get(url: &str, ca_pem: &[u8], name: &str, port: u16) -> Result<u16, String> {
    common::block_on(async {
        let ca = reqwest::Certificate::from_pem(ca_pem).map_err(|e| e.to_string())?;
        let c = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve(name, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .build()
            .map_err(|e| e.to_string())?;
        c.get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    })
}

#[test]
fn https_with_the_cluster_ca_and_an_operator_certificate() {
    // The operator's certificate for kumo.test, from its own (here: self-signed) CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["kumo.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (cert_file, key_file) = (dir.path().join("op.pem"), dir.path().join("op.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    let tls_port = port();
    let listen = format!("127.0.0.1:{tls_port}");
    let cloud = Cloud::start_with(&[
        "--tls-listen",
        &listen,
        "--tls-cert",
        &cert_file.to_string_lossy(),
        "--tls-key",
        &key_file.to_string_lossy(),
    ]);
    let cluster_ca = std::fs::read(cloud.data_dir().join("tls/ca.pem")).expect("the cluster CA");

    // By its DNS name: the operator's certificate (and not the cluster CA's).
    let by_name = format!("https://kumo.test:{tls_port}/healthz");
    assert_eq!(
        https_get(&by_name, cert.pem().as_bytes(), "kumo.test", tls_port),
        Ok(200)
    );
    assert!(https_get(&by_name, &cluster_ca, "kumo.test", tls_port).is_err());
    // By address (no SNI, what agents do): the cluster CA's certificate.
    let by_ip = format!("https://127.0.0.1:{tls_port}/healthz");
    assert_eq!(
        https_get(&by_ip, &cluster_ca, "unused.test", tls_port),
        Ok(200)
    );

    // The CLI trusts the cluster CA through its config file.
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        serde_json::to_string(&json!({
            "url": format!("https://127.0.0.1:{tls_port}"),
            "token": cloud.token,
            "ca_file": cloud.data_dir().join("tls/ca.pem"),
            "project": "default",
        }))
        .expect("json"),
    )
    .expect("write config");
    let out = Command::new(KUMO)
        .args(["--json", "whoami"])
        .env("KUMO_CONFIG", &cfg)
        .env_remove("KUMO_URL")
        .env_remove("KUMO_TOKEN")
        .env_remove("KUMO_PROJECT")
        .env_remove("KUMO_CA_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("kumo whoami");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (me["user"].as_str(), me["project"].as_str()),
        (Some("admin"), Some("default"))
    );
}
