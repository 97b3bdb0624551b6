//! `kumo snapshot create|list|show|delete`: point-in-time copies of volumes (clone one with
//! `kumo volume create --snapshot S`).

use clap::{Args, Subcommand};
use kumo_types::{CreateSnapshotRequest, SnapshotView};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, storage};

#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCmd {
    /// Snapshot a volume (online while its instance runs).
    Create(SnapshotCreateArgs),
    /// List snapshots.
    List,
    /// Show one snapshot.
    Show { name: String },
    /// Delete a snapshot (clones made from it stay).
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotCreateArgs {
    /// Snapshot name (unique in the project).
    #[arg(long)]
    pub name: String,
    /// Volume ID or name.
    #[arg(long)]
    pub volume: String,
}

/// The `POST /v1/snapshots` body.
pub fn create_request(a: &SnapshotCreateArgs) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: a.name.clone(),
        volume: a.volume.clone(),
    }
}

pub async fn run(client: &Client, out: &Output, cmd: SnapshotCmd) -> Result<i32, CliError> {
    let path = |name: &str| format!("snapshots/{}", seg(name));
    match cmd {
        SnapshotCmd::Create(a) => {
            let s: Json<SnapshotView> = client
                .post("snapshots", Some(&create_request(&a)), None)
                .await?;
            out.one(&s, storage::snapshot_detail);
        }
        SnapshotCmd::List => out.list(
            &client.list::<SnapshotView>("snapshots").await?,
            storage::snapshots_table,
        ),
        SnapshotCmd::Show { name } => out.one(
            &client.get::<SnapshotView>(&path(&name)).await?,
            storage::snapshot_detail,
        ),
        SnapshotCmd::Delete { name } => {
            let s: Json<SnapshotView> = client.delete(&path(&name)).await?;
            out.one(&s, storage::snapshot_detail);
        }
    }
    Ok(0)
}
