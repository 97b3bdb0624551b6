//! The agent's main loop: register, heartbeat, and converge on the host's assignments.
//!
//! Level-triggered: every wake-up (a watch event, or a periodic tick as a safety net) re-reads the
//! whole snapshot of assignments and converges networks, workers and leftovers. Nothing depends on
//! seeing every event, so a missed or duplicated one is harmless and a restart converges the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use kumo_types::{Assignment, AssignmentSnapshot};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::control::ControlPlane;
use crate::metadata::{InstanceMetadata, MetadataRegistry};
use crate::netstate::{NetState, UplinkConfig};
use crate::network;
use crate::runtime::qemu::Accel;
use crate::storage::{DirPool, read_dir_names};
use crate::worker::{self, Ctx};

/// How the agent picks KVM or TCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// Real probe boot under KVM (cached per host); TCG if it fails.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    pub accel: AccelChoice,
    pub stop_timeout: Duration,
    /// Where the metadata service listens (169.254.169.254:80, present on every kumo bridge).
    pub metadata_addr: SocketAddr,
    /// Safety-net resync period when no watch event arrives.
    pub resync: Duration,
    pub heartbeat: Duration,
    /// Physical network name → host interface carrying its VLANs (`--physical-network NAME=IFACE`).
    /// A `vlan` network whose physical network is not mapped here stays local to this host.
    pub physical_networks: BTreeMap<String, String>,
    /// This host's VXLAN tunnel endpoint (`--vxlan-local-ip`); `vxlan` networks need it.
    pub vxlan_local_ip: Option<Ipv4Addr>,
    /// Remote VXLAN tunnel endpoints (`--vxlan-peer`, repeatable) until the control plane hands
    /// them down per network.
    pub vxlan_peers: Vec<Ipv4Addr>,
    /// The name this host registers under (`--host-name`); default: the system hostname.
    pub host_name: Option<String>,
    /// Stop HA instances after this long without reaching the control plane (the lease TTL).
    pub self_fence_after: Duration,
    /// Where migration streams arrive and disks are served (`--migration-ip`); default: the VXLAN
    /// tunnel address. Without either, instances cannot migrate to or from this host.
    pub migration_ip: Option<Ipv4Addr>,
}

impl AgentConfig {
    pub fn new(data_dir: PathBuf, accel: AccelChoice, stop_timeout: Duration) -> Self {
        AgentConfig {
            data_dir,
            accel,
            stop_timeout,
            metadata_addr: SocketAddr::from((network::METADATA_ADDR, 80)),
            resync: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
            physical_networks: BTreeMap::new(),
            vxlan_local_ip: None,
            vxlan_peers: Vec::new(),
            host_name: None,
            self_fence_after: Duration::from_secs(15),
            migration_ip: None,
        }
    }
}

struct Worker {
    tx: watch::Sender<Assignment>,
    handle: JoinHandle<()>,
}

