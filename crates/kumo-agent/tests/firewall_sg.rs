//! Security groups with real traffic between fake guests (child network namespaces) on one bridge:
//! the default group lets members talk and keeps others out; an ingress rule opens a TCP port and
//! removing it closes the port again.

#![allow(clippy::unwrap_used)]

mod firewall_common;

use std::time::Duration;

use firewall_common::*;
use kumo_types::{Direction, NetworkTopology, Protocol};

const A: &str = "eni-aaaaaaaaaa0000001";
const B: &str = "eni-bbbbbbbbbb0000002";
const C: &str = "eni-cccccccccc0000003";
const MAC_A: &str = "52:54:00:00:00:0a";
const MAC_B: &str = "52:54:00:00:00:0b";
const MAC_C: &str = "52:54:00:00:00:0c";

/// A and B in the default group, C only in an egress-only "client" group.
fn topology() -> NetworkTopology {
    NetworkTopology {
        networks: vec![network("net-1", "kbr0", false)],
        subnets: vec![subnet("subnet-1", "net-1", "198.18.0.0/24", "198.18.0.1")],
        ports: vec![
            port(
                A,
                "net-1",
                "subnet-1",
                MAC_A,
                "198.18.0.10",
                &["sg-default"],
            ),
            port(
                B,
                "net-1",
                "subnet-1",
                MAC_B,
                "198.18.0.11",
                &["sg-default"],
            ),
            port(C, "net-1", "subnet-1", MAC_C, "198.18.0.12", &["sg-client"]),
        ],
        security_groups: vec![
            default_group("sg-default"),
            group(
                "sg-client",
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

fn guests(topo: &NetworkTopology) -> Vec<Guest> {
    bridge("kbr0", &["198.18.0.1/24".into()]);
    topo.ports
        .iter()
        .map(|p| {
            let tap = kumo_agent::network::tap_name(p.instance_id.as_deref().unwrap(), 0);
            Guest::new(
                "kbr0",
                &tap,
                &p.mac,
                &format!("{}/24", p.ipv4),
                Some("198.18.0.1"),
            )
        })
        .collect()
}

#[test]
fn default_group_members_talk_and_others_are_kept_out() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("busybox", "busybox-static");
    kumo_testutil::require("nft", "nftables");
    let topo = topology();
    let g = guests(&topo);
    let (a, b, c) = (&g[0], &g[1], &g[2]);
    b.serve(8080);
    // Without kumo's rules everyone reaches everyone (so the drops below are the rules' doing).
    assert!(c.ping("198.18.0.11"));
    assert!(c.connect(b.ip, 8080).is_some());

    apply(&topo);
    let took = wait_for("A reaches B (same group)", Duration::from_secs(5), || {
        a.connect(b.ip, 8080).as_deref() == Some("198.18.0.10")
    });
    println!("default group in effect after {took:?}");
    assert!(a.ping("198.18.0.11"), "members ping each other");
    assert!(b.ping("198.18.0.10"), "members ping each other");
    assert_eq!(c.connect(b.ip, 8080), None, "a non-member is kept out");
    assert!(!c.ping("198.18.0.11"), "a non-member is kept out");
    // C's egress is open, replies to its own connections come back: C reaches nobody, though, because
    // nobody allows C in; B reaching C is refused by C's ingress (the client group allows none).
    assert!(!b.ping("198.18.0.12"));
}

#[test]
fn ingress_rule_opens_a_port_and_removing_it_closes_it() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("busybox", "busybox-static");
    kumo_testutil::require("nft", "nftables");
    let mut topo = topology();
    let g = guests(&topo);
    let (b, c) = (&g[1], &g[2]);
    b.serve(8080);
    b.serve(8081);
    apply(&topo);
    assert_eq!(c.connect(b.ip, 8080), None, "blocked by the default group");

    topo.security_groups[0].rules.push(rule(
        "sgr-web",
        Direction::Ingress,
        Protocol::Tcp,
        Some((8080, 8080)),
        Some("198.18.0.0/24"),
        None,
    ));
    let t0 = std::time::Instant::now();
    apply(&topo);
    wait_for("the rule opens 8080", Duration::from_secs(5), || {
        c.connect(b.ip, 8080).as_deref() == Some("198.18.0.12")
    });
    println!("rule added → traffic passes in {:?}", t0.elapsed());
    assert_eq!(c.connect(b.ip, 8081), None, "only the opened port");
    assert!(!c.ping("198.18.0.11"), "only tcp");

    topo.security_groups[0].rules.pop();
    let t0 = std::time::Instant::now();
    apply(&topo);
    wait_for(
        "removing the rule closes 8080",
        Duration::from_secs(5),
        || c.connect(b.ip, 8080).is_none(),
    );
    println!("rule removed → traffic stops in {:?}", t0.elapsed());
}
