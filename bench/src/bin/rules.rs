//! Rule programming: time from "topology changed" to the change being in effect for real traffic
//! (a TCP connect between two fake guests on a kumo bridge passes), p50/p99 over ≥20 changes, for a
//! security group holding 1 rule and 1,000 rules; plus plan, render and `nft -f` apply timed alone.
//!
//! Run (root): `cargo run --release -p kumo-bench --bin rules` (`KUMO_BENCH_CHANGES=50` for more).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/kumo-agent/tests/firewall_common/mod.rs"]
mod fw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fw::*;
use kumo_agent::network::nft;
use kumo_bench::{percentile, table};
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

fn main() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("nft", "nftables");
    let changes: usize = std::env::var("KUMO_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(20);
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
    for total in [1usize, 1000] {
        let s = measure(&cli, dst, total - 1, changes);
        let p = |v: &[f64], q| percentile(v, q).unwrap_or(f64::NAN);
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
    println!("goal: in effect within 1 s (issue 3)");
}
