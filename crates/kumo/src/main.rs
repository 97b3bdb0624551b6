//! `kumo`: one binary for the control plane (`kumo server`), the host agent (`kumo agent`) and the
//! client commands (`kumo instance …`, `kumo image …`, …).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kumo_agent::agent::{AccelChoice, AgentConfig};
use kumo_server::config::{ServerConfig, StoreConfig};
use kumo_server::scheduler::Overcommit;

#[derive(Parser)]
#[command(name = "kumo", version, about = "kumo: a private cloud in one binary")]
struct Cli {
    #[command(flatten)]
    global: kumo_cli::GlobalArgs,
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Run the control plane (and, unless --no-agent, this host's agent in-process).
    Server(ServerArgs),
    /// Run this host's agent as its own process, joined to a server's internal API.
    Agent(AgentArgs),
    #[command(flatten)]
    Client(kumo_cli::Command),
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreKind {
    Sqlite,
    Etcd,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Spread,
    Pack,
}

#[derive(Clone, Copy, ValueEnum)]
enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Args)]
struct ServerArgs {
    /// Where kumo keeps its store, images, disks and runtime files.
    #[arg(long, env = "KUMO_DATA_DIR", default_value = "/var/lib/kumo")]
    data_dir: PathBuf,
    /// Address of the REST API. Only loopback addresses are allowed without TLS.
    #[arg(long, env = "KUMO_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// HA without a BMC: seconds after a host is declared down (lease expired) before its HA instances
    /// restart elsewhere. Its agent stops them after a lease period without the control plane.
    #[arg(long, default_value_t = 10)]
    ha_fence_wait: u64,
    /// Allow plain HTTP on a non-loopback --listen address. Tokens then cross the network in clear
    /// text: only for networks nobody else can reach (test clusters in private namespaces).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Also serve the API with TLS here (repeatable; e.g. 0.0.0.0:8471), with the cluster CA's
    /// server certificate. Joined hosts' agents connect here with their certificates (mTLS).
    #[arg(
        long = "tls-listen",
        value_name = "ADDR:PORT",
        env = "KUMO_TLS_LISTEN",
        value_delimiter = ','
    )]
    tls_listen: Vec<SocketAddr>,
    /// An extra DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME|IP")]
    tls_sans: Vec<String>,
    /// Your own certificate (PEM chain, leaf first) for the TLS listeners, served to clients that
    /// ask for a DNS name it covers (SNI); others (agents, IP addresses) get the cluster CA's.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The URL the other servers reach this one at (they copy images from it), e.g.
    /// https://10.0.0.1:8471. Default: the first --tls-listen address, else --listen, unless it is
    /// 0.0.0.0 or ::.
    #[arg(long, value_name = "URL", env = "KUMO_ADVERTISE_URL")]
    advertise_url: Option<String>,
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
    /// etcd client URLs (with --store etcd), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// Do not run this host's agent in-process.
    #[arg(long)]
    no_agent: bool,
    /// CIDR of the default network (created on first start).
    #[arg(long, default_value = "198.18.0.0/24")]
    network_cidr: String,
    /// Bridge of the default network.
    #[arg(long, default_value = "kumobr0")]
    bridge: String,
    /// Do not masquerade the default network's outbound traffic.
    #[arg(long)]
    no_nat: bool,
    /// KVM or TCG; `auto` decides with a real probe boot (cached in the data dir).
    #[arg(long, env = "KUMO_ACCEL", value_enum, default_value = "auto")]
    accel: Accel,
    /// vCPU overcommit ratio.
    #[arg(long, default_value_t = 4.0)]
    cpu_overcommit: f64,
    /// Memory overcommit ratio (1.0 = none).
    #[arg(long, default_value_t = 1.0)]
    memory_overcommit: f64,
    /// Which eligible host the scheduler prefers: `spread` (most free memory) or `pack` (least free
    /// memory that fits).
    #[arg(long, value_enum, default_value = "spread")]
    placement_policy: PolicyArg,
    /// Memory kept back for the host itself, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_reserve_mib: u64,
    /// Seconds an ACPI shutdown may take before QEMU is stopped hard.
    #[arg(long, default_value_t = 30)]
    stop_timeout: u64,
    /// The region the EC2-compatible API serves (clients sign for it: `AWS_DEFAULT_REGION`).
    #[arg(long, env = "KUMO_REGION", default_value = kumo_server::app::DEFAULT_REGION)]
    region: String,
    #[command(flatten)]
    net: HostNetArgs,
}

