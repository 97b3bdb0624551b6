//! `kumo security-group list|show|create|delete|add-rule|remove-rule`.
//!
//! `add-rule` maps `--port P` to `port_min = port_max = P` and `--ports A-B` to `A..=B`; the two, and
//! `--remote-cidr`/`--remote-group`, are mutually exclusive on the command line. Ports with a protocol
//! other than tcp/udp are refused here with the same meaning the API gives them (no ports).

use clap::{Args, Subcommand, ValueEnum};
use kumo_types::{CreateSecurityGroupRequest, Direction, Protocol, RuleRequest, SecurityGroup};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, net};
use crate::syntax;

#[derive(Debug, Clone, Subcommand)]
pub enum SecurityGroupCmd {
    /// List security groups.
    List,
    /// Show one security group and its rules.
    Show { name: String },
    /// Create a security group.
    Create {
        /// Group name (unique in the project).
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Do not add the allow-all egress rule a new group gets by default.
        #[arg(long)]
        no_default_egress: bool,
    },
    /// Delete a security group (no port may use it).
    Delete { name: String },
    /// Add an allow rule.
    AddRule(AddRuleArgs),
    /// Remove a rule.
    RemoveRule {
        /// Group ID or name.
        group: String,
        /// Rule ID (see `security-group show`).
        rule_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Any,
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Args)]
pub struct AddRuleArgs {
    /// Group ID or name.
    pub group: String,
    #[arg(long, value_enum)]
    pub direction: DirectionArg,
    #[arg(long, value_enum, default_value = "any")]
    pub protocol: ProtocolArg,
    /// One port (tcp/udp).
    #[arg(long, conflicts_with = "ports", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// A port range MIN-MAX (tcp/udp).
    #[arg(long, value_name = "MIN-MAX", value_parser = syntax::parse_port_range)]
    pub ports: Option<(u16, u16)>,
    /// Peer CIDR (default: any peer).
    #[arg(long, conflicts_with = "remote_group", value_parser = syntax::parse_cidr)]
    pub remote_cidr: Option<String>,
    /// Peer security group (ID or name): its members.
    #[arg(long)]
    pub remote_group: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::Ingress => Direction::Ingress,
            DirectionArg::Egress => Direction::Egress,
        }
    }
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Any => Protocol::Any,
            ProtocolArg::Tcp => Protocol::Tcp,
            ProtocolArg::Udp => Protocol::Udp,
            ProtocolArg::Icmp => Protocol::Icmp,
        }
    }
}

/// The `POST /v1/security-groups` body.
pub fn group_request(
    name: &str,
    description: &str,
    no_default_egress: bool,
) -> CreateSecurityGroupRequest {
    CreateSecurityGroupRequest {
        name: name.to_string(),
        description: description.to_string(),
        allow_all_egress: if no_default_egress { Some(false) } else { None },
    }
}

/// The `POST /v1/security-groups/{id}/rules` body, or a usage error for ports without tcp/udp.
pub fn rule_request(a: &AddRuleArgs) -> Result<RuleRequest, CliError> {
    let (port_min, port_max) = match (a.port, a.ports) {
        (Some(p), _) => (Some(p), Some(p)),
        (None, Some((lo, hi))) => (Some(lo), Some(hi)),
        (None, None) => (None, None),
    };
    if port_min.is_some() && !matches!(a.protocol, ProtocolArg::Tcp | ProtocolArg::Udp) {
        return Err(CliError::usage(
            "--port/--ports need --protocol tcp or --protocol udp",
        ));
    }
    Ok(RuleRequest {
        direction: a.direction.into(),
        protocol: a.protocol.into(),
        port_min,
        port_max,
        remote_cidr: a.remote_cidr.clone(),
        remote_group: a.remote_group.clone(),
        description: a.description.clone(),
    })
}

pub async fn run(client: &Client, out: &Output, cmd: SecurityGroupCmd) -> Result<i32, CliError> {
    let path = |name: &str| format!("security-groups/{}", seg(name));
    match cmd {
        SecurityGroupCmd::List => out.list(
            &client.list::<SecurityGroup>("security-groups").await?,
            net::security_groups_table,
        ),
        SecurityGroupCmd::Show { name } => out.one_tables(
            &client.get::<SecurityGroup>(&path(&name)).await?,
            net::security_group_tables,
        ),
        SecurityGroupCmd::Create {
            name,
            description,
            no_default_egress,
        } => {
            let body = group_request(&name, &description, no_default_egress);
            let g: Json<SecurityGroup> = client.post("security-groups", Some(&body), None).await?;
            out.one_tables(&g, net::security_group_tables);
        }
        SecurityGroupCmd::Delete { name } => {
            client.delete_empty(&path(&name)).await?;
            out.note(format!("security group `{name}` deleted"));
        }
        SecurityGroupCmd::AddRule(a) => {
            let body = rule_request(&a)?;
            let g: Json<SecurityGroup> = client
                .post(&format!("{}/rules", path(&a.group)), Some(&body), None)
                .await?;
            out.one_tables(&g, net::security_group_tables);
        }
        SecurityGroupCmd::RemoveRule { group, rule_id } => {
            let g: Json<SecurityGroup> = client
                .delete(&format!("{}/rules/{}", path(&group), seg(&rule_id)))
                .await?;
            out.one_tables(&g, net::security_group_tables);
        }
    }
    Ok(0)
}
