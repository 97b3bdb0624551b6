//! `kumo instance-type …`, `kumo key-pair …`, `kumo host …`, `kumo events` (networks: [`super::network`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kumo_types::{
    CreateInstanceTypeRequest, Event, Host, ImportKeyPairRequest, InstanceType, KeyPair,
};

use crate::CliError;
use crate::client::{Client, Json, encode_query, seg};
use crate::render::{self, Output};

#[derive(Debug, Clone, Subcommand)]
pub enum InstanceTypeCmd {
    /// List instance types.
    List,
    /// Show one instance type.
    Show { name: String },
    /// Create an instance type.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        vcpus: u32,
        /// Memory in MiB.
        #[arg(long)]
        memory_mib: u64,
        /// Root disk in GiB.
        #[arg(long)]
        root_disk_gib: u64,
        /// GPUs passed through to each instance: MODEL[xCOUNT], e.g. `10de:2236x2` (PCI
        /// vendor:device as `lspci -nn` shows it; `kumo host show` lists a host's GPUs).
        #[arg(long, value_parser = crate::syntax::parse_gpu)]
        gpu: Option<kumo_types::GpuRequest>,
    },
    /// Delete an instance type (built-in types cannot be deleted).
    Delete { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeyPairCmd {
    /// List key pairs.
    List,
    /// Show one key pair.
    Show { name: String },
    /// Import an existing OpenSSH public key.
    Import {
        #[arg(long)]
        name: String,
        /// File holding one OpenSSH public key line (e.g. ~/.ssh/id_ed25519.pub).
        #[arg(long)]
        public_key_file: PathBuf,
    },
    /// Delete a key pair.
    Delete { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum HostCmd {
    /// List hosts.
    List,
    /// Show one host with its inventory.
    Show { name: String },
    /// Set (KEY=VALUE) or remove (KEY-) labels that placement can require (`--host-selector`).
    Label {
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE|KEY-", value_parser = super::placement_group::parse_label_change)]
        labels: Vec<(String, Option<String>)>,
    },
    /// Drain a host: live-migrate instances with shared storage; stop the others, or cold-migrate
    /// them with their root disk (--local-disks migrate); then maintenance.
    Drain {
        name: String,
        /// Running instances on local disks: `stop` them (they stay; undrain starts them) or
        /// `migrate` them cold (shut down, root disk copied, started on another host).
        #[arg(long, value_enum, default_value = "stop")]
        local_disks: LocalDisks,
    },
    /// Bring a drained host back to `ready` and start the instances the drain stopped.
    Undrain { name: String },
    /// Remove a drained (or down) host with nothing on it; its certificates are revoked.
    Remove { name: String },
    /// Power the host off through its Redfish BMC when it fails (HA fencing).
    SetFencing {
        name: String,
        /// The BMC's Redfish system URL, e.g. https://10.0.0.5/redfish/v1/Systems/1.
        #[arg(long)]
        redfish_url: String,
        #[arg(long)]
        username: Option<String>,
        /// File holding the BMC password.
        #[arg(long, requires = "username")]
        password_file: Option<std::path::PathBuf>,
    },
    /// Forget the host's BMC (self-fencing only).
    ClearFencing { name: String },
}

/// What `host drain` does with running instances on local disks.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LocalDisks {
    Stop,
    Migrate,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only events about this resource ID.
    #[arg(long)]
    pub resource: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
}

pub async fn run_instance_type(
    client: &Client,
    out: &Output,
    cmd: InstanceTypeCmd,
) -> Result<i32, CliError> {
    match cmd {
        InstanceTypeCmd::List => out.list(
            &client.list::<InstanceType>("instance-types").await?,
            render::instance_types_table,
        ),
        InstanceTypeCmd::Show { name } => out.one(
            &client
                .get::<InstanceType>(&format!("instance-types/{}", seg(&name)))
                .await?,
            render::instance_type_detail,
        ),
        InstanceTypeCmd::Create {
            name,
            vcpus,
            memory_mib,
            root_disk_gib,
            gpu,
        } => {
            let req = CreateInstanceTypeRequest {
                name,
                vcpus,
                memory_mib,
                root_disk_gib,
                gpus: gpu,
            };
            let t: Json<InstanceType> = client.post("instance-types", Some(&req), None).await?;
            out.one(&t, render::instance_type_detail);
        }
        InstanceTypeCmd::Delete { name } => {
            client
                .delete_empty(&format!("instance-types/{}", seg(&name)))
                .await?;
            out.note(format!("instance type `{name}` deleted"));
        }
    }
    Ok(0)
}

pub async fn run_key_pair(client: &Client, out: &Output, cmd: KeyPairCmd) -> Result<i32, CliError> {
    match cmd {
        KeyPairCmd::List => out.list(
            &client.list::<KeyPair>("key-pairs").await?,
            render::key_pairs_table,
        ),
        KeyPairCmd::Show { name } => out.one(
            &client
                .get::<KeyPair>(&format!("key-pairs/{}", seg(&name)))
                .await?,
            render::key_pair_detail,
        ),
        KeyPairCmd::Import {
            name,
            public_key_file,
        } => {
            let text = std::fs::read_to_string(&public_key_file).map_err(|e| {
                CliError::usage(format!("reading {}: {e}", public_key_file.display()))
            })?;
            let req = ImportKeyPairRequest {
                name,
                public_key: text.trim().to_string(),
            };
            let k: Json<KeyPair> = client.post("key-pairs", Some(&req), None).await?;
            out.one(&k, render::key_pair_detail);
        }
        KeyPairCmd::Delete { name } => {
            client
                .delete_empty(&format!("key-pairs/{}", seg(&name)))
                .await?;
            out.note(format!("key pair `{name}` deleted"));
        }
    }
    Ok(0)
}

pub async fn run_host(client: &Client, out: &Output, cmd: HostCmd) -> Result<i32, CliError> {
    match cmd {
        HostCmd::List => out.list(&client.list::<Host>("hosts").await?, render::hosts_table),
        HostCmd::Show { name } => out.one(
            &client.get::<Host>(&format!("hosts/{}", seg(&name))).await?,
            render::host_detail,
        ),
        HostCmd::Label { name, labels } => {
            let body = kumo_types::UpdateHostRequest {
                labels: Some(labels.into_iter().collect()),
            };
            let h: Json<Host> = client
                .patch(&format!("hosts/{}", seg(&name)), &body)
                .await?;
            out.one(&h, render::host_detail);
        }
        HostCmd::Drain { name, local_disks } => {
            let req = kumo_types::DrainRequest {
                local_disks: match local_disks {
                    LocalDisks::Stop => kumo_types::LocalDiskAction::Stop,
                    LocalDisks::Migrate => kumo_types::LocalDiskAction::Migrate,
                },
            };
            let h: Json<Host> = client
                .post(&format!("hosts/{}/drain", seg(&name)), Some(&req), None)
                .await?;
            out.one(&h, render::host_detail);
        }
        HostCmd::Undrain { name } => {
            let h: Json<Host> = client
                .post::<(), _>(&format!("hosts/{}/undrain", seg(&name)), None, None)
                .await?;
            out.one(&h, render::host_detail);
        }
        HostCmd::Remove { name } => {
            let h: Json<Host> = client.delete(&format!("hosts/{}", seg(&name))).await?;
            out.note(format!(
                "host `{}` removed; its certificates are revoked",
                h.value.name
            ));
        }
        HostCmd::SetFencing {
            name,
            redfish_url,
            username,
            password_file,
        } => {
            let password = match password_file {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .map_err(|e| {
                            CliError::usage(format!(
                                "reading the password from {}: {e}",
                                p.display()
                            ))
                        })?
                        .trim_end()
                        .to_string(),
                ),
                None => None,
            };
            let body = kumo_types::Fencing {
                redfish_url,
                username,
                password,
            };
            let h: Json<Host> = client
                .put(&format!("hosts/{}/fencing", seg(&name)), &body)
                .await?;
            out.one(&h, render::host_detail);
        }
        HostCmd::ClearFencing { name } => {
            let h: Json<Host> = client
                .delete(&format!("hosts/{}/fencing", seg(&name)))
                .await?;
            out.one(&h, render::host_detail);
        }
    }
    Ok(0)
}

/// The events query path (pure).
pub fn events_path(a: &EventsArgs) -> String {
    match &a.resource {
        Some(r) => format!("events?resource={}", encode_query(r)),
        None => "events".to_string(),
    }
}

pub async fn run_events(client: &Client, out: &Output, a: EventsArgs) -> Result<i32, CliError> {
    let list = client.list_max::<Event>(&events_path(&a), a.limit).await?;
    out.list(&list, render::events_table);
    Ok(0)
}
