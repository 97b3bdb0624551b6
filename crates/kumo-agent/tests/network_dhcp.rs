//! dnsmasq hands a fixed address to a real DHCP client (busybox udhcpc on a veth attached to the
//! bridge), is adopted instead of duplicated, and leaves no lease behind after `release`.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use kumo_agent::network::dnsmasq::lease_present;
use kumo_agent::network::{self, BridgeSpec, DhcpHost, Dnsmasq, DnsmasqConfig};
use kumo_testutil::{PidGuard, enter_private_netns, pid_alive, require, run};

const MAC: &str = "52:54:00:12:34:56";
const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);

fn cfg(dir: &Path, mtu: u32) -> DnsmasqConfig {
    DnsmasqConfig {
        bridge: "kbrdhcp".into(),
        cidr: "198.18.0.0/24".into(),
        gateway: Ipv4Addr::new(198, 18, 0, 1),
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
    let again = Dnsmasq::ensure(cfg(tmp.path(), 1400)).unwrap();
    assert_eq!(again.pid(), d.pid());

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
    assert_ne!(d.pid(), old);
    assert!(!pid_alive(old));
    assert_eq!(udhcpc(tmp.path(), "kvguest"), "");

    let pid = d.pid();
    let pid_file = d.config().pid_file();
    d.stop().unwrap();
    assert!(!pid_alive(pid));
    assert!(!pid_file.exists());
}
