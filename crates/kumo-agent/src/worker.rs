//! One task per assigned instance: it owns the instance's QEMU (started or adopted), decides with
//! [`plan::decide`] and executes. It wakes on a new assignment, on QEMU's exit, or on a retry timer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kumo_types::{Assignment, ImageKind, InstanceState, InstanceStatus, now_rfc3339};
use tokio::sync::{Mutex, watch};

use crate::control::ControlPlane;
use crate::netstate::NetState;
use crate::network;
use crate::plan::{self, Action, Observed};
use crate::runtime::process::{self, ExitKind, RunningVm};
use crate::runtime::qemu::{Accel, Boot, DiskCache, DiskSpec, Machine, NicSpec, VmConfig};
use crate::storage::DirPool;

mod migration;

/// Start attempts before an instance is marked `failed`.
const MAX_START_ATTEMPTS: u32 = 3;
/// Default kernel command line for kernel+initrd images that do not set one.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";

/// What every worker shares.
pub struct Ctx {
    pub cp: Arc<dyn ControlPlane>,
    pub data_dir: std::path::PathBuf,
    pub pool: DirPool,
    pub accel: Accel,
    pub stop_timeout: Duration,
    pub net: Arc<Mutex<NetState>>,
    /// This host's ID (stamped on status reports).
    pub host_id: String,
    /// Self-fencing: while it holds, HA instances do not start.
    pub fence: Arc<crate::fence::SelfFence>,
    /// This host's address on the migration network (see `AgentConfig::migration_ip`).
    pub migration_ip: Option<std::net::Ipv4Addr>,
}

/// The QEMU NIC of an instance NIC: id, tap and hot-plug bus all derive from its stable slot.
pub fn nic_spec(instance_id: &str, nic: &kumo_types::Nic) -> NicSpec {
    NicSpec {
        id: format!("net{}", nic.slot),
        ifname: network::tap_name(instance_id, nic.slot),
        mac: nic.mac.clone(),
        bus: Some(crate::runtime::qemu::hotplug_bus(u32::from(nic.slot))),
    }
}

/// Build the QEMU configuration of an assignment (pure). `present`: the attached volumes that exist
/// (made by their host's agent); the others are hot-plugged once they do.
pub fn vm_config(
    ctx_data: &std::path::Path,
    pool: &DirPool,
    accel: Accel,
    a: &Assignment,
    present: &std::collections::HashSet<String>,
) -> VmConfig {
    let i = &a.instance;
    let boot = match a.image.kind {
        ImageKind::KernelInitrd => Boot::Kernel {
            kernel: pool.image_kernel(&a.image.id),
            initrd: Some(pool.image_initrd(&a.image.id)),
            cmdline: a
                .image
                .cmdline
                .clone()
                .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        },
        ImageKind::Disk => Boot::Disk,
    };
    // The boot volume (if any) is the first disk; attached volumes start plugged in, each on its own
    // hot-plug port (so it can be unplugged later).
    let boot_volume = i
        .boot_volume_id
        .as_ref()
        .and_then(|id| a.volumes.iter().find(|v| &v.id == id))
        .and_then(|v| {
            let b = crate::volstate::backend_of(pool, &a.pools, v).ok()?;
            crate::volstate::disk_of(&b, v)
        });
    let volumes = a
        .volumes
        .iter()
        .filter(|v| {
            !v.deleting && present.contains(&v.id) && Some(&v.id) != i.boot_volume_id.as_ref()
        })
        .filter_map(|v| {
            let b = crate::volstate::backend_of(pool, &a.pools, v).ok()?;
            crate::volstate::disk_of(&b, v)
        });
    let mut cfg = VmConfig {
        instance_id: i.id.clone(),
        name: i.name.clone(),
        vcpus: i.vcpus,
        memory_mib: i.memory_mib,
        accel,
        machine: Machine::default(),
        boot,
        disks: vec![boot_volume.unwrap_or_else(|| DiskSpec {
            id: "root".into(),
            source: crate::runtime::qemu::DiskSource::File(pool.root_disk(&i.id)),
            format: kumo_types::DiskFormat::Qcow2,
            readonly: false,
            cache: DiskCache::default(),
            bus: None,
        })],
        nics: i.nics.iter().map(|nic| nic_spec(&i.id, nic)).collect(),
        seed_iso: None,
        cdrom: (a.image.format == Some(kumo_types::DiskFormat::Iso))
            .then(|| pool.image_disk(&a.image.id, kumo_types::DiskFormat::Iso)),
        // GPUs the scheduler gave the instance (bound to vfio-pci by `start`).
        host_devices: i.gpu_devices.clone(),
        run_dir: crate::paths::run_dir(ctx_data, &i.id),
        incoming: false,
    };
    cfg.disks.extend(volumes);
    cfg
}

