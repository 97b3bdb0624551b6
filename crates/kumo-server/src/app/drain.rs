//! Maintenance: draining a host moves what can move and stops the rest, then the host is in
//! `maintenance`; undraining makes it `ready` again and starts what the drain stopped.
//!
//! What can move: instances whose disks every host reaches ([`crate::ha::movable`]: boot volume and
//! volumes in shared pools). Running ones are live-migrated ([`super::migration`]) to a host the
//! scheduler picks; if that fails (or they are stopped, or pass GPUs through) they are cold-migrated:
//! stopped on the host (ACPI shutdown), then placed on another host and started there. The others
//! (local root disks) are handled as the operator chose ([`LocalDiskAction`]): stopped, staying on
//! the host (the default), or cold-migrated with their root disk ([`super::migration`], kind
//! `cold`); one whose cold migration cannot start (a volume in a host-local pool) is stopped.
//!
//! Level-triggered: [`tick`] (on the leader, with the HA reconciler) looks at every draining host and
//! takes the next step for each of its instances; the drain record (`/host-drain/<id>`) remembers
//! which instances it is moving and which it stopped.

use kumo_store::Op;
use kumo_types::{
    DesiredState, DrainRequest, Error, Host, HostState, Instance, InstanceState, LocalDiskAction,
    MigrationKind, Result, Volume,
};
use serde::{Deserialize, Serialize};

use super::{App, host, instance};
use crate::storeutil::{encode, get_json, keys, list_json};

/// What a drain is doing (`/host-drain/<host id>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DrainRecord {
    /// Being cold-migrated: stopped here, to start on another host.
    #[serde(default)]
    pub moving: Vec<String>,
    /// Stopped by the drain (their disks are local): started again on undrain.
    #[serde(default)]
    pub stopped: Vec<String>,
    /// Live migrations the drain started (one attempt each; a failed one falls back to cold).
    #[serde(default)]
    pub live: Vec<String>,
    /// What to do with running instances on local disks.
    #[serde(default)]
    pub local_disks: LocalDiskAction,
    /// Cold migrations (with the root disk) the drain started (one attempt each; a failed one
    /// falls back to stopping).
    #[serde(default)]
    pub cold: Vec<String>,
}

/// Start draining a host (idempotent while it drains).
pub async fn drain(app: &App, id_or_name: &str, req: DrainRequest) -> Result<Host> {
    let h = host::get(app, id_or_name).await?;
    match h.state {
        HostState::Draining | HostState::Maintenance => return Ok(h),
        HostState::Down => {
            return Err(Error::conflict(format!(
                "host `{}` is down; a down host cannot be drained",
                h.name
            )));
        }
        HostState::Ready => {}
    }
    let cur = host::change(app, &h.id, |cur| {
        cur.state = HostState::Draining;
        Ok(Some(vec![Op::put(
            keys::host_drain(&cur.id),
            encode(&DrainRecord {
                local_disks: req.local_disks,
                ..DrainRecord::default()
            })?,
        )]))
    })
    .await?
    .ok_or_else(|| Error::conflict("the host changed meanwhile; retry"))?;
    super::event::record(
        app,
        &h.id,
        "host.draining",
        match req.local_disks {
            LocalDiskAction::Stop => "moving instances with shared storage, stopping the others",
            LocalDiskAction::Migrate => {
                "moving instances with shared storage, cold-migrating those on local disks"
            }
        },
    )
    .await?;
    Ok(cur)
}

/// Back to `ready`; start what the drain stopped.
pub async fn undrain(app: &App, id_or_name: &str) -> Result<Host> {
    let h = host::get(app, id_or_name).await?;
    if !matches!(h.state, HostState::Draining | HostState::Maintenance) {
        return Err(Error::conflict(format!(
            "host `{}` is {:?}, not draining or in maintenance",
            h.name, h.state
        )));
    }
    let rec = get_json::<DrainRecord>(app.kv(), &keys::host_drain(&h.id))
        .await?
        .map(|(r, _)| r)
        .unwrap_or_default();
    let cur = host::change(app, &h.id, |cur| {
        cur.state = HostState::Ready;
        Ok(Some(vec![Op::delete(keys::host_drain(&cur.id))]))
    })
    .await?
    .ok_or_else(|| Error::conflict("the host changed meanwhile; retry"))?;
    for id in &rec.stopped {
        let _ = instance::start(app, id).await;
    }
    super::event::record(
        app,
        &h.id,
        "host.ready",
        &format!(
            "out of maintenance; started {} instance(s) the drain had stopped",
            rec.stopped.len()
        ),
    )
    .await?;
    Ok(cur)
}

