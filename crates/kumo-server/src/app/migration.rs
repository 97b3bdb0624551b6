//! Moving instances between hosts: live migration (the guest keeps running) and cold migration (it
//! is stopped, its local root disk copied, and started on the target). The protocol and its
//! invariants are in [`kumo_types::migration`]; this module checks requests, chooses the target,
//! reserves capacity there, and applies what the agents report, each step one compare-and-swap of
//! the instance record with an event.
//!
//! Capacity: while a migration runs the instance counts on both hosts (the target's allocation is
//! taken when it starts); completion releases the source's, failure the target's.

use kumo_store::{Compare, Op};
use kumo_types::{
    DesiredState, Error, HostAllocation, HostState, Instance, InstanceState, InstanceStatus,
    InstanceView, MigrateRequest, Migration, MigrationKind, MigrationPhase, MigrationReport,
    MigrationResult, Result, Volume, ids, now_rfc3339,
};

use super::{App, host, instance, placement};
use crate::scheduler::RequiredHost;
use crate::storeutil::{commit, encode, get_json, keys, list_json};

/// A migration that has not finished after this long is failed (a target that never became ready,
/// a copy that hangs).
pub const TIMEOUT: chrono::Duration = chrono::Duration::minutes(15);

/// Why a migration starts (shown in events and the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Requested,
    Drain,
}

impl Reason {
    fn word(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::Drain => "drain",
        }
    }
}

/// `POST /v1/instances/{id}/migrate`.
pub async fn migrate(app: &App, id_or_name: &str, req: MigrateRequest) -> Result<InstanceView> {
    let (inst, _) = instance::find(app, id_or_name).await?;
    let target = match &req.host {
        Some(h) => Some(host::get(app, h).await.map_err(|e| match e {
            Error::NotFound { .. } => {
                Error::invalid("host", format!("no host `{h}` (see `kumo host list`)"))
            }
            e => e,
        })?),
        None => None,
    };
    begin(
        app,
        &inst.id,
        req.kind,
        target.map(|h| h.id),
        Reason::Requested,
    )
    .await?;
    instance::get(app, &inst.id).await
}

/// Check and start a migration of instance `id`; the scheduler picks the target unless given.
pub async fn begin(
    app: &App,
    id: &str,
    kind: Option<MigrationKind>,
    target: Option<String>,
    reason: Reason,
) -> Result<Migration> {
    let ikey = keys::instance(id);
    let (inst, irev) = get_json::<Instance>(app.kv(), &ikey)
        .await?
        .ok_or_else(|| Error::not_found("instance", id))?;
    let st = instance::status(app, id).await?.unwrap_or_default();
    let volumes: Vec<Volume> = list_json(app.kv(), keys::VOLUMES).await?;
    let pools = super::pool::all(app).await?;
    let source = check(&inst, &st, &volumes, &pools, kind, target.as_deref())?;
    let src_host = host::get(app, &source).await?;
    if !matches!(src_host.state, HostState::Ready | HostState::Draining) {
        return Err(Error::conflict(format!(
            "its host `{}` is {:?}; only instances on a ready or draining host can be migrated \
             (a down host's HA instances are restarted elsewhere after fencing)",
            src_host.name, src_host.state
        )));
    }
    let kind = kind.unwrap_or(if running(&inst, &st) {
        MigrationKind::Live
    } else {
        MigrationKind::Cold
    });
    let mut want = placement::want_for(app, &inst).await?;
    want.avoid_host = Some(source.clone());
    if let Some(t) = &target {
        want.required_host = Some(RequiredHost {
            host: t.clone(),
            why: "the migration names it".into(),
        });
    }
    let plan = placement::decide_for(app, &want, Some(id)).await?;
    let to = plan.decision.host.clone();
    let m = Migration {
        id: ids::new_id(ids::MIGRATION),
        kind,
        source_host: source,
        target_host: to.clone(),
        phase: MigrationPhase::Preparing,
        address: None,
        reason: reason.word().into(),
        started_at: now_rfc3339(),
        secret: crate::auth::random_hex(32),
    };
    let mut moving = inst.clone();
    moving.migration = Some(m.clone());
    let (alloc, arev) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(&to))
        .await?
        .unwrap_or_default();
    let (c, o) = host::alloc_update(&to, &alloc, arev, &inst, true)?;
    let compare = vec![c, Compare::mod_revision(&ikey, irev)];
    let ops = vec![o, Op::put(&ikey, encode(&moving)?)];
    if !commit(app.kv(), compare, ops).await? {
        return Err(Error::conflict(
            "the instance or the target's allocation changed meanwhile; retry",
        ));
    }
    super::event::record(
        app,
        id,
        "instance.migration_started",
        &format!(
            "{} migration {} ({}) from host {} to {} ({})",
            kind_word(kind),
            m.id,
            m.reason,
            m.source_host,
            plan.decision.host_name,
            plan.decision.reason
        ),
    )
    .await?;
    Ok(m)
}

