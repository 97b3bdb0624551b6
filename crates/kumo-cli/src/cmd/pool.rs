//! `kumo pool list|show|create|delete`: storage pools with their capacity and usage per host.

use clap::{Args, Subcommand, ValueEnum};
use kumo_types::{CreatePoolRequest, PoolDriver, PoolView};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, storage};

#[derive(Debug, Clone, Subcommand)]
pub enum PoolCmd {
    /// List storage pools.
    List,
    /// Show one pool, per host.
    Show { name: String },
    /// Add a pool: `--driver dir|shared-dir --path DIR`, `--driver lvm-thin --volume-group VG
    /// --thin-pool LV`, or `--driver rbd --rbd-pool P --ceph-conf FILE [--ceph-user ID]`.
    Create(PoolCreateArgs),
    /// Delete a pool that holds no volumes and no volume type names.
    Delete { name: String },
}

/// Pool drivers as the CLI spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverArg {
    Dir,
    SharedDir,
    LvmThin,
    Rbd,
}

impl From<DriverArg> for PoolDriver {
    fn from(d: DriverArg) -> PoolDriver {
        match d {
            DriverArg::Dir => PoolDriver::Dir,
            DriverArg::SharedDir => PoolDriver::SharedDir,
            DriverArg::LvmThin => PoolDriver::LvmThin,
            DriverArg::Rbd => PoolDriver::Rbd,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PoolCreateArgs {
    pub name: String,
    #[arg(long, value_enum)]
    pub driver: DriverArg,
    /// `dir`, `shared-dir`: the directory (the same path on every host).
    #[arg(long)]
    pub path: Option<String>,
    /// `lvm-thin`: the volume group.
    #[arg(long)]
    pub volume_group: Option<String>,
    /// `lvm-thin`: the thin pool LV in the volume group.
    #[arg(long)]
    pub thin_pool: Option<String>,
    /// `rbd`: the Ceph pool.
    #[arg(long)]
    pub rbd_pool: Option<String>,
    /// `rbd`: path of ceph.conf on every host (its `[global] keyring` names the keyring).
    #[arg(long)]
    pub ceph_conf: Option<String>,
    /// `rbd`: Ceph client id (default `admin`).
    #[arg(long)]
    pub ceph_user: Option<String>,
}

/// The `POST /v1/pools` body.
pub fn create_request(a: &PoolCreateArgs) -> CreatePoolRequest {
    CreatePoolRequest {
        name: a.name.clone(),
        driver: a.driver.into(),
        path: a.path.clone(),
        volume_group: a.volume_group.clone(),
        thin_pool: a.thin_pool.clone(),
        rbd_pool: a.rbd_pool.clone(),
        ceph_conf: a.ceph_conf.clone(),
        ceph_user: a.ceph_user.clone(),
    }
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
        PoolCmd::Create(a) => {
            let p: Json<PoolView> = client
                .post("pools", Some(&create_request(&a)), None)
                .await?;
            out.one(&p, storage::pool_detail);
        }
        PoolCmd::Delete { name } => {
            client
                .delete_empty(&format!("pools/{}", seg(&name)))
                .await?;
            out.note(format!("pool `{name}` deleted"));
        }
    }
    Ok(0)
}
