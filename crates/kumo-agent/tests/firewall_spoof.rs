//! Anti-spoofing with real traffic: a guest that forges its source IP or its MAC gets nothing through;
//! the same guest with its own identity does.

#![allow(clippy::unwrap_used)]

mod firewall_common;

use std::time::Duration;

use firewall_common::*;
use kumo_types::NetworkTopology;

const A: &str = "eni-aaaaaaaaaa0000001";
const B: &str = "eni-bbbbbbbbbb0000002";

fn setup() -> (NetworkTopology, Guest, Guest) {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("busybox", "busybox-static");
    kumo_testutil::require("nft", "nftables");
    let topo = NetworkTopology {
        networks: vec![network("net-1", "kbr0", false)],
        subnets: vec![subnet("subnet-1", "net-1", "198.18.0.0/24", "198.18.0.1")],
        ports: vec![
            port(
                A,
                "net-1",
                "subnet-1",
                "52:54:00:00:00:0a",
                "198.18.0.10",
                &["sg-open"],
            ),
            port(
                B,
                "net-1",
                "subnet-1",
                "52:54:00:00:00:0b",
                "198.18.0.11",
                &["sg-open"],
            ),
        ],
        security_groups: vec![open_group("sg-open")],
        ..Default::default()
    };
    bridge("kbr0", &["198.18.0.1/24".into()]);
    let tap =
        |p: usize| kumo_agent::network::tap_name(topo.ports[p].instance_id.as_deref().unwrap(), 0);
    let a = Guest::new("kbr0", &tap(0), "52:54:00:00:00:0a", "198.18.0.10/24", None);
    let b = Guest::new("kbr0", &tap(1), "52:54:00:00:00:0b", "198.18.0.11/24", None);
    b.serve(8080);
    (topo, a, b)
}

fn set_ip(g: &Guest, cidr: &str) {
    g.ip(&["addr", "flush", "dev", "eth0"]);
    g.ip(&["addr", "add", cidr, "dev", "eth0"]);
}

#[test]
fn forged_source_ip_is_dropped() {
    let (topo, a, b) = setup();
    set_ip(&a, "198.18.0.99/24");
    assert_eq!(
        a.connect(b.ip, 8080).as_deref(),
        Some("198.18.0.99"),
        "without kumo's rules the forgery works (so its failure below is the rules' doing)"
    );
    apply(&topo);
    assert_eq!(a.connect(b.ip, 8080), None, "forged source IP dropped");
    assert!(!a.ping("198.18.0.11"), "forged source IP dropped");

    set_ip(&a, "198.18.0.10/24");
    let took = wait_for(
        "A with its own IP gets through",
        Duration::from_secs(5),
        || a.connect(b.ip, 8080).as_deref() == Some("198.18.0.10"),
    );
    println!("own identity passes after {took:?}");
    // Forging another guest's address (B's neighbour, a live one) is no better.
    set_ip(&a, "198.18.0.11/24");
    assert!(!a.ping("198.18.0.1"), "impersonating B is dropped");
}

#[test]
fn forged_source_mac_is_dropped() {
    let (topo, a, b) = setup();
    apply(&topo);
    wait_for("A reaches B", Duration::from_secs(5), || {
        a.connect(b.ip, 8080).is_some()
    });
    a.ip(&["link", "set", "eth0", "address", "52:54:00:00:00:99"]);
    a.ip(&["neigh", "flush", "dev", "eth0"]);
    b.ip(&["neigh", "flush", "dev", "eth0"]);
    assert_eq!(a.connect(b.ip, 8080), None, "forged MAC dropped");
    assert!(!a.ping("198.18.0.11"), "forged MAC dropped");

    a.ip(&["link", "set", "eth0", "address", "52:54:00:00:00:0a"]);
    let took = wait_for(
        "A with its own MAC gets through",
        Duration::from_secs(5),
        || a.connect(b.ip, 8080).is_some(),
    );
    println!("own MAC passes again after {took:?}");
}
