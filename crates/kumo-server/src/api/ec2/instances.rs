//! `DescribeInstances`, `StartInstances`, `StopInstances`, `RebootInstances`,
//! `TerminateInstances`: instances through `app::instance`, shown by [`super::render`].

use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{Instance, InstanceStatus, StopInstanceRequest};

use super::filter::{Filters, Paging};
use super::render::{self, Row, World};
use super::{Ec2Ctx, Ec2Result, error};
use crate::app::attrs::{self, Attrs};
use crate::app::instance::{self, extras};

/// `InstanceId.N`, each shaped like an instance ID (`InvalidInstanceID.Malformed` if not).
pub fn instance_ids(params: &Params, required: bool) -> Ec2Result<Vec<String>> {
    let ids = params.id_list("InstanceId")?;
    if required && ids.is_empty() {
        return Err(Ec2Error::missing_parameter("InstanceId"));
    }
    for id in &ids {
        check_id(id)?;
    }
    Ok(ids)
}

/// `InvalidInstanceID.Malformed` unless `id` is shaped like an instance ID.
pub fn check_id(id: &str) -> Ec2Result<()> {
    if !super::ids::is("i", id) {
        return Err(Ec2Error::new(
            "InvalidInstanceID.Malformed",
            format!("Invalid id: \"{id}\""),
            400,
        ));
    }
    Ok(())
}

