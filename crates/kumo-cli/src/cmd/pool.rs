//! `kumo pool list|show`: storage pools with their capacity and usage per host.

use clap::Subcommand;
use kumo_types::PoolView;

use crate::CliError;
use crate::client::{Client, seg};
use crate::render::{Output, storage};

#[derive(Debug, Clone, Subcommand)]
pub enum PoolCmd {
    /// List storage pools.
    List,
    /// Show one pool, per host.
    Show { name: String },
}

pub async fn run(client: &Client, out: &Output, cmd: PoolCmd) -> Result<i32, CliError> {
    match cmd {
        PoolCmd::List => out.list(
            &client.list::<PoolView>("pools").await?,
            storage::pools_table,
        ),
        PoolCmd::Show { name } => out.one(
            &client
                .get::<PoolView>(&format!("pools/{}", seg(&name)))
                .await?,
            storage::pool_detail,
        ),
    }
    Ok(0)
}
