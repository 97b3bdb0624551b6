//! Executing the HA reconciler's steps ([`crate::ha::plan`]) against the store, each with
//! compare-and-swap and an event.

use std::collections::HashSet;

use kumo_store::{Compare, Op};
use kumo_types::{
    DesiredState, FenceState, Host, HostAllocation, HostFence, HostState, Instance, InstanceState,
    InstanceStatus, Result, Volume, now_rfc3339,
};

use super::{App, host, placement};
use crate::ha::{HaConfig, HostView, Step};
use crate::storeutil::{commit, encode, get_json, keys, list_json};

/// The HA reconciler: every [`crate::ha::TICK`], plan and execute. Runs on the control plane.
pub fn spawn(app: App, cfg: HaConfig) {
    tokio::spawn(async move {
        let mut reported: HashSet<String> = HashSet::new();
        loop {
            tokio::time::sleep(crate::ha::TICK).await;
            if !app.leader.is_leader() {
                continue;
            }
            if let Err(e) = tick(&app, &cfg, &mut reported).await {
                tracing::warn!(error = %e, "HA reconciler");
            }
            if let Err(e) = super::drain::tick(&app).await {
                tracing::warn!(error = %e, "drain reconciler");
            }
            if let Err(e) = super::migration::tick(&app).await {
                tracing::warn!(error = %e, "migration reconciler");
            }
        }
    });
}

async fn tick(app: &App, cfg: &HaConfig, reported: &mut HashSet<String>) -> Result<()> {
    let hosts: Vec<Host> = list_json(app.kv(), keys::HOSTS).await?;
    let mut views = Vec::with_capacity(hosts.len());
    for h in hosts {
        let alive = app
            .kv()
            .get(&keys::host_lease(&h.id))
            .await
            .map_err(crate::storeutil::store_err)?
            .is_some();
        let fence = get_json::<HostFence>(app.kv(), &keys::host_fence(&h.id))
            .await?
            .map(|(f, _)| f);
        views.push(HostView {
            host: h,
            alive,
            fence,
        });
    }
    let instances: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let pools = super::pool::all(app).await?;
    let volumes: Vec<Volume> = list_json(app.kv(), keys::VOLUMES).await?;
    let shared = |i: &Instance| crate::ha::movable(i, &volumes, &pools);
    let steps = crate::ha::plan(&views, &instances, chrono::Utc::now(), cfg, &shared);
    for step in steps {
        if let Err(e) = execute(app, &step, reported).await {
            tracing::warn!(?step, error = %e, "HA step failed; retrying");
        }
    }
    Ok(())
}

/// How a down host will be fenced.
fn fencing_plan(h: &Host) -> &'static str {
    match h.fencing {
        Some(_) => "powering off through its BMC",
        None => "no BMC: waiting for the self-fencing deadline",
    }
}

async fn set_fence(app: &App, id: &str, state: FenceState, message: &str) -> Result<()> {
    let key = keys::host_fence(id);
    let Some((mut f, rev)) = get_json::<HostFence>(app.kv(), &key).await? else {
        return Ok(());
    };
    f.state = state;
    f.message = Some(message.to_string());
    commit(
        app.kv(),
        vec![Compare::mod_revision(&key, rev)],
        vec![Op::put(&key, encode(&f)?)],
    )
    .await?;
    Ok(())
}

async fn execute(app: &App, step: &Step, reported: &mut HashSet<String>) -> Result<()> {
    match step {
        Step::MarkDown { host } => {
            let down = host::change(app, host, |h| {
                h.state = HostState::Down;
                let fence = HostFence {
                    state: FenceState::Pending,
                    down_at: now_rfc3339(),
                    message: Some(fencing_plan(h).into()),
                };
                Ok(Some(vec![Op::put(
                    keys::host_fence(&h.id),
                    encode(&fence)?,
                )]))
            })
            .await?;
            if let Some(h) = down {
                reported.retain(|k| !k.starts_with(&format!("{host}/")));
                super::event::record(
                    app,
                    host,
                    "host.down",
                    &format!(
                        "host `{}` missed its heartbeats for a lease period; fencing: {}",
                        h.name,
                        fencing_plan(&h)
                    ),
                )
                .await?;
            }
        }
        Step::PowerOff { host, fencing } => match crate::ha::power_off(fencing).await {
            Ok(()) => {
                set_fence(
                    app,
                    host,
                    FenceState::Fenced,
                    "powered off through its BMC (Redfish ForceOff)",
                )
                .await?;
                super::event::record(
                    app,
                    host,
                    "host.fenced",
                    "powered off through its BMC (Redfish ForceOff)",
                )
                .await?;
            }
            Err(e) => {
                let key = format!("{host}/bmc/{e}");
                if reported.insert(key) {
                    super::event::record(app, host, "host.fence_failed", &e.to_string()).await?;
                }
            }
        },
        Step::FencedByDeadline { host } => {
            let msg = "no BMC: the self-fencing deadline passed (its agent stops its HA instances \
                       once it has lost the control plane for a lease period)";
            set_fence(app, host, FenceState::Fenced, msg).await?;
            super::event::record(app, host, "host.fenced", msg).await?;
        }
        Step::MarkUp { host } => {
            let ready = host::change(app, host, |h| {
                h.state = HostState::Ready;
                Ok(Some(vec![Op::delete(keys::host_fence(&h.id))]))
            })
            .await?;
            if ready.is_some() {
                super::event::record(app, host, "host.recovered", "heartbeating again; ready")
                    .await?;
            }
        }
        Step::Restart { instance, from } => relocate(app, instance, from, Move::Failover).await?,
        Step::Stranded { instance, why } => {
            if reported.insert(format!("{instance}/stranded")) {
                super::event::record(app, instance, "instance.ha_stranded", why).await?;
            }
        }
    }
    Ok(())
}

