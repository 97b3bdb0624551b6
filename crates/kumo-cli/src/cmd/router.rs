//! `kumo router list|show|create|delete|add-subnet|remove-subnet`.

use clap::{Args, Subcommand};
use kumo_types::{CreateRouterRequest, Router, RouterInterfaceRequest};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, net};

#[derive(Debug, Clone, Subcommand)]
pub enum RouterCmd {
    /// List routers.
    List,
    /// Show one router.
    Show { name: String },
    /// Create a router.
    Create(RouterCreateArgs),
    /// Delete a router.
    Delete { name: String },
    /// Join a subnet to a router.
    AddSubnet {
        /// Router ID or name.
        router: String,
        /// Subnet ID or name.
        subnet: String,
    },
    /// Remove a subnet from a router.
    RemoveSubnet {
        /// Router ID or name.
        router: String,
        /// Subnet ID or name.
        subnet: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RouterCreateArgs {
    /// Router name (unique in the project).
    #[arg(long)]
    pub name: String,
    /// External network (ID or name) to SNAT to.
    #[arg(long)]
    pub external_network: Option<String>,
    /// Subnet (ID or name) to join at creation (repeatable).
    #[arg(long = "subnet", value_name = "SUBNET")]
    pub subnets: Vec<String>,
}

/// The `POST /v1/routers` body.
pub fn router_request(a: &RouterCreateArgs) -> CreateRouterRequest {
    CreateRouterRequest {
        name: a.name.clone(),
        external_network: a.external_network.clone(),
        subnets: a.subnets.clone(),
    }
}

pub async fn run(client: &Client, out: &Output, cmd: RouterCmd) -> Result<i32, CliError> {
    let path = |name: &str| format!("routers/{}", seg(name));
    match cmd {
        RouterCmd::List => out.list(&client.list::<Router>("routers").await?, net::routers_table),
        RouterCmd::Show { name } => {
            out.one(
                &client.get::<Router>(&path(&name)).await?,
                net::router_detail,
            );
        }
        RouterCmd::Create(a) => {
            let r: Json<Router> = client
                .post("routers", Some(&router_request(&a)), None)
                .await?;
            out.one(&r, net::router_detail);
        }
        RouterCmd::Delete { name } => {
            client.delete_empty(&path(&name)).await?;
            out.note(format!("router `{name}` deleted"));
        }
        RouterCmd::AddSubnet { router, subnet } => {
            let body = RouterInterfaceRequest { subnet };
            let r: Json<Router> = client
                .post(&format!("{}/interfaces", path(&router)), Some(&body), None)
                .await?;
            out.one(&r, net::router_detail);
        }
        RouterCmd::RemoveSubnet { router, subnet } => {
            let r: Json<Router> = client
                .delete(&format!("{}/interfaces/{}", path(&router), seg(&subnet)))
                .await?;
            out.one(&r, net::router_detail);
        }
    }
    Ok(0)
}
