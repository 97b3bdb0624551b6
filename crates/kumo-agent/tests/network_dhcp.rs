//! dnsmasq hands a fixed address to a real DHCP client (busybox udhcpc on a veth attached to the
//! bridge), is adopted instead of duplicated, and leaves no lease behind after `release`; on a network
//! with several subnets each subnet gets its own router/DNS/routes, and the network's DNS server
//! answers instance names (and nothing else).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use kumo_agent::network::dnsmasq::lease_present;
use kumo_agent::network::{self, BridgeSpec, DhcpHost, DhcpSubnet, Dnsmasq, DnsmasqConfig};
use kumo_testutil::{PidGuard, enter_private_netns, pid_alive, require, run};

const MAC: &str = "52:54:00:12:34:56";
const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);

fn cfg(dir: &Path, mtu: u32) -> DnsmasqConfig {
    DnsmasqConfig {
        bridge: "kbrdhcp".into(),
        domain: "test.kumo.internal".into(),
        subnets: vec![DhcpSubnet {
            id: "subnet-1".into(),
            cidr: "198.18.0.0/24".into(),
            gateway: Some(Ipv4Addr::new(198, 18, 0, 1)),
            dhcp: true,
            dns_servers: vec![],
            routes: vec![],
        }],
        mtu,
        lease_secs: 3600,
        state_dir: dir.join("net-test"),
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run udhcpc once on `ifname`; returns what the lease script saw.
fn udhcpc(dir: &Path, ifname: &str) -> String {
    let out = dir.join("lease.txt");
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip router=$router mtu=$mtu\" > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    run("chmod", &["+x", script.to_str().unwrap()]);
    let _ = std::fs::remove_file(&out);
    // -O mtu: udhcpc asks only for a few options by default, and dnsmasq answers what is asked.
    // Without a lease udhcpc exits non-zero (-n); the script output tells what happened.
    let status = std::process::Command::new("busybox")
        .args([
            "udhcpc", "-i", ifname, "-O", "mtu", "-n", "-q", "-t", "3", "-T", "1",
        ])
        .arg("-s")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let _ = status;
    std::fs::read_to_string(&out)
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn dnsmasq_serves_fixed_address_and_releases_it() {
    enter_private_netns();
    require("ip", "iproute2");
    require("dnsmasq", "dnsmasq-base");
    require("busybox", "busybox-static");
    require("dhcp_release", "dnsmasq-utils");
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = PidGuard::new();

    network::ensure_bridge(&BridgeSpec {
        name: "kbrdhcp".into(),
        addresses: vec!["198.18.0.1/24".into()],
        mtu: 1500,
    })
    .unwrap();
    run(
        "ip",
        &[
            "link", "add", "kvhost", "type", "veth", "peer", "name", "kvguest",
        ],
    );
    run(
        "ip",
        &["link", "set", "dev", "kvhost", "master", "kbrdhcp", "up"],
    );
    run(
        "ip",
        &["link", "set", "dev", "kvguest", "address", MAC, "up"],
    );

    let mut d = Dnsmasq::ensure(cfg(tmp.path(), 1400)).unwrap();
    guard.add(d.pid());
    // A second ensure adopts the running process instead of starting another.
    guard.add(d.dns_pid());
    let again = Dnsmasq::ensure(cfg(tmp.path(), 1400)).unwrap();
    assert_eq!(again.pid(), d.pid());
    assert_eq!(again.dns_pid(), d.dns_pid());

    let hosts = [
        DhcpHost {
            mac: MAC.into(),
            ip: IP,
            hostname: "vm-1".into(),
        },
        DhcpHost {
            mac: "52:54:00:00:00:02".into(),
            ip: Ipv4Addr::new(198, 18, 0, 51),
            hostname: "vm-2".into(),
        },
    ];
    assert!(d.set_hosts(&hosts).unwrap());
    assert!(
        !d.set_hosts(&hosts).unwrap(),
        "unchanged hosts: no rewrite, no SIGHUP"
    );
    assert_eq!(
        std::fs::read_to_string(d.config().hosts_file()).unwrap(),
        "52:54:00:12:34:56,198.18.0.50,vm-1\n52:54:00:00:00:02,198.18.0.51,vm-2\n"
    );

    let got = udhcpc(tmp.path(), "kvguest");
    assert_eq!(
        got, "ip=198.18.0.50 router=198.18.0.1 mtu=1400",
        "lease script output"
    );
    eventually("lease recorded", || {
        lease_present(&d.leases().unwrap(), MAC, IP)
    });

    // Deleting the instance: drop it from the hosts file, then release its lease.
    d.set_hosts(&hosts[1..]).unwrap();
    d.release(MAC, IP).unwrap();
    assert!(
        !lease_present(&d.leases().unwrap(), MAC, IP),
        "{}",
        d.leases().unwrap()
    );
    assert!(pid_alive(d.pid()));
    assert_eq!(
        udhcpc(tmp.path(), "kvguest"),
        "",
        "a host no longer in the hosts file gets no lease"
    );

    // Fallback path: a lease dhcp_release cannot remove (held by another MAC for the address) is
    // dropped by stopping dnsmasq, editing the lease file and starting it again.
    let lease_file = d.config().lease_file();
    d.stop().unwrap();
    let stray = "9999999999 52:54:00:99:99:99 198.18.0.60 stray *\n";
    std::fs::write(
        &lease_file,
        format!("{}{stray}", std::fs::read_to_string(&lease_file).unwrap()),
    )
    .unwrap();
    let mut d = Dnsmasq::ensure(cfg(tmp.path(), 1400)).unwrap();
    guard.add(d.pid());
    guard.add(d.dns_pid());
    d.release("52:54:00:aa:aa:aa", Ipv4Addr::new(198, 18, 0, 60))
        .unwrap();
    assert!(
        !d.leases().unwrap().contains("198.18.0.60"),
        "{}",
        d.leases().unwrap()
    );
    guard.add(d.pid());
    assert!(pid_alive(d.pid()), "dnsmasq runs again after the fallback");

    // A changed configuration replaces the process.
    let old = d.pid();
    let d = Dnsmasq::ensure(cfg(tmp.path(), 1450)).unwrap();
    guard.add(d.pid());
    guard.add(d.dns_pid());
    assert_ne!(d.pid(), old);
    assert!(!pid_alive(old));
    assert_eq!(udhcpc(tmp.path(), "kvguest"), "");

    let (pid, dns_pid) = (d.pid(), d.dns_pid());
    let pid_file = d.config().pid_file();
    d.stop().unwrap();
    assert!(!pid_alive(pid));
    assert!(!pid_alive(dns_pid));
    assert!(!pid_file.exists());
}

/// A named network namespace (`ip netns add`) standing for a guest; deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("kumo-t-{:08x}", rand::random::<u32>());
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn model_net() -> kumo_types::Network {
    kumo_types::Network {
        id: "net-00000000000000001".into(),
        name: "Net-A".into(),
        project: "p".into(),
        kind: kumo_types::NetworkKind::Bridge,
        vlan_id: None,
        physical_network: None,
        vni: None,
        mtu: 1400,
        external: false,
        nat: false,
        bridge: "kbrdns".into(),
        cidr: None,
        created_at: String::new(),
    }
}

fn model_subnet(id: &str, third: u8, dhcp: bool) -> kumo_types::Subnet {
    kumo_types::Subnet {
        id: id.into(),
        name: id.into(),
        project: "p".into(),
        network_id: "net-00000000000000001".into(),
        cidr: format!("198.18.{third}.0/24"),
        gateway: Some(format!("198.18.{third}.1")),
        allocation_pools: vec![],
        reserved: vec![],
        dhcp,
        dns_servers: vec![],
        routes: vec![],
        created_at: String::new(),
    }
}

/// `busybox nslookup <name> <server>` run in `ns`: the addresses answered (empty on failure).
fn nslookup(ns: &Netns, name: &str, server: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, "busybox", "nslookup", name, server])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Skip the "Server:/Address: <server>#53" header; answers follow the "Name:" line.
    text.split_once("Name:")
        .map(|(_, rest)| {
            rest.lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn multi_subnet_dhcp_options_and_instance_names() {
    enter_private_netns();
    require("ip", "iproute2");
    require("dnsmasq", "dnsmasq-base");
    require("busybox", "busybox-static");
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = PidGuard::new();
    let net = model_net();
    let mut second = model_subnet("subnet-b", 21, true);
    second.routes = vec![kumo_types::Route {
        destination: "198.18.99.0/24".into(),
        nexthop: "198.18.21.254".into(),
    }];
    let subnets = [
        model_subnet("subnet-a", 20, true),
        second,
        model_subnet("subnet-c", 22, false),
    ];
    let addresses = kumo_agent::netstate::bridge_addresses(&net, &subnets);
    assert_eq!(
        addresses,
        ["198.18.20.1/24", "198.18.21.1/24", "198.18.22.1/24"]
    );
    network::ensure_bridge(&BridgeSpec {
        name: "kbrdns".into(),
        addresses,
        mtu: 1400,
    })
    .unwrap();
    let cfg = DnsmasqConfig::for_network(&net, &subnets, tmp.path().join("net-a"))
        .unwrap()
        .expect("the network has DHCP subnets");
    assert_eq!(cfg.domain, "net-a.kumo.internal");
    let d = Dnsmasq::ensure(cfg).unwrap();
    guard.add(d.pid());
    guard.add(d.dns_pid());

    let client_mac = "52:54:00:00:21:50";
    let hosts = [
        DhcpHost {
            mac: client_mac.into(),
            ip: Ipv4Addr::new(198, 18, 21, 50),
            hostname: "web-1".into(),
        },
        DhcpHost {
            mac: "52:54:00:00:20:60".into(),
            ip: Ipv4Addr::new(198, 18, 20, 60),
            hostname: "web-2".into(),
        },
        DhcpHost {
            mac: "52:54:00:00:22:70".into(),
            ip: Ipv4Addr::new(198, 18, 22, 70),
            hostname: "db-1".into(),
        },
    ];
    assert!(d.set_hosts(&hosts).unwrap());

    // The guest: a child namespace with a veth whose host end is on the bridge.
    let g = Netns::new();
    run(
        "ip",
        &[
            "link", "add", "kvdns", "type", "veth", "peer", "name", "eth0", "netns", &g.0,
        ],
    );
    run(
        "ip",
        &["link", "set", "dev", "kvdns", "master", "kbrdns", "up"],
    );
    run(
        "ip",
        &[
            "-n", &g.0, "link", "set", "dev", "eth0", "address", client_mac, "up",
        ],
    );
    let out = tmp.path().join("lease.txt");
    let script = tmp.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip router=$router dns=$dns domain=$domain \
             mtu=$mtu routes=$staticroutes\" > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    run("chmod", &["+x", script.to_str().unwrap()]);
    let mut got = String::new();
    for _ in 0..3 {
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &g.0, "busybox", "udhcpc", "-i", "eth0"])
            .args([
                "-O",
                "mtu",
                "-O",
                "staticroutes",
                "-n",
                "-q",
                "-t",
                "3",
                "-T",
                "1",
                "-s",
            ])
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        got = std::fs::read_to_string(&out).unwrap_or_default();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(
        got.trim(),
        "ip=198.18.21.50 router=198.18.21.1 dns=198.18.21.1 domain=net-a.kumo.internal mtu=1400 \
         routes=198.18.99.0/24 198.18.21.254 0.0.0.0/0 198.18.21.1",
        "the second subnet's options; dnsmasq log: {}",
        std::fs::read_to_string(d.config().log_file()).unwrap_or_default()
    );

    // Names: the guest asks its gateway.
    run(
        "ip",
        &["-n", &g.0, "addr", "add", "198.18.21.50/24", "dev", "eth0"],
    );
    let gw = "198.18.21.1";
    assert_eq!(nslookup(&g, "web-2", gw), ["198.18.20.60"]);
    assert_eq!(
        nslookup(&g, "web-2.net-a.kumo.internal", gw),
        ["198.18.20.60"]
    );
    assert_eq!(
        nslookup(&g, "db-1", gw),
        ["198.18.22.70"],
        "static (non-DHCP) subnets are named too"
    );
    assert!(
        nslookup(&g, "example.com", gw).is_empty(),
        "no answer for external names"
    );
    assert!(nslookup(&g, "nope.net-a.kumo.internal", gw).is_empty());
    // Not on the metadata address, not on loopback (from the host side).
    let host_side = std::process::Command::new("busybox")
        .args(["nslookup", "web-2", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&host_side.stdout).contains("198.18.20.60"));
    run(
        "ip",
        &[
            "-n",
            &g.0,
            "route",
            "add",
            "169.254.169.254/32",
            "dev",
            "eth0",
        ],
    );
    assert!(nslookup(&g, "web-2", "169.254.169.254").is_empty());

    // A removed instance stops resolving (the DNS server re-reads its names on SIGHUP).
    assert!(d.set_hosts(&hosts[..1]).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nslookup(&g, "web-2", gw).is_empty() {
        assert!(Instant::now() < deadline, "web-2 still resolves");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(nslookup(&g, "web-1", gw), ["198.18.21.50"]);
    d.stop().unwrap();
}