/// A worker's memory between turns.
struct Worker {
    ctx: Arc<Ctx>,
    id: String,
    /// The status as this worker last recorded it.
    status: InstanceStatus,
    vm: Option<RunningVm>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
    /// NICs plugged into the running VM: slot → MAC (persisted in `<run>/nics.json`).
    attached: BTreeMap<u8, String>,
    /// The volume statuses this worker last reported.
    volumes_reported: std::collections::HashMap<String, kumo_types::VolumeStatus>,
    /// The snapshot statuses this worker last reported.
    snapshot_reports: crate::volstate::SnapshotReports,
    /// Its part in a migration.
    mig: migration::MigState,
}

/// What a turn asks of the wait that follows it.
enum Next {
    /// Wait for a change, an exit or the retry timer.
    Wait,
    /// Decide again at once.
    Again,
    /// The instance is gone from this host.
    Done,
}

pub async fn run(ctx: Arc<Ctx>, mut rx: watch::Receiver<Assignment>) {
    let first = rx.borrow().clone();
    let id = first.instance.id.clone();
    let run_dir = crate::paths::run_dir(&ctx.data_dir, &id);
    let vm = match process::adopt(&run_dir, &id).await {
        Ok(Some(v)) => {
            tracing::info!(instance = %id, pid = v.pid(), "adopted running QEMU");
            Some(v)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(instance = %id, error = %e, "could not adopt QEMU");
            None
        }
    };
    let status = first.status.clone().unwrap_or_default();
    let attached = match (read_attached(&run_dir), &vm) {
        (Some(a), _) => a,
        // Adopted from before NICs were recorded: what it was launched with.
        (None, Some(_)) => first
            .instance
            .nics
            .iter()
            .map(|n| (n.slot, n.mac.clone()))
            .collect(),
        (None, None) => BTreeMap::new(),
    };
    let mut w = Worker {
        ctx,
        id,
        status,
        vm,
        attached,
        failures: 0,
        retry_at: None,
        volumes_reported: Default::default(),
        snapshot_reports: Default::default(),
        mig: Default::default(),
    };
    loop {
        let a = rx.borrow_and_update().clone();
        match w.turn(&a).await {
            Next::Done => return,
            Next::Again => continue,
            Next::Wait => {}
        }
        if !w.wait(&mut rx).await {
            // The agent dropped us: the instance is no longer assigned here.
            return;
        }
    }
}