fn running(inst: &Instance, st: &InstanceStatus) -> bool {
    inst.desired_state == DesiredState::Running && st.state == InstanceState::Running
}

fn kind_word(k: MigrationKind) -> &'static str {
    match k {
        MigrationKind::Live => "live",
        MigrationKind::Cold => "cold",
    }
}

/// What stops a migration before it starts (pure). Returns the source host.
pub fn check(
    inst: &Instance,
    st: &InstanceStatus,
    volumes: &[Volume],
    pools: &[kumo_types::Pool],
    kind: Option<MigrationKind>,
    target: Option<&str>,
) -> Result<String> {
    if inst.deleting {
        return Err(Error::conflict(format!(
            "instance `{}` is being deleted",
            inst.name
        )));
    }
    if let Some(m) = &inst.migration {
        return Err(Error::conflict(format!(
            "instance `{}` is already migrating ({} to host {}, {:?})",
            inst.name, m.id, m.target_host, m.phase
        )));
    }
    let source = inst
        .host
        .clone()
        .ok_or_else(|| Error::conflict(format!("instance `{}` is on no host", inst.name)))?;
    if target == Some(source.as_str()) {
        return Err(Error::invalid(
            "host",
            format!("instance `{}` already runs on that host", inst.name),
        ));
    }
    let is_running = running(inst, st);
    let transitional = matches!(
        st.state,
        InstanceState::Pending
            | InstanceState::Starting
            | InstanceState::Stopping
            | InstanceState::Rebooting
    );
    if transitional {
        return Err(Error::conflict(format!(
            "instance `{}` is {}; migrate it once it is running or stopped",
            inst.name,
            format!("{:?}", st.state).to_lowercase()
        )));
    }
    let shared_pool = |v: &Volume| pools.iter().any(|p| p.name == v.pool && p.driver.shared());
    let attached: Vec<&Volume> = volumes
        .iter()
        .filter(|v| {
            v.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == inst.id)
        })
        .collect();
    match kind {
        Some(MigrationKind::Live) | None if is_running => {
            if !inst.gpu_devices.is_empty() {
                return Err(Error::invalid(
                    "kind",
                    format!(
                        "instance `{}` passes through host devices ({}); those cannot move with a \
                         running guest: use a cold migration",
                        inst.name,
                        inst.gpu_devices.join(", ")
                    ),
                ));
            }
            if !crate::ha::movable(inst, volumes, pools) {
                let local: Vec<String> = attached
                    .iter()
                    .filter(|v| !shared_pool(v))
                    .map(|v| format!("{} (pool {})", v.id, v.pool))
                    .collect();
                let why = if inst.boot_volume_id.is_none() {
                    "its root disk is a file on its host".to_string()
                } else {
                    format!("volumes in host-local pools: {}", local.join(", "))
                };
                return Err(Error::invalid(
                    "kind",
                    format!(
                        "instance `{}` cannot be live-migrated: {why}; live migration needs every \
                         disk in a shared pool (shared-dir or rbd). A cold migration (stop, copy the \
                         root disk, start) can move it",
                        inst.name
                    ),
                ));
            }
        }
        Some(MigrationKind::Live) => {
            return Err(Error::invalid(
                "kind",
                format!(
                    "instance `{}` is {}, not running; live migration moves a running guest: use a \
                     cold migration",
                    inst.name,
                    format!("{:?}", st.state).to_lowercase()
                ),
            ));
        }
        _ => {
            // Cold: the root disk file is copied; volumes in host-local pools are not.
            if let Some(v) = attached.iter().find(|v| !shared_pool(v)) {
                return Err(Error::invalid(
                    "kind",
                    format!(
                        "volume {} of instance `{}` is in host-local pool `{}`; a migration does not \
                         copy volumes: detach it first, or keep volumes that move in a shared pool",
                        v.id, inst.name, v.pool
                    ),
                ));
            }
        }
    }
    Ok(source)
}

