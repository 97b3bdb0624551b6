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
    pub host_memory_reserve_mib: u64,
    pub network_cidr: String,
    pub bridge: String,
    pub nat: bool,
}

/// Refuse plain HTTP on anything but loopback: tokens would cross the network in clear.
pub fn check_listen(addr: &SocketAddr) -> anyhow::Result<()> {
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
    check_listen(&cfg.listen)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let kv = open_store(&cfg).await?;
    let app = App::new(
        kv,
        AppConfig {
            data_dir: cfg.data_dir.clone(),
            overcommit: cfg.overcommit,
            host_memory_reserve_mib: cfg.host_memory_reserve_mib,
            default_network_cidr: cfg.network_cidr.clone(),
            default_bridge: cfg.bridge.clone(),
            default_nat: cfg.nat,
        },
    );
    app.bootstrap().await.context("bootstrapping the store")?;
    crate::auth::bootstrap(&app, &cfg.data_dir)
        .await
        .context("writing the admin token")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "kumo server listening");
    if cfg.run_agent {
        let cp = Arc::new(crate::control::InProcess { app: app.clone() });
        let agent_cfg = cfg.agent.clone();
        tokio::spawn(async move {
            if let Err(e) = kumo_agent::agent::run(cp, agent_cfg).await {
                tracing::error!(error = ?e, "in-process agent stopped");
            }
        });
    }
    axum::serve(listener, crate::api::router(app))
        .await
        .context("serving the API")?;
    Ok(())
}
