//! Bridges and taps in a private network namespace: creation, idempotence, repair, removal.

#![allow(clippy::unwrap_used)]

use kumo_agent::network::{self, BridgeSpec, link};
use kumo_testutil::{enter_private_netns, require, run};

fn spec() -> BridgeSpec {
    BridgeSpec {
        name: "kbrtest0".into(),
        addresses: vec!["198.18.0.1/24".into()],
        mtu: 1450,
    }
}

#[test]
fn bridge_and_tap_are_idempotent_and_removable() {
    enter_private_netns();
    require("ip", "iproute2");

    network::ensure_bridge(&spec()).unwrap();
    network::ensure_bridge(&spec()).unwrap();
    let br = link::link("kbrtest0").unwrap().expect("bridge exists");
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    assert_eq!(br.mtu, 1450);
    assert!(br.up);
    let addrs: Vec<String> = br.ipv4.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        addrs,
        ["198.18.0.1/24", "169.254.169.254/32"],
        "exactly the two addresses, once each"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    // Nothing left to do once converged.
    assert!(link::plan_bridge(&spec(), Some(&br)).unwrap().is_empty());

    // A partially broken bridge is repaired.
    run(
        "ip",
        &["addr", "del", "169.254.169.254/32", "dev", "kbrtest0"],
    );
    run("ip", &["link", "set", "dev", "kbrtest0", "down"]);
    network::ensure_bridge(&spec()).unwrap();
    let br = link::link("kbrtest0").unwrap().unwrap();
    assert!(br.up && br.ipv4.len() == 2, "{br:?}");

    let tap = network::tap_name("i-0123456789abcdef0", 0);
    network::ensure_tap(&tap, "kbrtest0", 1450).unwrap();
    network::ensure_tap(&tap, "kbrtest0", 1450).unwrap();
    let t = link::link(&tap).unwrap().expect("tap exists");
    assert_eq!(t.kind.as_deref(), Some("tun"));
    assert_eq!(t.master.as_deref(), Some("kbrtest0"));
    assert_eq!(t.mtu, 1450);
    assert!(t.up);
    let details = run("ip", &["-d", "link", "show", "dev", &tap]);
    assert!(
        details.contains("tun type tap"),
        "persistent tap: {details}"
    );

    network::ensure_tap(
        &network::tap_name("i-0123456789abcdef0", 1),
        "kbrtest0",
        1450,
    )
    .unwrap();
    assert_eq!(
        network::list_links_with_prefix("kt").unwrap(),
        ["kt01234567890", "kt01234567891"]
    );

    network::delete_tap(&tap).unwrap();
    network::delete_tap(&tap).unwrap(); // absent is fine
    assert!(!network::link_exists(&tap).unwrap());
    assert_eq!(
        network::list_links_with_prefix("kt").unwrap(),
        ["kt01234567891"]
    );

    // A name clash with a link of another kind is refused, not "repaired".
    assert!(network::delete_tap("kbrtest0").is_err());
    assert!(network::ensure_tap("kbrtest0", "kbrtest0", 1450).is_err());

    network::delete_bridge("kbrtest0").unwrap();
    assert!(!network::link_exists("kbrtest0").unwrap());
    // The remaining tap survives its bridge, detached.
    assert_eq!(link::link("kt01234567891").unwrap().unwrap().master, None);
}