pub async fn describe(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = instance_ids(params, false)?;
    if !ids.is_empty() && params.root().has("MaxResults") {
        return Err(Ec2Error::invalid_parameter_combination(
            "instancesSet",
            "maxResults",
        ));
    }
    let filters = Filters::read(params, render::FILTERS)?;
    let paging = Paging::read(params, 5..=1000)?;
    ctx.ready(params)?;
    let (world, mut rows) = if ids.is_empty() {
        let world = World::load(ctx).await?;
        let rows = render::rows(ctx, &world).await?;
        (world, rows)
    } else {
        // Named instances are read directly (Terraform's every refresh), not found in a listing.
        let (mut rows, missing) = render::rows_of(ctx, &ids).await?;
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
            return Err(Ec2Error::not_found_ids(ResourceKind::Instance, &missing));
        }
        rows.sort_by(|a, b| a.inst.id.cmp(&b.inst.id));
        let insts: Vec<&Instance> = rows.iter().map(|r| &r.inst).collect();
        (World::for_instances(ctx, &insts).await?, rows)
    };
    rows.retain(|r| filters.matches(|n| render::field(ctx, &world, r, n), &r.tags));
    let page = paging.page(rows, |r| r.inst.id.clone());
    // Group the page into reservations, in the order their first instance appears.
    let mut reservations: Vec<(String, Vec<&Row>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in &page.items {
        let rid = r.reservation_id();
        match index.get(&rid) {
            Some(&at) => {
                if let Some((_, members)) = reservations.get_mut(at) {
                    members.push(r);
                }
            }
            None => {
                index.insert(rid.clone(), reservations.len());
                reservations.push((rid, vec![r]));
            }
        }
    }
    let owner = ctx.account_id();
    ctx.respond(|w| {
        // An instance item is 3–4 KB.
        w.reserve(page.items.len() * 4096);
        w.set("reservationSet", &reservations, |w, (rid, members)| {
            w.text("reservationId", rid)
                .text("ownerId", &owner)
                .empty("groupSet")
                .set("instancesSet", members, |w, r| {
                    render::write_instance(w, ctx, &world, r);
                });
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

/// An instance the caller sees, with its status and attributes.
struct Found {
    inst: Instance,
    status: Option<InstanceStatus>,
    attrs: Attrs,
    /// Deleted within the hour: only its tombstone is left.
    gone: bool,
}

impl Found {
    fn state(&self) -> (i64, &'static str) {
        Row {
            inst: self.inst.clone(),
            status: self.status.clone(),
            deleted_at: self.gone.then(String::new),
            tags: Default::default(),
            attrs: Attrs::default(),
        }
        .state()
    }
}

/// Every instance of `ids` (live, or a tombstone when `tombstones`), or `InvalidInstanceID.NotFound`
/// naming all that are missing.
async fn resolve(ctx: &Ec2Ctx, ids: &[String], tombstones: bool) -> Ec2Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        match instance::find_in(&ctx.app, &ctx.scope, id).await {
            Ok((inst, _)) => {
                let status = instance::status(&ctx.app, &inst.id)
                    .await
                    .map_err(error::from_app)?;
                let attrs = attrs::get(&ctx.app, &inst.id)
                    .await
                    .map_err(error::from_app)?;
                found.push(Found {
                    inst,
                    status,
                    attrs,
                    gone: false,
                });
            }
            Err(kumo_types::Error::NotFound { .. }) => {
                let t = if tombstones {
                    extras::tombstone(&ctx.app, &ctx.scope, id)
                        .await
                        .map_err(error::from_app)?
                } else {
                    None
                };
                match t {
                    Some(t) => found.push(Found {
                        inst: t.instance,
                        status: None,
                        attrs: t.attrs,
                        gone: true,
                    }),
                    None => missing.push(id.as_str()),
                }
            }
            Err(e) => return Err(error::from_app(e)),
        }
    }
    if !missing.is_empty() {
        return Err(Ec2Error::not_found_ids(ResourceKind::Instance, &missing));
    }
    Ok(found)
}

/// The current state of instance `id` after an action (terminated if it is gone).
async fn current(ctx: &Ec2Ctx, f: &Found) -> Ec2Result<(i64, &'static str)> {
    match instance::find_in(&ctx.app, &ctx.scope, &f.inst.id).await {
        Ok((inst, _)) => {
            let status = instance::status(&ctx.app, &inst.id)
                .await
                .map_err(error::from_app)?;
            Ok(Found {
                inst,
                status,
                attrs: Attrs::default(),
                gone: false,
            }
            .state())
        }
        Err(kumo_types::Error::NotFound { .. }) => Ok((48, "terminated")),
        Err(e) => Err(error::from_app(e)),
    }
}

/// An EC2 state: code and name.
type State = (i64, &'static str);

fn state_change_set(w: &mut kumo_ec2::xml::XmlWriter, changes: &[(String, State, State)]) {
    w.set("instancesSet", changes, |w, (id, cur, prev)| {
        w.text("instanceId", id)
            .node("currentState", |w| {
                w.int("code", cur.0).text("name", cur.1);
            })
            .node("previousState", |w| {
                w.int("code", prev.0).text("name", prev.1);
            });
    });
}

fn not_permitted(id: &str, verb: &str, attr: &str) -> Ec2Error {
    Ec2Error::new(
        "OperationNotPermitted",
        format!(
            "The instance '{id}' may not be {verb}. Modify its '{attr}' instance attribute and \
             try again."
        ),
        400,
    )
}

fn incorrect_state(id: &str, wanted: &str) -> Ec2Error {
    Ec2Error::incorrect_instance_state(id, wanted)
}

pub async fn start(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = instance_ids(params, true)?;
    let _ = params.root().opt_str("AdditionalInfo");
    let found = resolve(ctx, &ids, true).await?;
    for f in &found {
        if f.gone || f.inst.deleting {
            return Err(incorrect_state(&f.inst.id, "started"));
        }
    }
    ctx.ready(params)?;
    let mut changes = Vec::new();
    for f in &found {
        ctx.target(&f.inst.id);
        instance::start_in(&ctx.app, &ctx.scope, &f.inst.id)
            .await
            .map_err(error::from_app)?;
        changes.push((f.inst.id.clone(), current(ctx, f).await?, f.state()));
    }
    ctx.respond(|w| state_change_set(w, &changes))
}

pub async fn stop(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = instance_ids(params, true)?;
    let force = params.root().opt_bool("Force")?.unwrap_or(false);
    if params.root().opt_bool("Hibernate")? == Some(true) {
        return Err(Ec2Error::unsupported(
            "kumo does not hibernate instances: stop them without Hibernate",
        ));
    }
    let found = resolve(ctx, &ids, true).await?;
    for f in &found {
        if f.gone || f.inst.deleting {
            return Err(incorrect_state(&f.inst.id, "stopped"));
        }
        if extras::check_stoppable(&f.inst, &f.attrs).is_err() {
            return Err(not_permitted(
                &f.inst.id,
                "stopped",
                extras::STOP_PROTECTION,
            ));
        }
    }
    ctx.ready(params)?;
    let mut changes = Vec::new();
    for f in &found {
        ctx.target(&f.inst.id);
        instance::stop_in(
            &ctx.app,
            &ctx.scope,
            &f.inst.id,
            StopInstanceRequest { force },
        )
        .await
        .map_err(error::from_app)?;
        changes.push((f.inst.id.clone(), current(ctx, f).await?, f.state()));
    }
    ctx.respond(|w| state_change_set(w, &changes))
}

pub async fn reboot(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = instance_ids(params, true)?;
    let found = resolve(ctx, &ids, true).await?;
    for f in &found {
        if f.state().1 != "running" {
            return Err(incorrect_state(&f.inst.id, "rebooted"));
        }
    }
    ctx.ready(params)?;
    for f in &found {
        ctx.target(&f.inst.id);
        instance::reboot(&ctx.app, &ctx.scope, &f.inst.id)
            .await
            .map_err(error::from_app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

pub async fn terminate(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = instance_ids(params, true)?;
    let found = resolve(ctx, &ids, true).await?;
    for f in &found {
        if !f.gone && extras::check_deletable(&f.inst, &f.attrs).is_err() {
            return Err(not_permitted(
                &f.inst.id,
                "terminated",
                extras::TERMINATION_PROTECTION,
            ));
        }
    }
    ctx.ready(params)?;
    let mut changes = Vec::new();
    for f in &found {
        ctx.target(&f.inst.id);
        if !f.gone && !f.inst.deleting {
            instance::delete(&ctx.app, &ctx.scope, &f.inst.id)
                .await
                .map_err(error::from_app)?;
        }
        let cur = if f.gone {
            (48, "terminated")
        } else {
            current(ctx, f).await?
        };
        changes.push((f.inst.id.clone(), cur, f.state()));
    }
    ctx.respond(|w| state_change_set(w, &changes))
}

/// `DescribeInstanceCreditSpecifications`: every instance is `unlimited` (kumo has no CPU credits
/// and never throttles a vCPU for lack of them). Terraform asks for it for `t2`/`t3` types.
pub async fn credit_specifications(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = instance_ids(params, false)?;
    let filters = Filters::read(params, &["instance-id"])?;
    let paging = Paging::read(params, 5..=1000)?;
    ctx.ready(params)?;
    let found = if ids.is_empty() {
        let mut all: Vec<String> = instance::list_all(&ctx.app, &ctx.scope)
            .await
            .map_err(error::from_app)?
            .into_iter()
            .map(|(i, _)| i.id)
            .collect();
        all.sort();
        all
    } else {
        resolve(ctx, &ids, false)
            .await?
            .into_iter()
            .map(|f| f.inst.id)
            .collect()
    };
    let shown: Vec<String> = found
        .into_iter()
        .filter(|id| filters.matches(|_| vec![id.clone()], &Default::default()))
        .collect();
    let page = paging.page(shown, String::clone);
    ctx.respond(|w| {
        w.set("instanceCreditSpecificationSet", &page.items, |w, id| {
            w.text("instanceId", id).text("cpuCredits", "unlimited");
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}
