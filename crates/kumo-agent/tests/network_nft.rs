//! kumo's tables (`bridge kumo`, `inet kumo`) apply atomically, replace themselves, and leave other
//! tables alone; the golden VPC ruleset is accepted by the kernel.

#![allow(clippy::unwrap_used)]

mod firewall_common;

use kumo_agent::network::nft::{self, NatNetwork, Ruleset};
use kumo_testutil::{enter_private_netns, require, run};

#[test]
fn ruleset_applies_and_replaces_only_kumo_tables() {
    enter_private_netns();
    require("nft", "nftables");

    // Somebody else's table must survive every kumo apply.
    run("nft", &["add", "table", "inet", "other"]);
    run("nft", &["add", "chain", "inet", "other", "keep"]);

    assert_eq!(nft::list().unwrap(), None);
    let one = Ruleset {
        networks: vec![NatNetwork {
            bridge: "kbr0".into(),
            cidr: "198.18.0.0/24".into(),
            nat: true,
        }],
        ..Default::default()
    };
    nft::apply(&one).unwrap();
    nft::apply(&one).unwrap();
    let listed = nft::list().unwrap().expect("table inet kumo exists");
    assert!(
        listed.contains("ip saddr 198.18.0.0/24 oifname != @bridges masquerade"),
        "{listed}"
    );
    assert!(
        listed.contains("ct state established,related accept"),
        "{listed}"
    );
    assert_eq!(
        listed.matches("masquerade").count(),
        1,
        "applying twice must not duplicate: {listed}"
    );
    assert!(nft::list_family("bridge").unwrap().is_some());

    let two = Ruleset {
        networks: vec![
            NatNetwork {
                bridge: "kbr1".into(),
                cidr: "198.19.0.0/24".into(),
                nat: true,
            },
            NatNetwork {
                bridge: "kbr2".into(),
                cidr: "198.19.1.0/24".into(),
                nat: false,
            },
        ],
        ..Default::default()
    };
    nft::apply(&two).unwrap();
    let listed = nft::list().unwrap().unwrap();
    assert!(
        !listed.contains("198.18.0.0/24"),
        "old rules replaced: {listed}"
    );
    assert!(!listed.contains("\"kbr0\""), "old rules replaced: {listed}");
    assert!(
        listed.contains("ip saddr 198.19.0.0/24 oifname != @bridges masquerade"),
        "{listed}"
    );
    assert!(
        !listed.contains("198.19.1.0/24"),
        "no NAT for kbr2: {listed}"
    );
    assert!(
        listed.contains("\"kbr2\""),
        "kbr2 is a kumo bridge: {listed}"
    );

    // A broken batch changes nothing (one transaction).
    let bad = nft::render(&one)
        .unwrap()
        .replace("masquerade", "masquerade bogus-keyword");
    let out = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bad.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(!out.success());
    assert_eq!(
        nft::list().unwrap().unwrap(),
        listed,
        "failed batch left the table untouched"
    );

    nft::remove().unwrap();
    nft::remove().unwrap();
    assert_eq!(nft::list().unwrap(), None);
    assert_eq!(nft::list_family("bridge").unwrap(), None);
    assert!(run("nft", &["list", "tables"]).contains("table inet other"));
}

#[test]
fn a_full_vpc_ruleset_is_accepted_by_the_kernel() {
    enter_private_netns();
    require("nft", "nftables");
    use firewall_common::*;
    use kumo_types::{Direction, NetworkTopology, Protocol};
    let mut topo = NetworkTopology {
        networks: vec![
            network("net-1", "kbr1", false),
            network("net-ext", "kext", true),
        ],
        subnets: vec![
            subnet("subnet-1", "net-1", "198.18.1.0/24", "198.18.1.1"),
            subnet("subnet-ext", "net-ext", "198.19.0.0/24", "198.19.0.1"),
        ],
        routers: vec![router(
            "rtr-1",
            &["subnet-1"],
            Some(("net-ext", "198.19.0.2")),
        )],
        security_groups: vec![default_group("sg-default")],
        ..Default::default()
    };
    for i in 0..20u8 {
        topo.ports.push(port(
            &format!("eni-{i:02x}aaaaaaaa0000001"),
            "net-1",
            "subnet-1",
            &format!("52:54:00:00:01:{i:02x}"),
            &format!("198.18.1.{}", 10 + i),
            &["sg-default"],
        ));
        topo.security_groups[0].rules.push(rule(
            &format!("sgr-{i}"),
            Direction::Ingress,
            Protocol::Udp,
            Some((1000 + u16::from(i), 2000)),
            Some("198.18.0.0/15"),
            None,
        ));
    }
    topo.floating_ips.push(floating(
        "eipalloc-1",
        "net-ext",
        "subnet-ext",
        "198.19.0.100",
        Some(&topo.ports[0].id.clone()),
    ));
    let rs = nft::plan(&topo, &all_local(&topo));
    assert!(rs.skipped.is_empty(), "{:?}", rs.skipped);
    nft::apply(&rs).unwrap();
    let listed = nft::list().unwrap().unwrap();
    assert!(listed.contains("dnat ip to 198.18.1.10"), "{listed}");
    assert_eq!(
        listed.matches("udp dport 1000-2000 accept").count(),
        20,
        "{listed}"
    );
}
