//! The pure planner: topology + local ports → [`Ruleset`]. No I/O.
//!
//! Anything invalid (an unknown port, a bad MAC, a rule with a malformed CIDR) is left out and noted in
//! [`Ruleset::skipped`]; leaving out always fails closed (an unknown tap is blocked, a broken allow rule
//! allows nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use kumo_types::{Direction, Network, NetworkTopology, Port, Protocol, SecurityGroupRule, Subnet};

use super::{Allow, Dnat, GroupSet, NatNetwork, PortFilter, Remote, Ruleset, Snat};
use crate::network::Ipv4Cidr;

/// A port whose NIC lives on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPort {
    pub port_id: String,
    /// The host-side interface (`tap_name(instance_id, nic.slot)`).
    pub tap: String,
    pub instance_id: String,
}

struct Index<'a> {
    networks: BTreeMap<&'a str, &'a Network>,
    subnets: BTreeMap<&'a str, &'a Subnet>,
    ports: BTreeMap<&'a str, &'a Port>,
}

/// The ruleset for this host.
pub fn plan(topo: &NetworkTopology, local: &[LocalPort]) -> Ruleset {
    let ix = Index {
        networks: topo.networks.iter().map(|n| (n.id.as_str(), n)).collect(),
        subnets: topo.subnets.iter().map(|s| (s.id.as_str(), s)).collect(),
        ports: topo.ports.iter().map(|p| (p.id.as_str(), p)).collect(),
    };
    let mut rs = Ruleset::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    let mut group_names: BTreeMap<String, String> = BTreeMap::new();
    let mut local_ports: Vec<&LocalPort> = local.iter().collect();
    local_ports.sort_by(|a, b| a.tap.cmp(&b.tap));
    for lp in local_ports {
        match port_filter(topo, &ix, lp, &mut group_names, &mut rs.skipped) {
            Ok((pf, net_id)) => {
                used.insert(net_id);
                rs.ports.push(pf);
            }
            Err(why) => {
                if super::render::check_ifname(&lp.tap).is_ok() {
                    rs.blocked_taps.push(lp.tap.clone());
                }
                rs.skipped.push(format!(
                    "port {} on {}: {why}; tap blocked",
                    lp.port_id, lp.tap
                ));
            }
        }
    }
    let members = topo.group_members();
    for (gid, name) in &group_names {
        let mut m: Vec<Ipv4Addr> = members
            .get(gid)
            .map(|v| v.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default();
        m.sort();
        m.dedup();
        rs.groups.push(GroupSet {
            name: name.clone(),
            members: m,
        });
    }
    floating_ips(topo, &ix, local, &mut rs, &mut used);
    routers(topo, &ix, &mut rs, &mut used);
    for net_id in &used {
        let Some(net) = ix.networks.get(net_id) else {
            continue;
        };
        for s in topo.subnets.iter().filter(|s| &s.network_id == net_id) {
            let Ok(c) = Ipv4Cidr::parse(&s.cidr) else {
                rs.skipped
                    .push(format!("subnet {}: bad cidr {}", s.id, s.cidr));
                continue;
            };
            rs.networks.push(NatNetwork {
                bridge: net.bridge.clone(),
                cidr: net_cidr(c).to_string(),
                nat: net.nat,
            });
            if let Some(gw) = s.gateway.as_deref().and_then(|g| g.parse().ok()) {
                rs.gateways.push(gw);
            }
        }
    }
    rs.gateways.sort();
    rs.gateways.dedup();
    rs
}

/// The `/32` addresses the host must carry on each bridge so it answers ARP for them: floating IPs of
/// local ports and the external addresses of routers serving local subnets, on the external bridge.
pub fn bridge_addresses(
    topo: &NetworkTopology,
    local: &[LocalPort],
) -> BTreeMap<String, Vec<String>> {
    addresses_of(&plan(topo, local))
}

/// [`bridge_addresses`] of an already planned ruleset.
pub fn addresses_of(rs: &Ruleset) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &rs.snat {
        out.entry(s.oif.clone())
            .or_default()
            .push(format!("{}/32", s.to));
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

fn net_cidr(c: Ipv4Cidr) -> Ipv4Cidr {
    Ipv4Cidr {
        addr: c.network(),
        prefix: c.prefix,
    }
}

/// nft identifier for an ID: `[A-Za-z0-9_]`, `-` mapped to `_`.
pub(super) fn ident(id: &str) -> Option<String> {
    let s: String = id.chars().map(|c| if c == '-' { '_' } else { c }).collect();
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(s)
}

fn normalize_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| mac.to_ascii_lowercase())
}