/// Move an HA instance off its fenced host: a new host from the scheduler (the fenced one is not
/// live, so never chosen), the allocations moved, its shared volumes' home moved, status `pending`;
/// one transaction.
/// Why an instance moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Its host failed and was fenced.
    Failover,
    /// Its host is being drained: it was stopped there and starts on the new host.
    Drain,
}

pub async fn relocate(app: &App, id: &str, from: &str, why: Move) -> Result<()> {
    let ikey = keys::instance(id);
    // A migration in flight ends here: the instance is placed afresh.
    super::migration::abort(
        app,
        id,
        &format!("the instance is being moved off host {from}"),
    )
    .await?;
    let Some((inst, irev)) = get_json::<Instance>(app.kv(), &ikey).await? else {
        return Ok(());
    };
    if inst.host.as_deref() != Some(from) {
        return Ok(());
    }
    let record = placement::get(app, id).await?;
    // What it asked for at launch (selector, group, GPUs); it does not count as its own group member.
    let want = placement::want_for(app, &inst).await?;
    let plan = match placement::decide_for(app, &want, Some(id)).await {
        Ok(p) => p,
        Err(e) => {
            super::event::record(
                app,
                id,
                "instance.ha_waiting",
                &format!("no host can take it yet: {e}"),
            )
            .await?;
            return Ok(());
        }
    };
    let to = plan.decision.host.clone();
    let mut moved = inst.clone();
    moved.host = Some(to.clone());
    moved.gpu_devices = plan.decision.gpu_devices.clone();
    if why == Move::Drain {
        moved.desired_state = DesiredState::Running;
        moved.force_stop = false;
    }
    let mut rec = plan.record(&want);
    if let Some(r) = &record {
        rec.placement_group = r.placement_group.clone();
    }
    rec.decision.reason = match why {
        Move::Failover => format!(
            "HA restart after host {from} was fenced: {}",
            rec.decision.reason
        ),
        Move::Drain => format!(
            "cold-migrated off draining host {from}: {}",
            rec.decision.reason
        ),
    };
    let (mut compare, mut ops) = plan.ops(&moved, &rec)?;
    let (old_alloc, old_rev) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(from))
        .await?
        .unwrap_or_default();
    let (c, o) = host::alloc_update(from, &old_alloc, old_rev, &inst, false)?;
    compare.push(c);
    ops.push(o);
    compare.push(Compare::mod_revision(&ikey, irev));
    ops.push(Op::put(&ikey, encode(&moved)?));
    let status = InstanceStatus {
        state: if moved.desired_state == DesiredState::Running {
            InstanceState::Pending
        } else {
            InstanceState::Stopped
        },
        message: Some(match why {
            Move::Failover => format!("restarting on {to}: host {from} failed"),
            Move::Drain => format!("starting on {to}: host {from} is draining"),
        }),
        updated_at: now_rfc3339(),
        ..Default::default()
    };
    ops.push(Op::put(keys::instance_status(id), encode(&status)?));
    ops.extend(super::volume::follow_ops(app, id, &to).await?);
    if commit(app.kv(), compare, ops).await? {
        super::event::record(
            app,
            id,
            match why {
                Move::Failover => "instance.ha_restarted",
                Move::Drain => "instance.migrated",
            },
            &format!(
                "`{}` moved from host {from} to {} ({})",
                inst.name, plan.decision.host_name, plan.decision.reason
            ),
        )
        .await?;
    }
    Ok(())
}

/// Set or clear how host `id_or_name` is powered off when it fails.
pub async fn set_fencing(
    app: &App,
    id_or_name: &str,
    fencing: Option<kumo_types::Fencing>,
) -> Result<Host> {
    if let Some(f) = &fencing {
        let ok = (f.redfish_url.starts_with("http://") || f.redfish_url.starts_with("https://"))
            && f.redfish_url.len() <= 2048
            && !f.redfish_url.contains(char::is_whitespace);
        if !ok {
            return Err(kumo_types::Error::invalid(
                "redfish_url",
                format!(
                    "`{}`: an http(s) URL of the BMC's Redfish system, e.g. \
                     https://10.0.0.5/redfish/v1/Systems/1",
                    f.redfish_url
                ),
            ));
        }
        if f.password.is_some() && f.username.is_none() {
            return Err(kumo_types::Error::invalid(
                "username",
                "required with a password",
            ));
        }
    }
    let h = host::get(app, id_or_name).await?;
    for _ in 0..10 {
        let set = host::change(app, &h.id, |cur| {
            cur.fencing = fencing.clone();
            Ok(Some(vec![]))
        })
        .await?;
        if let Some(cur) = set {
            let what = match &fencing {
                Some(f) => format!("fencing through {}", f.redfish_url),
                None => "no BMC: self-fencing only".into(),
            };
            super::event::record(app, &cur.id, "host.fencing_set", &what).await?;
            return Ok(cur);
        }
    }
    Err(kumo_types::Error::unavailable(
        "host changed concurrently; retry",
    ))
}
