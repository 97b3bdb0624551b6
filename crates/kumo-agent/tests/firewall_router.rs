//! Isolation and routers with real traffic: two subnets on two bridges cannot talk until a router
//! joins them, and cannot again once it is removed; a router with an external network SNATs its
//! subnets' traffic leaving through the external bridge to its external address.

#![allow(clippy::unwrap_used)]

mod firewall_common;

use std::time::{Duration, Instant};

use firewall_common::*;
use kumo_types::NetworkTopology;

const A: &str = "eni-aaaaaaaaaa0000001";
const B: &str = "eni-bbbbbbbbbb0000002";
const X: &str = "eni-eeeeeeeeee0000009";

fn topology() -> NetworkTopology {
    NetworkTopology {
        networks: vec![
            network("net-1", "kbr1", false),
            network("net-2", "kbr2", false),
            network("net-ext", "kext", true),
        ],
        subnets: vec![
            subnet("subnet-1", "net-1", "198.18.1.0/24", "198.18.1.1"),
            subnet("subnet-2", "net-2", "198.18.2.0/24", "198.18.2.1"),
            subnet("subnet-ext", "net-ext", "198.19.0.0/24", "198.19.0.1"),
        ],
        ports: vec![
            port(
                A,
                "net-1",
                "subnet-1",
                "52:54:00:00:01:0a",
                "198.18.1.10",
                &["sg-open"],
            ),
            port(
                B,
                "net-2",
                "subnet-2",
                "52:54:00:00:02:0b",
                "198.18.2.11",
                &["sg-open"],
            ),
            // The "outside" host on the external network, a port like any other.
            port(
                X,
                "net-ext",
                "subnet-ext",
                "52:54:00:00:09:09",
                "198.19.0.50",
                &["sg-open"],
            ),
        ],
        security_groups: vec![open_group("sg-open")],
        ..Default::default()
    }
}

#[test]
fn subnets_talk_only_through_a_router() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("busybox", "busybox-static");
    kumo_testutil::require("nft", "nftables");
    let mut topo = topology();
    bridge("kbr1", &["198.18.1.1/24".into()]);
    bridge("kbr2", &["198.18.2.1/24".into()]);
    let tap = |p: &str| kumo_agent::network::tap_name(&format!("i-{}", &p[4..]), 0);
    let a = Guest::new(
        "kbr1",
        &tap(A),
        "52:54:00:00:01:0a",
        "198.18.1.10/24",
        Some("198.18.1.1"),
    );
    let b = Guest::new(
        "kbr2",
        &tap(B),
        "52:54:00:00:02:0b",
        "198.18.2.11/24",
        Some("198.18.2.1"),
    );
    b.serve(8080);
    assert!(
        a.ping("198.18.2.11"),
        "the host routes between them without kumo's rules"
    );

    apply(&topo);
    assert!(
        !a.ping("198.18.1.1"),
        "the host is not pingable (host protection)"
    );
    assert!(!a.ping("198.18.2.11"), "different subnets, no router");
    assert_eq!(a.connect(b.ip, 8080), None, "different subnets, no router");

    topo.routers
        .push(router("rtr-1", &["subnet-1", "subnet-2"], None));
    let t0 = Instant::now();
    apply(&topo);
    wait_for(
        "the router joins the subnets",
        Duration::from_secs(5),
        || a.connect(b.ip, 8080).as_deref() == Some("198.18.1.10"),
    );
    println!("router added → traffic passes in {:?}", t0.elapsed());
    assert!(a.ping("198.18.2.11"));
    assert!(b.ping("198.18.1.10"));

    topo.routers.clear();
    apply(&topo);
    assert!(!a.ping("198.18.2.11"), "router removed");
    assert_eq!(a.connect(b.ip, 8080), None, "router removed");
}

#[test]
fn router_snats_to_the_external_network() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("busybox", "busybox-static");
    kumo_testutil::require("nft", "nftables");
    let mut topo = topology();
    topo.routers.push(router(
        "rtr-1",
        &["subnet-1"],
        Some(("net-ext", "198.19.0.2")),
    ));
    let local = all_local(&topo);
    let addrs = kumo_agent::network::nft::bridge_addresses(&topo, &local);
    assert_eq!(
        addrs.get("kext").unwrap(),
        &vec!["198.19.0.2/32".to_string()]
    );
    bridge("kbr1", &["198.18.1.1/24".into()]);
    let mut ext = vec!["198.19.0.1/24".to_string()];
    ext.extend(addrs["kext"].iter().cloned());
    bridge("kext", &ext);
    let tap = |p: &str| kumo_agent::network::tap_name(&format!("i-{}", &p[4..]), 0);
    let a = Guest::new(
        "kbr1",
        &tap(A),
        "52:54:00:00:01:0a",
        "198.18.1.10/24",
        Some("198.18.1.1"),
    );
    let x = Guest::new("kext", &tap(X), "52:54:00:00:09:09", "198.19.0.50/24", None);
    x.serve(9000);
    apply(&topo);
    let took = wait_for("A reaches the outside", Duration::from_secs(5), || {
        a.connect(x.ip, 9000).is_some()
    });
    println!("SNAT in effect after {took:?}");
    assert_eq!(
        a.connect(x.ip, 9000).as_deref(),
        Some("198.19.0.2"),
        "the outside sees the router's external address"
    );
    // No route back into the subnet from outside (X has no route; even with one, isolation holds).
    x.ip(&["route", "add", "198.18.1.0/24", "via", "198.19.0.1"]);
    a.serve(8080);
    assert_eq!(
        x.connect(a.ip, 8080),
        None,
        "the outside cannot reach in without a floating IP"
    );
}
