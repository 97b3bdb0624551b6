//! The pure planner and renderer: golden rulesets for representative topologies, and the decisions
//! (which ports, which rules, fail-closed on bad input) checked directly. No I/O.

#![allow(clippy::unwrap_used)]

mod firewall_common;

use firewall_common::*;
use kumo_agent::network::nft::{self, LocalPort, Remote};
use kumo_types::{Direction, NetworkTopology, Protocol};

const A: &str = "eni-aaaaaaaaaa0000001";
const B: &str = "eni-bbbbbbbbbb0000002";
const R: &str = "eni-dddddddddd0000004";

/// Two networks, a router between them with an external gateway, a floating IP, the default group,
/// a web group with a port range and a CIDR, and a remote port (on another host) in the default group.
fn vpc() -> NetworkTopology {
    let mut web = group(
        "sg-web",
        vec![
            rule(
                "sgr-1",
                Direction::Ingress,
                Protocol::Tcp,
                Some((80, 80)),
                None,
                None,
            ),
            rule(
                "sgr-2",
                Direction::Ingress,
                Protocol::Tcp,
                Some((8000, 8999)),
                Some("198.18.9.7/24"),
                None,
            ),
            rule(
                "sgr-3",
                Direction::Ingress,
                Protocol::Icmp,
                None,
                None,
                Some("sg-default"),
            ),
            rule(
                "sgr-4",
                Direction::Egress,
                Protocol::Udp,
                Some((53, 53)),
                Some("0.0.0.0/0"),
                None,
            ),
        ],
    );
    // The same rule through two groups appears once.
    web.rules.push(rule(
        "sgr-5",
        Direction::Egress,
        Protocol::Any,
        None,
        None,
        None,
    ));
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
                "52:54:00:AA:00:01",
                "198.18.1.10",
                &["sg-default", "sg-web"],
            ),
            port(
                B,
                "net-2",
                "subnet-2",
                "52:54:00:bb:00:02",
                "198.18.2.11",
                &["sg-default"],
            ),
            port(
                R,
                "net-2",
                "subnet-2",
                "52:54:00:dd:00:04",
                "198.18.2.44",
                &["sg-default"],
            ),
        ],
        routers: vec![router(
            "rtr-1",
            &["subnet-1", "subnet-2"],
            Some(("net-ext", "198.19.0.2")),
        )],
        security_groups: vec![default_group("sg-default"), web],
        floating_ips: vec![
            floating(
                "eipalloc-1",
                "net-ext",
                "subnet-ext",
                "198.19.0.100",
                Some(A),
            ),
            floating(
                "eipalloc-2",
                "net-ext",
                "subnet-ext",
                "198.19.0.101",
                Some(R),
            ),
            floating("eipalloc-3", "net-ext", "subnet-ext", "198.19.0.102", None),
        ],
        ..Default::default()
    }
}

fn local(ids: &[&str]) -> Vec<LocalPort> {
    ids.iter()
        .map(|id| {
            let inst = format!("i-{}", &id[4..]);
            LocalPort {
                port_id: id.to_string(),
                tap: kumo_agent::network::tap_name(&inst, 0),
                instance_id: inst,
            }
        })
        .collect()
}

#[test]
fn golden_vpc() {
    let rs = nft::plan(&vpc(), &local(&[A, B]));
    assert!(rs.skipped.is_empty(), "{:?}", rs.skipped);
    insta::assert_snapshot!(nft::render(&rs).unwrap());
}

#[test]
fn golden_empty_host() {
    let rs = nft::plan(&NetworkTopology::default(), &[]);
    insta::assert_snapshot!(nft::render(&rs).unwrap());
}

#[test]
fn golden_nat_network_with_default_group() {
    let mut net = network("net-0", "kbr0", false);
    net.nat = true;
    let topo = NetworkTopology {
        networks: vec![net],
        subnets: vec![subnet("subnet-0", "net-0", "198.18.0.0/24", "198.18.0.1")],
        ports: vec![port(
            A,
            "net-0",
            "subnet-0",
            "52:54:00:00:00:0a",
            "198.18.0.10",
            &["sg-default"],
        )],
        security_groups: vec![default_group("sg-default")],
        ..Default::default()
    };
    insta::assert_snapshot!(nft::render(&nft::plan(&topo, &local(&[A]))).unwrap());
}

