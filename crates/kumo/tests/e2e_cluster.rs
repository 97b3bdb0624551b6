//! Many hosts on one machine (issue 5): each host is a `kumo agent` in its own network namespace,
//! cabled by a veth to a test switch where the server listens (see `common/cluster.rs`).

mod common;

use common::cluster::Cluster;
use serde_json::{Value, json};

fn post(c: &Cluster, path: &str, body: Value) -> Value {
    let (s, v) = c.cloud.http("POST", path, Some(&body.to_string()));
    assert!(
        (200..300).contains(&s),
        "POST {path}: {s} {v}\n{}",
        c.logs()
    );
    v
}

fn run_on(c: &Cluster, name: &str, network: &str) -> Value {
    post(
        c,
        "/v1/instances",
        json!({"name": name, "image": "tiny", "instance_type": "nano",
            "nics": [{"network": network}]}),
    );
    c.cloud.wait_state(name, "running");
    c.wait_console(name, "KUMO-READY");
    c.instance(name)
}

/// Guests on one VXLAN network but on different hosts reach each other through the tunnel; the
/// hosts fetched the image from the control plane on first use; their serial logs and interactive
/// consoles are served by the API; once the image is deleted the hosts drop their copies.
#[test]
fn vxlan_network_spans_hosts() {
    let c = Cluster::start(2, &[]);
    c.cloud.import_tiny();
    post(
        &c,
        "/v1/networks",
        json!({"name": "overlay", "kind": "vxlan"}),
    );
    post(
        &c,
        "/v1/subnets",
        json!({"name": "overlay-a", "network": "overlay", "cidr": "198.18.60.0/24"}),
    );
    let a = run_on(&c, "a", "overlay");
    let b = run_on(&c, "b", "overlay");
    let (ha, hb) = (c.host_of("a"), c.host_of("b"));
    assert_ne!(ha, hb, "spread placement puts them on different hosts");
    for h in [&ha, &hb] {
        let img = c.cloud.json(&["image", "show", "tiny"]);
        let id = img["id"].as_str().expect("image id");
        assert!(
            c.host(h)
                .data_dir()
                .join("pool/images")
                .join(id)
                .join("kernel")
                .is_file(),
            "{h} has the image"
        );
    }
    // The API serves both guests' serial logs, read on their hosts by the hosts' agents.
    for name in ["a", "b"] {
        let out = c.cloud.kumo(&["instance", "logs", name]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("KUMO-READY"),
            "kumo instance logs {name}: {}\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
    }
    let ip_b = b["ipv4"].as_str().expect("ipv4 b");
    let ip_a = a["ipv4"].as_str().expect("ipv4 a");
    c.console_until("a", &format!("ping -c 2 -W 2 {ip_b}"), "a pings b", |o| {
        o.contains(" 0% packet loss")
    });
    c.console_until("b", &format!("ping -c 2 -W 2 {ip_a}"), "b pings a", |o| {
        o.contains(" 0% packet loss")
    });

    // The interactive console of a guest on another host than the server's, through the server's
    // TLS listener (trusting the cluster CA): the host's agent joins the serial socket to it.
    let out = c.cloud.console_session(
        "a",
        Some(&c.server_url),
        Some(&c.cloud.data_dir().join("tls/ca.pem")),
        b"\necho CONSOLE-$((40+2))\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CONSOLE-42"),
        "console over TLS to another host: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );

    // A host's certificate reports only on its own instances: host b's cannot report a's status
    // or remove it.
    let a_id = a["id"].as_str().expect("id a");
    let ca = std::fs::read(c.cloud.data_dir().join("tls/ca.pem")).expect("ca.pem");
    let tls = c.host(&hb).data_dir().join("tls");
    let mut id_b = std::fs::read(tls.join("host.pem")).expect("host.pem");
    id_b.extend(std::fs::read(tls.join("host.key")).expect("host.key"));
    let url = |what: &str| format!("{}/internal/v1/instances/{a_id}/{what}", c.server_url);
    let (s, v) = common::tls_call(&ca, Some(&id_b), None, "POST", &url("removed"), None);
    assert_eq!(s, 403, "host b removing a: {v}");
    let st = json!({"state": "stopped", "updated_at": "2026-01-01T00:00:00Z"});
    let (s, v) = common::tls_call(&ca, Some(&id_b), None, "POST", &url("status"), Some(st));
    assert_eq!(s, 403, "host b reporting on a: {v}");
    let ev = json!({"resource": a_id, "kind": "instance.stopped", "message": "forged"});
    let eurl = format!("{}/internal/v1/events", c.server_url);
    let (s, v) = common::tls_call(&ca, Some(&id_b), None, "POST", &eurl, Some(ev));
    assert_eq!(s, 403, "host b writing a's events: {v}");
    assert_eq!(c.instance("a")["state"], "running");
    // Nor on a volume that lives on host a.
    let vol = post(
        &c,
        "/v1/volumes",
        json!({"name": "va", "size_gib": 1, "host": ha}),
    );
    let vol_id = vol["id"].as_str().expect("volume id");
    let vurl = format!("{}/internal/v1/volumes/{vol_id}/removed", c.server_url);
    let (s, v) = common::tls_call(&ca, Some(&id_b), None, "POST", &vurl, None);
    assert_eq!(s, 403, "host b removing a's volume: {v}");
    c.cloud.ok(&["volume", "delete", "va"]);

    // Once the image is deleted, the hosts drop their cached copies.
    let image = c.cloud.json(&["image", "show", "tiny"])["id"]
        .as_str()
        .expect("image id")
        .to_string();
    c.cloud.ok(&["instance", "delete", "a", "--wait"]);
    c.cloud.ok(&["instance", "delete", "b", "--wait"]);
    c.cloud.ok(&["image", "delete", "tiny"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    for h in [&ha, &hb] {
        let dir = c.host(h).data_dir().join("pool/images").join(&image);
        while dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{h} still has {}\n{}",
                dir.display(),
                c.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// A hard spread group of three lands on three hosts (agents in their own namespaces, running the
/// guests); a fourth member is refused, naming the group and the hosts that hold its members.
#[test]
fn hard_spread_group_of_three_on_three_hosts_refuses_a_fourth() {
    let c = Cluster::start(3, &[]);
    c.cloud.import_boot_sector(b"KUMO-SPREAD");
    c.cloud.ok(&[
        "placement-group",
        "create",
        "--name",
        "web",
        "--strategy",
        "spread",
    ]);
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let name = format!("web-{i}");
        post(
            &c,
            "/v1/instances",
            json!({"name": name, "image": "bootsector", "instance_type": "nano",
                "placement_group": "web"}),
        );
        c.cloud.wait_state(&name, "running");
        c.wait_console(&name, "KUMO-SPREAD");
        hosts.push(c.host_of(&name));
    }
    let distinct: std::collections::BTreeSet<&String> = hosts.iter().collect();
    assert_eq!(distinct.len(), 3, "one member per host: {hosts:?}");

    let (s, e) = c.cloud.http(
        "POST",
        "/v1/instances",
        Some(
            &json!({"name": "web-4", "image": "bootsector", "instance_type": "nano",
                "placement_group": "web"})
            .to_string(),
        ),
    );
    assert_eq!(s, 503, "{e}");
    assert_eq!(e["code"], "insufficient_capacity", "{e}");
    assert_eq!(e["field"], "placement_group", "{e}");
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("3 hosts considered")
            && msg.contains("3 already hold a member of hard spread group `web`"),
        "{e}"
    );
    for h in &hosts {
        assert!(msg.contains(h.as_str()), "the reason names {h}: {e}");
    }
    // Nothing half-created.
    assert_eq!(c.cloud.http("GET", "/v1/instances/web-4", None).0, 404);
}