/// Apply an agent's report about migration `report.migration_id()` of instance `id`.
pub async fn report(app: &App, id: &str, from_host: &str, report: MigrationReport) -> Result<()> {
    let ikey = keys::instance(id);
    let Some((inst, irev)) = get_json::<Instance>(app.kv(), &ikey).await? else {
        return Ok(());
    };
    let Some(m) = inst.migration.clone() else {
        return late_figures(app, &inst, irev, from_host, &report).await;
    };
    if m.id != report.migration_id() {
        return Ok(()); // about an earlier attempt
    }
    if from_host != m.source_host && from_host != m.target_host {
        return Err(Error::Forbidden {
            message: format!(
                "host {from_host} takes no part in migration {} of {id}",
                m.id
            ),
        });
    }
    match report {
        MigrationReport::Ready { address, .. } => {
            // Live: the target listens; cold: the source serves the stopped instance's disk.
            let speaker = match m.kind {
                MigrationKind::Live => &m.target_host,
                MigrationKind::Cold => &m.source_host,
            };
            if from_host != speaker || m.phase != MigrationPhase::Preparing {
                return Ok(());
            }
            let mut next = inst.clone();
            if let Some(mm) = next.migration.as_mut() {
                mm.phase = MigrationPhase::Ready;
                mm.address = Some(address.clone());
            }
            if commit(
                app.kv(),
                vec![Compare::mod_revision(&ikey, irev)],
                vec![Op::put(&ikey, encode(&next)?)],
            )
            .await?
            {
                let what = match m.kind {
                    MigrationKind::Live => format!("target waits for the guest at {address}"),
                    MigrationKind::Cold if address.is_empty() => {
                        "stopped on the source; nothing to copy".to_string()
                    }
                    MigrationKind::Cold => {
                        format!("stopped on the source; its root disk is served at {address}")
                    }
                };
                super::event::record(app, id, "instance.migration_ready", &what).await?;
            }
            Ok(())
        }
        MigrationReport::Completed {
            downtime_ms,
            total_ms,
            transferred_bytes,
            ..
        } => {
            if m.kind == MigrationKind::Cold && from_host != m.target_host {
                return Ok(());
            }
            let result = MigrationResult {
                id: m.id.clone(),
                kind: m.kind,
                source_host: m.source_host.clone(),
                target_host: m.target_host.clone(),
                succeeded: true,
                error: None,
                downtime_ms,
                total_ms,
                transferred_bytes,
                started_at: m.started_at.clone(),
                finished_at: now_rfc3339(),
            };
            complete(app, &inst, irev, &m, result).await
        }
        MigrationReport::Failed { error, .. } => {
            fail(app, &inst, irev, &m, &format!("host {from_host}: {error}")).await
        }
    }
}

/// The source's figures arriving after the target already reported the switch-over.
async fn late_figures(
    app: &App,
    inst: &Instance,
    irev: i64,
    from_host: &str,
    report: &MigrationReport,
) -> Result<()> {
    let MigrationReport::Completed {
        migration_id,
        downtime_ms,
        total_ms,
        transferred_bytes,
    } = report
    else {
        return Ok(());
    };
    let Some(last) = &inst.last_migration else {
        return Ok(());
    };
    if &last.id != migration_id || last.source_host != from_host || last.downtime_ms.is_some() {
        return Ok(());
    }
    let mut next = inst.clone();
    if let Some(l) = next.last_migration.as_mut() {
        l.downtime_ms = *downtime_ms;
        l.total_ms = *total_ms;
        l.transferred_bytes = *transferred_bytes;
    }
    let ikey = keys::instance(&inst.id);
    if commit(
        app.kv(),
        vec![Compare::mod_revision(&ikey, irev)],
        vec![Op::put(&ikey, encode(&next)?)],
    )
    .await?
    {
        super::event::record(
            app,
            &inst.id,
            "instance.migration_figures",
            &figures(downtime_ms, total_ms, transferred_bytes),
        )
        .await?;
    }
    Ok(())
}

fn figures(downtime: &Option<u64>, total: &Option<u64>, bytes: &Option<u64>) -> String {
    let mut parts = vec![];
    if let Some(d) = downtime {
        parts.push(format!("downtime {d} ms"));
    }
    if let Some(t) = total {
        parts.push(format!("total {t} ms"));
    }
    if let Some(b) = bytes {
        parts.push(format!("{:.1} MiB sent", *b as f64 / 1048576.0));
    }
    if parts.is_empty() {
        "no figures".into()
    } else {
        parts.join(", ")
    }
}

