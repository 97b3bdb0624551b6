//! The `kumo` client commands (`kumo image …`, `kumo instance …`, `kumo volume …`, …).
//!
//! The binary crate flattens [`GlobalArgs`] and [`Command`] next to `kumo server` / `kumo agent` and calls
//! [`run`], which returns the process exit code.
//!
//! Invariants:
//! - Every command talks to the REST API `/v1` only, with `Authorization: Bearer <token>`; nothing here
//!   reads the store or the server's data directory (except the bootstrap `admin.token` convenience, see
//!   [`config`]).
//! - `--json` prints the API's JSON unchanged (re-serialised from the typed value) on stdout; tables are
//!   for humans and may change.
//! - Exit codes: 0 success, 1 API or usage error (the `ErrorBody` code/message/field is printed on
//!   stderr), 2 the server could not be reached. See [`error::CliError::exit_code`].
//! - Deciding is separate from doing: the value mini-syntaxes ([`syntax`]: `--nic`, `--pool`,
//!   `--route`, `--ports`), config precedence ([`config::resolve`]), wait verdicts
//!   ([`wait::verdict`]), console escape handling ([`console::scan_input`]) and rendering ([`render`])
//!   are pure functions with unit tests.

pub mod client;
pub mod cmd;
pub mod config;
pub mod console;
pub mod error;
pub mod render;
pub mod syntax;
pub mod terminal;
pub mod wait;

use clap::{Args, Subcommand};

pub use error::CliError;

/// Default API endpoint of a single-host installation.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8470";

/// Options shared by every client command.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Base URL of the kumo API (falls back to the config file, then http://127.0.0.1:8470).
    #[arg(long, env = "KUMO_URL", global = true)]
    pub url: Option<String>,
    /// API token (falls back to the config file, then /var/lib/kumo/admin.token).
    #[arg(long, env = "KUMO_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Machine output: print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// CA certificate to trust for https:// URLs: the cluster CA (falls back to the config file's
    /// `ca_file`, then <data-dir>/tls/ca.pem when readable).
    #[arg(long, env = "KUMO_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The project to act in, sent as `X-Kumo-Project` (falls back to the config file's `project`,
    /// then to the token's project or your only/first membership).
    #[arg(long, env = "KUMO_PROJECT", global = true)]
    pub project: Option<String>,
}

/// The client commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Images (kernel+initrd or disk).
    #[command(subcommand)]
    Image(cmd::image::ImageCmd),
    /// Instances (virtual machines).
    #[command(subcommand)]
    Instance(cmd::instance::InstanceCmd),
    /// Instance types (vCPU, memory, root disk).
    #[command(subcommand, name = "instance-type")]
    InstanceType(cmd::misc::InstanceTypeCmd),
    /// SSH key pairs.
    #[command(subcommand, name = "key-pair")]
    KeyPair(cmd::misc::KeyPairCmd),
    /// Hypervisor hosts.
    #[command(subcommand)]
    Host(cmd::misc::HostCmd),
    /// Networks (bridge, VLAN provider, VXLAN overlay).
    #[command(subcommand)]
    Network(cmd::network::NetworkCmd),
    /// Subnets of a network (CIDR, gateway, DHCP, allocation pools).
    #[command(subcommand)]
    Subnet(cmd::network::SubnetCmd),
    /// Ports: NICs with a fixed MAC and address.
    #[command(subcommand)]
    Port(cmd::network::PortCmd),
    /// Routers joining subnets (and SNAT to an external network).
    #[command(subcommand)]
    Router(cmd::router::RouterCmd),
    /// Security groups and their rules.
    #[command(subcommand, name = "security-group")]
    SecurityGroup(cmd::security_group::SecurityGroupCmd),
    /// Floating IPs from external networks.
    #[command(subcommand, name = "floating-ip")]
    FloatingIp(cmd::floating_ip::FloatingIpCmd),
    /// Volumes: block devices that live apart from instances (attach, detach, resize).
    #[command(subcommand)]
    Volume(cmd::volume::VolumeCmd),
    /// Snapshots of volumes (clone one with `volume create --snapshot`).
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCmd),
    /// Storage pools: capacity and usage.
    #[command(subcommand)]
    Pool(cmd::pool::PoolCmd),
    /// Volume types: a pool and a tier label that users pick.
    #[command(subcommand, name = "volume-type")]
    VolumeType(cmd::volume_type::VolumeTypeCmd),
    /// Placement groups: instances placed apart (spread) or together (affinity).
    #[command(subcommand, name = "placement-group")]
    PlacementGroup(cmd::placement_group::PlacementGroupCmd),
    /// Quotas: a project's limits and usage.
    #[command(subcommand)]
    Quota(cmd::quota::QuotaCmd),
    /// Recent events.
    Events(cmd::misc::EventsArgs),
    /// The cluster: join tokens for new hosts.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCmd),
    /// Projects (tenants).
    #[command(subcommand)]
    Project(cmd::identity::ProjectCmd),
    /// Users and their roles in projects.
    #[command(subcommand)]
    User(cmd::identity::UserCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(cmd::identity::TokenCmd),
    /// Access keys for the EC2 API (SigV4).
    #[command(subcommand, name = "access-key")]
    AccessKey(cmd::identity::AccessKeyCmd),
    /// The audit log: list, export (JSON lines), verify the hash chain.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Trade a user name and password for a token.
    Login(cmd::identity::LoginArgs),
    /// Who the token is, in which project, with which role.
    Whoami,
}

