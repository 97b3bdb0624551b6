//! Shared pieces of the firewall tests (and of `bench/src/bin/{rules,datapath}.rs`, which include this
//! file by path): topology builders, fake guests as child network namespaces, and traffic probes.
//!
//! A fake guest is `ip netns add kumo-t-<random>` plus a veth pair whose host end is named like a tap
//! (`kt…`) and enslaved to a kumo bridge; the namespace is deleted when the [`Guest`] is dropped.
//! Call `kumo_testutil::enter_private_netns()` first: the bridges live in the test's own namespace.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kumo_types::{
    Direction, FloatingIp, Network, NetworkKind, NetworkTopology, Port, Protocol, Router,
    SecurityGroup, SecurityGroupRule, Subnet,
};

pub const T: &str = "2026-01-01T00:00:00Z";

pub fn network(id: &str, bridge: &str, external: bool) -> Network {
    Network {
        id: id.into(),
        name: id.into(),
        project: "p".into(),
        kind: NetworkKind::Bridge,
        vlan_id: None,
        physical_network: None,
        vni: None,
        mtu: 1500,
        external,
        nat: false,
        bridge: bridge.into(),
        cidr: None,
        created_at: T.into(),
    }
}

pub fn subnet(id: &str, net: &str, cidr: &str, gw: &str) -> Subnet {
    Subnet {
        id: id.into(),
        name: id.into(),
        project: "p".into(),
        network_id: net.into(),
        cidr: cidr.into(),
        gateway: Some(gw.into()),
        allocation_pools: vec![],
        reserved: vec![],
        dhcp: false,
        dns_servers: vec![],
        routes: vec![],
        created_at: T.into(),
    }
}

pub fn port(id: &str, net: &str, sub: &str, mac: &str, ip: &str, sgs: &[&str]) -> Port {
    Port {
        id: id.into(),
        name: None,
        project: "p".into(),
        network_id: net.into(),
        subnet_id: sub.into(),
        mac: mac.into(),
        ipv4: ip.into(),
        instance_id: Some(format!("i-{}", id.trim_start_matches("eni-"))),
        security_groups: sgs.iter().map(|s| s.to_string()).collect(),
        created_at: T.into(),
    }
}

pub fn rule(
    id: &str,
    direction: Direction,
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    remote_cidr: Option<&str>,
    remote_group: Option<&str>,
) -> SecurityGroupRule {
    SecurityGroupRule {
        id: id.into(),
        direction,
        protocol,
        port_min: ports.map(|p| p.0),
        port_max: ports.map(|p| p.1),
        remote_cidr: remote_cidr.map(str::to_string),
        remote_group: remote_group.map(str::to_string),
        description: None,
    }
}

pub fn group(id: &str, rules: Vec<SecurityGroupRule>) -> SecurityGroup {
    SecurityGroup {
        id: id.into(),
        name: id.into(),
        project: "p".into(),
        description: String::new(),
        rules,
        created_at: T.into(),
    }
}

/// The default group: egress anywhere, ingress from members.
pub fn default_group(id: &str) -> SecurityGroup {
    group(
        id,
        vec![
            rule("sgr-e", Direction::Egress, Protocol::Any, None, None, None),
            rule(
                "sgr-i",
                Direction::Ingress,
                Protocol::Any,
                None,
                None,
                Some(id),
            ),
        ],
    )
}

/// Egress anywhere, ingress from anywhere.
pub fn open_group(id: &str) -> SecurityGroup {
    group(
        id,
        vec![
            rule("sgr-oe", Direction::Egress, Protocol::Any, None, None, None),
            rule(
                "sgr-oi",
                Direction::Ingress,
                Protocol::Any,
                None,
                None,
                None,
            ),
        ],
    )
}

pub fn router(id: &str, subnets: &[&str], external: Option<(&str, &str)>) -> Router {
    Router {
        id: id.into(),
        name: id.into(),
        project: "p".into(),
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        external_network: external.map(|e| e.0.to_string()),
        external_ip: external.map(|e| e.1.to_string()),
        external_subnet: None,
        created_at: T.into(),
    }
}

