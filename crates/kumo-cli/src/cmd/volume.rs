//! `kumo volume create|list|show|attach|detach|resize|delete`. A volume is named by its ID or its name.
//!
//! Request bodies are built by pure `*_request` functions (unit-tested); [`run`] only sends them and
//! prints the answer. Every changing call is answered with `202` and the volume as it is now: the
//! volume's host carries the change out afterwards (`volume show` reports its progress in `state`).

use clap::{Args, Subcommand};
use kumo_types::{AttachVolumeRequest, CreateVolumeRequest, UpdateVolumeRequest, VolumeView};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{Output, storage};

#[derive(Debug, Clone, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (empty, a copy-on-write overlay on a disk image, or a clone of a snapshot).
    Create(VolumeCreateArgs),
    /// List volumes.
    List,
    /// Show one volume.
    Show { name: String },
    /// Attach a volume to an instance on the volume's host (hot-plugged when the instance runs).
    Attach(VolumeAttachArgs),
    /// Detach a volume from its instance (hot-unplugged when the instance runs).
    Detach { name: String },
    /// Grow a volume (volumes only grow; online while attached to a running instance).
    Resize(VolumeResizeArgs),
    /// Delete a detached volume and its data.
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct VolumeCreateArgs {
    /// Volume name (unique in the project).
    #[arg(long)]
    pub name: String,
    /// Size in GiB (default: the image's virtual size rounded up; required without --image).
    #[arg(long, value_name = "GIB")]
    pub size: Option<u64>,
    /// Disk image ID or name to start from.
    #[arg(long, conflicts_with = "snapshot")]
    pub image: Option<String>,
    /// A completed snapshot (ID or name) to clone.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Storage pool (only `local` so far; default: the volume type's).
    #[arg(long)]
    pub pool: Option<String>,
    /// Volume type (default `default`; see `kumo volume-type list`).
    #[arg(long = "type", value_name = "TYPE")]
    pub volume_type: Option<String>,
    /// Host ID or name to create it on (default: the only or first ready host).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct VolumeAttachArgs {
    /// Volume ID or name.
    pub name: String,
    /// Instance ID or name.
    #[arg(long)]
    pub instance: String,
    /// Delete the volume when the instance is deleted (default: detach it and keep it).
    #[arg(long)]
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VolumeResizeArgs {
    /// Volume ID or name.
    pub name: String,
    /// The new, larger size in GiB.
    #[arg(long, value_name = "GIB")]
    pub size: u64,
}

/// The `POST /v1/volumes` body.
pub fn create_request(a: &VolumeCreateArgs) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: a.name.clone(),
        size_gib: a.size,
        image: a.image.clone(),
        snapshot: a.snapshot.clone(),
        pool: a.pool.clone(),
        volume_type: a.volume_type.clone(),
        host: a.host.clone(),
    }
}

/// The `POST /v1/volumes/{id}/attach` body.
pub fn attach_request(a: &VolumeAttachArgs) -> AttachVolumeRequest {
    AttachVolumeRequest {
        instance: a.instance.clone(),
        delete_on_termination: a.delete_on_termination,
    }
}

/// The `PATCH /v1/volumes/{id}` body.
pub fn resize_request(a: &VolumeResizeArgs) -> UpdateVolumeRequest {
    UpdateVolumeRequest {
        size_gib: Some(a.size),
    }
}

pub async fn run(client: &Client, out: &Output, cmd: VolumeCmd) -> Result<i32, CliError> {
    let path = |name: &str, action: &str| format!("volumes/{}{action}", seg(name));
    match cmd {
        VolumeCmd::Create(a) => {
            let v: Json<VolumeView> = client
                .post("volumes", Some(&create_request(&a)), None)
                .await?;
            out.one(&v, storage::volume_detail);
        }
        VolumeCmd::List => out.list(
            &client.list::<VolumeView>("volumes").await?,
            storage::volumes_table,
        ),
        VolumeCmd::Show { name } => out.one(
            &client.get::<VolumeView>(&path(&name, "")).await?,
            storage::volume_detail,
        ),
        VolumeCmd::Attach(a) => {
            let v: Json<VolumeView> = client
                .post(&path(&a.name, "/attach"), Some(&attach_request(&a)), None)
                .await?;
            out.one(&v, storage::volume_detail);
        }
        VolumeCmd::Detach { name } => {
            let v: Json<VolumeView> = client
                .post::<(), _>(&path(&name, "/detach"), None, None)
                .await?;
            out.one(&v, storage::volume_detail);
        }
        VolumeCmd::Resize(a) => {
            let v: Json<VolumeView> = client
                .patch(&path(&a.name, ""), &resize_request(&a))
                .await?;
            out.one(&v, storage::volume_detail);
        }
        VolumeCmd::Delete { name } => {
            let v: Json<VolumeView> = client.delete(&path(&name, "")).await?;
            out.one(&v, storage::volume_detail);
        }
    }
    Ok(0)
}