/// Run one client command and return the process exit code (0 ok, 1 API/usage error, 2 unreachable).
pub async fn run(global: GlobalArgs, cmd: Command) -> i32 {
    match run_inner(&global, cmd).await {
        Ok(code) => code,
        Err(e) => {
            error::report(&e, global.json);
            e.exit_code()
        }
    }
}

async fn run_inner(global: &GlobalArgs, cmd: Command) -> Result<i32, CliError> {
    // Building an image without importing it talks to no server.
    if let Command::Image(cmd::image::ImageCmd::Build(cmd::image::BuildCmd::Tiny(a))) = &cmd
        && a.no_import
    {
        return cmd::image::build_tiny_only(&render::Output::new(global.json), a).await;
    }
    let mut src = config::Sources::from_env(global);
    let project = config::project(&src);
    let out = render::Output::new(global.json);
    if let Command::Login(a) = cmd {
        // Logging in needs no token.
        src.token.get_or_insert_with(String::new);
        let client = client::Client::new(&config::resolve(&src)?)?;
        return cmd::identity::run_login(&client, &out, a, project).await;
    }
    // Resolved before anything else so that a missing token fails fast, even before a long image build.
    let cfg = config::resolve(&src)?;
    let client = client::Client::new(&cfg)?.with_project(project.clone());
    match cmd {
        Command::Image(c) => cmd::image::run(&client, &out, c).await,
        Command::Instance(c) => cmd::instance::run(&client, &out, c).await,
        Command::InstanceType(c) => cmd::misc::run_instance_type(&client, &out, c).await,
        Command::KeyPair(c) => cmd::misc::run_key_pair(&client, &out, c).await,
        Command::Host(c) => cmd::misc::run_host(&client, &out, c).await,
        Command::Network(c) => cmd::network::run_network(&client, &out, c).await,
        Command::Subnet(c) => cmd::network::run_subnet(&client, &out, c).await,
        Command::Port(c) => cmd::network::run_port(&client, &out, c).await,
        Command::Router(c) => cmd::router::run(&client, &out, c).await,
        Command::SecurityGroup(c) => cmd::security_group::run(&client, &out, c).await,
        Command::FloatingIp(c) => cmd::floating_ip::run(&client, &out, c).await,
        Command::Volume(c) => cmd::volume::run(&client, &out, c).await,
        Command::Snapshot(c) => cmd::snapshot::run(&client, &out, c).await,
        Command::Pool(c) => cmd::pool::run(&client, &out, c).await,
        Command::VolumeType(c) => cmd::volume_type::run(&client, &out, c).await,
        Command::PlacementGroup(c) => cmd::placement_group::run(&client, &out, c).await,
        Command::Quota(c) => cmd::quota::run(&client, &out, c).await,
        Command::Events(a) => cmd::misc::run_events(&client, &out, a).await,
        Command::Cluster(c) => cmd::cluster::run(&client, &out, c).await,
        Command::Project(c) => cmd::identity::run_project(&client, &out, c).await,
        Command::User(c) => cmd::identity::run_user(&client, &out, c, project).await,
        Command::Token(c) => cmd::identity::run_token(&client, &out, c, project).await,
        Command::AccessKey(c) => cmd::identity::run_access_key(&client, &out, c).await,
        Command::Audit(c) => cmd::audit::run(&client, &out, c, project).await,
        Command::Whoami => cmd::identity::run_whoami(&client, &out).await,
        Command::Login(_) => Ok(0),
    }
}

#[cfg(test)]
mod tests;