impl Worker {
    /// One decision and its execution.
    async fn turn(&mut self, a: &Assignment) -> Next {
        // A newer stored status (a start request resets it to `pending`) wins over ours.
        if let Some(s) = &a.status
            && s.updated_at > self.status.updated_at
        {
            self.status = s.clone();
            self.failures = 0;
        }
        if let Some(next) = self.migration_turn(a).await {
            return next;
        }
        if let Some(exit) = self.vm.as_ref().and_then(RunningVm::exit_info) {
            self.vm = None;
            if !exit.requested {
                self.on_unrequested_exit(a, exit.kind).await;
            }
        }
        let due = self
            .retry_at
            .is_none_or(|t| tokio::time::Instant::now() >= t);
        match plan::decide(
            &a.instance,
            &self.status,
            Observed {
                running: self.vm.is_some(),
            },
        ) {
            Action::None | Action::Start if !due => Next::Wait,
            Action::None if self.vm.is_some() => {
                // Taken over from a live migration: the status names this host but not our QEMU.
                let pid = self.vm.as_ref().map(|v| v.pid() as u32);
                if self.status.pid != pid {
                    self.report(InstanceState::Running, None, pid).await;
                }
                self.sync_nics(a).await;
                self.sync_volumes(a).await
            }
            Action::None => Next::Wait,
            Action::Report(s) => {
                let pid = self.vm.as_ref().map(|v| v.pid() as u32);
                self.report(s, None, pid).await;
                Next::Wait
            }
            Action::Start => self.start(a).await,
            Action::Stop { force } => self.stop(force).await,
            Action::Reboot { seq } => self.reboot(seq).await,
            Action::Teardown => self.teardown(a).await,
        }
    }

    async fn on_unrequested_exit(&mut self, a: &Assignment, kind: ExitKind) {
        match plan::after_exit(a.instance.restart_policy, kind) {
            Ok(()) => {
                let msg = format!("QEMU exited ({kind:?}); restarting per policy");
                let _ = self
                    .ctx
                    .cp
                    .event(&self.id, "instance.restarting", &msg)
                    .await;
                self.status.state = InstanceState::Starting;
            }
            Err(state) => {
                let msg = match kind {
                    ExitKind::GuestShutdown => "the guest powered off",
                    ExitKind::Crash => "QEMU exited without a shutdown (crash or kill)",
                    ExitKind::Requested => "stopped on request",
                };
                self.report(state, Some(msg.to_string()), None).await;
                let kind = format!("instance.{}", state_word(state));
                let _ = self.ctx.cp.event(&self.id, &kind, msg).await;
            }
        }
    }

    async fn start(&mut self, a: &Assignment) -> Next {
        // A self-fenced host starts no HA instance: it may be running on another host by now.
        if a.instance.ha && self.ctx.fence.fenced() {
            self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            return Next::Wait;
        }
        self.report(InstanceState::Starting, None, None).await;
        // A boot volume still being made (e.g. an image copied into Ceph) is waited for, not counted
        // as a failed start.
        if let Some(v) = &a.instance.boot_volume_id
            && !crate::volstate::present_volumes(&self.ctx.pool, a)
                .await
                .contains(v)
        {
            self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            return Next::Wait;
        }
        match start(&self.ctx, a).await {
            Ok(v) => {
                self.failures = 0;
                self.retry_at = None;
                self.status.boot_count += 1;
                self.status.reboot_seq = a.instance.reboot_seq;
                let pid = v.pid() as u32;
                self.vm = Some(v);
                self.set_attached(
                    a.instance
                        .nics
                        .iter()
                        .map(|n| (n.slot, n.mac.clone()))
                        .collect(),
                );
                self.report(InstanceState::Running, None, Some(pid)).await;
                let msg = format!("QEMU pid {pid} ({})", self.ctx.accel.as_str());
                let _ = self.ctx.cp.event(&self.id, "instance.started", &msg).await;
            }
            Err(e) => {
                self.failures += 1;
                let msg = format!("start attempt {} failed: {e}", self.failures);
                tracing::warn!(instance = %self.id, "{msg}");
                if self.failures >= MAX_START_ATTEMPTS {
                    self.report(InstanceState::Failed, Some(msg.clone()), None)
                        .await;
                    let _ = self.ctx.cp.event(&self.id, "instance.failed", &msg).await;
                } else {
                    self.status.message = Some(msg);
                    self.retry_at = Some(
                        tokio::time::Instant::now() + Duration::from_secs(2u64 << self.failures),
                    );
                }
            }
        }
        Next::Again
    }

