//! `kumo network …`, `kumo subnet …`, `kumo port …`.
//!
//! Request bodies are built by pure `*_request` functions (unit-tested); the `run_*` functions only send
//! them and print the answer. List filters (`--network N`) accept a name or an ID: the CLI resolves the
//! name with `GET /v1/networks/N` because the list endpoints filter by ID only.

use clap::{Args, Subcommand, ValueEnum};
use kumo_types::{
    CreateNetworkRequest, CreatePortRequest, CreateSubnetRequest, IpRange, Network, NetworkKind,
    Port, Route, Subnet,
};

use crate::CliError;
use crate::client::{Client, Json, encode_query, seg};
use crate::render::{self, Output, net};
use crate::syntax;

#[derive(Debug, Clone, Subcommand)]
pub enum NetworkCmd {
    /// List networks.
    List,
    /// Show one network.
    Show { name: String },
    /// Create a network.
    Create(NetworkCreateArgs),
    /// Delete a network (it must have no subnets or ports left).
    Delete { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Bridge,
    Vlan,
    Vxlan,
}

impl From<KindArg> for NetworkKind {
    fn from(k: KindArg) -> NetworkKind {
        match k {
            KindArg::Bridge => NetworkKind::Bridge,
            KindArg::Vlan => NetworkKind::Vlan,
            KindArg::Vxlan => NetworkKind::Vxlan,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct NetworkCreateArgs {
    /// Network name (unique in the project).
    #[arg(long)]
    pub name: String,
    /// bridge: local to each host; vlan: a provider VLAN on a host uplink; vxlan: an overlay.
    #[arg(long, value_enum, default_value = "bridge")]
    pub kind: KindArg,
    /// VLAN ID 1–4094 (with --kind vlan).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4094))]
    pub vlan_id: Option<u16>,
    /// Host uplink mapping name, e.g. physnet1 (with --kind vlan).
    #[arg(long)]
    pub physical_network: Option<String>,
    /// MTU as guests see it (default 1500, 1450 for vxlan).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Floating IPs and router gateways are allocated from this network.
    #[arg(long)]
    pub external: bool,
    /// Masquerade outbound traffic through the host's own uplinks.
    #[arg(long)]
    pub nat: bool,
    /// The network's address range, e.g. 10.0.0.0/16: its subnets must lie inside it.
    #[arg(long)]
    pub cidr: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SubnetCmd {
    /// List subnets.
    List {
        /// Only subnets of this network (ID or name).
        #[arg(long)]
        network: Option<String>,
    },
    /// Show one subnet.
    Show { name: String },
    /// Create a subnet.
    Create(SubnetCreateArgs),
    /// Delete a subnet (it must have no ports left).
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct SubnetCreateArgs {
    /// Subnet name (unique in the project).
    #[arg(long)]
    pub name: String,
    /// Network ID or name.
    #[arg(long)]
    pub network: String,
    /// IPv4 CIDR, e.g. 198.18.10.0/24.
    #[arg(long, value_parser = syntax::parse_cidr)]
    pub cidr: String,
    /// Gateway address, or `none` (default: the first address).
    #[arg(long, value_name = "IP|none", value_parser = syntax::parse_gateway)]
    pub gateway: Option<String>,
    /// Allocation pool START-END (repeatable; default: the subnet after its first ten addresses).
    #[arg(long = "pool", value_name = "START-END", value_parser = syntax::parse_pool)]
    pub pools: Vec<IpRange>,
    /// An address never handed out (repeatable).
    #[arg(long = "reserved", value_name = "IP", value_parser = syntax::parse_ipv4)]
    pub reserved: Vec<String>,
    /// Do not serve DHCP on this subnet.
    #[arg(long)]
    pub no_dhcp: bool,
    /// DNS server handed out by DHCP (repeatable; default: the gateway).
    #[arg(long = "dns", value_name = "IP", value_parser = syntax::parse_ipv4)]
    pub dns: Vec<String>,
    /// Extra route handed out by DHCP, CIDR=NEXTHOP (repeatable).
    #[arg(long = "route", value_name = "CIDR=NEXTHOP", value_parser = syntax::parse_route)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PortCmd {
    /// List ports.
    List {
        /// Only ports on this network (ID or name).
        #[arg(long)]
        network: Option<String>,
    },
    /// Show one port.
    Show { id: String },
    /// Create a port (a NIC with a fixed MAC and address, not yet attached).
    Create(PortCreateArgs),
    /// Change a port's security groups (in effect at once on its host) or name.
    Update(PortUpdateArgs),
    /// Delete an unattached port and free its address.
    Delete { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct PortUpdateArgs {
    /// Port ID or name.
    pub id: String,
    /// The port's security groups, replacing its list (repeatable).
    #[arg(
        long = "security-group",
        value_name = "GROUP",
        conflicts_with = "no_security_groups"
    )]
    pub security_groups: Vec<String>,
    /// Remove every security group: the port then accepts nothing and sends nothing.
    #[arg(long)]
    pub no_security_groups: bool,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
}

/// The `PATCH /v1/ports/{id}` body; `None` when nothing would change.
pub fn port_update_request(a: &PortUpdateArgs) -> Option<kumo_types::UpdatePortRequest> {
    let security_groups = if a.no_security_groups {
        Some(vec![])
    } else if a.security_groups.is_empty() {
        None
    } else {
        Some(a.security_groups.clone())
    };
    if security_groups.is_none() && a.name.is_none() {
        return None;
    }
    Some(kumo_types::UpdatePortRequest {
        security_groups,
        name: a.name.clone(),
    })
}

#[derive(Debug, Clone, Args)]
pub struct PortCreateArgs {
    /// Network ID or name (its first subnet is used unless --subnet; default: the default network).
    #[arg(long)]
    pub network: Option<String>,
    /// Subnet ID or name.
    #[arg(long)]
    pub subnet: Option<String>,
    /// A fixed IPv4 address to request.
    #[arg(long, value_parser = syntax::parse_ipv4)]
    pub ip: Option<String>,
    /// Security group ID or name (repeatable; default: the project's `default` group).
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// An optional name for the port.
    #[arg(long)]
    pub name: Option<String>,
}

/// The `POST /v1/networks` body.
pub fn network_request(a: &NetworkCreateArgs) -> CreateNetworkRequest {
    CreateNetworkRequest {
        name: a.name.clone(),
        kind: a.kind.into(),
        vlan_id: a.vlan_id,
        physical_network: a.physical_network.clone(),
        mtu: a.mtu,
        external: a.external,
        nat: a.nat,
        cidr: a.cidr.clone(),
    }
}

/// The `POST /v1/subnets` body.
pub fn subnet_request(a: &SubnetCreateArgs) -> CreateSubnetRequest {
    CreateSubnetRequest {
        name: a.name.clone(),
        network: a.network.clone(),
        cidr: a.cidr.clone(),
        gateway: a.gateway.clone(),
        allocation_pools: if a.pools.is_empty() {
            None
        } else {
            Some(a.pools.clone())
        },
        reserved: a.reserved.clone(),
        dhcp: if a.no_dhcp { Some(false) } else { None },
        dns_servers: a.dns.clone(),
        routes: a.routes.clone(),
    }
}

/// The `POST /v1/ports` body.
pub fn port_request(a: &PortCreateArgs) -> CreatePortRequest {
    CreatePortRequest {
        network: a.network.clone(),
        subnet: a.subnet.clone(),
        ipv4: a.ip.clone(),
        security_groups: if a.security_groups.is_empty() {
            None
        } else {
            Some(a.security_groups.clone())
        },
        name: a.name.clone(),
    }
}

/// `<base>` or `<base>?network=<id>` (pure).
pub fn filtered_path(base: &str, network_id: Option<&str>) -> String {
    match network_id {
        Some(id) => format!("{base}?network={}", encode_query(id)),
        None => base.to_string(),
    }
}

/// The ID of a network given by ID or name.
pub async fn network_id(client: &Client, id_or_name: &str) -> Result<String, CliError> {
    let n: Json<Network> = client.get(&format!("networks/{}", seg(id_or_name))).await?;
    Ok(n.value.id)
}

async fn filter_id(client: &Client, network: Option<&str>) -> Result<Option<String>, CliError> {
    match network {
        Some(n) => Ok(Some(network_id(client, n).await?)),
        None => Ok(None),
    }
}

pub async fn run_network(client: &Client, out: &Output, cmd: NetworkCmd) -> Result<i32, CliError> {
    match cmd {
        NetworkCmd::List => out.list(
            &client.list::<Network>("networks").await?,
            render::networks_table,
        ),
        NetworkCmd::Show { name } => out.one(
            &client
                .get::<Network>(&format!("networks/{}", seg(&name)))
                .await?,
            render::network_detail,
        ),
        NetworkCmd::Create(a) => {
            let n: Json<Network> = client
                .post("networks", Some(&network_request(&a)), None)
                .await?;
            out.one(&n, render::network_detail);
        }
        NetworkCmd::Delete { name } => {
            client
                .delete_empty(&format!("networks/{}", seg(&name)))
                .await?;
            out.note(format!("network `{name}` deleted"));
        }
    }
    Ok(0)
}

pub async fn run_subnet(client: &Client, out: &Output, cmd: SubnetCmd) -> Result<i32, CliError> {
    match cmd {
        SubnetCmd::List { network } => {
            let id = filter_id(client, network.as_deref()).await?;
            let path = filtered_path("subnets", id.as_deref());
            out.list(
                &client.list_unpaged::<Subnet>(&path).await?,
                net::subnets_table,
            );
        }
        SubnetCmd::Show { name } => out.one(
            &client
                .get::<Subnet>(&format!("subnets/{}", seg(&name)))
                .await?,
            net::subnet_detail,
        ),
        SubnetCmd::Create(a) => {
            let s: Json<Subnet> = client
                .post("subnets", Some(&subnet_request(&a)), None)
                .await?;
            out.one(&s, net::subnet_detail);
        }
        SubnetCmd::Delete { name } => {
            client
                .delete_empty(&format!("subnets/{}", seg(&name)))
                .await?;
            out.note(format!("subnet `{name}` deleted"));
        }
    }
    Ok(0)
}

pub async fn run_port(client: &Client, out: &Output, cmd: PortCmd) -> Result<i32, CliError> {
    match cmd {
        PortCmd::List { network } => {
            let id = filter_id(client, network.as_deref()).await?;
            let path = filtered_path("ports", id.as_deref());
            out.list(&client.list_unpaged::<Port>(&path).await?, net::ports_table);
        }
        PortCmd::Show { id } => out.one(
            &client.get::<Port>(&format!("ports/{}", seg(&id))).await?,
            net::port_detail,
        ),
        PortCmd::Create(a) => {
            let p: Json<Port> = client.post("ports", Some(&port_request(&a)), None).await?;
            out.one(&p, net::port_detail);
        }
        PortCmd::Update(a) => {
            let body = port_update_request(&a).ok_or_else(|| {
                CliError::usage(
                    "nothing to change: give --security-group, --no-security-groups or --name",
                )
            })?;
            let p: Json<Port> = client
                .patch(&format!("ports/{}", seg(&a.id)), &body)
                .await?;
            out.one(&p, net::port_detail);
        }
        PortCmd::Delete { id } => {
            client.delete_empty(&format!("ports/{}", seg(&id))).await?;
            out.note(format!("port `{id}` deleted"));
        }
    }
    Ok(0)
}