pub async fn run(cp: Arc<dyn ControlPlane>, cfg: AgentConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let data = cfg.data_dir.clone();
    let choice = cfg.accel;
    let mut inv = tokio::task::spawn_blocking(move || {
        crate::inventory::collect_with(&data, choice != AccelChoice::Tcg)
    })
    .await?;
    // The control plane hands this address to the other hosts as a VXLAN peer.
    inv.tunnel_ip = cfg.vxlan_local_ip.map(|ip| ip.to_string());
    if let Some(name) = &cfg.host_name {
        inv.hostname = name.clone();
    }
    let accel = match cfg.accel {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto if inv.kvm_usable => Accel::Kvm,
        AccelChoice::Auto => {
            tracing::warn!(probe = %inv.kvm_probe, "KVM IS NOT USABLE ON THIS HOST: guests run under TCG software emulation (much slower)");
            Accel::Tcg
        }
    };
    // The control plane may not be reachable yet (it starts later, or the network is still coming
    // up): keep trying, saying why.
    let host = loop {
        match cp.register_host(inv.clone()).await {
            Ok(h) => break h,
            Err(e) if matches!(e.code(), "unauthenticated" | "forbidden" | "invalid_value") => {
                return Err(anyhow::anyhow!(e).context("registering the host"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot register with the control plane yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(host = %host.id, name = %host.name, accel = accel.as_str(), "agent registered");
    let (hb_cp, hb_id, hb_every) = (cp.clone(), host.id.clone(), cfg.heartbeat);
    let fence = Arc::new(crate::fence::SelfFence::new(cfg.self_fence_after));
    crate::fence::spawn_watchdog(fence.clone(), cfg.data_dir.clone());
    let hb_fence = fence.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(hb_every).await;
            match hb_cp.heartbeat(&hb_id).await {
                Ok(()) => {
                    if hb_fence.contact() {
                        tracing::warn!("control plane reachable again: self-fencing ended");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    });
    let ctx = Arc::new(Ctx {
        cp: cp.clone(),
        data_dir: cfg.data_dir.clone(),
        pool: DirPool::new(crate::paths::pool_root(&cfg.data_dir)),
        accel,
        stop_timeout: cfg.stop_timeout,
        net: Arc::new(Mutex::new(
            NetState::new(cfg.data_dir.clone()).with_uplinks(UplinkConfig {
                physical_networks: cfg.physical_networks.clone(),
                vxlan_local_ip: cfg.vxlan_local_ip,
                vxlan_peers: cfg.vxlan_peers.clone(),
            }),
        )),
        fence: fence.clone(),
        host_id: host.id.clone(),
        migration_ip: cfg.migration_ip.or(cfg.vxlan_local_ip),
    });
    tokio::spawn(crate::relay::serve(ctx.clone()));
    let (pools_tx, pools_rx) = watch::channel(Vec::new());
    crate::imagecache::spawn_gc(ctx.cp.clone(), ctx.pool.clone(), pools_rx);
    let registry = MetadataRegistry::new();
    let mut metadata_task: Option<JoinHandle<()>> = None;
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut registered: HashSet<Ipv4Addr> = HashSet::new();
    let mut watch_stream = None;
    let volumes = spawn_volume_keeper(cp.clone(), ctx.pool.clone(), host.id.clone());
    loop {
        let snap = match cp.assignments(&host.id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not read assignments");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if watch_stream.is_none() {
            match cp.watch_assignments(&host.id, snap.revision).await {
                Ok(s) => watch_stream = Some(s),
                Err(e) => tracing::warn!(error = %e, "could not watch assignments"),
            }
        }
        fence.set_ha(
            snap.assignments
                .iter()
                .filter(|a| a.instance.ha)
                .map(|a| a.instance.id.clone())
                .collect(),
        );
        converge(&ctx, &snap, &mut workers, &registry, &mut registered).await;
        volumes.send_replace((snap.volumes.clone(), snap.pools.clone()));
        pools_tx.send_replace(snap.pools.clone());
        if metadata_task.is_none() && !snap.assignments.is_empty() {
            match tokio::net::TcpListener::bind(cfg.metadata_addr).await {
                Ok(l) => {
                    let reg = registry.clone();
                    metadata_task = Some(tokio::spawn(async move {
                        if let Err(e) = crate::metadata::serve(l, reg).await {
                            tracing::error!(error = %e, "metadata service stopped");
                        }
                    }));
                    tracing::info!(addr = %cfg.metadata_addr, "metadata service listening");
                }
                Err(e) => {
                    tracing::warn!(addr = %cfg.metadata_addr, error = %e, "metadata service cannot listen yet")
                }
            }
        }
        // Sleep until something changes (or the safety-net tick).
        let next = async {
            match watch_stream.as_mut() {
                Some(s) => s.next().await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            ev = next => if ev.is_none() { watch_stream = None; },
            _ = tokio::time::sleep(cfg.resync) => {},
        }
        // Coalesce a burst of events into one resync.
        if let Some(s) = watch_stream.as_mut() {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(2), s.next()).await {
            }
        }
    }
}

/// Volumes and pools of this host, converged in a task of their own so that a long storage operation
/// (a base image imported into Ceph, a large copy) does not hold up instances. It takes the latest
/// assignment's volumes and pools each time it is free (passes that arrive meanwhile coalesce).
fn spawn_volume_keeper(
    cp: Arc<dyn ControlPlane>,
    local: DirPool,
    host_id: String,
) -> watch::Sender<(Vec<kumo_types::VolumeAssignment>, Vec<kumo_types::Pool>)> {
    let (tx, mut rx) = watch::channel((Vec::new(), Vec::new()));
    tokio::spawn(async move {
        let mut keeper = crate::volstate::VolumeKeeper::default();
        while rx.changed().await.is_ok() {
            let (volumes, pools) = rx.borrow_and_update().clone();
            keeper.sync(cp.as_ref(), &local, &volumes).await;
            keeper
                .report_pools(cp.as_ref(), &host_id, &local, &pools)
                .await;
        }
    });
    tx
}

/// One convergence pass over a snapshot.
async fn converge(
    ctx: &Arc<Ctx>,
    snap: &AssignmentSnapshot,
    workers: &mut HashMap<String, Worker>,
    registry: &MetadataRegistry,
    registered: &mut HashSet<Ipv4Addr>,
) {
    let problems = {
        let mut net = ctx.net.lock().await;
        if let Err(e) = net.sync(snap) {
            tracing::warn!(error = %e, "network sync failed");
        }
        net.new_problems()
    };
    for (network_id, why) in problems {
        let _ = ctx.cp.event(&network_id, "network.degraded", &why).await;
    }
    sync_metadata(registry, registered, snap);
    let assigned: HashSet<&str> = snap
        .assignments
        .iter()
        .map(|a| a.instance.id.as_str())
        .collect();
    workers.retain(|id, w| {
        let keep = assigned.contains(id.as_str()) && !w.handle.is_finished();
        if !keep && !w.handle.is_finished() {
            w.handle.abort();
        }
        keep
    });
    for a in &snap.assignments {
        match workers.get(&a.instance.id) {
            Some(w) => {
                w.tx.send_if_modified(|cur| {
                    let changed = cur != a;
                    if changed {
                        *cur = a.clone();
                    }
                    changed
                });
            }
            None => {
                let (tx, rx) = watch::channel(a.clone());
                let handle = tokio::spawn(worker::run(ctx.clone(), rx));
                workers.insert(a.instance.id.clone(), Worker { tx, handle });
            }
        }
    }
    collect_garbage(ctx, &assigned).await;
}

fn sync_metadata(
    registry: &MetadataRegistry,
    registered: &mut HashSet<Ipv4Addr>,
    snap: &AssignmentSnapshot,
) {
    let mut live = HashSet::new();
    for a in snap.assignments.iter().filter(|a| !a.instance.deleting) {
        let i = &a.instance;
        let Some(nic) = i.nics.first() else { continue };
        let Ok(ip) = nic.ipv4.parse::<Ipv4Addr>() else {
            continue;
        };
        let mut m = InstanceMetadata::new(i.id.clone(), i.name.clone(), ip);
        m.public_keys = a
            .key_pair
            .iter()
            .map(|k| (k.name.clone(), k.public_key.clone()))
            .collect();
        m.user_data = i.user_data.clone();
        m.image_id = Some(i.image_id.clone());
        m.instance_type = Some(i.instance_type.clone());
        m.mac = Some(nic.mac.clone());
        // `public-ipv4`: the floating IP associated with the instance's first NIC, as on EC2.
        m.public_ipv4 = snap
            .topology
            .floating_ips
            .iter()
            .find(|f| f.port_id.as_deref() == Some(nic.port_id.as_str()) && !nic.port_id.is_empty())
            .and_then(|f| f.address.parse().ok());
        // The instance is known by every NIC's address (a request may leave through any NIC); the
        // answers are the same, about its first NIC (`local-ipv4`, `mac`), as on EC2.
        let addrs: Vec<Ipv4Addr> = i
            .nics
            .iter()
            .filter_map(|n| n.ipv4.parse::<Ipv4Addr>().ok())
            .collect();
        if addrs
            .iter()
            .any(|a| registry.get(*a).as_deref() != Some(&m))
        {
            registry.upsert_addrs(&addrs, m);
        }
        live.extend(addrs);
    }
    for gone in registered.difference(&live) {
        registry.remove(*gone);
    }
    *registered = live;
}

/// Remove what belongs to no assigned instance: QEMU processes, taps, run dirs and disks left by a
/// crash between steps, or by instances deleted while the agent was down.
async fn collect_garbage(ctx: &Arc<Ctx>, assigned: &HashSet<&str>) {
    let run_root = crate::paths::run_root(&ctx.data_dir);
    let mut orphans: HashSet<String> = read_dir_names(&run_root).into_iter().collect();
    orphans.extend(ctx.pool.instance_ids());
    orphans.retain(|id| {
        kumo_types::ids::is_id(kumo_types::ids::INSTANCE, id) && !assigned.contains(id.as_str())
    });
    for id in orphans {
        let dir = crate::paths::run_dir(&ctx.data_dir, &id);
        if let Ok(Some(vm)) = crate::runtime::process::adopt(&dir, &id).await {
            tracing::warn!(instance = %id, pid = vm.pid(), "stopping orphaned QEMU");
            let _ = vm.force_stop().await;
        }
        for slot in 0..crate::runtime::qemu::HOTPLUG_SLOTS as u8 {
            let _ = network::delete_tap(&network::tap_name(&id, slot));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = ctx.pool.delete_instance_disks(&id);
        tracing::info!(instance = %id, "removed leftovers of an unassigned instance");
    }
}
