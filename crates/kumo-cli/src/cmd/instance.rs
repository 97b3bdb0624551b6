//! `kumo instance run|list|show|start|stop|reboot|migrate|delete|logs|console|attach-nic|detach-nic`.
//!
//! With `--wait`, a command prints the instance as it is once the target is reached (running, stopped)
//! instead of the immediate `202` answer; `delete --wait` prints the `202` answer and then waits until
//! the instance is gone. Failures while waiting (`failed`, `crashed`, timeout) exit 1 with the status
//! message.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use kumo_types::{
    InstanceView, NicRequest, RestartPolicy, RunInstanceRequest, StopInstanceRequest,
};

use crate::CliError;
use crate::client::{Client, Json, is_not_found, seg};
use crate::console;
use crate::render::{self, Output};
use crate::syntax;
use crate::wait::{self, DEFAULT_TIMEOUT_SECS, Target};

/// How often `logs --follow` polls.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Subcommand)]
pub enum InstanceCmd {
    /// Create and (unless --stopped) start an instance.
    Run(RunArgs),
    /// List instances.
    List,
    /// Show one instance.
    Show { name: String },
    /// Start a stopped instance.
    Start {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop an instance (ACPI shutdown, or at once with --force).
    Stop {
        name: String,
        /// Skip the ACPI shutdown and stop QEMU at once.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Reboot an instance.
    Reboot { name: String },
    /// Move an instance to another host: live (a running instance keeps running) or cold (stop,
    /// copy its root disk, start there).
    Migrate {
        name: String,
        /// Target host (ID or name); the scheduler chooses otherwise.
        #[arg(long)]
        host: Option<String>,
        /// Stop, move and start again (the default for a stopped instance).
        #[arg(long)]
        cold: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete an instance and its disks.
    Delete {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Print the serial console log.
    Logs {
        name: String,
        /// Keep printing new output until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Hot-plug a NIC into an instance (running or stopped): a new port on a network.
    AttachNic {
        name: String,
        /// The NIC: network=N[,subnet=S][,ip=A][,sg=G1+G2] or port=P (as `run --nic`).
        #[arg(long = "nic", value_name = "SPEC", value_parser = syntax::parse_nic)]
        nic: NicRequest,
    },
    /// Unplug a NIC (named by its port ID or IPv4 address); its port and address are released.
    DetachNic {
        name: String,
        /// Port ID or IPv4 address of the NIC.
        nic: String,
    },
    /// Attach to the serial console (Ctrl-] quits; with a non-terminal stdin, pipes until EOF).
    Console {
        name: String,
        /// With a non-terminal stdin: after EOF, keep printing until the guest is quiet this long (seconds).
        #[arg(long, default_value_t = 3.0)]
        linger: f64,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct WaitArgs {
    /// Wait until the instance reaches the requested state.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS, requires = "wait")]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Instance name (unique in the project).
    #[arg(long)]
    pub name: String,
    /// Image ID or name.
    #[arg(long)]
    pub image: String,
    /// Instance type name.
    #[arg(long = "type")]
    pub instance_type: String,
    /// File whose contents are passed as user data (e.g. a shell script or cloud-config).
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Key pair name to install.
    #[arg(long)]
    pub key_name: Option<String>,
    /// Root disk size in GiB (defaults to the instance type's).
    #[arg(long)]
    pub root_disk_gib: Option<u64>,
    /// High availability: restart on another host if this one fails (needs --boot-volume-type on a
    /// shared pool).
    #[arg(long)]
    pub ha: bool,
    /// HA restart order (higher first).
    #[arg(long, requires = "ha")]
    pub ha_priority: Option<u32>,
    /// Boot from a volume made from the image at launch, instead of a root disk file on the host.
    #[arg(long)]
    pub boot_volume: bool,
    /// The boot volume's volume type (implies --boot-volume; default `default`).
    #[arg(long, value_name = "TYPE")]
    pub boot_volume_type: Option<String>,
    /// Keep the boot volume when the instance is deleted (implies --boot-volume).
    #[arg(long)]
    pub keep_boot_volume: bool,
    /// What to do when QEMU exits unexpectedly.
    #[arg(long, value_enum)]
    pub restart_policy: Option<RestartPolicyArg>,
    /// Network ID or name for the one NIC (defaults to the default network; see --nic for more).
    #[arg(long, conflicts_with = "nics")]
    pub network: Option<String>,
    /// A NIC: network=N[,subnet=S][,ip=A][,sg=G1+G2], or port=P for an existing port (repeatable, in
    /// guest order).
    #[arg(long = "nic", value_name = "SPEC", value_parser = syntax::parse_nic)]
    pub nics: Vec<NicRequest>,
    /// Security group ID or name for NICs that name none (repeatable; default: `default`).
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// Create the instance without starting it.
    #[arg(long)]
    pub stopped: bool,
    /// Join this placement group (placed apart from or with its other members, as the group says).
    #[arg(long, value_name = "GROUP")]
    pub placement_group: Option<String>,
    /// Only place it on hosts with this label (KEY=VALUE; repeatable: every one is required).
    #[arg(long = "host-selector", value_name = "KEY=VALUE", value_parser = super::placement_group::parse_label)]
    pub host_selector: Vec<(String, String)>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartPolicyArg {
    Never,
    OnFailure,
    Always,
}

impl From<RestartPolicyArg> for RestartPolicy {
    fn from(p: RestartPolicyArg) -> RestartPolicy {
        match p {
            RestartPolicyArg::Never => RestartPolicy::Never,
            RestartPolicyArg::OnFailure => RestartPolicy::OnFailure,
            RestartPolicyArg::Always => RestartPolicy::Always,
        }
    }
}

/// The `POST /v1/instances` body for `instance run` (`user_data` already read from the file).
pub fn run_request(a: &RunArgs, user_data: Option<String>) -> RunInstanceRequest {
    RunInstanceRequest {
        name: a.name.clone(),
        image: a.image.clone(),
        instance_type: a.instance_type.clone(),
        key_name: a.key_name.clone(),
        user_data,
        root_disk_gib: a.root_disk_gib,
        restart_policy: a.restart_policy.map(Into::into),
        network: a.network.clone(),
        nics: if a.nics.is_empty() {
            None
        } else {
            Some(a.nics.clone())
        },
        security_groups: if a.security_groups.is_empty() {
            None
        } else {
            Some(a.security_groups.clone())
        },
        start: if a.stopped { Some(false) } else { None },
        placement_group: a.placement_group.clone(),
        host_selector: (!a.host_selector.is_empty())
            .then(|| a.host_selector.iter().cloned().collect()),
        ha: a.ha.then_some(true),
        ha_priority: a.ha_priority,
        root_volume: (a.boot_volume || a.boot_volume_type.is_some() || a.keep_boot_volume).then(
            || kumo_types::RootVolumeRequest {
                volume_type: a.boot_volume_type.clone(),
                size_gib: None,
                delete_on_termination: Some(!a.keep_boot_volume),
            },
        ),
    }
}

pub async fn run(client: &Client, out: &Output, cmd: InstanceCmd) -> Result<i32, CliError> {
    let path = |name: &str, action: &str| format!("instances/{}{action}", seg(name));
    match cmd {
        InstanceCmd::Run(a) => {
            let user_data = match &a.user_data {
                Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                    CliError::usage(format!("reading user data from {}: {e}", p.display()))
                })?),
                None => None,
            };
            let req = run_request(&a, user_data);
            let v: Json<InstanceView> = client.post("instances", Some(&req), None).await?;
            let target = if a.stopped {
                Target::Stopped
            } else {
                Target::Running
            };
            finish(client, out, v, target, &a.wait).await?;
        }
        InstanceCmd::List => out.list(
            &client.list::<InstanceView>("instances").await?,
            render::instances_table,
        ),
        InstanceCmd::Show { name } => out.one(
            &client.get::<InstanceView>(&path(&name, "")).await?,
            render::instance_detail,
        ),
        InstanceCmd::Start { name, wait } => {
            let v = client
                .post::<(), _>(&path(&name, "/start"), None, None)
                .await?;
            finish(client, out, v, Target::Running, &wait).await?;
        }
        InstanceCmd::Stop { name, force, wait } => {
            let body = StopInstanceRequest { force };
            let v = client
                .post(&path(&name, "/stop"), Some(&body), None)
                .await?;
            finish(client, out, v, Target::Stopped, &wait).await?;
        }
        InstanceCmd::Reboot { name } => {
            let v = client
                .post::<(), InstanceView>(&path(&name, "/reboot"), None, None)
                .await?;
            out.one(&v, render::instance_detail);
        }
        InstanceCmd::Migrate {
            name,
            host,
            cold,
            wait,
        } => {
            let body = kumo_types::MigrateRequest {
                host,
                kind: cold.then_some(kumo_types::MigrationKind::Cold),
            };
            let v = client
                .post(&path(&name, "/migrate"), Some(&body), None)
                .await?;
            finish(client, out, v, Target::Migrated, &wait).await?;
        }
        InstanceCmd::Delete { name, wait } => {
            let v: Json<InstanceView> = client.delete(&path(&name, "")).await?;
            out.one(&v, render::instance_detail);
            if wait.wait {
                wait::until(
                    client,
                    &v.value.id,
                    Target::Gone,
                    Some(v.value.state),
                    Duration::from_secs(wait.timeout),
                )
                .await?;
                out.note(format!("instance `{name}` deleted"));
            }
        }
        InstanceCmd::AttachNic { name, nic } => {
            let v: Json<InstanceView> =
                client.post(&path(&name, "/nics"), Some(&nic), None).await?;
            out.one(&v, render::instance_detail);
        }
        InstanceCmd::DetachNic { name, nic } => {
            let v: Json<InstanceView> = client
                .delete(&format!("{}/{}", path(&name, "/nics"), seg(&nic)))
                .await?;
            out.one(&v, render::instance_detail);
        }
        InstanceCmd::Logs { name, follow } => logs(client, out, &name, follow).await?,
        InstanceCmd::Console { name, linger } => {
            let linger = Duration::try_from_secs_f64(linger)
                .map_err(|e| CliError::usage(format!("--linger: {e}")))?;
            console::attach(client, &name, console::Options { linger }).await?;
        }
    }
    Ok(0)
}

/// Print the accepted instance, or wait for `target` and print it then.
async fn finish(
    client: &Client,
    out: &Output,
    accepted: Json<InstanceView>,
    target: Target,
    w: &WaitArgs,
) -> Result<(), CliError> {
    if !w.wait {
        out.one(&accepted, render::instance_detail);
        return Ok(());
    }
    let id = accepted.value.id.clone();
    let last = wait::until(
        client,
        &id,
        target,
        Some(accepted.value.state),
        Duration::from_secs(w.timeout),
    )
    .await?;
    out.one(last.as_ref().unwrap_or(&accepted), render::instance_detail);
    Ok(())
}

/// Next step of reading the serial log (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStep {
    /// Offset to ask for next.
    pub offset: u64,
    /// More bytes are already available: ask again at once.
    pub more: bool,
}

/// Given the offset asked for, the bytes received and the log size the server reported, decide where
/// to read next. A log smaller than the offset was recreated (the instance was restarted): start over.
pub fn log_step(offset: u64, got: u64, size: Option<u64>) -> LogStep {
    let next = offset + got;
    match size {
        Some(size) if size < offset => LogStep {
            offset: 0,
            more: size > 0,
        },
        Some(size) => LogStep {
            offset: next,
            more: got > 0 && next < size,
        },
        None => LogStep {
            offset: next,
            more: got > 0,
        },
    }
}

async fn logs(client: &Client, out: &Output, name: &str, follow: bool) -> Result<(), CliError> {
    let mut offset = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        let url = format!("instances/{}/serial-log?offset={offset}", seg(name));
        let (bytes, size) = match client.get_bytes(&url, "x-kumo-log-size").await {
            Ok(v) => v,
            Err(e) if follow && offset > 0 && is_not_found(&e) => {
                out.note(format!("instance `{name}` is gone"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        stdout
            .write_all(&bytes)
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::Other(anyhow::anyhow!("writing stdout: {e}")))?;
        let step = log_step(
            offset,
            bytes.len() as u64,
            size.and_then(|s| s.parse().ok()),
        );
        offset = step.offset;
        if step.more {
            continue;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}
