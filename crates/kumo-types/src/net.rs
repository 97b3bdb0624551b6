//! The network model, VPC-style: networks (bridge / VLAN provider / VXLAN overlay), subnets with IPAM,
//! ports (a NIC with a fixed MAC and address, security groups, anti-spoofing), routers, security groups
//! and floating IPs. Store keys:
//! - `/networks/<id>`, `/subnets/<id>`, `/ports/<id>`, `/routers/<id>`, `/security-groups/<id>`,
//!   `/floating-ips/<id>`, plus `/names/<kind>/<project>/<name>` uniqueness indexes
//! - `/ipam/<subnet-id>/<ipv4>` → port or floating-IP ID (an address is taken iff its key exists)
//! - `/vni/<vni>` → network ID (VXLAN segment allocation)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// A Linux bridge local to each host (single-host networks, the default network).
    #[default]
    Bridge,
    /// A provider network: the bridge is joined to `<uplink>.<vlan_id>` on each host, where `uplink` is
    /// the interface the host's agent maps `physical_network` to.
    Vlan,
    /// An overlay: the bridge is joined to a VXLAN device with the network's VNI; peers (other hosts'
    /// tunnel addresses) are handed down by the control plane.
    Vxlan,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub project: String,
    #[serde(default)]
    pub kind: NetworkKind,
    /// VLAN ID (1–4094), `vlan` networks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    /// Name of the host uplink mapping (e.g. `physnet1`), `vlan` networks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_network: Option<String>,
    /// VXLAN network identifier, allocated by kumo, `vxlan` networks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// MTU of the network as guests see it (VXLAN's 50-byte overhead already taken off).
    pub mtu: u32,
    /// Floating IPs and router gateways are allocated from external networks.
    #[serde(default)]
    pub external: bool,
    /// Masquerade traffic from this network's subnets out of the host's own uplinks (the spine's
    /// "outbound NAT"; the default network has it).
    #[serde(default)]
    pub nat: bool,
    /// Linux bridge name on every host.
    pub bridge: String,
    /// The network's IPv4 address range (a VPC's CIDR block): every subnet lies inside it. `None`:
    /// subnets may use any range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct IpRange {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Route {
    /// CIDR.
    pub destination: String,
    pub nexthop: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub project: String,
    pub network_id: String,
    /// IPv4 CIDR (IPv6 subnets will be their own records with the same shape).
    pub cidr: String,
    /// The router address guests get; kumo puts it on the network's bridge. `None`: no gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Ranges addresses are allocated from (default: the whole subnet after the reserved first ten).
    pub allocation_pools: Vec<IpRange>,
    /// Addresses never handed out.
    #[serde(default)]
    pub reserved: Vec<String>,
    pub dhcp: bool,
    /// Handed out by DHCP (default: the gateway, which answers for instance names).
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// Extra routes handed out by DHCP (option 121).
    #[serde(default)]
    pub routes: Vec<Route>,
    pub created_at: String,
}

/// A NIC: fixed MAC and address on one subnet, the security groups applied to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Port {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub project: String,
    pub network_id: String,
    pub subnet_id: String,
    pub mac: String,
    pub ipv4: String,
    /// The instance it is attached to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Security group IDs (none: the port accepts nothing in and sends nothing out but DHCP/ARP).
    pub security_groups: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Router {
    pub id: String,
    pub name: String,
    pub project: String,
    /// Subnets joined by the router (their gateways route to each other).
    pub subnets: Vec<String>,
    /// External network for SNAT (the NAT/internet gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_network: Option<String>,
    /// The router's address on the external network (source of SNATed traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_subnet: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// A stateful allow rule; replies to allowed traffic are always allowed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecurityGroupRule {
    pub id: String,
    pub direction: Direction,
    pub protocol: Protocol,
    /// First port (tcp/udp only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_min: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_max: Option<u16>,
    /// Peer CIDR; with neither this nor `remote_group`, any peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cidr: Option<String>,
    /// Peer: every port in this security group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub project: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<SecurityGroupRule>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct FloatingIp {
    pub id: String,
    pub project: String,
    /// The external network it was allocated from.
    pub network_id: String,
    pub subnet_id: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_id: Option<String>,
    /// The port's address traffic is translated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
    pub created_at: String,
}

/// Everything an agent needs to program the network. At kumo's scale (1–10 hosts) every agent gets the
/// whole topology; the planner picks what concerns its own ports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct NetworkTopology {
    pub networks: Vec<Network>,
    pub subnets: Vec<Subnet>,
    pub ports: Vec<Port>,
    pub routers: Vec<Router>,
    pub security_groups: Vec<SecurityGroup>,
    pub floating_ips: Vec<FloatingIp>,
    /// Per VXLAN network ID, the tunnel endpoints of the hosts that run instances with a port on it
    /// (each agent floods to these, less itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vxlan_peers: BTreeMap<String, Vec<String>>,
}

impl NetworkTopology {
    /// IPv4 addresses of the ports in each security group (for remote-group rules).
    pub fn group_members(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &self.ports {
            for g in &p.security_groups {
                m.entry(g.clone()).or_default().push(p.ipv4.clone());
            }
        }
        for v in m.values_mut() {
            v.sort();
            v.dedup();
        }
        m
    }
}