async fn save(app: &App, host_id: &str, rec: &DrainRecord) -> Result<()> {
    app.kv()
        .put(&keys::host_drain(host_id), encode(rec)?)
        .await
        .map_err(crate::storeutil::store_err)?;
    Ok(())
}

/// Start migrating instance `id` off its draining host; if it cannot start, record why and what
/// the drain does instead (`fallback`: the next pass does it).
async fn migrate_once(app: &App, id: &str, kind: MigrationKind, fallback: &str) -> Result<()> {
    let reason = super::migration::Reason::Drain;
    if let Err(e) = super::migration::begin(app, id, Some(kind), None, reason).await {
        let how = match kind {
            MigrationKind::Live => "live-migrate",
            MigrationKind::Cold => "cold-migrate",
        };
        super::event::record(
            app,
            id,
            "instance.migration_failed",
            &format!("cannot {how} off draining host: {e}; {fallback}"),
        )
        .await?;
    }
    Ok(())
}

/// One pass over the draining hosts.
pub async fn tick(app: &App) -> Result<()> {
    let hosts: Vec<Host> = list_json(app.kv(), keys::HOSTS).await?;
    let draining: Vec<Host> = hosts
        .into_iter()
        .filter(|h| h.state == HostState::Draining)
        .collect();
    if draining.is_empty() {
        return Ok(());
    }
    let instances: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let volumes: Vec<Volume> = list_json(app.kv(), keys::VOLUMES).await?;
    let pools = super::pool::all(app).await?;
    for h in draining {
        let mut rec = get_json::<DrainRecord>(app.kv(), &keys::host_drain(&h.id))
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default();
        let before = rec.clone();
        let mine: Vec<&Instance> = instances
            .iter()
            .filter(|i| i.host.as_deref() == Some(h.id.as_str()) && !i.deleting)
            .collect();
        let mut busy = false;
        for i in &mine {
            let st = instance::status(app, &i.id).await?.map(|s| s.state);
            let stopped = matches!(
                st,
                Some(InstanceState::Stopped | InstanceState::Crashed | InstanceState::Failed)
            );
            let movable = crate::ha::movable(i, &volumes, &pools);
            let live = movable
                && i.gpu_devices.is_empty()
                && st == Some(InstanceState::Running)
                && !rec.live.contains(&i.id);
            if i.migration.is_some() {
                busy = true; // moving
            } else if i.desired_state == DesiredState::Running && live {
                rec.live.push(i.id.clone());
                migrate_once(app, &i.id, MigrationKind::Live, "moving it cold").await?;
                busy = true;
            } else if i.desired_state == DesiredState::Running
                && !movable
                && rec.local_disks == LocalDiskAction::Migrate
                && !rec.cold.contains(&i.id)
            {
                rec.cold.push(i.id.clone());
                migrate_once(app, &i.id, MigrationKind::Cold, "stopping it here").await?;
                busy = true;
            } else if i.desired_state == DesiredState::Running {
                let list = if movable {
                    &mut rec.moving
                } else {
                    &mut rec.stopped
                };
                if !list.contains(&i.id) {
                    list.push(i.id.clone());
                }
                instance::stop(app, &i.id, kumo_types::StopInstanceRequest::default()).await?;
                busy = true;
            } else if rec.moving.contains(&i.id) {
                if stopped {
                    super::ha::relocate(app, &i.id, &h.id, super::ha::Move::Drain).await?;
                    rec.moving.retain(|m| m != &i.id);
                }
                busy = true;
            } else if !stopped {
                busy = true; // stopping
            }
        }
        if rec != before {
            save(app, &h.id, &rec).await?;
        }
        if !busy {
            let done = host::change(app, &h.id, |cur| {
                if cur.state != HostState::Draining {
                    return Ok(None);
                }
                cur.state = HostState::Maintenance;
                Ok(Some(vec![]))
            })
            .await?;
            if done.is_some() {
                super::event::record(
                    app,
                    &h.id,
                    "host.maintenance",
                    &format!(
                        "drained: {} instance(s) stopped here, the others moved",
                        rec.stopped.len()
                    ),
                )
                .await?;
            }
        }
    }
    Ok(())
}