fn port_filter<'a>(
    topo: &NetworkTopology,
    ix: &Index<'a>,
    lp: &LocalPort,
    group_names: &mut BTreeMap<String, String>,
    skipped: &mut Vec<String>,
) -> Result<(PortFilter, &'a str), String> {
    let port = ix.ports.get(lp.port_id.as_str()).ok_or("unknown port")?;
    let net = ix
        .networks
        .get(port.network_id.as_str())
        .ok_or("unknown network")?;
    super::render::check_ifname(&lp.tap).map_err(|e| e.to_string())?;
    super::render::check_ifname(&net.bridge).map_err(|e| e.to_string())?;
    ident(&port.id).ok_or("port ID unusable as a chain name")?;
    let mac = normalize_mac(&port.mac).ok_or_else(|| format!("bad MAC {}", port.mac))?;
    let ipv4: Ipv4Addr = port
        .ipv4
        .parse()
        .map_err(|_| format!("bad IPv4 {}", port.ipv4))?;
    let mut ingress = BTreeSet::new();
    let mut egress = BTreeSet::new();
    for gid in &port.security_groups {
        let Some(sg) = topo.security_groups.iter().find(|g| &g.id == gid) else {
            skipped.push(format!("port {}: unknown security group {gid}", port.id));
            continue;
        };
        for r in &sg.rules {
            match allow(r, group_names) {
                Ok(a) if r.direction == Direction::Ingress => {
                    ingress.insert(a);
                }
                Ok(a) => {
                    egress.insert(a);
                }
                Err(why) => skipped.push(format!("rule {} of {}: {why}", r.id, sg.id)),
            }
        }
    }
    Ok((
        PortFilter {
            port_id: port.id.clone(),
            tap: lp.tap.clone(),
            bridge: net.bridge.clone(),
            mac,
            ipv4,
            ingress: ingress.into_iter().collect(),
            egress: egress.into_iter().collect(),
        },
        net.id.as_str(),
    ))
}

fn allow(
    r: &SecurityGroupRule,
    group_names: &mut BTreeMap<String, String>,
) -> Result<Allow, String> {
    let ports = match r.protocol {
        Protocol::Tcp | Protocol::Udp => match (r.port_min, r.port_max) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some((a, a)),
            (Some(a), Some(b)) if a <= b => Some((a, b)),
            (Some(a), Some(b)) => return Err(format!("port range {a}-{b} is reversed")),
        },
        Protocol::Any | Protocol::Icmp => None,
    };
    let remote = match (&r.remote_cidr, &r.remote_group) {
        (Some(_), Some(_)) => return Err("both remote_cidr and remote_group".into()),
        (Some(c), None) => {
            let c = net_cidr(Ipv4Cidr::parse(c).map_err(|e| e.to_string())?);
            Remote::Cidr(c.addr, c.prefix)
        }
        (None, Some(g)) => {
            let name = match group_names.get(g) {
                Some(n) => n.clone(),
                None => {
                    let n = format!("g_{}", ident(g).ok_or("group ID unusable as a set name")?);
                    group_names.insert(g.clone(), n.clone());
                    n
                }
            };
            Remote::Group(name)
        }
        (None, None) => Remote::Any,
    };
    Ok(Allow {
        protocol: r.protocol,
        ports,
        remote,
    })
}

fn floating_ips<'a>(
    topo: &'a NetworkTopology,
    ix: &Index<'a>,
    local: &[LocalPort],
    rs: &mut Ruleset,
    used: &mut BTreeSet<&'a str>,
) {
    let mut fips: Vec<_> = topo.floating_ips.iter().collect();
    fips.sort_by(|a, b| a.address.cmp(&b.address));
    for f in fips {
        let Some(pid) = f.port_id.as_deref() else {
            continue;
        };
        if !local.iter().any(|l| l.port_id == pid) {
            continue;
        }
        let Some(pf) = rs.ports.iter().find(|p| p.port_id == pid) else {
            continue;
        };
        let fixed = pf.ipv4;
        let (Ok(address), Some(ext)) = (
            f.address.parse::<Ipv4Addr>(),
            ix.networks.get(f.network_id.as_str()),
        ) else {
            rs.skipped
                .push(format!("floating IP {}: bad address or network", f.id));
            continue;
        };
        used.insert(ext.id.as_str());
        rs.dnat.push(Dnat { address, fixed });
        rs.snat.push(Snat {
            oif: ext.bridge.clone(),
            source: Ipv4Cidr {
                addr: fixed,
                prefix: 32,
            },
            to: address,
        });
    }
}

fn routers<'a>(
    topo: &'a NetworkTopology,
    ix: &Index<'a>,
    rs: &mut Ruleset,
    used: &mut BTreeSet<&'a str>,
) {
    let mut routers: Vec<_> = topo.routers.iter().collect();
    routers.sort_by(|a, b| a.id.cmp(&b.id));
    for r in routers {
        let subnets: Vec<(&Subnet, Ipv4Cidr)> = r
            .subnets
            .iter()
            .filter_map(|id| ix.subnets.get(id.as_str()))
            .filter_map(|s| Ipv4Cidr::parse(&s.cidr).ok().map(|c| (*s, net_cidr(c))))
            .collect();
        let serves_local = subnets
            .iter()
            .any(|(s, _)| used.contains(s.network_id.as_str()));
        if !serves_local {
            continue;
        }
        for (a, ca) in &subnets {
            used.insert(a.network_id.as_str());
            for (b, cb) in &subnets {
                if a.id != b.id {
                    rs.routed.push((*ca, *cb));
                }
            }
        }
        let ext = r
            .external_network
            .as_deref()
            .and_then(|n| ix.networks.get(n));
        let ext_ip = r
            .external_ip
            .as_deref()
            .and_then(|i| i.parse::<Ipv4Addr>().ok());
        if let (Some(ext), Some(to)) = (ext, ext_ip) {
            used.insert(ext.id.as_str());
            for (_, c) in &subnets {
                rs.snat.push(Snat {
                    oif: ext.bridge.clone(),
                    source: *c,
                    to,
                });
            }
        }
    }
    rs.routed
        .sort_by_key(|(a, b)| (a.to_string(), b.to_string()));
    rs.routed.dedup();
}
