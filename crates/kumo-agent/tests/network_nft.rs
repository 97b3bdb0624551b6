//! The `inet kumo` table applies atomically, replaces itself, and leaves other tables alone.

#![allow(clippy::unwrap_used)]

use kumo_agent::network::nft::{self, NatNetwork, Ruleset};
use kumo_testutil::{enter_private_netns, require, run};

#[test]
fn ruleset_applies_and_replaces_only_kumo_table() {
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
    };
    nft::apply(&one).unwrap();
    nft::apply(&one).unwrap();
    let listed = nft::list().unwrap().expect("table inet kumo exists");
    assert!(
        listed.contains("ip saddr 198.18.0.0/24 oifname != \"kbr0\" masquerade"),
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
    };
    nft::apply(&two).unwrap();
    let listed = nft::list().unwrap().unwrap();
    assert!(
        !listed.contains("198.18.0.0/24"),
        "old rules replaced: {listed}"
    );
    assert!(
        listed.contains("ip saddr 198.19.0.0/24 oifname != \"kbr1\" masquerade"),
        "{listed}"
    );
    assert!(
        !listed.contains("oifname != \"kbr2\""),
        "no NAT for kbr2: {listed}"
    );
    assert!(
        listed.contains("iifname \"kbr2\" ip saddr 198.19.1.0/24 accept"),
        "{listed}"
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
    assert!(run("nft", &["list", "tables"]).contains("table inet other"));
}