    async fn stop(&mut self, force: bool) -> Next {
        if let Some(v) = self.vm.take() {
            self.report(InstanceState::Stopping, None, Some(v.pid() as u32))
                .await;
            let r = if force {
                v.force_stop().await
            } else {
                v.shutdown(self.ctx.stop_timeout).await
            };
            if let Err(e) = r {
                tracing::warn!(instance = %self.id, error = %e, "stop failed");
            }
        }
        self.report(InstanceState::Stopped, None, None).await;
        let msg = if force { "stopped (forced)" } else { "stopped" };
        let _ = self.ctx.cp.event(&self.id, "instance.stopped", msg).await;
        Next::Again
    }

    async fn reboot(&mut self, seq: u64) -> Next {
        let Some(pid) = self.vm.as_ref().map(|v| v.pid() as u32) else {
            return Next::Again;
        };
        if let Some(v) = &self.vm
            && let Err(e) = v.reboot().await
        {
            tracing::warn!(instance = %self.id, error = %e, "reboot failed");
        }
        self.status.reboot_seq = seq;
        self.status.boot_count += 1;
        self.report(InstanceState::Running, None, Some(pid)).await;
        let _ = self
            .ctx
            .cp
            .event(&self.id, "instance.rebooted", "guest reset")
            .await;
        Next::Again
    }

    async fn teardown(&mut self, a: &Assignment) -> Next {
        if let Some(v) = self.vm.take() {
            let _ = v.force_stop().await;
        }
        match teardown(&self.ctx, a).await {
            Ok(()) => match self.ctx.cp.instance_removed(&self.id).await {
                Ok(()) => return Next::Done,
                Err(e) => {
                    tracing::warn!(instance = %self.id, error = %e, "could not finalize delete; will retry")
                }
            },
            Err(e) => {
                tracing::warn!(instance = %self.id, error = %e, "teardown failed; will retry")
            }
        }
        self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        Next::Wait
    }

    /// Plug, unplug and grow the running VM's volumes to match its attachments; report their status.
    async fn sync_volumes(&mut self, a: &Assignment) -> Next {
        let Some(vm) = &self.vm else {
            return Next::Wait;
        };
        let wanted: Vec<kumo_types::Volume> =
            a.volumes.iter().filter(|v| !v.deleting).cloned().collect();
        let (statuses, failed) =
            crate::volstate::sync_plugged(&self.ctx.pool, &a.pools, &self.id, vm, &wanted).await;
        for (id, st) in &statuses {
            // qcow2 volumes snapshot through the VM; other pools' snapshots are taken by the
            // volume's home agent.
            let through_vm = wanted
                .iter()
                .find(|v| &v.id == id)
                .and_then(|v| crate::volstate::backend_of(&self.ctx.pool, &a.pools, v).ok())
                .is_some_and(|b| b.snapshots_through_vm());
            if st.plugged_into.is_some() && through_vm {
                crate::volstate::sync_online_snapshots(
                    self.ctx.cp.as_ref(),
                    vm,
                    id,
                    &a.snapshots,
                    &mut self.snapshot_reports,
                )
                .await;
            }
        }
        for (id, st) in statuses {
            if self.volumes_reported.get(&id) != Some(&st)
                && self
                    .ctx
                    .cp
                    .report_volume_status(&id, st.clone())
                    .await
                    .is_ok()
            {
                self.volumes_reported.insert(id, st);
            }
        }
        if let Some(msg) = failed {
            tracing::warn!(instance = %self.id, "{msg}");
            self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
        Next::Wait
    }

    /// Hot-plug added NICs and unplug removed ones on the running VM.
    async fn sync_nics(&mut self, a: &Assignment) -> Next {
        let (add, remove) = plan::nic_changes(&a.instance.nics, &self.attached);
        if add.is_empty() && remove.is_empty() {
            return Next::Wait;
        }
        let Some(vm) = &self.vm else {
            return Next::Wait;
        };
        let mut attached = self.attached.clone();
        let mut failed = None;
        for slot in remove {
            match vm
                .unplug_nic(&format!("net{slot}"), Duration::from_secs(20))
                .await
            {
                Ok(()) => {
                    attached.remove(&slot);
                    let _ = network::delete_tap(&network::tap_name(&self.id, slot));
                    let _ = self
                        .ctx
                        .cp
                        .event(
                            &self.id,
                            "instance.nic_unplugged",
                            &format!("NIC slot {slot} unplugged"),
                        )
                        .await;
                }
                Err(e) => failed = Some(format!("unplugging NIC slot {slot}: {e}")),
            }
        }
        for nic in add {
            let r = async {
                let net = a
                    .networks
                    .iter()
                    .find(|x| x.id == nic.network_id)
                    .ok_or_else(|| {
                        kumo_types::Error::internal("network of NIC missing from assignment")
                    })?;
                let spec = nic_spec(&self.id, &nic);
                network::ensure_tap(&spec.ifname, &net.bridge, net.mtu)?;
                let bus = spec.bus.clone().unwrap_or_default();
                vm.hotplug_nic(&spec, &bus).await
            }
            .await;
            match r {
                Ok(()) => {
                    attached.insert(nic.slot, nic.mac.clone());
                    let msg = format!("NIC {} ({}) plugged", nic.ipv4, nic.mac);
                    let _ = self
                        .ctx
                        .cp
                        .event(&self.id, "instance.nic_plugged", &msg)
                        .await;
                }
                Err(e) => failed = Some(format!("hot-plugging NIC {}: {e}", nic.ipv4)),
            }
        }
        self.set_attached(attached);
        if let Some(msg) = failed {
            tracing::warn!(instance = %self.id, "{msg}");
            self.status.message = Some(msg);
            self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(5));
        }
        Next::Wait
    }

