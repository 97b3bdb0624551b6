//! Shared by the EC2 front end's integration tests: a real (SQLite) store with two projects,
//! three users with access keys (p1 member, p1 reader, p2 member), a public image, one host and a
//! subnet per project; requests signed with `kumo_ec2::sign` and sent through the real router.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;

use axum::body::Body;
use chrono::Utc;
use kumo_ec2::SigningParams;
use kumo_server::app::scope::Scope;
use kumo_server::app::{App, instance, network};
use kumo_server::identity::{Caller, access_key, project, user};
use kumo_server::storeutil::{encode, keys};
use kumo_types::{
    CreateAccessKeyRequest, CreateNetworkRequest, CreateProjectRequest, CreateSubnetRequest,
    CreateUserRequest, ProjectRole,
};
use serde_json::json;
use tower::ServiceExt;

pub const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH38yLgzi2IeYHvMfF2FnnkBKRgeAhod6sUwDtsd3oD3 test";

pub struct Key {
    pub id: String,
    pub secret: String,
}

pub struct Env {
    pub app: App,
    /// p1 member, p1 reader, p2 member.
    pub alice: Key,
    pub rita: Key,
    pub bob: Key,
    /// A subnet of p1's and one of p2's.
    pub subnet1: String,
    pub subnet2: String,
    pub _dir: tempfile::TempDir,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::support::app(dir.path());
    app.bootstrap().await.unwrap();
    kumo_server::auth::bootstrap(&app, dir.path())
        .await
        .unwrap();
    let admin = Caller::system();
    for p in ["p1", "p2"] {
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
    let mut made = Vec::new();
    for (name, p, role) in [
        ("alice", "p1", ProjectRole::Member),
        ("rita", "p1", ProjectRole::Reader),
        ("bob", "p2", ProjectRole::Member),
    ] {
        user::create(
            &app,
            &admin,
            CreateUserRequest {
                name: name.into(),
                memberships: BTreeMap::from([(p.to_string(), role)]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let caller = Caller {
            user: name.into(),
            project: p.into(),
            role: role.into(),
            credential: None,
            source: None,
        };
        let k = access_key::create(&app, &caller, CreateAccessKeyRequest::default())
            .await
            .unwrap();
        made.push(Key {
            id: k.access_key_id,
            secret: k.secret_access_key,
        });
    }
    // A public kernel image of the default project (no files: nothing boots).
    let img: kumo_types::Image = serde_json::from_value(json!({
        "id": "ami-00000000000000001", "name": "tiny", "project": "default",
        "kind": "kernel_initrd", "size_bytes": 1, "virtual_size_bytes": 0, "sha256": "x",
        "pool": "local", "visibility": "public", "created_at": "2026-11-25T18:00:00.000Z"
    }))
    .unwrap();
    app.kv()
        .put(&keys::image(&img.id), encode(&img).unwrap())
        .await
        .unwrap();
    app.kv()
        .put(
            &keys::name("images", "default", "tiny"),
            img.id.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    crate::support::register_host(&app).await;
    let mut subnets = Vec::new();
    for (p, cidr) in [("p1", "10.1.0.0/24"), ("p2", "10.2.0.0/24")] {
        let scope = Scope::within(p);
        let n = network::create(
            &app,
            &scope,
            CreateNetworkRequest {
                name: "main".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let s = network::create_subnet(
            &app,
            &scope,
            CreateSubnetRequest {
                name: "main".into(),
                network: n.id.clone(),
                cidr: cidr.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        subnets.push(s.id);
    }
    let mut made = made.into_iter();
    let mut subnets = subnets.into_iter();
    Env {
        app,
        alice: made.next().unwrap(),
        rita: made.next().unwrap(),
        bob: made.next().unwrap(),
        subnet1: subnets.next().unwrap(),
        subnet2: subnets.next().unwrap(),
        _dir: dir,
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                kumo_ec2::sigv4::uri_encode(k),
                kumo_ec2::sigv4::uri_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed POST to `/`: how it is signed is up to the arguments.
pub struct Call<'a> {
    pub key: &'a Key,
    pub secret: Option<&'a str>,
    pub service: &'a str,
    pub region: &'a str,
    pub time: chrono::DateTime<Utc>,
}

impl<'a> Call<'a> {
    pub fn ec2(key: &'a Key) -> Self {
        Call {
            key,
            secret: None,
            service: "ec2",
            region: "kumo-1",
            time: Utc::now(),
        }
    }

    pub async fn send(&self, app: &App, action: &str, params: &[(&str, &str)]) -> (u16, String) {
        let version = if self.service == "sts" {
            "2011-06-15"
        } else {
            "2016-11-15"
        };
        let mut pairs = vec![("Action", action), ("Version", version)];
        pairs.extend_from_slice(params);
        let body = form(&pairs);
        let mut req = kumo_ec2::Request::new("POST", "/")
            .with_header("Host", "kumo.test:8470")
            .with_header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .with_body(body.clone());
        kumo_ec2::sign(
            &mut req,
            &SigningParams {
                access_key_id: &self.key.id,
                secret_access_key: self.secret.unwrap_or(&self.key.secret),
                region: self.region,
                service: self.service,
                time: self.time,
            },
        )
        .unwrap();
        let mut http = axum::http::Request::builder().method("POST").uri("/");
        for (n, v) in &req.headers {
            http = http.header(n, v);
        }
        let resp = kumo_server::api::router(app.clone())
            .oneshot(http.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ct.as_deref(), Some("text/xml;charset=UTF-8"));
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

pub async fn ec2(app: &App, key: &Key, action: &str, params: &[(&str, &str)]) -> (u16, String) {
    Call::ec2(key).send(app, action, params).await
}

/// Must succeed; the body.
pub async fn ok(app: &App, key: &Key, action: &str, params: &[(&str, &str)]) -> String {
    let (status, body) = ec2(app, key, action, params).await;
    assert_eq!(status, 200, "{action}: {body}");
    body
}

/// Must fail with `code` and `status`; the message.
pub async fn fails(
    app: &App,
    key: &Key,
    action: &str,
    params: &[(&str, &str)],
    status: u16,
    code: &str,
) -> String {
    let (s, body) = ec2(app, key, action, params).await;
    assert_eq!(
        (s, texts(&body, "Code").first().map(String::as_str)),
        (status, Some(code)),
        "{action}: {body}"
    );
    texts(&body, "Message").pop().unwrap_or_default()
}

/// The text of every `<name>…</name>` (no nested elements of the same name in what we read).
pub fn texts(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

pub fn run_params(subnet: &str) -> Vec<(&str, &str)> {
    vec![
        ("ImageId", "ami-00000000000000001"),
        ("InstanceType", "nano"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("SubnetId", subnet),
    ]
}

pub async fn run_one(app: &App, key: &Key, subnet: &str, extra: &[(&str, &str)]) -> String {
    let mut p = run_params(subnet);
    p.extend_from_slice(extra);
    let body = ok(app, key, "RunInstances", &p).await;
    let ids = texts(&body, "instanceId");
    assert_eq!(ids.len(), 1, "{body}");
    ids[0].clone()
}

pub async fn instance_count(app: &App, project: &str) -> usize {
    instance::list_all(app, &Scope::within(project))
        .await
        .unwrap()
        .len()
}

pub fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
