//! `kumo server` settings and start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use kumo_store::Kv;

use crate::app::{App, AppConfig};
use crate::scheduler::Overcommit;

#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Embedded SQLite at `<data-dir>/store.db`.
    Sqlite,
    Etcd {
        endpoints: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// Run the agent in-process (single-host mode).
    pub run_agent: bool,
    pub agent: kumo_agent::agent::AgentConfig,
    pub overcommit: Overcommit,
    pub placement_policy: kumo_types::PlacementPolicy,
    pub host_memory_reserve_mib: u64,
    pub network_cidr: String,
    pub bridge: String,
    pub nat: bool,
    /// High availability (fencing waits).
    pub ha: crate::ha::HaConfig,
    /// Serve plain HTTP on a non-loopback address (`--insecure-plaintext`): only for networks no one
    /// else can reach, such as the test clusters built inside private network namespaces.
    pub insecure_plaintext: bool,
    /// TLS listeners (`--tls-listen`): the same API, with optional client certificates (mTLS) that
    /// joined hosts' agents use.
    pub tls_listen: Vec<SocketAddr>,
    /// Extra names and addresses for the server certificate (`--tls-san`).
    pub tls_sans: Vec<String>,
    /// The operator's certificate chain and key (`--tls-cert`, `--tls-key`), served to the names it
    /// covers (see [`crate::tls::operator`]).
    pub tls_operator: Option<(PathBuf, PathBuf)>,
    /// The URL the other servers reach this one at (`--advertise-url`; see
    /// [`crate::peers::advertise_url`] for the default).
    pub advertise_url: Option<String>,
    /// The EC2 API's region (`--region`).
    pub region: String,
}

/// Refuse plain HTTP on anything but loopback (tokens would cross the network in clear), unless the
/// operator insists on an isolated network.
pub fn check_listen(addr: &SocketAddr, insecure_plaintext: bool) -> anyhow::Result<()> {
    if insecure_plaintext && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "PLAIN HTTP ON A NON-LOOPBACK ADDRESS (--insecure-plaintext): tokens travel in clear text; \
             use this only on a network nobody else can reach"
        );
        return Ok(());
    }
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr} without TLS: bearer tokens would travel in clear text. \
             Listen on 127.0.0.1 (the default) and reach it through an SSH tunnel or a TLS-terminating proxy \
             until kumo's own TLS lands"
        );
    }
    Ok(())
}

pub async fn open_store(cfg: &ServerConfig) -> anyhow::Result<Arc<dyn Kv>> {
    Ok(match &cfg.store {
        StoreConfig::Sqlite => {
            let path = cfg.data_dir.join("store.db");
            Arc::new(
                kumo_store::sqlite::SqliteKv::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?,
            )
        }
        StoreConfig::Etcd { endpoints } => Arc::new(
            kumo_store::etcd::EtcdKv::connect(endpoints)
                .await
                .context("connecting to etcd")?,
        ),
    })
}

/// Start the control plane (and, in single-host mode, the agent) and serve until the process ends.
pub async fn run(cfg: ServerConfig) -> anyhow::Result<()> {
    check_listen(&cfg.listen, cfg.insecure_plaintext)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let kv = open_store(&cfg).await?;
    let mut app = App::new(
        kv.clone(),
        AppConfig {
            data_dir: cfg.data_dir.clone(),
            overcommit: cfg.overcommit,
            placement_policy: cfg.placement_policy,
            host_memory_reserve_mib: cfg.host_memory_reserve_mib,
            default_network_cidr: cfg.network_cidr.clone(),
            default_bridge: cfg.bridge.clone(),
            default_nat: cfg.nat,
            region: cfg.region.clone(),
        },
    );
    let server_id = format!(
        "{}@{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cfg.listen
    );
    app.leader = crate::leader::spawn(kv.clone(), server_id.clone());
    app.bootstrap().await.context("bootstrapping the store")?;
    crate::auth::bootstrap(&app, &cfg.data_dir)
        .await
        .context("writing the admin token")?;
    let (ca_pem, tls_listeners) = start_tls(&app, &cfg).await?;
    if let Some(u) = &cfg.advertise_url {
        crate::app::image::http_url("advertise_url", u).context("--advertise-url")?;
    }
    let url =
        crate::peers::advertise_url(cfg.advertise_url.as_deref(), &cfg.tls_listen, cfg.listen);
    app.peers = crate::peers::Peers::start(kv, server_id, url, &ca_pem)
        .await
        .context("joining the control plane's servers")?;
    crate::app::image::replica::spawn(app.clone());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "kumo server listening");
    crate::app::ha::spawn(app.clone(), cfg.ha);
    if cfg.run_agent {
        let cp = Arc::new(crate::control::InProcess { app: app.clone() });
        let agent_cfg = cfg.agent.clone();
        tokio::spawn(async move {
            if let Err(e) = kumo_agent::agent::run(cp, agent_cfg).await {
                tracing::error!(error = ?e, "in-process agent stopped");
            }
        });
    }
    let router = crate::api::router(app);
    for (l, tls) in tls_listeners {
        tokio::spawn(crate::tls::listener::serve(l, tls, router.clone()));
    }
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .context("serving the API")?;
    Ok(())
}

/// A TLS listener and its settings.
type TlsListener = (tokio::net::TcpListener, Arc<rustls::ServerConfig>);

/// The cluster CA (made on the cluster's first start, copied to `<data-dir>/tls`; its certificate
/// is returned) and, for each `--tls-listen` address, a bound listener with this server's TLS
/// settings.
async fn start_tls(app: &App, cfg: &ServerConfig) -> anyhow::Result<(String, Vec<TlsListener>)> {
    let ca = crate::tls::ensure_ca(app, Some(&cfg.data_dir))
        .await
        .context("loading the cluster CA")?;
    crate::tls::write_ca_files(&cfg.data_dir, &ca).context("writing the CA to the data dir")?;
    if cfg.tls_listen.is_empty() {
        return Ok((ca.cert_pem, Vec::new()));
    }
    let operator = match &cfg.tls_operator {
        Some((cert, key)) => {
            Some(crate::tls::operator::load(cert, key).context("loading --tls-cert/--tls-key")?)
        }
        None => None,
    };
    if let Some(op) = &operator {
        tracing::info!(names = ?op.names, "serving the operator's certificate to these names");
    }
    let tls = crate::tls::server_tls(
        &cfg.data_dir,
        &ca,
        &cfg.tls_listen,
        &cfg.tls_sans,
        operator.as_ref(),
    )
    .context("issuing the server certificate")?;
    let mut out = Vec::new();
    for addr in &cfg.tls_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (--tls-listen)"))?;
        tracing::info!(listen = %addr, ca_fingerprint = %tls.fingerprint, "kumo server listening with TLS");
        out.push((l, tls.config.clone()));
    }
    Ok((ca.cert_pem, out))
}