    fn set_attached(&mut self, attached: BTreeMap<u8, String>) {
        let path = crate::paths::run_dir(&self.ctx.data_dir, &self.id).join("nics.json");
        if let Ok(json) = serde_json::to_vec(&attached) {
            let tmp = path.with_extension("json.tmp");
            if std::fs::write(&tmp, json)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .is_err()
            {
                tracing::warn!(instance = %self.id, "could not record attached NICs");
            }
        }
        self.attached = attached;
    }

    /// Wait for a new assignment, QEMU's exit, or the retry timer. False when the agent dropped us.
    async fn wait(&mut self, rx: &mut watch::Receiver<Assignment>) -> bool {
        let mut exit_rx = self.vm.as_ref().map(RunningVm::exit_watch);
        let retry_at = self.retry_at;
        let exited = async {
            match exit_rx.as_mut() {
                Some(e) => {
                    let _ = e.wait_for(Option::is_some).await;
                }
                None => futures::future::pending().await,
            }
        };
        let retry = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.changed() => r.is_ok(),
            _ = exited => true,
            _ = retry => {
                self.retry_at = None;
                true
            }
        }
    }

    async fn report(&mut self, state: InstanceState, message: Option<String>, pid: Option<u32>) {
        report(&self.ctx, &self.id, &mut self.status, state, message, pid).await;
    }
}

