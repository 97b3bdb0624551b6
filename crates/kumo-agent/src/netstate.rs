//! Host-wide network state the agent converges on every sync: one bridge + dnsmasq per network in
//! use, the nftables table, and the metadata registry. Per-instance taps belong to the workers.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use kumo_types::{AssignmentSnapshot, Network, Result, Subnet};

use crate::network::{self, BridgeSpec, DhcpHost, Dnsmasq, DnsmasqConfig, NatNetwork, Ruleset};

pub struct NetState {
    data_dir: PathBuf,
    dnsmasq: HashMap<String, Dnsmasq>,
    ruleset: Option<Ruleset>,
}

impl NetState {
    pub fn new(data_dir: PathBuf) -> Self {
        NetState {
            data_dir,
            dnsmasq: HashMap::new(),
            ruleset: None,
        }
    }

    /// Make bridges, DHCP host lists and NAT match the assignments. Instances being deleted are left
    /// out of DHCP at once; their taps and leases go when their worker tears them down.
    pub fn sync(&mut self, snap: &AssignmentSnapshot) -> Result<()> {
        let topo = &snap.topology;
        let mut nets: BTreeMap<String, (Network, Vec<DhcpHost>)> = BTreeMap::new();
        for a in &snap.assignments {
            for (i, nic) in a.instance.nics.iter().enumerate() {
                let Some(net) = a.networks.iter().find(|n| n.id == nic.network_id) else {
                    continue;
                };
                let entry = nets
                    .entry(net.id.clone())
                    .or_insert_with(|| (net.clone(), Vec::new()));
                if !a.instance.deleting {
                    let ip: Ipv4Addr = nic
                        .ipv4
                        .parse()
                        .map_err(|_| kumo_types::Error::internal(format!("bad ip {}", nic.ipv4)))?;
                    let hostname = if i == 0 {
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
        }
        let mut nat = Vec::new();
        for (id, (net, hosts)) in &nets {
            let subnet = topo
                .subnets
                .iter()
                .find(|s| &s.network_id == id && s.gateway.is_some());
            self.ensure_network(net, subnet)?;
            if let Some(d) = self.dnsmasq.get(id) {
                d.set_hosts(hosts)?;
            }
            for s in topo.subnets.iter().filter(|s| &s.network_id == id) {
                nat.push(NatNetwork {
                    bridge: net.bridge.clone(),
                    cidr: s.cidr.clone(),
                    nat: net.nat,
                });
            }
        }
        let rs = Ruleset { networks: nat };
        if self.ruleset.as_ref() != Some(&rs) {
            network::nft::apply(&rs)?;
            self.ruleset = Some(rs);
        }
        Ok(())
    }

    fn ensure_network(&mut self, net: &Network, subnet: Option<&Subnet>) -> Result<()> {
        let addresses = match subnet.and_then(|s| s.gateway.as_deref().map(|g| (g, &s.cidr))) {
            Some((gw, cidr)) => vec![format!("{gw}/{}", cidr.split('/').nth(1).unwrap_or("24"))],
            None => vec![],
        };
        network::ensure_bridge(&BridgeSpec {
            name: net.bridge.clone(),
            addresses,
            mtu: net.mtu,
        })?;
        let Some(subnet) = subnet.filter(|s| s.dhcp) else {
            return Ok(());
        };
        let alive = self
            .dnsmasq
            .get(&net.id)
            .is_some_and(|d| kumo_pid_alive(d.pid()));
        if !alive {
            let cfg = DnsmasqConfig::for_subnet(
                net,
                subnet,
                crate::paths::net_dir(&self.data_dir, &net.id),
            )?;
            self.dnsmasq.insert(net.id.clone(), Dnsmasq::ensure(cfg)?);
        }
        Ok(())
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

fn kumo_pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
