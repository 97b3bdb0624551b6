//! Placing an instance: read the scheduler's inputs (hosts with their allocations, where the
//! instance's placement group runs), decide with the pure [`crate::scheduler::place`], and give the
//! compares and ops that make the decision durable inside the instance's creation transaction:
//!
//! - the host's allocation (`/host-alloc/<host>`, mod revision compared) gains the instance's vCPUs,
//!   memory, disk and GPU addresses, so concurrent placements can neither overshoot the host nor
//!   take the same GPU;
//! - the group's record (mod revision compared) gains the member, so concurrent members of a hard
//!   group cannot both see the group as it was;
//! - `/instance-placement/<id>` records what the instance asked for and the scheduler's explanation
//!   (shown by `instance show`).
//!
//! A lost race fails the transaction; `instance::run` decides again. [`release`] undoes all three
//! in the deletion transaction. A request nothing can take is refused (`InsufficientCapacity`,
//! naming the filter and what it eliminated); instances are never left pending for want of a host.

use std::collections::{BTreeMap, HashMap};

use kumo_store::{Compare, Op};
use kumo_types::{
    Error, GpuRequest, HostAllocation, Instance, InstancePlacement, InstanceStatus, InstanceView,
    PlacementDecision, PlacementGroup, PlacementPolicy, Result, now_rfc3339,
};

use super::{App, host, placement_group};
use crate::scheduler::{self, Candidate, Decision, RequiredHost};
use crate::storeutil::{encode, get_json, keys};

/// What an instance asks of the scheduler (checked; the same for every attempt).
#[derive(Debug, Clone, Default)]
pub struct Want {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpus: Option<GpuRequest>,
    pub host_selector: BTreeMap<String, String>,
    /// Placement group name.
    pub group: Option<String>,
    pub required_host: Option<RequiredHost>,
    /// A host it must not go to (the one a migration moves it from).
    pub avoid_host: Option<String>,
}

impl Want {
    /// Check the request's placement fields: the group must exist, the selector's labels be valid.
    pub async fn checked(
        mut self,
        app: &App,
        group: Option<&str>,
        host_selector: Option<&BTreeMap<String, String>>,
    ) -> Result<Want> {
        if let Some(sel) = host_selector {
            if sel.len() > kumo_types::MAX_LABELS {
                return Err(Error::invalid(
                    "host_selector",
                    format!("{} labels; at most {}", sel.len(), kumo_types::MAX_LABELS),
                ));
            }
            for (k, v) in sel {
                kumo_types::validate_label("host_selector", k, v)?;
            }
            self.host_selector = sel.clone();
        }
        if let Some(g) = group {
            placement_group::get(app, g).await.map_err(|e| match e {
                Error::NotFound { .. } => Error::invalid(
                    "placement_group",
                    format!("no placement group `{g}` (see `kumo placement-group list`)"),
                ),
                e => e,
            })?;
            self.group = Some(g.to_string());
        }
        Ok(self)
    }
}

/// A decision and what its transaction must compare.
pub struct Plan {
    pub decision: Decision,
    allocated: HostAllocation,
    alloc_rev: i64,
    group: Option<(PlacementGroup, i64)>,
    policy: PlacementPolicy,
}

/// What an instance that is already placed asks of the scheduler when it must move (HA restart,
/// drain): its resources, its instance type's GPUs, and the host selector and placement group of
/// its placement record. Decide with [`decide_for`] so that it does not count as a member of its
/// own group.
pub async fn want_for(app: &App, inst: &Instance) -> Result<Want> {
    let record = get(app, &inst.id).await?;
    let gpus = if inst.gpu_devices.is_empty() {
        None
    } else {
        super::instance_type::get(app, &inst.instance_type)
            .await
            .ok()
            .and_then(|t| t.gpus)
    };
    Ok(Want {
        vcpus: inst.vcpus,
        memory_mib: inst.memory_mib,
        disk_gib: inst.root_disk_gib,
        gpus,
        host_selector: record
            .as_ref()
            .map(|r| r.host_selector.clone())
            .unwrap_or_default(),
        group: record.and_then(|r| r.placement_group),
        required_host: None,
        avoid_host: None,
    })
}

/// Decide where `want` goes, on the store's current state.
pub async fn decide(app: &App, want: &Want) -> Result<Plan> {
    decide_for(app, want, None).await
}