/// NICs recorded as plugged into an adopted VM (empty if none recorded).
fn read_attached(run_dir: &std::path::Path) -> Option<BTreeMap<u8, String>> {
    std::fs::read(run_dir.join("nics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn state_word(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Stopped => "stopped",
        InstanceState::Crashed => "crashed",
        InstanceState::Failed => "failed",
        _ => "changed",
    }
}

async fn report(
    ctx: &Ctx,
    id: &str,
    status: &mut InstanceStatus,
    state: InstanceState,
    message: Option<String>,
    pid: Option<u32>,
) {
    status.state = state;
    status.message = message;
    status.pid = pid;
    status.accel = Some(ctx.accel.as_str().to_string());
    status.updated_at = now_rfc3339();
    status.host = Some(ctx.host_id.clone());
    if let Err(e) = ctx.cp.report_status(id, status.clone()).await {
        tracing::warn!(instance = %id, error = %e, "could not report status");
    }
}

async fn start(ctx: &Ctx, a: &Assignment) -> kumo_types::Result<RunningVm> {
    let cfg = prepare(ctx, a).await?;
    process::launch(&cfg).await
}

/// Everything a launch needs on this host (PCI binding, image and root disk, taps, seed), and the
/// QEMU configuration to launch with.
async fn prepare(ctx: &Ctx, a: &Assignment) -> kumo_types::Result<VmConfig> {
    let i = &a.instance;
    let pool = ctx.pool.clone();
    let (inst_id, image, size) = (i.id.clone(), a.image.clone(), i.root_disk_gib);
    // GPUs (issue 5): bind the instance's PCI devices to vfio-pci before QEMU opens them. Without an
    // IOMMU or the vfio-pci module this fails with an error that says what to fix.
    if !i.gpu_devices.is_empty() {
        let devices = i.gpu_devices.clone();
        tokio::task::spawn_blocking(move || {
            crate::pci::prepare_passthrough(std::path::Path::new(crate::pci::SYSFS_ROOT), &devices)
        })
        .await
        .map_err(|e| kumo_types::Error::internal_with("PCI binding task", e))??;
    }
    let present = crate::volstate::present_volumes(&ctx.pool, a).await;
    match &i.boot_volume_id {
        // The boot volume's home agent makes it from the image.
        Some(v) if !present.contains(v) => {
            return Err(kumo_types::Error::unavailable(format!(
                "boot volume {v} is not made yet"
            )));
        }
        // Kernel, initrd or ISO of a volume-booted instance.
        Some(_)
            if image.kind == ImageKind::KernelInitrd
                || image.format == Some(kumo_types::DiskFormat::Iso) =>
        {
            crate::imagecache::ensure_local(ctx.cp.as_ref(), &ctx.pool, &image).await?
        }
        Some(_) => {}
        None => {
            crate::imagecache::ensure_local(ctx.cp.as_ref(), &ctx.pool, &image).await?;
            tokio::task::spawn_blocking(move || pool.ensure_root_disk(&inst_id, &image, size))
                .await
                .map_err(|e| kumo_types::Error::internal_with("disk task", e))??;
        }
    }
    for nic in &i.nics {
        let net = a
            .networks
            .iter()
            .find(|x| x.id == nic.network_id)
            .ok_or_else(|| kumo_types::Error::internal("network of NIC missing from assignment"))?;
        network::ensure_tap(&network::tap_name(&i.id, nic.slot), &net.bridge, net.mtu)?;
    }
    let mut cfg = vm_config(&ctx.data_dir, &ctx.pool, ctx.accel, a, &present);
    std::fs::create_dir_all(&cfg.run_dir)?;
    // A NoCloud seed (ISO labelled `cidata`) so stock cloud-init images configure themselves even
    // without the metadata service.
    let spec = network::seed::SeedSpec {
        instance_id: i.id.clone(),
        hostname: i.name.clone(),
        user_data: i.user_data.clone(),
        public_keys: a.key_pair.iter().map(|k| k.public_key.clone()).collect(),
        network_config: None,
    };
    let run_dir = cfg.run_dir.clone();
    let seed = tokio::task::spawn_blocking(move || network::seed::build_seed(&run_dir, &spec))
        .await
        .map_err(|e| kumo_types::Error::internal_with("seed task", e))??;
    cfg.seed_iso = Some(seed);
    Ok(cfg)
}

async fn teardown(ctx: &Ctx, a: &Assignment) -> kumo_types::Result<()> {
    let i = &a.instance;
    {
        let mut net = ctx.net.lock().await;
        for nic in &i.nics {
            network::delete_tap(&network::tap_name(&i.id, nic.slot))?;
            net.release(&nic.network_id, &nic.mac, &nic.ipv4)?;
        }
    }
    let run_dir = crate::paths::run_dir(&ctx.data_dir, &i.id);
    match std::fs::remove_dir_all(&run_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    ctx.pool.delete_instance_disks(&i.id)?;
    let _ = ctx
        .cp
        .event(
            &i.id,
            "instance.torn_down",
            "QEMU, tap, lease and disks removed",
        )
        .await;
    Ok(())
}