pub fn floating(id: &str, net: &str, sub: &str, address: &str, port: Option<&str>) -> FloatingIp {
    FloatingIp {
        id: id.into(),
        project: "p".into(),
        network_id: net.into(),
        subnet_id: sub.into(),
        address: address.into(),
        port_id: port.map(str::to_string),
        fixed_ip: None,
        created_at: T.into(),
    }
}

/// The local-port list for every port of the topology (all on this host).
pub fn all_local(topo: &NetworkTopology) -> Vec<kumo_agent::network::nft::LocalPort> {
    topo.ports
        .iter()
        .map(|p| {
            let inst = p.instance_id.clone().unwrap_or_default();
            kumo_agent::network::nft::LocalPort {
                port_id: p.id.clone(),
                tap: kumo_agent::network::tap_name(&inst, 0),
                instance_id: inst,
            }
        })
        .collect()
}

/// Run a command, panicking with its output on failure.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A kumo bridge with the given addresses (and IPv4 forwarding on), as the agent makes it.
pub fn bridge(name: &str, addresses: &[String]) {
    kumo_agent::network::ensure_bridge(&kumo_agent::network::BridgeSpec {
        name: name.into(),
        addresses: addresses.to_vec(),
        mtu: 1500,
    })
    .unwrap();
}

/// A fake guest: a child network namespace wired to `bridge` through a veth named `tap`.
pub struct Guest {
    pub ns: String,
    pub tap: String,
    pub ip: Ipv4Addr,
}

impl Guest {
    /// `cidr` is the guest's address with prefix (e.g. `198.18.0.10/24`), `gw` its default route.
    pub fn new(bridge: &str, tap: &str, mac: &str, cidr: &str, gw: Option<&str>) -> Guest {
        let ns = format!("kumo-t-{:08x}", rand_u32());
        sh(&["ip", "netns", "add", &ns]);
        let g = Guest {
            ns: ns.clone(),
            tap: tap.into(),
            ip: cidr.split('/').next().unwrap().parse().unwrap(),
        };
        sh(&[
            "ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        sh(&["ip", "link", "set", tap, "master", bridge, "up"]);
        g.ip(&["link", "set", "lo", "up"]);
        g.ip(&["link", "set", "eth0", "address", mac]);
        g.ip(&["addr", "add", cidr, "dev", "eth0"]);
        g.ip(&["link", "set", "eth0", "up"]);
        if let Some(gw) = gw {
            g.ip(&["route", "add", "default", "via", gw]);
        }
        g
    }

    /// `ip -n <ns> …`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["ip", "-n", self.ns.as_str()];
        a.extend_from_slice(args);
        sh(&a);
    }

    /// `busybox ping -c1 -W1 <dst>` from inside the guest; true if answered.
    pub fn ping(&self, dst: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "busybox", "ping", "-c1", "-W1", dst,
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Run `f` on a thread inside the guest's namespace.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap()
    }

    /// A TCP server on `port` inside the guest that answers every connection with the peer's address
    /// and closes. Lives until the process exits.
    pub fn serve(&self, port: u16) {
        let path = format!("/var/run/netns/{}", self.ns);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter(&path);
            let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
            tx.send(()).unwrap();
            for mut c in l.incoming().flatten() {
                let peer = c
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let _ = c.write_all(peer.as_bytes());
            }
        });
        rx.recv().unwrap();
    }

    /// Connect from the guest to `dst:port`; the address the server saw us as, or `None`.
    pub fn connect(&self, dst: Ipv4Addr, port: u16) -> Option<String> {
        self.run(move || tcp_probe(SocketAddr::from((dst, port)), Duration::from_millis(400)))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip").args(["link", "del", &self.tap]).output();
    }
}

fn enter(path: &str) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// One TCP connection attempt; the server's answer (our address as it saw it) or `None`.
pub fn tcp_probe(addr: SocketAddr, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// Poll `cond` every 10 ms until true; the time it took. Panics after `timeout` naming `what`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Plan, render and apply the ruleset for `topo` with every port local; panics on error.
pub fn apply(topo: &NetworkTopology) {
    let rs = kumo_agent::network::nft::plan(topo, &all_local(topo));
    assert!(rs.skipped.is_empty(), "planner skipped: {:?}", rs.skipped);
    kumo_agent::network::nft::apply(&rs).unwrap();
}
