//! The application layer: every front end (REST `/v1`, later EC2/S3, the console) calls these
//! functions. They validate, resolve references, decide (pure planners in `scheduler`/`ipam`), and
//! write desired state to the store in one compare-and-swap transaction per request. They never touch
//! QEMU, bridges or files of running instances: the agent does that.

pub mod attrs;
pub mod boot_volume;
pub mod console;
pub mod drain;
pub mod event;
pub mod floating_ip;
pub mod ha;
pub mod host;
pub mod host_cert;
pub mod idempotency;
pub mod image;
pub mod instance;
pub mod instance_type;
pub mod join_token;
pub mod key_pair;
pub mod migration;
pub mod network;
pub mod placement;
pub mod placement_group;
pub mod pool;
pub mod port;
pub mod quota;
pub mod relay;
pub mod router;
pub mod scope;
pub mod security_group;
pub mod snapshot;
pub mod tags;
pub mod volume;
pub mod volume_type;

use std::path::PathBuf;
use std::sync::Arc;

use kumo_agent::storage::DirPool;
use kumo_store::Kv;

use crate::scheduler::Overcommit;

/// Settings the app layer needs (no global singletons: everything comes through here).
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    pub overcommit: Overcommit,
    /// Which eligible host the scheduler prefers (`--placement-policy`).
    pub placement_policy: kumo_types::PlacementPolicy,
    /// Memory kept back on every host for the host itself and QEMU overhead.
    pub host_memory_reserve_mib: u64,
    /// The default network created on first start.
    pub default_network_cidr: String,
    pub default_bridge: String,
    pub default_nat: bool,
    /// The region the EC2 API serves (`--region`, default [`DEFAULT_REGION`]): requests must be
    /// signed for it.
    pub region: String,
}

/// The EC2 region a server serves unless `--region` says otherwise.
pub const DEFAULT_REGION: &str = "kumo-1";

#[derive(Clone)]
pub struct App {
    pub kv: Arc<dyn Kv>,
    pub cfg: Arc<AppConfig>,
    pub pool: DirPool,
    pub auth_cache: Arc<crate::auth::AuthCache>,
    /// Whether this server leads (runs the once-only reconcilers); see [`crate::leader`].
    pub leader: crate::leader::Leadership,
    /// The other servers of the control plane; see [`crate::peers`].
    pub peers: crate::peers::Peers,
    /// Held while this server copies an image from a peer (one copy at a time).
    pub replicating: Arc<tokio::sync::Mutex<()>>,
    /// Console sessions of users connected here to instances on other hosts.
    pub consoles: Arc<console::Sessions>,
}

impl App {
    pub fn new(kv: Arc<dyn Kv>, cfg: AppConfig) -> Self {
        let pool = DirPool::new(kumo_agent::paths::pool_root(&cfg.data_dir));
        App {
            kv,
            cfg: Arc::new(cfg),
            pool,
            auth_cache: Arc::default(),
            leader: crate::leader::Leadership::default(),
            peers: crate::peers::Peers::default(),
            replicating: Arc::default(),
            consoles: Arc::default(),
        }
    }

    pub fn kv(&self) -> &dyn Kv {
        self.kv.as_ref()
    }

    /// Start-up: built-in instance types and the default network (idempotent); URL imports that a
    /// restart interrupted are marked failed.
    pub async fn bootstrap(&self) -> kumo_types::Result<()> {
        instance_type::ensure_builtins(self).await?;
        network::ensure_default(self).await?;
        security_group::ensure_default(self).await?;
        image::recover_interrupted(self).await?;
        Ok(())
    }
}

/// Limits on list pages.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// Paginate an already-sorted list by an opaque token (the last item's key).
pub fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> kumo_types::Result<kumo_types::Page<T>> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(kumo_types::Error::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let mut it: Vec<T> = match next_token {
        Some(t) => items.into_iter().filter(|x| key(x).as_str() > t).collect(),
        None => items,
    };
    let more = it.len() > limit;
    it.truncate(limit);
    let next_token = if more { it.last().map(&key) } else { None };
    Ok(kumo_types::Page {
        items: it,
        next_token,
    })
}
