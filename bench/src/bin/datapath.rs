//! Datapath: TCP throughput (iperf3, one stream) between two network namespaces
//! (1) over a bare veth pair — the reference — and (1b) through a plain Linux bridge with no rules (the
//!     same topology as kumo's: two veth hops and a bridge) — the second reference — and, in the same run,
//! (2) through a kumo bridge with kumo's full ruleset (anti-spoofing, br_netfilter + conntrack,
//!     security-group chains; both guests in the default group),
//! (3) routed between two kumo bridges joined by a router (same rules + isolation),
//! (4) across a VXLAN network between two "hosts" (namespaces joined by a veth underlay), each with
//!     its kumo bridge, `kx<vni>` device and flood entry made by the agent's own functions and its own
//!     kumo ruleset; guests at the network MTU (1450).
//! Runs alternate so drift hits all paths alike; the median of `KUMO_BENCH_ROUNDS` (default 3) counts.
//!
//! Run (root, Debian `iperf3`): `cargo run --release -p kumo-bench --bin datapath`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/kumo-agent/tests/firewall_common/mod.rs"]
mod fw;

use std::process::{Command, Stdio};

use fw::*;
use kumo_bench::{percentile, table};
use kumo_types::NetworkTopology;

const SECS: &str = "3";

/// One iperf3 run from `client` ns to `server_ip` (server in `server` ns); bits/s received. Each try
/// starts a fresh one-off server and is bounded in time; a try whose client reports no result is
/// retried (up to 20).
fn iperf(server: &str, client: &str, server_ip: &str) -> f64 {
    let mut last = String::new();
    for _ in 0..20 {
        if let Some(bps) = iperf_once(server, client, server_ip, &mut last) {
            return bps;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("iperf3 {client} → {server_ip} gave no result in 20 tries; last output: {last}");
}

fn iperf_once(server: &str, client: &str, server_ip: &str, last: &mut String) -> Option<f64> {
    let mut srv = Command::new("ip")
        .args(["netns", "exec", server, "iperf3", "-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    // Let the server bind before the client connects.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            client,
            "timeout",
            "30",
            "iperf3",
            "-c",
            server_ip,
            "-p",
            "5201",
            "-t",
            SECS,
            "-J",
            "--connect-timeout",
            "2000",
        ])
        .output()
        .expect("iperf3 client");
    // A one-off server exits after its test; it has been seen to linger, so bound it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while srv.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = srv.kill();
            let _ = srv.wait();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    *last = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
}

fn main() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("iperf3", "iperf3");
    kumo_testutil::require("nft", "nftables");
    let rounds: usize = std::env::var("KUMO_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    // (1) bare veth pair between two namespaces.
    let n1 = format!("kumo-t-ref1-{}", std::process::id());
    let n2 = format!("kumo-t-ref2-{}", std::process::id());
    sh(&["ip", "netns", "add", &n1]);
    sh(&["ip", "netns", "add", &n2]);
    let _cleanup = NsGuard(vec![n1.clone(), n2.clone()]);
    sh(&[
        "ip", "link", "add", "v1", "netns", &n1, "type", "veth", "peer", "name", "v2", "netns", &n2,
    ]);
    for (ns, dev, ip) in [
        (&n1, "v1", "198.19.255.1/30"),
        (&n2, "v2", "198.19.255.2/30"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", ip, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    // (1b) a plain Linux bridge with no rules between two namespaces: the same two veth hops and bridge
    // as kumo's path, so (2) / (1b) is what kumo's rules themselves cost.
    let p1 = format!("kumo-t-pb1-{}", std::process::id());
    let p2 = format!("kumo-t-pb2-{}", std::process::id());
    let ph = format!("kumo-t-pbh-{}", std::process::id());
    for n in [&p1, &p2, &ph] {
        sh(&["ip", "netns", "add", n]);
    }
    let _cleanup_plain = NsGuard(vec![p1.clone(), p2.clone(), ph.clone()]);
    sh(&["ip", "-n", &ph, "link", "add", "pbr0", "type", "bridge"]);
    sh(&["ip", "-n", &ph, "link", "set", "pbr0", "up"]);
    for (ns, hostend, ip) in [
        (&p1, "pv1", "198.19.254.129/25"),
        (&p2, "pv2", "198.19.254.130/25"),
    ] {
        sh(&[
            "ip", "link", "add", hostend, "netns", &ph, "type", "veth", "peer", "name", "eth0",
            "netns", ns,
        ]);
        sh(&[
            "ip", "-n", &ph, "link", "set", hostend, "master", "pbr0", "up",
        ]);
        sh(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    // (2) + (3): kumo bridges, fake guests, the real ruleset.
    const A: &str = "eni-aaaaaaaaaa0000001";
    const B: &str = "eni-bbbbbbbbbb0000002";
    const D: &str = "eni-dddddddddd0000004";
    let topo = NetworkTopology {
        networks: vec![
            network("net-1", "kbr1", false),
            network("net-2", "kbr2", false),
        ],
        subnets: vec![
            subnet("subnet-1", "net-1", "198.18.1.0/24", "198.18.1.1"),
            subnet("subnet-2", "net-2", "198.18.2.0/24", "198.18.2.1"),
        ],
        ports: vec![
            port(
                A,
                "net-1",
                "subnet-1",
                "52:54:00:00:01:0a",
                "198.18.1.10",
                &["sg-default"],
            ),
            port(
                B,
                "net-1",
                "subnet-1",
                "52:54:00:00:01:0b",
                "198.18.1.11",
                &["sg-default"],
            ),
            port(
                D,
                "net-2",
                "subnet-2",
                "52:54:00:00:02:0d",
                "198.18.2.13",
                &["sg-default"],
            ),
        ],
        routers: vec![router("rtr-1", &["subnet-1", "subnet-2"], None)],
        security_groups: vec![default_group("sg-default")],
        ..Default::default()
    };
    bridge("kbr1", &["198.18.1.1/24".into()]);
    bridge("kbr2", &["198.18.2.1/24".into()]);
    let tap =
        |i: usize| kumo_agent::network::tap_name(topo.ports[i].instance_id.as_deref().unwrap(), 0);
    let a = Guest::new(
        "kbr1",
        &tap(0),
        "52:54:00:00:01:0a",
        "198.18.1.10/24",
        Some("198.18.1.1"),
    );
    let b = Guest::new(
        "kbr1",
        &tap(1),
        "52:54:00:00:01:0b",
        "198.18.1.11/24",
        Some("198.18.1.1"),
    );
    let d = Guest::new(
        "kbr2",
        &tap(2),
        "52:54:00:00:02:0d",
        "198.18.2.13/24",
        Some("198.18.2.1"),
    );
    apply(&topo);
    assert!(
        a.ping("198.18.1.11") && a.ping("198.18.2.13"),
        "paths work under the ruleset"
    );
    let rules = kumo_agent::network::nft::list()
        .unwrap()
        .unwrap_or_default();
    assert!(rules.contains("jump isolate"), "kumo ruleset is loaded");

    let vx = VxlanPair::new();

    let (mut bare, mut plain, mut bridged, mut routed, mut vxlan) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        bare.push(iperf(&n2, &n1, "198.19.255.2"));
        plain.push(iperf(&p2, &p1, "198.19.254.130"));
        bridged.push(iperf(&b.ns, &a.ns, "198.18.1.11"));
        routed.push(iperf(&d.ns, &a.ns, "198.18.2.13"));
        vxlan.push(iperf(&vx.guests[1].ns, &vx.guests[0].ns, "198.18.5.11"));
    }
    let med = |v: &[f64]| percentile(v, 50.0).unwrap_or(f64::NAN);
    let r = med(&bare);
    let gbit = |x: f64| format!("{:.2}", x / 1e9);
    let rows = vec![
        vec![
            "path".to_string(),
            "Gbit/s (median)".into(),
            "ratio vs veth".into(),
            "goal".into(),
        ],
        vec![
            "bare veth pair (reference)".into(),
            gbit(r),
            "1.00".into(),
            String::new(),
        ],
        vec![
            "plain Linux bridge, no rules (reference 2)".into(),
            gbit(med(&plain)),
            format!("{:.2}", med(&plain) / r),
            String::new(),
        ],
        vec![
            "kumo bridge + SG chains".into(),
            gbit(med(&bridged)),
            format!("{:.2}", med(&bridged) / r),
            "≥ 0.85".into(),
        ],
        vec![
            "kumo router (2 bridges) + SG chains".into(),
            gbit(med(&routed)),
            format!("{:.2}", med(&routed) / r),
            String::new(),
        ],
        vec![
            "kumo VXLAN network, 2 hosts + SG chains".into(),
            gbit(med(&vxlan)),
            format!("{:.2}", med(&vxlan) / r),
            "≥ 0.6".into(),
        ],
    ];
    println!("datapath: iperf3 -t {SECS}, 1 TCP stream, {rounds} rounds, alternating");
    print!("{}", table(&rows));
    println!(
        "kumo bridge + SG chains / plain bridge: {:.2} (what kumo's rules cost on the same topology)",
        med(&bridged) / med(&plain)
    );
}

struct NsGuard(Vec<String>);

impl Drop for NsGuard {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Two "hosts" (namespaces) joined by a veth underlay, each carrying the VXLAN network `net-x`
/// (VNI 100, MTU 1450) with one guest and its own kumo ruleset. Dropping it removes everything.
struct VxlanPair {
    guests: Vec<Guest>,
    _hosts: NsGuard,
}

impl VxlanPair {
    fn new() -> VxlanPair {
        use std::net::Ipv4Addr;
        const MTU: u32 = 1450;
        let hosts: Vec<String> = (1..=2)
            .map(|i| format!("kumo-t-vxh{i}-{}", std::process::id()))
            .collect();
        for h in &hosts {
            sh(&["ip", "netns", "add", h]);
            sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
        }
        let guard = NsGuard(hosts.clone());
        sh(&[
            "ip", "link", "add", "u1", "netns", &hosts[0], "type", "veth", "peer", "name", "u2",
            "netns", &hosts[1],
        ]);
        let under = [
            Ipv4Addr::new(198, 19, 254, 1),
            Ipv4Addr::new(198, 19, 254, 2),
        ];
        const X1: &str = "eni-1111111111000000a";
        const X2: &str = "eni-2222222222000000b";
        let topo = NetworkTopology {
            networks: vec![network("net-x", "kbrx", false)],
            subnets: vec![subnet("subnet-x", "net-x", "198.18.5.0/24", "198.18.5.1")],
            ports: vec![
                port(
                    X1,
                    "net-x",
                    "subnet-x",
                    "52:54:00:00:05:0a",
                    "198.18.5.10",
                    &["sg-default"],
                ),
                port(
                    X2,
                    "net-x",
                    "subnet-x",
                    "52:54:00:00:05:0b",
                    "198.18.5.11",
                    &["sg-default"],
                ),
            ],
            security_groups: vec![default_group("sg-default")],
            ..Default::default()
        };
        let local = all_local(&topo);
        let mut guests = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            let dev = format!("u{}", i + 1);
            sh(&[
                "ip",
                "-n",
                h,
                "addr",
                "add",
                &format!("{}/30", under[i]),
                "dev",
                &dev,
            ]);
            sh(&["ip", "-n", h, "link", "set", &dev, "up"]);
            let (topo, mine) = (topo.clone(), local[i].clone());
            let (me, peer) = (under[i], under[1 - i]);
            let ip = format!("198.18.5.1{i}/24");
            let mac = format!("52:54:00:00:05:0{}", ["a", "b"][i]);
            let g = in_netns(h, move || {
                use kumo_agent::network;
                network::ensure_bridge(&network::BridgeSpec {
                    name: "kbrx".into(),
                    addresses: vec![],
                    mtu: MTU,
                })
                .expect("bridge");
                let dev = network::ensure_vxlan("kbrx", 100, me, network::VXLAN_PORT, MTU)
                    .expect("vxlan device");
                network::sync_vxlan_peers(&dev, me, &[peer]).expect("flood entry");
                let g = Guest::new("kbrx", &mine.tap, &mac, &ip, None);
                sh(&["ip", "link", "set", &mine.tap, "mtu", &MTU.to_string()]);
                g.ip(&["link", "set", "eth0", "mtu", &MTU.to_string()]);
                let rs = kumo_agent::network::nft::plan(&topo, std::slice::from_ref(&mine));
                kumo_agent::network::nft::apply(&rs).expect("ruleset");
                g
            });
            guests.push(g);
        }
        let ok = (0..50).any(|_| guests[0].ping("198.18.5.11"));
        assert!(ok, "guests reach each other over VXLAN under the ruleset");
        VxlanPair {
            guests,
            _hosts: guard,
        }
    }
}

/// Run `f` on a thread that has entered the named network namespace (commands it starts run there).
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
            // SAFETY: setns on an open namespace fd; it affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}
