//! Request bodies of the network API (`/v1/networks`, `/subnets`, `/ports`, `/routers`,
//! `/security-groups`, `/floating-ips`). Shared by the server and the CLI.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Direction, IpRange, NetworkKind, Protocol, Route};

/// Body of `POST /v1/networks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateNetworkRequest {
    pub name: String,
    #[serde(default)]
    pub kind: NetworkKind,
    /// 1–4094, `vlan` only.
    #[serde(default)]
    pub vlan_id: Option<u16>,
    /// Host uplink mapping name (e.g. `physnet1`), `vlan` only.
    #[serde(default)]
    pub physical_network: Option<String>,
    /// Default 1500 (1450 for `vxlan`).
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub external: bool,
    /// Masquerade outbound traffic through the host's own uplinks.
    #[serde(default)]
    pub nat: bool,
    /// The network's IPv4 address range (e.g. `10.0.0.0/16`): its subnets must lie inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// Body of `POST /v1/subnets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateSubnetRequest {
    pub name: String,
    /// Network ID or name.
    pub network: String,
    pub cidr: String,
    /// Default: the first address. `"none"`: no gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub allocation_pools: Option<Vec<IpRange>>,
    #[serde(default)]
    pub reserved: Vec<String>,
    /// Default true.
    #[serde(default)]
    pub dhcp: Option<bool>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// Body of `POST /v1/ports`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreatePortRequest {
    /// Network ID or name (its first subnet is used unless `subnet` is given).
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub subnet: Option<String>,
    /// A fixed address to request.
    #[serde(default)]
    pub ipv4: Option<String>,
    /// Security group IDs or names (default: the project's `default` group).
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Body of `PATCH /v1/ports/{id}`: what is given is replaced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdatePortRequest {
    /// Security group IDs or names; replaces the port's list (empty: the port accepts nothing).
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Body of `POST /v1/routers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateRouterRequest {
    pub name: String,
    /// External network (ID or name) to SNAT to.
    #[serde(default)]
    pub external_network: Option<String>,
    /// Subnets (IDs or names) to join at creation.
    #[serde(default)]
    pub subnets: Vec<String>,
}

/// Body of `POST /v1/routers/{id}/interfaces`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterInterfaceRequest {
    /// Subnet ID or name.
    pub subnet: String,
}

/// Body of `POST /v1/security-groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateSecurityGroupRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Add the allow-all egress rule (as AWS does for a new group). Default true.
    #[serde(default)]
    pub allow_all_egress: Option<bool>,
}

/// Body of `POST /v1/security-groups/{id}/rules`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    pub direction: Direction,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub port_min: Option<u16>,
    #[serde(default)]
    pub port_max: Option<u16>,
    #[serde(default)]
    pub remote_cidr: Option<String>,
    /// ID or name of a security group whose members are the peers.
    #[serde(default)]
    pub remote_group: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Body of `POST /v1/floating-ips`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateFloatingIpRequest {
    /// External network ID or name.
    pub network: String,
}

/// Body of `POST /v1/floating-ips/{id}/associate`: give exactly one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AssociateFloatingIpRequest {
    #[serde(default)]
    pub port: Option<String>,
    /// Instance ID or name: its first NIC.
    #[serde(default)]
    pub instance: Option<String>,
}
