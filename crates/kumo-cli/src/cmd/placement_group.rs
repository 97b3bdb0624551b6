//! `kumo placement-group list|show|create|delete`, and the label syntax of `instance run
//! --host-selector` and `host label`.

use clap::{Args, Subcommand, ValueEnum};
use kumo_types::{
    CreatePlacementGroupRequest, PlacementEnforcement, PlacementGroup, PlacementStrategy,
};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, placement};

#[derive(Debug, Clone, Subcommand)]
pub enum PlacementGroupCmd {
    /// List placement groups.
    List,
    /// Show one placement group and its members.
    Show { name: String },
    /// Create a placement group (`instance run --placement-group NAME` adds members).
    Create(PlacementGroupCreateArgs),
    /// Delete a placement group without members.
    Delete { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Members on distinct hosts (anti-affinity).
    #[value(alias = "anti-affinity")]
    Spread,
    /// Members on the same host.
    Affinity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnforcementArg {
    /// A rule: members that cannot be placed accordingly are refused.
    Hard,
    /// A preference: followed when possible.
    Soft,
}

#[derive(Debug, Clone, Args)]
pub struct PlacementGroupCreateArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub strategy: StrategyArg,
    #[arg(long, value_enum, default_value = "hard")]
    pub enforcement: EnforcementArg,
    #[arg(long)]
    pub description: Option<String>,
}

/// The `POST /v1/placement-groups` body.
pub fn create_request(a: &PlacementGroupCreateArgs) -> CreatePlacementGroupRequest {
    CreatePlacementGroupRequest {
        name: a.name.clone(),
        strategy: match a.strategy {
            StrategyArg::Spread => PlacementStrategy::Spread,
            StrategyArg::Affinity => PlacementStrategy::Affinity,
        },
        enforcement: Some(match a.enforcement {
            EnforcementArg::Hard => PlacementEnforcement::Hard,
            EnforcementArg::Soft => PlacementEnforcement::Soft,
        }),
        description: a.description.clone(),
    }
}

/// `KEY=VALUE` (a label of `--host-selector`); the server checks the characters.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE, e.g. rack=a")),
    }
}

/// `KEY=VALUE` sets a label, `KEY-` removes it (`host label`).
pub fn parse_label_change(s: &str) -> Result<(String, Option<String>), String> {
    if let Some(k) = s.strip_suffix('-')
        && !k.is_empty()
        && !k.contains('=')
    {
        return Ok((k.to_string(), None));
    }
    parse_label(s)
        .map(|(k, v)| (k, Some(v)))
        .map_err(|_| format!("`{s}`: expected KEY=VALUE to set a label or KEY- to remove it"))
}

pub async fn run(client: &Client, out: &Output, cmd: PlacementGroupCmd) -> Result<i32, CliError> {
    match cmd {
        PlacementGroupCmd::List => out.list(
            &client.list::<PlacementGroup>("placement-groups").await?,
            placement::placement_groups_table,
        ),
        PlacementGroupCmd::Show { name } => out.one(
            &client
                .get::<PlacementGroup>(&format!("placement-groups/{}", seg(&name)))
                .await?,
            placement::placement_group_detail,
        ),
        PlacementGroupCmd::Create(a) => {
            let g: Json<PlacementGroup> = client
                .post("placement-groups", Some(&create_request(&a)), None)
                .await?;
            out.one(&g, placement::placement_group_detail);
        }
        PlacementGroupCmd::Delete { name } => {
            client
                .delete_empty(&format!("placement-groups/{}", seg(&name)))
                .await?;
            out.note(format!("placement group `{name}` deleted"));
        }
    }
    Ok(0)
}
