//! Floating IPs with real traffic: an "outside" namespace on the external bridge reaches a guest
//! through its floating address; the guest's own outbound traffic leaves as the floating address;
//! disassociating it stops both.

#![allow(clippy::unwrap_used)]

mod firewall_common;

use std::time::{Duration, Instant};

use firewall_common::*;
use kumo_types::NetworkTopology;

const A: &str = "eni-aaaaaaaaaa0000001";
const X: &str = "eni-eeeeeeeeee0000009";
const FIP: &str = "198.19.0.100";

#[test]
fn floating_ip_makes_a_guest_reachable_until_disassociated() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("busybox", "busybox-static");
    kumo_testutil::require("nft", "nftables");
    let mut topo = NetworkTopology {
        networks: vec![
            network("net-1", "kbr1", false),
            network("net-ext", "kext", true),
        ],
        subnets: vec![
            subnet("subnet-1", "net-1", "198.18.1.0/24", "198.18.1.1"),
            subnet("subnet-ext", "net-ext", "198.19.0.0/24", "198.19.0.1"),
        ],
        ports: vec![
            port(
                A,
                "net-1",
                "subnet-1",
                "52:54:00:00:01:0a",
                "198.18.1.10",
                &["sg-web"],
            ),
            port(
                X,
                "net-ext",
                "subnet-ext",
                "52:54:00:00:09:09",
                "198.19.0.50",
                &["sg-open"],
            ),
        ],
        security_groups: vec![
            open_group("sg-open"),
            group(
                "sg-web",
                vec![
                    rule(
                        "sgr-e",
                        kumo_types::Direction::Egress,
                        kumo_types::Protocol::Any,
                        None,
                        None,
                        None,
                    ),
                    rule(
                        "sgr-w",
                        kumo_types::Direction::Ingress,
                        kumo_types::Protocol::Tcp,
                        Some((8080, 8080)),
                        None,
                        None,
                    ),
                ],
            ),
        ],
        floating_ips: vec![floating(
            "eipalloc-1",
            "net-ext",
            "subnet-ext",
            FIP,
            Some(A),
        )],
        ..Default::default()
    };
    let local = all_local(&topo);
    let addrs = kumo_agent::network::nft::bridge_addresses(&topo, &local);
    assert_eq!(addrs.get("kext").unwrap(), &vec![format!("{FIP}/32")]);
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
    a.serve(8080);
    x.serve(9000);
    let fip = FIP.parse().unwrap();

    let t0 = Instant::now();
    apply(&topo);
    wait_for(
        "outside reaches the guest via its floating IP",
        Duration::from_secs(5),
        || x.connect(fip, 8080).is_some(),
    );
    println!("floating IP in effect after {:?}", t0.elapsed());
    assert_eq!(
        x.connect(fip, 8080).as_deref(),
        Some("198.19.0.50"),
        "DNAT only: the guest sees the real client"
    );
    assert_eq!(
        a.connect(x.ip, 9000).as_deref(),
        Some(FIP),
        "the guest's own traffic leaves as its floating IP"
    );
    assert_eq!(
        x.connect(fip, 8081),
        None,
        "the guest's security group still applies"
    );
    assert_eq!(
        x.connect(a.ip, 8080),
        None,
        "the fixed IP is not reachable from outside"
    );

    // Disassociate: the agent replans (no DNAT/SNAT) and drops the /32 from the bridge.
    topo.floating_ips[0].port_id = None;
    let addrs = kumo_agent::network::nft::bridge_addresses(&topo, &local);
    assert!(!addrs.contains_key("kext"));
    let t0 = Instant::now();
    apply(&topo);
    sh(&["ip", "addr", "del", &format!("{FIP}/32"), "dev", "kext"]);
    wait_for("disassociation stops it", Duration::from_secs(5), || {
        x.connect(fip, 8080).is_none()
    });
    println!("floating IP removed → traffic stops in {:?}", t0.elapsed());
    assert!(!x.ping(FIP));
    assert_eq!(
        a.connect(x.ip, 9000),
        None,
        "no SNAT, no router: the guest cannot get out"
    );
}