/// Host networking settings shared by `kumo server` (in-process agent) and `kumo agent`.
#[derive(Args, Clone)]
struct HostNetArgs {
    /// Map a physical network name to the host interface carrying its VLANs (`physnet1=eno2`);
    /// repeatable.
    #[arg(long = "physical-network", value_name = "NAME=IFACE")]
    physical_networks: Vec<String>,
    /// This host's VXLAN tunnel endpoint address.
    #[arg(long)]
    vxlan_local_ip: Option<std::net::Ipv4Addr>,
    /// A remote VXLAN tunnel endpoint; repeatable.
    #[arg(long = "vxlan-peer")]
    vxlan_peers: Vec<std::net::Ipv4Addr>,
    /// This host's address on the migration network: live-migration streams and cold-migration
    /// disk copies arrive here. Default: --vxlan-local-ip.
    #[arg(long)]
    migration_ip: Option<std::net::Ipv4Addr>,
}

impl HostNetArgs {
    fn apply(&self, cfg: &mut AgentConfig) -> anyhow::Result<()> {
        for m in &self.physical_networks {
            let Some((name, iface)) = m
                .split_once('=')
                .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            else {
                anyhow::bail!("--physical-network {m:?}: expected NAME=IFACE, e.g. physnet1=eno2");
            };
            cfg.physical_networks
                .insert(name.to_string(), iface.to_string());
        }
        cfg.vxlan_local_ip = self.vxlan_local_ip;
        cfg.vxlan_peers = self.vxlan_peers.clone();
        cfg.migration_ip = self.migration_ip;
        Ok(())
    }
}

#[derive(Args)]
struct AgentArgs {
    /// The servers' base URLs, comma-separated (`https://s1:8471,https://s2:8471`): the agent talks
    /// to one and moves on to the next when it cannot reach it. A join goes to the first.
    #[arg(long, env = "KUMO_SERVER", default_value = "http://127.0.0.1:8470")]
    server: String,
    /// File holding the token the agent authenticates with (plain http:// servers only; with an
    /// https:// server the agent uses its host certificate).
    #[arg(
        long,
        env = "KUMO_AGENT_TOKEN_FILE",
        default_value = "/var/lib/kumo/admin.token"
    )]
    token_file: PathBuf,
    /// This host's data directory (disks, QEMU runtime files, DHCP state).
    #[arg(long, env = "KUMO_DATA_DIR", default_value = "/var/lib/kumo")]
    data_dir: PathBuf,
    #[arg(long, env = "KUMO_ACCEL", value_enum, default_value = "auto")]
    accel: Accel,
    #[arg(long, default_value_t = 30)]
    stop_timeout: u64,
    /// The name this host registers under (default: its hostname).
    #[arg(long)]
    host_name: Option<String>,
    /// One-time join token (`kumo cluster join-token create`): on first start the host joins over
    /// the server's TLS listener (--server https://…) and gets its certificate; ignored once joined.
    #[arg(long, env = "KUMO_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// The cluster CA fingerprint (`sha256:…`) the server must present when joining.
    #[arg(long, env = "KUMO_CA_FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// Renew the host certificate when it expires within this many days (certificates last 365).
    #[arg(long, default_value_t = 120)]
    cert_renew_within_days: u64,
    #[command(flatten)]
    net: HostNetArgs,
}

