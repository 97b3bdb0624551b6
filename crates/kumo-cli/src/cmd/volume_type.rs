//! `kumo volume-type list|show|create|delete`: what users choose when they create a volume (a pool
//! and a tier label).

use clap::{Args, Subcommand};
use kumo_types::{CreateVolumeTypeRequest, VolumeType};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, storage};

#[derive(Debug, Clone, Subcommand)]
pub enum VolumeTypeCmd {
    /// List volume types (`default` is built in).
    List,
    /// Show one volume type.
    Show { name: String },
    /// Create a volume type mapping to a pool.
    Create(VolumeTypeCreateArgs),
    /// Delete an unused custom volume type.
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct VolumeTypeCreateArgs {
    #[arg(long)]
    pub name: String,
    /// Pool its volumes go to.
    #[arg(long)]
    pub pool: String,
    /// A tier label (`ssd`, `hdd`, …).
    #[arg(long)]
    pub tier: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

/// The `POST /v1/volume-types` body.
pub fn create_request(a: &VolumeTypeCreateArgs) -> CreateVolumeTypeRequest {
    CreateVolumeTypeRequest {
        name: a.name.clone(),
        pool: a.pool.clone(),
        tier: a.tier.clone(),
        description: a.description.clone(),
    }
}

pub async fn run(client: &Client, out: &Output, cmd: VolumeTypeCmd) -> Result<i32, CliError> {
    match cmd {
        VolumeTypeCmd::List => out.list(
            &client.list::<VolumeType>("volume-types").await?,
            storage::volume_types_table,
        ),
        VolumeTypeCmd::Show { name } => out.one(
            &client
                .get::<VolumeType>(&format!("volume-types/{}", seg(&name)))
                .await?,
            storage::volume_type_detail,
        ),
        VolumeTypeCmd::Create(a) => {
            let t: Json<VolumeType> = client
                .post("volume-types", Some(&create_request(&a)), None)
                .await?;
            out.one(&t, storage::volume_type_detail);
        }
        VolumeTypeCmd::Delete { name } => {
            client
                .delete_empty(&format!("volume-types/{}", seg(&name)))
                .await?;
            out.note(format!("volume type `{name}` deleted"));
        }
    }
    Ok(0)
}