/// Like [`decide`], for instance `moving` that is already a member of `want`'s group (it is not
/// counted where it runs now). [`Plan::ops`] keeps its membership as it is.
pub async fn decide_for(app: &App, want: &Want, moving: Option<&str>) -> Result<Plan> {
    let (hosts, revs): (Vec<Candidate>, Vec<i64>) = host::candidates(app)
        .await?
        .into_iter()
        .filter(|(h, _)| want.avoid_host.as_deref() != Some(h.id.as_str()))
        .unzip();
    let group = match &want.group {
        Some(name) => Some(
            placement_group::get_rev(app, name)
                .await
                .map_err(|e| match e {
                    Error::NotFound { .. } => Error::conflict_field(
                        "placement_group",
                        format!("placement group `{name}` was deleted meanwhile"),
                    ),
                    e => e,
                })?,
        ),
        None => None,
    };
    let sgroup = match &group {
        Some((g, _)) => Some(scheduler::Group {
            name: g.name.clone(),
            strategy: g.strategy,
            enforcement: g.enforcement,
            members: placement_group::member_hosts(app, g, moving).await?,
        }),
        None => None,
    };
    let req = scheduler::Request {
        vcpus: want.vcpus,
        memory_mib: want.memory_mib,
        disk_gib: want.disk_gib,
        gpus: want.gpus.clone(),
        host_selector: want.host_selector.clone(),
        group: sgroup,
        required_host: want.required_host.clone(),
        policy: app.cfg.placement_policy,
    };
    let decision = scheduler::place(&hosts, &req, &app.cfg.overcommit).map_err(|u| {
        Error::InsufficientCapacity {
            resource: u.resource.to_string(),
            message: u.message,
        }
    })?;
    let i = hosts
        .iter()
        .position(|h| h.id == decision.host)
        .ok_or_else(|| Error::internal("the scheduler chose an unknown host"))?;
    Ok(Plan {
        allocated: hosts[i].allocated.clone(),
        alloc_rev: revs[i],
        decision,
        group,
        policy: req.policy,
    })
}

impl Plan {
    /// The record `instance show` explains the placement from.
    pub fn record(&self, want: &Want) -> InstancePlacement {
        let d = &self.decision;
        InstancePlacement {
            placement_group: want.group.clone(),
            host_selector: want.host_selector.clone(),
            decision: PlacementDecision {
                host: d.host.clone(),
                host_name: d.host_name.clone(),
                policy: self.policy,
                reason: d.reason.clone(),
                considered: u32::try_from(d.considered).unwrap_or(u32::MAX),
                eligible: u32::try_from(d.eligible).unwrap_or(u32::MAX),
                at: now_rfc3339(),
            },
        }
    }

    /// Compares and ops that place `inst` (its `host` and `gpu_devices` set from the decision),
    /// for its creation transaction.
    pub fn ops(
        &self,
        inst: &Instance,
        record: &InstancePlacement,
    ) -> Result<(Vec<Compare>, Vec<Op>)> {
        let (c, o) = host::alloc_update(
            &self.decision.host,
            &self.allocated,
            self.alloc_rev,
            inst,
            true,
        )?;
        let mut compare = vec![c];
        let mut ops = vec![o];
        if let Some((g, rev)) = &self.group {
            let mut g = g.clone();
            // Idempotent: an instance that moves (HA restart, drain) is a member already.
            if !g.members.contains(&inst.id) {
                g.members.push(inst.id.clone());
            }
            let key = keys::placement_group(&g.name);
            compare.push(Compare::mod_revision(&key, *rev));
            ops.push(Op::put(&key, encode(&g)?));
        }
        ops.push(Op::put(keys::instance_placement(&inst.id), encode(record)?));
        Ok((compare, ops))
    }
}

/// Compares and ops that undo `inst`'s placement in its deletion transaction: its share of the
/// host's allocation (GPUs included), its group membership, its placement record.
pub async fn release(app: &App, inst: &Instance) -> Result<(Vec<Compare>, Vec<Op>)> {
    let mut compare = vec![];
    let mut ops = vec![Op::delete(keys::instance_placement(&inst.id))];
    if let Some(h) = &inst.host {
        let (alloc, arev) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(h))
            .await?
            .unwrap_or_default();
        let (c, op) = host::alloc_update(h, &alloc, arev, inst, false)?;
        compare.push(c);
        ops.push(op);
    }
    if let Some(p) = get(app, &inst.id).await?
        && let Some(name) = p.placement_group
        && let Some((mut g, rev)) =
            get_json::<PlacementGroup>(app.kv(), &keys::placement_group(&name)).await?
        && g.members.contains(&inst.id)
    {
        g.members.retain(|m| m != &inst.id);
        let key = keys::placement_group(&name);
        compare.push(Compare::mod_revision(&key, rev));
        ops.push(Op::put(&key, encode(&g)?));
    }
    Ok((compare, ops))
}

/// An instance's placement record.
pub async fn get(app: &App, id: &str) -> Result<Option<InstancePlacement>> {
    Ok(get_json(app.kv(), &keys::instance_placement(id))
        .await?
        .map(|(p, _)| p))
}

/// Every placement record, by instance ID.
pub async fn all(app: &App) -> Result<HashMap<String, InstancePlacement>> {
    crate::storeutil::statuses(app.kv(), keys::INSTANCE_PLACEMENT).await
}

/// The API view of an instance, with its placement.
pub async fn view(app: &App, inst: &Instance, st: Option<&InstanceStatus>) -> Result<InstanceView> {
    let p = get(app, &inst.id).await?;
    Ok(InstanceView::new(inst, st).with_placement(p.as_ref()))
}