fn accel_choice(a: Accel) -> AccelChoice {
    match a {
        Accel::Auto => AccelChoice::Auto,
        Accel::Kvm => AccelChoice::Kvm,
        Accel::Tcg => AccelChoice::Tcg,
    }
}

async fn run_agent(a: AgentArgs) -> anyhow::Result<()> {
    let first = a.server.split(',').next().unwrap_or_default().trim();
    let (creds, host_name) = kumo_agent::join::prepare(&kumo_agent::join::AuthArgs {
        server: first,
        data_dir: &a.data_dir,
        token_file: &a.token_file,
        join_token: a.join_token.as_deref(),
        ca_fingerprint: a.ca_fingerprint.as_deref(),
        host_name: a.host_name.as_deref(),
    })
    .await?;
    let certified = matches!(
        creds,
        kumo_agent::control::http::Credentials::Certificate { .. }
    );
    let cp = kumo_agent::control::http::HttpControlPlane::with_credentials(&a.server, creds)?;
    if let (true, Some(name)) = (certified, host_name.clone()) {
        // Renew the host certificate well before it expires (checked at start, then twice a day).
        tokio::spawn(kumo_agent::join::renewal_loop(
            cp.clone(),
            kumo_agent::join::TlsFiles::new(&a.data_dir),
            name,
            std::time::Duration::from_secs(a.cert_renew_within_days * 86_400),
            std::time::Duration::from_secs(12 * 3600),
        ));
    }
    let stop = std::time::Duration::from_secs(a.stop_timeout);
    let mut cfg = AgentConfig::new(a.data_dir, accel_choice(a.accel), stop);
    a.net.apply(&mut cfg)?;
    cfg.host_name = host_name;
    kumo_agent::agent::run(std::sync::Arc::new(cp), cfg).await
}

fn server_config(a: ServerArgs) -> anyhow::Result<ServerConfig> {
    let stop = std::time::Duration::from_secs(a.stop_timeout);
    let mut agent = AgentConfig::new(a.data_dir.clone(), accel_choice(a.accel), stop);
    a.net.apply(&mut agent)?;
    Ok(ServerConfig {
        agent,
        data_dir: a.data_dir,
        listen: a.listen,
        store: match a.store {
            StoreKind::Sqlite => StoreConfig::Sqlite,
            StoreKind::Etcd => StoreConfig::Etcd {
                endpoints: a.etcd_endpoints,
            },
        },
        run_agent: !a.no_agent,
        overcommit: Overcommit {
            cpu: a.cpu_overcommit,
            memory: a.memory_overcommit,
            disk: Overcommit::default().disk,
        },
        placement_policy: match a.placement_policy {
            PolicyArg::Spread => kumo_server::scheduler::PlacementPolicy::Spread,
            PolicyArg::Pack => kumo_server::scheduler::PlacementPolicy::Pack,
        },
        host_memory_reserve_mib: a.memory_reserve_mib,
        network_cidr: a.network_cidr,
        bridge: a.bridge,
        nat: !a.no_nat,
        insecure_plaintext: a.insecure_plaintext,
        tls_listen: a.tls_listen,
        tls_sans: a.tls_sans,
        tls_operator: a.tls_cert.zip(a.tls_key),
        advertise_url: a.advertise_url,
        region: a.region,
        ha: kumo_server::ha::HaConfig {
            fence_wait: std::time::Duration::from_secs(a.ha_fence_wait),
        },
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kumo: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.cmd {
        Top::Server(args) => {
            init_logging();
            let run = async { kumo_server::config::run(server_config(args)?).await };
            match rt.block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kumo server: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Top::Agent(args) => {
            init_logging();
            match rt.block_on(run_agent(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kumo agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Top::Client(cmd) => {
            let code = rt.block_on(kumo_cli::run(cli.global, cmd));
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KUMO_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}