#[test]
fn union_of_groups_and_remote_group_sets() {
    let rs = nft::plan(&vpc(), &local(&[A]));
    let a = &rs.ports[0];
    assert_eq!(a.mac, "52:54:00:aa:00:01", "MACs are normalized");
    // sg-default: egress any + ingress from group; sg-web: 4 rules, its egress-any is a duplicate.
    assert_eq!(a.egress.len(), 2, "{:?}", a.egress);
    assert_eq!(a.ingress.len(), 4, "{:?}", a.ingress);
    assert!(
        a.ingress
            .iter()
            .any(|r| r.remote == Remote::Cidr("198.18.9.0".parse().unwrap(), 24))
    );
    let g = rs.groups.iter().find(|g| g.name == "g_sg_default").unwrap();
    let members: Vec<String> = g.members.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        members,
        ["198.18.1.10", "198.18.2.11", "198.18.2.44"],
        "remote ports count"
    );
    // Only the local port's floating IP is programmed; the router SNATs both of its subnets.
    assert_eq!(rs.dnat.len(), 1);
    assert_eq!(
        rs.snat[0].to.to_string(),
        "198.19.0.100",
        "floating SNAT before router SNAT"
    );
    assert_eq!(rs.snat.len(), 3);
    assert_eq!(rs.routed.len(), 2, "both directions");
    let addrs = nft::bridge_addresses(&vpc(), &local(&[A]));
    assert_eq!(addrs["kext"], ["198.19.0.100/32", "198.19.0.2/32"]);
    assert_eq!(addrs.len(), 1);
}

#[test]
fn bad_input_fails_closed() {
    let mut topo = vpc();
    topo.ports[0].mac = "52:54:00:zz:00:01\" accept".into();
    topo.security_groups[1].rules[1].remote_cidr = Some("198.18.9.0/24; accept".into());
    let mut l = local(&[A, B]);
    l.push(LocalPort {
        port_id: "eni-unknown".into(),
        tap: "ktffffffffff0".into(),
        instance_id: "i-x".into(),
    });
    let rs = nft::plan(&topo, &l);
    assert_eq!(rs.ports.len(), 1, "only B survives");
    assert_eq!(
        rs.blocked_taps,
        [l[0].tap.clone(), "ktffffffffff0".to_string()]
    );
    assert_eq!(rs.skipped.len(), 2, "{:?}", rs.skipped);
    let text = nft::render(&rs).unwrap();
    assert!(text.contains("iifname \"ktffffffffff0\" drop"), "{text}");
    assert!(!text.contains("zz"));

    // A bad rule only loses that rule.
    let rs = nft::plan(&topo, &local(&[B]));
    assert!(
        rs.skipped.is_empty(),
        "B is not in sg-web: {:?}",
        rs.skipped
    );
    let mut topo = vpc();
    topo.security_groups[1].rules[1].remote_cidr = Some("nope".into());
    let rs = nft::plan(&topo, &local(&[A]));
    assert_eq!(rs.ports[0].ingress.len(), 3);
    assert_eq!(rs.skipped.len(), 1);
}

#[test]
fn renderer_refuses_injection_in_hand_built_rulesets() {
    let mut rs = nft::plan(&vpc(), &local(&[A]));
    rs.ports[0].tap = "x\" accept;".into();
    assert!(nft::render(&rs).is_err());
    let mut rs = nft::plan(&vpc(), &local(&[A]));
    rs.ports[0].mac = "52:54:00:00:00:0a drop".into();
    assert!(nft::render(&rs).is_err());
    let mut rs = nft::plan(&vpc(), &local(&[A]));
    rs.networks[0].cidr = "198.18.0.0/24; drop".into();
    rs.networks[0].nat = true;
    assert!(nft::render(&rs).is_err());
}
