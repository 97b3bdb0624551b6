//! Rule programming, two ways, for a security group holding 1 rule and 1,000 rules, p50/p99 over ≥20
//! changes:
//! 1. end to end through a real `kumo server`: `POST /v1/security-groups/{id}/rules` → the rule is in
//!    the kernel's ruleset (`nft list table inet kumo`, polled), for a group on a running instance;
//!    the reference is the bare `nft -f` of the same ruleset, timed by the agent's own apply in (2);
//! 2. in process: "topology changed" → in effect for real traffic (a TCP connect between two fake
//!    guests on a kumo bridge passes); plus plan, render and `nft -f` apply timed alone.
//!
//! Run (root): `cargo run --release -p kumo-bench --bin rules` (`KUMO_BENCH_CHANGES=50` for more).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/kumo-agent/tests/firewall_common/mod.rs"]
mod fw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fw::*;
use kumo_agent::network::nft;
use kumo_bench::{Cloud, percentile, table};
use kumo_types::{Direction, NetworkTopology, Protocol};

const SRV: &str = "eni-aaaaaaaaaa0000001";
const CLI: &str = "eni-cccccccccc0000003";

fn topology(filler: usize) -> NetworkTopology {
    let mut srv = group("sg-srv", vec![]);
    for i in 0..filler {
        srv.rules.push(rule(
            &format!("sgr-f{i}"),
            Direction::Ingress,
            Protocol::Tcp,
            Some((20000 + i as u16, 20000 + i as u16)),
            Some(&format!("10.{}.{}.0/24", i / 256, i % 256)),
            None,
        ));
    }
    NetworkTopology {
        networks: vec![network("net-1", "kbr0", false)],
        subnets: vec![subnet("subnet-1", "net-1", "198.18.0.0/24", "198.18.0.1")],
        ports: vec![
            port(
                SRV,
                "net-1",
                "subnet-1",
                "52:54:00:00:00:0a",
                "198.18.0.10",
                &["sg-srv"],
            ),
            port(
                CLI,
                "net-1",
                "subnet-1",
                "52:54:00:00:00:0c",
                "198.18.0.12",
                &["sg-cli"],
            ),
        ],
        security_groups: vec![
            srv,
            group(
                "sg-cli",
                vec![rule(
                    "sgr-c",
                    Direction::Egress,
                    Protocol::Any,
                    None,
                    None,
                    None,
                )],
            ),
        ],
        ..Default::default()
    }
}

fn the_rule() -> kumo_types::SecurityGroupRule {
    rule(
        "sgr-web",
        Direction::Ingress,
        Protocol::Tcp,
        Some((8080, 8080)),
        Some("198.18.0.0/24"),
        None,
    )
}

struct Sample {
    effect_ms: Vec<f64>,
    plan_ms: Vec<f64>,
    render_ms: Vec<f64>,
    apply_ms: Vec<f64>,
}

fn passes(c: &Guest, dst: SocketAddr) -> bool {
    c.run(move || tcp_probe(dst, Duration::from_millis(5)).is_some())
}

/// `changes` times: remove the rule (wait until blocked), then add it and time until traffic passes.
fn measure(c: &Guest, dst: SocketAddr, filler: usize, changes: usize) -> Sample {
    let mut topo = topology(filler);
    let local = all_local(&topo);
    let mut s = Sample {
        effect_ms: vec![],
        plan_ms: vec![],
        render_ms: vec![],
        apply_ms: vec![],
    };
    for _ in 0..changes {
        topo.security_groups[0].rules.retain(|r| r.id != "sgr-web");
        nft::apply(&nft::plan(&topo, &local)).unwrap();
        wait_for("rule removed", Duration::from_secs(5), || !passes(c, dst));

        topo.security_groups[0].rules.push(the_rule());
        let t0 = Instant::now();
        let rs = nft::plan(&topo, &local);
        let t1 = Instant::now();
        let text = nft::render(&rs).unwrap();
        let t2 = Instant::now();
        nft::apply(&rs).unwrap();
        let t3 = Instant::now();
        wait_for("rule in effect", Duration::from_secs(5), || passes(c, dst));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        s.effect_ms.push(ms(t0.elapsed()));
        s.plan_ms.push(ms(t1 - t0));
        s.render_ms.push(ms(t2 - t1));
        s.apply_ms.push(ms(t3 - t2));
        assert!(!text.is_empty());
    }
    s
}

