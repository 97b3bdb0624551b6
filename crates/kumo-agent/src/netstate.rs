//! Host-wide network state the agent converges on every sync: per network with ports on this host,
//! its bridge (carrying every subnet's gateway), its uplink (a VLAN link on the host interface mapped
//! to the network's physical network, or a VXLAN device flooding to the peers), its dnsmasq pair
//! (DHCP for all DHCP subnets + DNS for instance names); the nftables table; the metadata registry.
//! Per-instance taps belong to the workers.
//!
//! An uplink that cannot be set up (unmapped physical network, no VXLAN endpoint, kernel without
//! 802.1Q) is logged as an error and the network keeps working between this host's instances.
//! Networks without local ports lose their dnsmasq; their bridges and uplinks stay (cheap, and a
//! port may come back).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use kumo_types::{AssignmentSnapshot, Network, NetworkKind, NetworkTopology, Result, Subnet};

use crate::network::{self, BridgeSpec, DhcpHost, Dnsmasq, DnsmasqConfig, NatNetwork, Ruleset};

pub struct NetState {
    data_dir: PathBuf,
    uplinks: UplinkConfig,
    dnsmasq: HashMap<String, Dnsmasq>,
    ruleset: Option<Ruleset>,
    /// Networks that work only partly on this host (an uplink that cannot be set up), with why;
    /// and which of those the agent has already reported.
    problems: BTreeMap<String, String>,
    reported: BTreeMap<String, String>,
}

