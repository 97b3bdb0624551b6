//! The EC2/STS front end through the real router (`/`, SigV4-signed with `kumo_ec2::sign`) on a
//! real (SQLite) store with one registered host and no agent: instances are records only (they
//! stay `pending`; deletions are finalized by hand). Covers authentication (bad signatures,
//! skewed clocks, unknown keys, other regions), authorization by role, another project's
//! instances, quotas, `DryRun`, `ClientToken`, pagination, tags and filters, protection
//! attributes, tombstones, key pairs and the audit log.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use chrono::{Duration, Utc};
use kumo_ec2::SigningParams;
use kumo_server::app::scope::Scope;
use kumo_server::app::{App, AppConfig, host, instance, network, quota};
use kumo_server::identity::{Caller, access_key, project, user};
use kumo_server::scheduler::Overcommit;
use kumo_server::storeutil::{encode, keys};
use kumo_types::{
    CreateAccessKeyRequest, CreateNetworkRequest, CreateProjectRequest, CreateSubnetRequest,
    CreateUserRequest, HostInventory, PlacementPolicy, ProjectRole, UpdateQuotasRequest,
};
use serde_json::json;
use tower::ServiceExt;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH38yLgzi2IeYHvMfF2FnnkBKRgeAhod6sUwDtsd3oD3 test";

struct Key {
    id: String,
    secret: String,
}

struct Env {
    app: App,
    /// p1 member, p1 reader, p2 member.
    alice: Key,
    rita: Key,
    bob: Key,
    /// A subnet of p1's and one of p2's.
    subnet1: String,
    subnet2: String,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(kumo_store::sqlite::SqliteKv::open(&dir.path().join("store.db")).unwrap());
    let app = App::new(
        kv,
        AppConfig {
            data_dir: dir.path().to_path_buf(),
            overcommit: Overcommit::default(),
            placement_policy: PlacementPolicy::Spread,
            host_memory_reserve_mib: 0,
            default_network_cidr: "198.18.0.0/22".into(),
            default_bridge: "kumobr0".into(),
            default_nat: false,
            region: "kumo-1".into(),
        },
    );
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
    host::register(
        &app,
        HostInventory {
            hostname: "h1".into(),
            cpus: 64,
            memory_mib: 256 * 1024,
            disk_free_bytes: 1 << 40,
            disk_total_bytes: 1 << 40,
            ..Default::default()
        },
    )
    .await
    .unwrap();
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

fn form(pairs: &[(&str, &str)]) -> String {
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
struct Call<'a> {
    key: &'a Key,
    secret: Option<&'a str>,
    service: &'a str,
    region: &'a str,
    time: chrono::DateTime<Utc>,
}

impl<'a> Call<'a> {
    fn ec2(key: &'a Key) -> Self {
        Call {
            key,
            secret: None,
            service: "ec2",
            region: "kumo-1",
            time: Utc::now(),
        }
    }