/// The guest runs on the target: move the instance there in one transaction.
async fn complete(
    app: &App,
    inst: &Instance,
    irev: i64,
    m: &Migration,
    result: MigrationResult,
) -> Result<()> {
    let ikey = keys::instance(&inst.id);
    let mut moved = inst.clone();
    moved.host = Some(m.target_host.clone());
    moved.migration = None;
    moved.last_migration = Some(result.clone());
    let (alloc, arev) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(&m.source_host))
        .await?
        .unwrap_or_default();
    let (c, o) = host::alloc_update(&m.source_host, &alloc, arev, inst, false)?;
    let compare = vec![c, Compare::mod_revision(&ikey, irev)];
    let mut ops = vec![o, Op::put(&ikey, encode(&moved)?)];
    let target_name = host::get(app, &m.target_host)
        .await
        .map(|h| h.name)
        .unwrap_or_else(|_| m.target_host.clone());
    if let Some(mut p) = placement::get(app, &inst.id).await? {
        p.decision.host = m.target_host.clone();
        p.decision.host_name = target_name.clone();
        p.decision.reason = format!(
            "{}-migrated from host {} ({})",
            kind_word(m.kind),
            m.source_host,
            m.reason
        );
        p.decision.at = now_rfc3339();
        ops.push(Op::put(keys::instance_placement(&inst.id), encode(&p)?));
    }
    let prev = instance::status(app, &inst.id).await?.unwrap_or_default();
    let status = InstanceStatus {
        state: match (m.kind, inst.desired_state) {
            (MigrationKind::Live, _) => InstanceState::Running,
            (MigrationKind::Cold, DesiredState::Running) => InstanceState::Pending,
            (MigrationKind::Cold, DesiredState::Stopped) => InstanceState::Stopped,
        },
        message: Some(format!("moved to host {target_name}")),
        accel: prev.accel.clone(),
        reboot_seq: prev.reboot_seq,
        boot_count: prev.boot_count,
        updated_at: now_rfc3339(),
        host: Some(m.target_host.clone()),
        ..Default::default()
    };
    ops.push(Op::put(keys::instance_status(&inst.id), encode(&status)?));
    ops.extend(super::volume::follow_ops(app, &inst.id, &m.target_host).await?);
    if commit(app.kv(), compare, ops).await? {
        super::event::record(
            app,
            &inst.id,
            "instance.migrated",
            &format!(
                "{} migration {} to host {target_name} completed ({})",
                kind_word(m.kind),
                m.id,
                figures(
                    &result.downtime_ms,
                    &result.total_ms,
                    &result.transferred_bytes
                )
            ),
        )
        .await?;
    }
    Ok(())
}

/// Give up: the instance stays on its source; the target's reservation is released.
async fn fail(app: &App, inst: &Instance, irev: i64, m: &Migration, error: &str) -> Result<()> {
    let ikey = keys::instance(&inst.id);
    let mut next = inst.clone();
    next.migration = None;
    next.last_migration = Some(MigrationResult {
        id: m.id.clone(),
        kind: m.kind,
        source_host: m.source_host.clone(),
        target_host: m.target_host.clone(),
        succeeded: false,
        error: Some(error.to_string()),
        downtime_ms: None,
        total_ms: None,
        transferred_bytes: None,
        started_at: m.started_at.clone(),
        finished_at: now_rfc3339(),
    });
    let (alloc, arev) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(&m.target_host))
        .await?
        .unwrap_or_default();
    let (c, o) = host::alloc_update(&m.target_host, &alloc, arev, inst, false)?;
    if commit(
        app.kv(),
        vec![c, Compare::mod_revision(&ikey, irev)],
        vec![o, Op::put(&ikey, encode(&next)?)],
    )
    .await?
    {
        super::event::record(
            app,
            &inst.id,
            "instance.migration_failed",
            &format!(
                "migration {} to host {} failed; the instance stays on host {}: {error}",
                m.id, m.target_host, m.source_host
            ),
        )
        .await?;
    }
    Ok(())
}

/// Abort instance `id`'s migration, if any (its host failed, or it timed out).
pub async fn abort(app: &App, id: &str, why: &str) -> Result<()> {
    let ikey = keys::instance(id);
    if let Some((inst, irev)) = get_json::<Instance>(app.kv(), &ikey).await?
        && let Some(m) = inst.migration.clone()
    {
        fail(app, &inst, irev, &m, why).await?;
    }
    Ok(())
}

