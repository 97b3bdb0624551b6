//! `kumo floating-ip list|show|allocate|associate|disassociate|release`. A floating IP is named by its
//! ID or its address.

use clap::{ArgGroup, Args, Subcommand};
use kumo_types::{AllocateFloatingIpRequest, AssociateFloatingIpRequest, FloatingIp};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, net};

#[derive(Debug, Clone, Subcommand)]
pub enum FloatingIpCmd {
    /// List floating IPs.
    List,
    /// Show one floating IP (ID or address).
    Show { fip: String },
    /// Allocate a floating IP from an external network.
    Allocate {
        /// External network ID or name.
        #[arg(long)]
        network: String,
    },
    /// Point a floating IP at a port or at an instance's first NIC.
    Associate(AssociateArgs),
    /// Detach a floating IP from its port.
    Disassociate { fip: String },
    /// Release a floating IP back to its network.
    Release { fip: String },
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["port", "instance"])))]
pub struct AssociateArgs {
    /// Floating IP ID or address.
    pub fip: String,
    /// Port ID.
    #[arg(long)]
    pub port: Option<String>,
    /// Instance ID or name (its first NIC).
    #[arg(long)]
    pub instance: Option<String>,
}

/// The `POST /v1/floating-ips/{id}/associate` body.
pub fn associate_request(a: &AssociateArgs) -> AssociateFloatingIpRequest {
    AssociateFloatingIpRequest {
        port: a.port.clone(),
        instance: a.instance.clone(),
    }
}

pub async fn run(client: &Client, out: &Output, cmd: FloatingIpCmd) -> Result<i32, CliError> {
    let path = |fip: &str| format!("floating-ips/{}", seg(fip));
    match cmd {
        FloatingIpCmd::List => out.list(
            &client.list::<FloatingIp>("floating-ips").await?,
            net::floating_ips_table,
        ),
        FloatingIpCmd::Show { fip } => out.one(
            &client.get::<FloatingIp>(&path(&fip)).await?,
            net::floating_ip_detail,
        ),
        FloatingIpCmd::Allocate { network } => {
            let body = AllocateFloatingIpRequest { network };
            let f: Json<FloatingIp> = client.post("floating-ips", Some(&body), None).await?;
            out.one(&f, net::floating_ip_detail);
        }
        FloatingIpCmd::Associate(a) => {
            let body = associate_request(&a);
            let f: Json<FloatingIp> = client
                .post(&format!("{}/associate", path(&a.fip)), Some(&body), None)
                .await?;
            out.one(&f, net::floating_ip_detail);
        }
        FloatingIpCmd::Disassociate { fip } => {
            let f: Json<FloatingIp> = client
                .post::<(), _>(&format!("{}/disassociate", path(&fip)), None, None)
                .await?;
            out.one(&f, net::floating_ip_detail);
        }
        FloatingIpCmd::Release { fip } => {
            client.delete_empty(&path(&fip)).await?;
            out.note(format!("floating IP `{fip}` released"));
        }
    }
    Ok(0)
}