/// API → kernel: for `changes` times, add a rule on port `base + k` and time until `nft` lists it,
/// then delete it. Returns the milliseconds per change.
async fn api_to_kernel(cloud: &Cloud, group: &str, changes: usize, base: u16) -> Vec<f64> {
    let mut out = Vec::with_capacity(changes);
    for k in 0..changes {
        let port = base + k as u16;
        let body = serde_json::json!({"direction": "ingress", "protocol": "tcp", "port_min": port});
        let needle = format!("tcp dport {port} accept");
        let t0 = Instant::now();
        let g = cloud
            .api_ok(
                "POST",
                &format!("/v1/security-groups/{group}/rules"),
                Some(body),
            )
            .await
            .unwrap();
        loop {
            let listed = nft::list().unwrap().unwrap_or_default();
            if listed.contains(&needle) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "rule never appeared"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        out.push(t0.elapsed().as_secs_f64() * 1e3);
        let rule = g["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["port_min"] == port)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        cloud
            .api_ok(
                "DELETE",
                &format!("/v1/security-groups/{group}/rules/{rule}"),
                None,
            )
            .await
            .unwrap();
    }
    out
}

/// Part 1: a real server with one running tiny instance in group `bench`. Returns, per rule count,
/// the API → kernel milliseconds of each change.
fn end_to_end(changes: usize) -> Vec<(usize, Vec<f64>)> {
    let rt = kumo_bench::runtime().unwrap();
    let rows = rt.block_on(async {
        let cloud = Cloud::start().await.unwrap();
        cloud.import_tiny().await.unwrap();
        cloud
            .api_ok(
                "POST",
                "/v1/security-groups",
                Some(serde_json::json!({"name": "bench"})),
            )
            .await
            .unwrap();
        let body = serde_json::json!({
            "name": "sg-target", "image": "tiny", "instance_type": "nano",
            "security_groups": ["bench"],
        });
        let v = cloud
            .api_ok("POST", "/v1/instances", Some(body))
            .await
            .unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        cloud
            .wait_instance(&id, "running", Duration::from_secs(120), |_, v| {
                v["state"] == "running"
            })
            .await
            .unwrap();
        let mut rows = vec![];
        let one = api_to_kernel(&cloud, "bench", changes, 30000).await;
        rows.push((1, one));
        // Filler rules up to 999 in the group (each its own API call, as a user would add them); the
        // measured one makes 1,000.
        let g = cloud
            .api_ok("GET", "/v1/security-groups/bench", None)
            .await
            .unwrap();
        let have = g["rules"].as_array().map_or(0, Vec::len) as u16;
        for i in 0..999u16.saturating_sub(have) {
            let body = serde_json::json!({
                "direction": "ingress", "protocol": "tcp", "port_min": 20000 + i,
                "remote_cidr": format!("10.{}.{}.0/24", i / 256, i % 256),
            });
            cloud
                .api_ok("POST", "/v1/security-groups/bench/rules", Some(body))
                .await
                .unwrap();
        }
        let many = api_to_kernel(&cloud, "bench", changes, 31000).await;
        rows.push((1000, many));
        rows
    });
    drop(rt);
    // The server is gone; its default bridge would clash with part 2's addresses.
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "kumobr0"])
        .output();
    rows
}

fn main() {
    kumo_bench::enter_netns();
    let changes: usize = std::env::var("KUMO_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(20);
    let e2e = end_to_end(changes);
    bridge("kbr0", &["198.18.0.1/24".into()]);
    let topo = topology(0);
    let tap =
        |i: usize| kumo_agent::network::tap_name(topo.ports[i].instance_id.as_deref().unwrap(), 0);
    let srv = Guest::new("kbr0", &tap(0), "52:54:00:00:00:0a", "198.18.0.10/24", None);
    let cli = Guest::new("kbr0", &tap(1), "52:54:00:00:00:0c", "198.18.0.12/24", None);
    srv.serve(8080);
    let dst = SocketAddr::from((srv.ip, 8080));

    let mut rows = vec![vec![
        "rules in group".to_string(),
        "changes".into(),
        "in effect p50 ms".into(),
        "in effect p99 ms".into(),
        "plan p99 ms".into(),
        "render p99 ms".into(),
        "apply p99 ms".into(),
        "effect/apply p99".into(),
    ]];
    let p = |v: &[f64], q| percentile(v, q).unwrap_or(f64::NAN);
    let mut e2e_rows = vec![vec![
        "rules in group".to_string(),
        "changes".into(),
        "API → kernel p50 ms".into(),
        "API → kernel p99 ms".into(),
        "bare nft -f p99 ms".into(),
        "API→kernel / nft -f (p99)".into(),
    ]];
    for total in [1usize, 1000] {
        let s = measure(&cli, dst, total - 1, changes);
        if let Some((_, api)) = e2e.iter().find(|(n, _)| *n == total) {
            e2e_rows.push(vec![
                total.to_string(),
                changes.to_string(),
                format!("{:.1}", p(api, 50.0)),
                format!("{:.1}", p(api, 99.0)),
                format!("{:.1}", p(&s.apply_ms, 99.0)),
                format!("{:.2}", p(api, 99.0) / p(&s.apply_ms, 99.0)),
            ]);
        }
        rows.push(vec![
            total.to_string(),
            changes.to_string(),
            format!("{:.2}", p(&s.effect_ms, 50.0)),
            format!("{:.2}", p(&s.effect_ms, 99.0)),
            format!("{:.2}", p(&s.plan_ms, 99.0)),
            format!("{:.2}", p(&s.render_ms, 99.0)),
            format!("{:.2}", p(&s.apply_ms, 99.0)),
            format!("{:.2}", p(&s.effect_ms, 99.0) / p(&s.apply_ms, 99.0)),
        ]);
    }
    println!(
        "rule programming: topology change → TCP connect passes (plan + render + nft -f + first packet)"
    );
    print!("{}", table(&rows));
    println!();
    println!(
        "rule programming, end to end: POST rule → listed by `nft list table inet kumo` (real server, \
         agent woken by the store watch), against the bare `nft -f` of a ruleset of that size"
    );
    print!("{}", table(&e2e_rows));
    println!("goal: in effect within 1 s (issue 3)");
}