/// Fail migrations that outlived [`TIMEOUT`] or whose source or target host is down (on the leader).
pub async fn tick(app: &App) -> Result<()> {
    let instances: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let moving: Vec<&Instance> = instances.iter().filter(|i| i.migration.is_some()).collect();
    if moving.is_empty() {
        return Ok(());
    }
    let hosts: Vec<kumo_types::Host> = list_json(app.kv(), keys::HOSTS).await?;
    let down = |id: &str| {
        hosts
            .iter()
            .any(|h| h.id == id && h.state == HostState::Down)
    };
    let now = chrono::Utc::now();
    for i in moving {
        let Some(m) = &i.migration else { continue };
        let age = chrono::DateTime::parse_from_rfc3339(&m.started_at)
            .map(|t| now - t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let why = if down(&m.target_host) {
            Some(format!("target host {} is down", m.target_host))
        } else if down(&m.source_host) {
            Some(format!("source host {} is down", m.source_host))
        } else if age > TIMEOUT {
            Some(format!(
                "not finished after {} minutes",
                TIMEOUT.num_minutes()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            abort(app, &i.id, &why).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kumo_types::{Pool, PoolDriver};

    fn inst(boot: Option<&str>) -> Instance {
        serde_json::from_value(serde_json::json!({
            "id": "i-1", "name": "web", "project": "default", "image_id": "ami-1",
            "instance_type": "nano", "vcpus": 1, "memory_mib": 128, "root_disk_gib": 1,
            "desired_state": "running", "host": "host-a", "created_at": "t", "nics": [],
            "boot_volume_id": boot
        }))
        .unwrap()
    }
    fn vol(id: &str, pool: &str) -> Volume {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "project": "default", "size_gib": 1, "pool": pool,
            "host": "host-a", "created_at": "t",
            "attachment": {"instance_id": "i-1", "slot": 0, "device": "vdb"}
        }))
        .unwrap()
    }
    fn pools() -> Vec<Pool> {
        let p = |name: &str, driver: PoolDriver| -> Pool {
            serde_json::from_value(serde_json::json!({
                "name": name, "driver": driver, "created_at": "t"
            }))
            .unwrap()
        };
        vec![p("local", PoolDriver::Dir), p("nfs", PoolDriver::SharedDir)]
    }
    fn st(s: InstanceState) -> InstanceStatus {
        InstanceStatus {
            state: s,
            ..Default::default()
        }
    }

    #[test]
    fn live_needs_shared_disks() {
        let e = check(
            &inst(None),
            &st(InstanceState::Running),
            &[],
            &pools(),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("kind"));
        assert!(e.to_string().contains("root disk is a file"), "{e}");
        let ok = check(
            &inst(Some("vol-boot")),
            &st(InstanceState::Running),
            &[vol("vol-boot", "nfs")],
            &pools(),
            None,
            None,
        );
        assert_eq!(ok.unwrap(), "host-a");
        let e = check(
            &inst(Some("vol-boot")),
            &st(InstanceState::Running),
            &[vol("vol-boot", "nfs"), vol("vol-data", "local")],
            &pools(),
            Some(MigrationKind::Live),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("vol-data (pool local)"), "{e}");
    }

    #[test]
    fn cold_copies_root_files_but_not_local_volumes() {
        // A stopped instance with a root disk file: cold is what it gets.
        assert!(
            check(
                &inst(None),
                &st(InstanceState::Stopped),
                &[],
                &pools(),
                None,
                None
            )
            .is_ok()
        );
        let e = check(
            &inst(None),
            &st(InstanceState::Stopped),
            &[vol("vol-data", "local")],
            &pools(),
            Some(MigrationKind::Cold),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("host-local pool `local`"), "{e}");
        let e = check(
            &inst(None),
            &st(InstanceState::Stopped),
            &[],
            &pools(),
            Some(MigrationKind::Live),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
    }

    #[test]
    fn refuses_busy_instances_and_the_same_host() {
        let mut i = inst(Some("vol-boot"));
        let e = check(&i, &st(InstanceState::Starting), &[], &pools(), None, None).unwrap_err();
        assert!(e.to_string().contains("starting"), "{e}");
        let e = check(
            &i,
            &st(InstanceState::Stopped),
            &[],
            &pools(),
            None,
            Some("host-a"),
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("host"));
        i.migration = Some(Migration {
            id: "mig-1".into(),
            kind: MigrationKind::Live,
            source_host: "host-a".into(),
            target_host: "host-b".into(),
            phase: MigrationPhase::Preparing,
            address: None,
            reason: "requested".into(),
            started_at: "t".into(),
            secret: String::new(),
        });
        let e = check(&i, &st(InstanceState::Running), &[], &pools(), None, None).unwrap_err();
        assert!(e.to_string().contains("already migrating"), "{e}");
    }
}