impl NetState {
    pub fn new(data_dir: PathBuf) -> Self {
        NetState {
            data_dir,
            uplinks: UplinkConfig::default(),
            dnsmasq: HashMap::new(),
            ruleset: None,
            problems: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    /// Use this host's uplink configuration (VLAN interfaces, VXLAN endpoint and peers).
    pub fn with_uplinks(mut self, uplinks: UplinkConfig) -> Self {
        self.uplinks = uplinks;
        self
    }

    /// Make bridges, DHCP host lists and NAT match the assignments. Instances being deleted are left
    /// out of DHCP at once; their taps and leases go when their worker tears them down.
    pub fn sync(&mut self, snap: &AssignmentSnapshot) -> Result<()> {
        let topo = &snap.topology;
        let local: Vec<network::nft::LocalPort> = snap
            .assignments
            .iter()
            .flat_map(|a| {
                a.instance.nics.iter().map(|nic| network::nft::LocalPort {
                    port_id: nic.port_id.clone(),
                    tap: network::tap_name(&a.instance.id, nic.slot),
                    instance_id: a.instance.id.clone(),
                })
            })
            .collect();
        let mut rs: Ruleset = network::nft::plan(topo, &local);
        // The /32s this host answers for on external bridges (local floating IPs, routers' external
        // addresses); their networks are carried here even without a local port on them.
        let extra = network::nft::addresses_of(&rs);
        let mut nets = local_networks(snap)?;
        let with_ports: HashSet<String> = nets.keys().cloned().collect();
        for net in topo
            .networks
            .iter()
            .filter(|n| extra.contains_key(&n.bridge))
        {
            nets.entry(net.id.clone())
                .or_insert_with(|| (net.clone(), Vec::new()));
        }
        self.retire_unused(&nets);
        // One broken network (a dnsmasq that cannot start…) must not keep the others or the
        // firewall from converging: remember the first error, report it at the end.
        let mut failed = None;
        for (id, (net, hosts)) in &nets {
            let wanted = NetworkWanted {
                extra_addresses: extra.get(&net.bridge).cloned().unwrap_or_default(),
                dhcp: with_ports.contains(id),
            };
            if let Err(e) = self.ensure_network(net, topo, hosts, &wanted) {
                tracing::error!(network = %id, error = %e, "network setup failed");
                failed.get_or_insert(e);
            }
            for s in topo.subnets.iter().filter(|s| &s.network_id == id) {
                let n = NatNetwork {
                    bridge: net.bridge.clone(),
                    cidr: s.cidr.clone(),
                    nat: net.nat,
                };
                if !rs.networks.contains(&n) {
                    rs.networks.push(n);
                }
            }
        }
        if self.ruleset.as_ref() != Some(&rs) {
            for why in &rs.skipped {
                tracing::warn!("firewall: {why}");
            }
            network::nft::apply(&rs)?;
            self.ruleset = Some(rs);
        }
        failed.map_or(Ok(()), Err)
    }

    /// Converge one network that has local ports: its bridge (every subnet's gateway), its uplink
    /// (VLAN link or VXLAN device with peers; a failure is logged and leaves the network L2-local),
    /// its dnsmasq pair (none without a DHCP subnet) and the names it serves.
    fn ensure_network(
        &mut self,
        net: &Network,
        topo: &NetworkTopology,
        hosts: &[DhcpHost],
        wanted: &NetworkWanted,
    ) -> Result<()> {
        let subnets: &[Subnet] = &topo.subnets;
        let mut addresses = bridge_addresses(net, subnets);
        addresses.extend(wanted.extra_addresses.iter().cloned());
        network::ensure_bridge(&BridgeSpec {
            name: net.bridge.clone(),
            addresses,
            mtu: net.mtu,
        })?;
        match ensure_uplink(net, &self.uplinks, topo) {
            Ok(()) => {
                self.problems.remove(&net.id);
            }
            Err(e) => {
                tracing::error!(network = %net.id, bridge = %net.bridge, error = %e, "network uplink not set up: the network stays local to this host");
                self.problems.insert(
                    net.id.clone(),
                    format!("uplink not set up on this host: {e}"),
                );
            }
        }
        let state_dir = crate::paths::net_dir(&self.data_dir, &net.id);
        // No DHCP/DNS on a network this host carries only for NAT (an external network).
        let cfg = if wanted.dhcp {
            DnsmasqConfig::for_network(net, subnets, &state_dir)?
        } else {
            None
        };
        let Some(cfg) = cfg else {
            if let Some(d) = self.dnsmasq.remove(&net.id) {
                d.stop()?;
            }
            return Dnsmasq::stop_in(&state_dir);
        };
        let current = self
            .dnsmasq
            .get(&net.id)
            .is_some_and(|d| d.is_running() && d.config() == &cfg);
        if !current {
            // `ensure` adopts a matching pair and replaces one with another configuration.
            self.dnsmasq.remove(&net.id);
            self.dnsmasq.insert(net.id.clone(), Dnsmasq::ensure(cfg)?);
        }
        if let Some(d) = self.dnsmasq.get(&net.id) {
            d.set_hosts(hosts)?;
        }
        Ok(())
    }

    /// Problems (network ID → why) that appeared or changed since the last call; the agent reports
    /// them as events so they are visible through the API, once each.
    pub fn new_problems(&mut self) -> Vec<(String, String)> {
        let fresh: Vec<(String, String)> = self
            .problems
            .iter()
            .filter(|(id, why)| self.reported.get(*id) != Some(*why))
            .map(|(id, why)| (id.clone(), why.clone()))
            .collect();
        self.reported = self.problems.clone();
        fresh
    }

    /// Stop the dnsmasq of networks that no longer have ports on this host.
    fn retire_unused(&mut self, in_use: &BTreeMap<String, (Network, Vec<DhcpHost>)>) {
        let gone: Vec<String> = self
            .dnsmasq
            .keys()
            .filter(|id| !in_use.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(d) = self.dnsmasq.remove(&id)
                && let Err(e) = d.stop()
            {
                tracing::warn!(network = %id, error = %e, "stopping dnsmasq of an unused network");
            }
        }
    }

    /// Drop the DHCP lease of a NIC (its host entry is already gone).
    pub fn release(&mut self, network_id: &str, mac: &str, ip: &str) -> Result<()> {
        let Ok(ip) = ip.parse::<Ipv4Addr>() else {
            return Ok(());
        };
        if let Some(d) = self.dnsmasq.get_mut(network_id) {
            d.release(mac, ip)?;
        }
        Ok(())
    }
}

/// The networks with ports of this host's instances, each with the DHCP/DNS entries of its live
/// (not deleting) NICs. An instance's first NIC on a network is named after the instance, further
/// ones `<name>-<nic index>`.
fn local_networks(snap: &AssignmentSnapshot) -> Result<BTreeMap<String, (Network, Vec<DhcpHost>)>> {
    let mut nets: BTreeMap<String, (Network, Vec<DhcpHost>)> = BTreeMap::new();
    for a in &snap.assignments {
        let mut named: HashSet<&str> = HashSet::new();
        for (i, nic) in a.instance.nics.iter().enumerate() {
            let Some(net) = a.networks.iter().find(|n| n.id == nic.network_id) else {
                continue;
            };
            let entry = nets
                .entry(net.id.clone())
                .or_insert_with(|| (net.clone(), Vec::new()));
            if a.instance.deleting {
                continue;
            }
            let ip: Ipv4Addr = nic
                .ipv4
                .parse()
                .map_err(|_| kumo_types::Error::internal(format!("bad ip {}", nic.ipv4)))?;
            let hostname = if named.insert(net.id.as_str()) {
                a.instance.name.clone()
            } else {
                format!("{}-{i}", a.instance.name)
            };
            entry.1.push(DhcpHost {
                mac: nic.mac.clone(),
                ip,
                hostname,
            });
        }
    }
    Ok(nets)
}

/// What a network needs on this host beyond its definition.
struct NetworkWanted {
    /// `/32`s to carry on the bridge (floating IPs, routers' external addresses).
    extra_addresses: Vec<String>,
    /// Serve DHCP/DNS (the network has local ports).
    dhcp: bool,
}

/// The bridge's addresses: every subnet's gateway with the subnet's prefix, sorted.
pub fn bridge_addresses(net: &Network, subnets: &[Subnet]) -> Vec<String> {
    let mut v: Vec<String> = subnets
        .iter()
        .filter(|s| s.network_id == net.id)
        .filter_map(|s| {
            let gw = s.gateway.as_deref()?;
            let prefix = s.cidr.split_once('/')?.1;
            Some(format!("{gw}/{prefix}"))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// How this host joins its networks to the outside: from the agent's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Physical network name (`Network::physical_network`) → host interface, for `vlan` networks.
    pub physical_networks: BTreeMap<String, String>,
    /// This host's VXLAN tunnel endpoint; `vxlan` networks need it.
    pub vxlan_local_ip: Option<Ipv4Addr>,
    /// Remote tunnel endpoints (today a static list from `--vxlan-peer`).
    pub vxlan_peers: Vec<Ipv4Addr>,
}

/// What a network's bridge is joined to on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkPlan {
    /// A host-local bridge.
    None,
    Vlan {
        uplink: String,
        vlan_id: u16,
    },
    Vxlan {
        vni: u32,
        local: Ipv4Addr,
        peers: Vec<Ipv4Addr>,
    },
}

/// The VXLAN peers of a network (pure): the tunnel endpoints the control plane hands down for it
/// (hosts running instances with a port on it), plus the agent's static `--vxlan-peer` list, less
/// this host's own endpoint; sorted, without duplicates.
pub fn vxlan_peers(net: &Network, cfg: &UplinkConfig, topo: &NetworkTopology) -> Vec<Ipv4Addr> {
    let mut peers: Vec<Ipv4Addr> = topo
        .vxlan_peers
        .get(&net.id)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .chain(cfg.vxlan_peers.iter().copied())
        .filter(|ip| Some(*ip) != cfg.vxlan_local_ip)
        .collect();
    peers.sort();
    peers.dedup();
    peers
}

/// Decide a network's uplink (pure). An error says why the network must stay host-local.
pub fn plan_uplink(
    net: &Network,
    cfg: &UplinkConfig,
    topo: &NetworkTopology,
) -> Result<UplinkPlan> {
    let missing = |what: &str| {
        kumo_types::Error::invalid(
            what.to_string(),
            format!("network {} has no {what}", net.id),
        )
    };
    match net.kind {
        NetworkKind::Bridge => Ok(UplinkPlan::None),
        NetworkKind::Vlan => {
            let vlan_id = net.vlan_id.ok_or_else(|| missing("vlan_id"))?;
            let physnet = net
                .physical_network
                .as_deref()
                .ok_or_else(|| missing("physical_network"))?;
            let uplink = cfg.physical_networks.get(physnet).ok_or_else(|| {
                kumo_types::Error::invalid(
                    "physical_network",
                    format!("physical network `{physnet}` is not mapped to an interface on this host (agent flag --physical-network {physnet}=<interface>)"),
                )
            })?;
            Ok(UplinkPlan::Vlan {
                uplink: uplink.clone(),
                vlan_id,
            })
        }
        NetworkKind::Vxlan => {
            let vni = net.vni.ok_or_else(|| missing("vni"))?;
            let local = cfg.vxlan_local_ip.ok_or_else(|| {
                kumo_types::Error::invalid(
                    "vxlan_local_ip",
                    "this host has no VXLAN tunnel address (agent flag --vxlan-local-ip)",
                )
            })?;
            Ok(UplinkPlan::Vxlan {
                vni,
                local,
                peers: vxlan_peers(net, cfg, topo),
            })
        }
    }
}

/// Join the network's bridge (which exists) to its uplink.
fn ensure_uplink(net: &Network, cfg: &UplinkConfig, topo: &NetworkTopology) -> Result<()> {
    match plan_uplink(net, cfg, topo)? {
        UplinkPlan::None => Ok(()),
        UplinkPlan::Vlan { uplink, vlan_id } => {
            network::ensure_vlan_uplink(&net.bridge, &uplink, vlan_id, net.mtu).map(|_| ())
        }
        UplinkPlan::Vxlan { vni, local, peers } => {
            let dev = network::ensure_vxlan(&net.bridge, vni, local, network::VXLAN_PORT, net.mtu)?;
            network::sync_vxlan_peers(&dev, local, &peers)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod uplink_tests {
    use super::*;

    fn net(kind: NetworkKind) -> Network {
        Network {
            id: "net-1".into(),
            name: "n".into(),
            project: "p".into(),
            kind,
            vlan_id: Some(20),
            physical_network: Some("physnet1".into()),
            vni: Some(4242),
            mtu: 1450,
            external: false,
            nat: false,
            bridge: "kbr1".into(),
            cidr: None,
            created_at: String::new(),
        }
    }

    fn cfg() -> UplinkConfig {
        UplinkConfig {
            physical_networks: [("physnet1".to_string(), "eth1".to_string())].into(),
            vxlan_local_ip: Some(Ipv4Addr::new(198, 19, 0, 1)),
            vxlan_peers: vec![Ipv4Addr::new(198, 19, 0, 2)],
        }
    }

    #[test]
    fn uplink_per_kind() {
        assert_eq!(
            plan_uplink(
                &net(NetworkKind::Bridge),
                &cfg(),
                &NetworkTopology::default()
            )
            .unwrap(),
            UplinkPlan::None
        );
        assert_eq!(
            plan_uplink(&net(NetworkKind::Vlan), &cfg(), &NetworkTopology::default()).unwrap(),
            UplinkPlan::Vlan {
                uplink: "eth1".into(),
                vlan_id: 20
            }
        );
        assert_eq!(
            plan_uplink(
                &net(NetworkKind::Vxlan),
                &cfg(),
                &NetworkTopology::default()
            )
            .unwrap(),
            UplinkPlan::Vxlan {
                vni: 4242,
                local: Ipv4Addr::new(198, 19, 0, 1),
                peers: vec![Ipv4Addr::new(198, 19, 0, 2)],
            }
        );
        let unmapped = plan_uplink(
            &net(NetworkKind::Vlan),
            &UplinkConfig::default(),
            &NetworkTopology::default(),
        );
        assert!(
            unmapped
                .unwrap_err()
                .to_string()
                .contains("physical network `physnet1` is not mapped")
        );
        assert!(
            plan_uplink(
                &net(NetworkKind::Vxlan),
                &UplinkConfig::default(),
                &NetworkTopology::default()
            )
            .is_err()
        );
        let mut no_vid = net(NetworkKind::Vlan);
        no_vid.vlan_id = None;
        assert!(plan_uplink(&no_vid, &cfg(), &NetworkTopology::default()).is_err());
    }

    #[test]
    fn vxlan_peers_come_from_the_control_plane_and_the_flags() {
        let n = net(NetworkKind::Vxlan);
        let mut topo = NetworkTopology::default();
        topo.vxlan_peers.insert(
            n.id.clone(),
            vec![
                "198.19.0.1".into(), // this host: left out
                "198.19.0.3".into(),
                "198.19.0.2".into(), // also a flag peer: once
                "not-an-ip".into(),
            ],
        );
        topo.vxlan_peers
            .insert("net-other".into(), vec!["198.19.0.9".into()]);
        assert_eq!(
            vxlan_peers(&n, &cfg(), &topo),
            vec![Ipv4Addr::new(198, 19, 0, 2), Ipv4Addr::new(198, 19, 0, 3)]
        );
        // Without flags, only what the control plane hands down.
        let only_local = UplinkConfig {
            vxlan_peers: vec![],
            ..cfg()
        };
        assert_eq!(
            vxlan_peers(&n, &only_local, &topo),
            vec![Ipv4Addr::new(198, 19, 0, 2), Ipv4Addr::new(198, 19, 0, 3)]
        );
        topo.vxlan_peers
            .insert(n.id.clone(), vec!["198.19.0.3".into()]);
        assert_eq!(
            vxlan_peers(&n, &only_local, &topo),
            vec![Ipv4Addr::new(198, 19, 0, 3)]
        );
        assert!(vxlan_peers(&n, &only_local, &NetworkTopology::default()).is_empty());
    }

    #[test]
    fn bridge_carries_every_gateway() {
        let sub = |id: &str, cidr: &str, gw: Option<&str>, net_id: &str| Subnet {
            id: id.into(),
            name: id.into(),
            project: "p".into(),
            network_id: net_id.into(),
            cidr: cidr.into(),
            gateway: gw.map(str::to_string),
            allocation_pools: vec![],
            reserved: vec![],
            dhcp: true,
            dns_servers: vec![],
            routes: vec![],
            created_at: String::new(),
        };
        let subnets = [
            sub("b", "198.18.1.0/25", Some("198.18.1.1"), "net-1"),
            sub("a", "198.18.0.0/24", Some("198.18.0.1"), "net-1"),
            sub("c", "198.18.2.0/24", None, "net-1"),
            sub("d", "198.18.3.0/24", Some("198.18.3.1"), "net-2"),
        ];
        assert_eq!(
            bridge_addresses(&net(NetworkKind::Bridge), &subnets),
            ["198.18.0.1/24", "198.18.1.1/25"]
        );
    }
}