    async fn send(&self, app: &App, action: &str, params: &[(&str, &str)]) -> (u16, String) {
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

async fn ec2(app: &App, key: &Key, action: &str, params: &[(&str, &str)]) -> (u16, String) {
    Call::ec2(key).send(app, action, params).await
}

/// Must succeed; the body.
async fn ok(app: &App, key: &Key, action: &str, params: &[(&str, &str)]) -> String {
    let (status, body) = ec2(app, key, action, params).await;
    assert_eq!(status, 200, "{action}: {body}");
    body
}

/// Must fail with `code` and `status`; the message.
async fn fails(
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
fn texts(xml: &str, name: &str) -> Vec<String> {
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

fn run_params(subnet: &str) -> Vec<(&str, &str)> {
    vec![
        ("ImageId", "ami-00000000000000001"),
        ("InstanceType", "nano"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("SubnetId", subnet),
    ]
}

async fn run_one(app: &App, key: &Key, subnet: &str, extra: &[(&str, &str)]) -> String {
    let mut p = run_params(subnet);
    p.extend_from_slice(extra);
    let body = ok(app, key, "RunInstances", &p).await;
    let ids = texts(&body, "instanceId");
    assert_eq!(ids.len(), 1, "{body}");
    ids[0].clone()
}

async fn instance_count(app: &App, project: &str) -> usize {
    instance::list_all(app, &Scope::within(project))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_clocks_keys_and_regions_are_checked() {
    let e = env().await;
    let app = &e.app;
    // A good signature: the STS identity of the key's user and project.
    let sts = Call {
        service: "sts",
        ..Call::ec2(&e.alice)
    };
    let (s, body) = sts.send(app, "GetCallerIdentity", &[]).await;
    assert_eq!(s, 200, "{body}");
    let account = texts(&body, "Account").pop().unwrap();
    assert_eq!(account.len(), 12);
    assert!(account.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        texts(&body, "Arn"),
        [format!("arn:aws:iam::{account}:user/alice")]
    );

    // The wrong secret.
    let wrong = Call {
        secret: Some("0000000000000000000000000000000000000000"),
        ..Call::ec2(&e.alice)
    };
    let (s, body) = wrong.send(app, "DescribeInstances", &[]).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(texts(&body, "Code"), ["SignatureDoesNotMatch"]);

    // Signed 20 minutes ago, or 20 minutes in the future.
    for skew in [-20, 20] {
        let skewed = Call {
            time: Utc::now() + Duration::minutes(skew),
            ..Call::ec2(&e.alice)
        };
        let (s, body) = skewed.send(app, "DescribeInstances", &[]).await;
        assert_eq!(
            (s, texts(&body, "Code")),
            (400, vec!["RequestExpired".to_string()])
        );
    }

    // An unknown key: EC2 and STS say it their way.
    let ghost = Key {
        id: "AKIAAAAAAAAAAAAAAAAA".into(),
        secret: "x".into(),
    };
    let (s, body) = Call::ec2(&ghost).send(app, "DescribeInstances", &[]).await;
    assert_eq!(
        (s, texts(&body, "Code")),
        (401, vec!["AuthFailure".to_string()])
    );
    let (s, body) = Call {
        service: "sts",
        ..Call::ec2(&ghost)
    }
    .send(app, "GetCallerIdentity", &[])
    .await;
    assert_eq!(s, 403);
    assert!(
        body.contains("<ErrorResponse"),
        "STS error envelope: {body}"
    );
    assert_eq!(texts(&body, "Code"), ["InvalidClientTokenId"]);

    // Another region.
    let (s, body) = Call {
        region: "us-east-1",
        ..Call::ec2(&e.alice)
    }
    .send(app, "DescribeInstances", &[])
    .await;
    assert_eq!(s, 403);
    assert!(
        body.contains("not &apos;us-east-1&apos;") || body.contains("'us-east-1'"),
        "{body}"
    );

    // Every failure is in the audit log, with its key and code.
    let records = kumo_server::audit::list(
        app,
        &Caller::system(),
        &kumo_server::audit::AuditQuery {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .items;
    let ec2_failures: Vec<_> = records
        .iter()
        .filter(|r| r.api == "ec2" && r.status >= 400)
        .collect();
    assert!(
        ec2_failures.iter().any(|r| {
            r.error_code.as_deref() == Some("SignatureDoesNotMatch")
                && r.credential.as_deref() == Some(e.alice.id.as_str())
        }),
        "{ec2_failures:?}"
    );
    assert!(
        ec2_failures
            .iter()
            .any(|r| r.error_code.as_deref() == Some("AuthFailure"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_actions_and_parameters_are_refused_never_ignored() {
    let e = env().await;
    let app = &e.app;
    let m = fails(
        app,
        &e.alice,
        "FrobnicateInstances",
        &[],
        400,
        "InvalidAction",
    )
    .await;
    assert!(m.contains("FrobnicateInstances"), "{m}");
    let m = fails(
        app,
        &e.alice,
        "DescribeRegions",
        &[("Bogus", "1")],
        400,
        "UnknownParameter",
    )
    .await;
    assert!(m.contains("Bogus"), "{m}");
    // On a create: refused before anything is made.
    let mut p = run_params(&e.subnet1);
    p.push(("Ipv6AddressCount", "1"));
    let m = fails(app, &e.alice, "RunInstances", &p, 400, "UnknownParameter").await;
    assert!(m.contains("Ipv6AddressCount"), "{m}");
    assert_eq!(instance_count(app, "p1").await, 0);
    // A value kumo cannot honour is a clear error.
    let mut p = run_params(&e.subnet1);
    p.push(("Monitoring.Enabled", "true"));
    let m = fails(app, &e.alice, "RunInstances", &p, 400, "Unsupported").await;
    assert!(m.contains("Monitoring.Enabled"), "{m}");
    // An unsupported filter.
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[
            ("Filter.1.Name", "no-such-filter"),
            ("Filter.1.Value.1", "x"),
        ],
        400,
        "InvalidParameterValue",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_run_describe_and_stay_in_their_project() {
    let e = env().await;
    let app = &e.app;
    let id = run_one(
        app,
        &e.alice,
        &e.subnet1,
        &[
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "web-1"),
            ("Placement.AvailabilityZone", ""),
            ("EbsOptimized", "false"),
        ],
    )
    .await;
    let body = ok(app, &e.alice, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    assert_eq!(texts(&body, "instanceId"), std::slice::from_ref(&id));
    assert_eq!(texts(&body, "name"), ["pending"]);
    assert_eq!(texts(&body, "subnetId")[0], e.subnet1);
    assert_eq!(texts(&body, "availabilityZone"), ["kumo-1a"]);
    assert_eq!(texts(&body, "rootDeviceType"), ["ebs"]);
    assert!(
        texts(&body, "privateIpAddress")[0].starts_with("10.1.0."),
        "{body}"
    );
    assert!(texts(&body, "vpcId")[0].starts_with("vpc-"), "{body}");
    assert_eq!(texts(&body, "value"), ["web-1"]);

    // Tag filters.
    let by_tag = |v: &'static str| [("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", v)];
    let body = ok(app, &e.alice, "DescribeInstances", &by_tag("web-*")).await;
    assert_eq!(texts(&body, "instanceId"), std::slice::from_ref(&id));
    let body = ok(app, &e.alice, "DescribeInstances", &by_tag("db-*")).await;
    assert!(texts(&body, "instanceId").is_empty(), "{body}");

    // Another project: not there at all.
    let m = fails(
        app,
        &e.bob,
        "DescribeInstances",
        &[("InstanceId.1", &id)],
        400,
        "InvalidInstanceID.NotFound",
    )
    .await;
    assert!(m.contains(&id), "{m}");
    fails(
        app,
        &e.bob,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
        400,
        "InvalidInstanceID.NotFound",
    )
    .await;
    fails(
        app,
        &e.bob,
        "CreateTags",
        &[("ResourceId.1", &id), ("Tag.1.Key", "x")],
        400,
        "InvalidInstanceID.NotFound",
    )
    .await;
    let body = ok(app, &e.bob, "DescribeInstances", &[]).await;
    assert!(texts(&body, "instanceId").is_empty(), "{body}");
    // Nor can bob launch into p1's subnet.
    fails(
        app,
        &e.bob,
        "RunInstances",
        &run_params(&e.subnet1),
        400,
        "InvalidSubnetID.NotFound",
    )
    .await;

    // A reader describes but does not change.
    ok(app, &e.rita, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    fails(
        app,
        &e.rita,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
        403,
        "UnauthorizedOperation",
    )
    .await;

    // Terminate: shutting down, then (once the agent would have finished) terminated for an hour.
    let body = ok(
        app,
        &e.alice,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
    )
    .await;
    assert_eq!(texts(&body, "name"), ["shutting-down", "pending"], "{body}");
    instance::finalize_delete(app, &id).await.unwrap();
    let body = ok(app, &e.alice, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    assert_eq!(texts(&body, "code")[0], "48", "{body}");
    assert_eq!(texts(&body, "name"), ["terminated"]);
    assert_eq!(
        texts(&body, "value"),
        ["web-1"],
        "tags stay with the tombstone"
    );
    // The audit log has the launch and the termination, with the instance as their target.
    let records = kumo_server::audit::list(
        app,
        &Caller::system(),
        &kumo_server::audit::AuditQuery {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .items;
    for action in ["RunInstances", "TerminateInstances"] {
        assert!(
            records.iter().any(|r| r.api == "ec2"
                && r.action == action
                && r.status == 200
                && r.user.as_deref() == Some("alice")
                && r.target == [id.clone()]),
            "{action} audited"
        );
    }
    assert!(
        records.iter().any(|r| r.action == "TerminateInstances"
            && r.error_code.as_deref() == Some("UnauthorizedOperation")),
        "the reader's refusal is audited"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.action == "DescribeInstances" && r.status == 200),
        "reads are not audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_client_tokens_and_quotas() {
    let e = env().await;
    let app = &e.app;
    let mut p = run_params(&e.subnet1);
    p.push(("DryRun", "true"));
    let m = fails(app, &e.alice, "RunInstances", &p, 412, "DryRunOperation").await;
    assert!(m.contains("DryRun flag is set"), "{m}");
    assert_eq!(
        instance_count(app, "p1").await,
        0,
        "a dry run makes nothing"
    );
    // A reader's dry run is refused as the real call would be.
    fails(
        app,
        &e.rita,
        "RunInstances",
        &p,
        403,
        "UnauthorizedOperation",
    )
    .await;

    // The same token twice: one instance, the same answer.
    let token = [("ClientToken", "terraform-20261125190000")];
    let first = run_one(app, &e.alice, &e.subnet1, &token).await;
    let again = run_one(app, &e.alice, &e.subnet1, &token).await;
    assert_eq!(first, again);
    assert_eq!(instance_count(app, "p1").await, 1);
    // The same token with other arguments.
    let mut other = run_params(&e.subnet1);
    other.extend_from_slice(&token);
    other.push(("InstanceType", "micro"));
    other.retain(|(k, v)| !(*k == "InstanceType" && *v == "nano"));
    fails(
        app,
        &e.alice,
        "RunInstances",
        &other,
        400,
        "IdempotentParameterMismatch",
    )
    .await;
    // The token is the project's: bob's identical request is his own launch.
    let bobs = run_one(app, &e.bob, &e.subnet2, &token).await;
    assert_ne!(bobs, first);

    // p2 may hold two instances: bob's second fits, his third does not, and nothing is made.
    quota::set(
        app,
        &Scope::system(),
        "p2",
        UpdateQuotasRequest {
            instances: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    run_one(app, &e.bob, &e.subnet2, &[]).await;
    let m = fails(
        app,
        &e.bob,
        "RunInstances",
        &run_params(&e.subnet2),
        400,
        "InstanceLimitExceeded",
    )
    .await;
    assert!(m.contains("p2"), "{m}");
    assert_eq!(instance_count(app, "p2").await, 2);
    // MinCount=1 MaxCount=3 with room for none; then with room for one: one is made.
    quota::set(
        app,
        &Scope::system(),
        "p2",
        UpdateQuotasRequest {
            instances: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut p = run_params(&e.subnet2);
    p.retain(|(k, _)| *k != "MaxCount");
    p.push(("MaxCount", "3"));
    let body = ok(app, &e.bob, "RunInstances", &p).await;
    assert_eq!(texts(&body, "instanceId").len(), 1, "{body}");
    // MinCount=2 with room for none: refused, nothing made.
    p.retain(|(k, _)| *k != "MinCount");
    p.push(("MinCount", "2"));
    fails(
        app,
        &e.bob,
        "RunInstances",
        &p,
        400,
        "InstanceLimitExceeded",
    )
    .await;
    assert_eq!(instance_count(app, "p2").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_follows_tokens_within_ec2_bounds() {
    let e = env().await;
    let app = &e.app;
    let mut p = run_params(&e.subnet1);
    p.retain(|(k, _)| *k != "MaxCount");
    p.push(("MaxCount", "7"));
    let body = ok(app, &e.alice, "RunInstances", &p).await;
    let mut made = texts(&body, "instanceId");
    assert_eq!(made.len(), 7);
    assert_eq!(texts(&body, "reservationId").len(), 1, "one reservation");
    made.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("MaxResults", "5")];
        if let Some(t) = &token {
            q.push(("NextToken", t.as_str()));
        }
        let body = ok(app, &e.alice, "DescribeInstances", &q).await;
        seen.extend(texts(&body, "instanceId"));
        pages += 1;
        token = texts(&body, "nextToken").pop();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, made, "every instance once, in order");
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[("MaxResults", "4")],
        400,
        "InvalidParameterValue",
    )
    .await;
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[("MaxResults", "5"), ("InstanceId.1", &made[0])],
        400,
        "InvalidParameterCombination",
    )
    .await;
    fails(
        app,
        &e.alice,
        "DescribeInstances",
        &[("NextToken", "garbage")],
        400,
        "InvalidPaginationToken",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_protect_and_tags_filter() {
    let e = env().await;
    let app = &e.app;
    let id = run_one(
        app,
        &e.alice,
        &e.subnet1,
        &[
            ("DisableApiTermination", "true"),
            ("UserData", "IyEvYmluL3NoCmVjaG8gaGkK"),
        ],
    )
    .await;
    let attr = |a: &'static str| [("InstanceId", id.clone()), ("Attribute", a.to_string())];
    let q = attr("disableApiTermination");
    let qs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = ok(app, &e.alice, "DescribeInstanceAttribute", &qs).await;
    assert_eq!(texts(&body, "value"), ["true"]);
    let q = attr("userData");
    let qs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = ok(app, &e.alice, "DescribeInstanceAttribute", &qs).await;
    assert_eq!(
        texts(&body, "value"),
        ["IyEvYmluL3NoCmVjaG8gaGkK"],
        "exactly as given"
    );
    let m = fails(
        app,
        &e.alice,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
        400,
        "OperationNotPermitted",
    )
    .await;
    assert!(m.contains("disableApiTermination"), "{m}");
    // kumo's own API honours it too.
    assert!(
        instance::delete(app, &Scope::within("p1"), &id)
            .await
            .is_err()
    );
    ok(
        app,
        &e.alice,
        "ModifyInstanceAttribute",
        &[("InstanceId", &id), ("DisableApiStop.Value", "true")],
    )
    .await;
    fails(
        app,
        &e.alice,
        "StopInstances",
        &[("InstanceId.1", &id), ("Force", "false")],
        400,
        "OperationNotPermitted",
    )
    .await;

    // Tags: create, describe with filters, delete.
    ok(
        app,
        &e.alice,
        "CreateTags",
        &[
            ("ResourceId.1", &id),
            ("Tag.1.Key", "env"),
            ("Tag.1.Value", "prod"),
            ("Tag.2.Key", "team"),
            ("Tag.2.Value", "db"),
        ],
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeTags",
        &[
            ("Filter.1.Name", "resource-id"),
            ("Filter.1.Value.1", &id),
            ("Filter.2.Name", "key"),
            ("Filter.2.Value.1", "e*"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "key"), ["env"]);
    assert_eq!(texts(&body, "resourceType"), ["instance"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeInstances",
        &[("Filter.1.Name", "tag-key"), ("Filter.1.Value.1", "team")],
    )
    .await;
    assert_eq!(texts(&body, "instanceId"), std::slice::from_ref(&id));
    ok(
        app,
        &e.alice,
        "DeleteTags",
        &[("ResourceId.1", &id), ("Tag.1.Key", "team")],
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeTags",
        &[("Filter.1.Name", "resource-id"), ("Filter.1.Value.1", &id)],
    )
    .await;
    assert_eq!(texts(&body, "key"), ["env"]);
    // bob sees none of p1's tags.
    let body = ok(app, &e.bob, "DescribeTags", &[]).await;
    assert!(texts(&body, "key").is_empty(), "{body}");
    // Termination after the protection is lifted.
    ok(
        app,
        &e.alice,
        "ModifyInstanceAttribute",
        &[
            ("InstanceId", &id),
            ("DisableApiTermination.Value", "false"),
        ],
    )
    .await;
    ok(
        app,
        &e.alice,
        "TerminateInstances",
        &[("InstanceId.1", &id)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pairs_images_and_the_cloud() {
    let e = env().await;
    let app = &e.app;
    let material = base64_encode(KEY.as_bytes());
    let body = ok(
        app,
        &e.alice,
        "ImportKeyPair",
        &[
            ("KeyName", "deployer"),
            ("PublicKeyMaterial", &material),
            ("TagSpecification.1.ResourceType", "key-pair"),
            ("TagSpecification.1.Tag.1.Key", "v"),
            ("TagSpecification.1.Tag.1.Value", "one"),
        ],
    )
    .await;
    let key_id = texts(&body, "keyPairId").pop().unwrap();
    assert!(key_id.starts_with("key-"));
    fails(
        app,
        &e.alice,
        "ImportKeyPair",
        &[("KeyName", "deployer"), ("PublicKeyMaterial", &material)],
        400,
        "InvalidKeyPair.Duplicate",
    )
    .await;
    let body = ok(
        app,
        &e.alice,
        "DescribeKeyPairs",
        &[("KeyName.1", "deployer")],
    )
    .await;
    assert_eq!(texts(&body, "keyPairId"), std::slice::from_ref(&key_id));
    assert_eq!(texts(&body, "keyType"), ["ed25519"]);
    assert_eq!(texts(&body, "value"), ["one"]);
    fails(
        app,
        &e.bob,
        "DescribeKeyPairs",
        &[("KeyName.1", "deployer")],
        400,
        "InvalidKeyPair.NotFound",
    )
    .await;
    let body = ok(app, &e.alice, "CreateKeyPair", &[("KeyName", "made")]).await;
    let private = texts(&body, "keyMaterial").pop().unwrap();
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{body}"
    );
    // Launch with the key; delete it (a missing key deletes fine, as on EC2).
    run_one(app, &e.alice, &e.subnet1, &[("KeyName", "deployer")]).await;
    fails(
        app,
        &e.alice,
        "RunInstances",
        &[run_params(&e.subnet1), vec![("KeyName", "nope")]].concat(),
        400,
        "InvalidKeyPair.NotFound",
    )
    .await;
    ok(app, &e.alice, "DeleteKeyPair", &[("KeyName", "made")]).await;
    ok(app, &e.alice, "DeleteKeyPair", &[("KeyName", "made")]).await;

    // Images: the public one is another project's (owner alias amazon) for p1.
    let body = ok(
        app,
        &e.alice,
        "DescribeImages",
        &[
            ("Owner.1", "amazon"),
            ("Filter.1.Name", "name"),
            ("Filter.1.Value.1", "ti*"),
            ("IncludeDeprecated", "false"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "imageId"), ["ami-00000000000000001"]);
    assert_eq!(texts(&body, "rootDeviceName"), ["/dev/xvda"]);
    let body = ok(app, &e.alice, "DescribeImages", &[("Owner.1", "self")]).await;
    assert!(texts(&body, "imageId").is_empty(), "{body}");
    fails(
        app,
        &e.alice,
        "DescribeImages",
        &[("ImageId.1", "ami-0000000000000dead")],
        400,
        "InvalidAMIID.NotFound",
    )
    .await;
    fails(
        app,
        &e.alice,
        "RunInstances",
        &[
            ("ImageId", "ami-0000000000000dead"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("SubnetId", &e.subnet1),
        ],
        400,
        "InvalidAMIID.NotFound",
    )
    .await;

    // Regions, zones, account attributes, instance types (with the AWS-named aliases).
    let body = ok(app, &e.alice, "DescribeRegions", &[]).await;
    assert_eq!(texts(&body, "regionName"), ["kumo-1"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeAvailabilityZones",
        &[
            ("Filter.1.Name", "state"),
            ("Filter.1.Value.1", "available"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "zoneName"), ["kumo-1a"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeAccountAttributes",
        &[("AttributeName.1", "supported-platforms")],
    )
    .await;
    assert_eq!(texts(&body, "attributeValue"), ["VPC"]);
    let body = ok(
        app,
        &e.alice,
        "DescribeInstanceTypes",
        &[("InstanceType.1", "nano"), ("InstanceType.2", "t3.micro")],
    )
    .await;
    assert_eq!(texts(&body, "instanceType"), ["nano", "t3.micro"]);
    assert_eq!(
        texts(&body, "burstablePerformanceSupported"),
        ["false", "false"]
    );
    assert_eq!(texts(&body, "sizeInMiB"), ["256", "512"]);
    fails(
        app,
        &e.alice,
        "DescribeInstanceTypes",
        &[("InstanceType.1", "m5.24xlarge")],
        400,
        "InvalidInstanceType",
    )
    .await;
    // An alias launches the kumo type and reads back as asked.
    let id = run_one(app, &e.alice, &e.subnet1, &[]).await;
    let _ = id;
    let mut p = run_params(&e.subnet1);
    p.retain(|(k, _)| *k != "InstanceType");
    p.push(("InstanceType", "t3.micro"));
    let body = ok(app, &e.alice, "RunInstances", &p).await;
    assert_eq!(texts(&body, "instanceType"), ["t3.micro"]);
    let iid = texts(&body, "instanceId").pop().unwrap();
    let (inst, _) = instance::find_in(app, &Scope::within("p1"), &iid)
        .await
        .unwrap();
    assert_eq!(inst.instance_type, "micro");
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
