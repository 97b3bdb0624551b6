//! Instances: run, list, show, start, stop, reboot, delete — desired state only. The agent on the
//! instance's host makes it real and reports status back ([`report_status`], [`finalize_delete`]).
//!
//! Fronts call the scoped functions (`run`, `list`, `find_in`, `get_in`, `start_in`, `stop_in`,
//! `reboot`, `delete`, `attach_nic`, `detach_nic`) with the caller's [`Scope`]. `find`, `get`,
//! `start` and `stop` without a scope are the cluster's own (drain, migration): they see every
//! project, as [`Scope::system`] does.

use std::collections::HashSet;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    DesiredState, Error, Instance, InstanceState, InstanceStatus, InstanceView, NicRequest, Page,
    QuotaResource, Result, RunInstanceRequest, StopInstanceRequest, ids, now_rfc3339, validate,
};

use super::attrs::Extra;
use super::quota::{self, Delta};
use super::scope::{self, Kind, Scope};
use super::{App, image, instance_type, key_pair, placement, port, security_group};
use crate::storeutil::{commit, encode, get_json, keys, store_err};

const KIND: &str = "instances";
/// AWS's limit for user data.
pub const MAX_USER_DATA: usize = 16 * 1024;
/// Most NICs per instance.
const MAX_NICS: usize = 8;
const MAX_ATTEMPTS: usize = 20;

pub async fn run(app: &App, scope: &Scope, req: RunInstanceRequest) -> Result<InstanceView> {
    run_with(app, scope, req, Extra::none(ids::INSTANCE)).await
}

/// [`run`] with the ID and the front end's own writes of `extra` (attributes, tags), in the
/// instance's creation transaction.
pub async fn run_with(
    app: &App,
    scope: &Scope,
    req: RunInstanceRequest,
    extra: Extra,
) -> Result<InstanceView> {
    validate::name("name", &req.name)?;
    if !ids::is_id(ids::INSTANCE, &extra.id) {
        return Err(Error::internal(format!(
            "`{}` is not an instance ID",
            extra.id
        )));
    }
    let project = scope.project.clone();
    // Everything the instance refers to is its project's own (images: or public).
    let within = Scope::within(&project);
    let name_key = keys::name(KIND, &project, &req.name);
    if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
        return Err(Error::conflict_field(
            "name",
            format!("an instance named `{}` already exists", req.name),
        ));
    }
    let image = image::get(app, &within, &req.image)
        .await
        .map_err(|e| match e {
            Error::NotFound { .. } => Error::invalid(
                "image",
                format!(
                    "no image with ID or name `{}` (see `kumo image list`)",
                    req.image
                ),
            ),
            e => e,
        })?;
    image::require_usable(&image, image::Use::Instance)?;
    let itype = instance_type::get(app, &req.instance_type)
        .await
        .map_err(|e| match e {
            Error::NotFound { .. } => Error::invalid(
                "instance_type",
                format!(
                    "no instance type `{}` (see `kumo instance-type list`)",
                    req.instance_type
                ),
            ),
            e => e,
        })?;
    // An ISO is installation media on a CD-ROM: the root disk starts blank, of any size.
    let min_gib = if image.format == Some(kumo_types::DiskFormat::Iso) {
        1
    } else {
        image.virtual_size_bytes.div_ceil(1 << 30).max(1)
    };
    let root_disk_gib = req
        .root_disk_gib
        .unwrap_or(itype.root_disk_gib.max(min_gib));
    if root_disk_gib < min_gib {
        return Err(Error::invalid(
            "root_disk_gib",
            format!(
                "{root_disk_gib} GiB is smaller than image `{}` ({min_gib} GiB)",
                image.name
            ),
        ));
    }
    if root_disk_gib > 65536 {
        return Err(Error::invalid("root_disk_gib", "must be at most 65536"));
    }
    let boot_volume = match &req.root_volume {
        Some(rv) => {
            let p = super::boot_volume::plan(app, &project, rv, &req.name, &image, root_disk_gib)
                .await?;
            p.check_name(app).await?;
            Some(p)
        }
        None => None,
    };
    if let Some(k) = &req.key_name {
        key_pair::get(app, &within, k)
            .await
            .map_err(|_| Error::invalid("key_name", format!("no key pair named `{k}`")))?;
    }
    if let Some(u) = &req.user_data
        && u.len() > MAX_USER_DATA
    {
        return Err(Error::invalid(
            "user_data",
            format!("{} bytes; the limit is {MAX_USER_DATA}", u.len()),
        ));
    }
    let nic_reqs: Vec<NicRequest> = match &req.nics {
        Some(n) if n.is_empty() => {
            return Err(Error::invalid(
                "nics",
                "give at least one NIC, or omit `nics`",
            ));
        }
        Some(n) if n.len() > MAX_NICS => {
            return Err(Error::invalid("nics", format!("at most {MAX_NICS} NICs")));
        }
        Some(n) => n.clone(),
        None => vec![NicRequest {
            network: req.network.clone(),
            ..Default::default()
        }],
    };
    // The project's default group is made (if missing) only when a new NIC will use it: a launch
    // whose NICs all name their groups must not create it (nor may a refused one).
    let needs_default = nic_reqs
        .iter()
        .any(|n| n.port.is_none() && n.security_groups.is_none());
    let default_sgs = if needs_default || req.security_groups.is_some() {
        port::groups_or_default(
            app,
            &project,
            "security_groups",
            req.security_groups.as_deref(),
        )
        .await?
    } else {
        Default::default()
    };
    let mut targets = Vec::new();
    for (i, n) in nic_reqs.iter().enumerate() {
        let field = format!("nics[{i}]");
        if n.port.is_some() {
            targets.push(NicTarget::Existing(field, n.clone()));
            continue;
        }
        let (net, subnet) = port::resolve_target_for(
            app,
            &project,
            &field,
            n.network.as_deref(),
            n.subnet.as_deref(),
            n.ipv4.as_deref(),
        )
        .await?;
        let sgs = match &n.security_groups {
            Some(r) => {
                security_group::resolve_all(app, &project, &format!("{field}.security_groups"), r)
                    .await?
            }
            None => default_sgs.clone(),
        };
        targets.push(NicTarget::New(
            field,
            Box::new((net, subnet)),
            n.ipv4.clone(),
            sgs,
        ));
    }
    let want = placement::Want {
        vcpus: itype.vcpus,
        memory_mib: itype.memory_mib,
        disk_gib: root_disk_gib,
        gpus: itype.gpus.clone(),
        ..Default::default()
    }
    .checked(
        app,
        req.placement_group.as_deref(),
        req.host_selector.as_ref(),
    )
    .await?;
    let id = extra.id.clone();
    let delta = Delta::of(QuotaResource::Instances, 1)
        .and(QuotaResource::Vcpus, u64::from(itype.vcpus))
        .and(QuotaResource::MemoryMib, itype.memory_mib)
        .and(
            QuotaResource::VolumeGib,
            boot_volume.as_ref().map_or(0, |b| b.size_gib()),
        );

    for attempt in 0..quota::ATTEMPTS {
        // Over quota: refused before placement is even decided.
        let (quota_cmp, quota_ops) = quota::charge(app, &project, &delta).await?;
        let plan = placement::decide(app, &want).await?;
        let host_id = plan.decision.host.clone();
        let mut compare = vec![Compare::absent(&name_key)];
        let mut ops = vec![Op::put(&name_key, id.clone())];
        compare.extend(extra.compare.iter().cloned());
        ops.extend(extra.ops.iter().cloned());
        compare.extend(quota_cmp);
        ops.extend(quota_ops);
        let mut nics = Vec::new();
        let mut pending = HashSet::new();
        for t in &targets {
            let (p, keep_port) = t.realize(app, &project, &id, &pending).await?;
            if let Ok(ip) = p.port.ipv4.parse() {
                pending.insert(ip);
            }
            let mut nic = p.nic();
            nic.keep_port = keep_port;
            nic.slot = nics.len() as u8;
            nics.push(nic);
            compare.extend(p.compare);
            ops.extend(p.ops);
        }
        if let Some(bv) = &boot_volume {
            let (c, o) = bv.ops(&id, &host_id)?;
            compare.extend(c);
            ops.extend(o);
        }
        let inst = Instance {
            id: id.clone(),
            name: req.name.clone(),
            project: project.clone(),
            image_id: image.id.clone(),
            instance_type: itype.name.clone(),
            vcpus: itype.vcpus,
            memory_mib: itype.memory_mib,
            root_disk_gib,
            boot_volume_id: boot_volume.as_ref().map(|b| b.id().to_string()),
            gpu_devices: plan.decision.gpu_devices.clone(),
            ha: req.ha.unwrap_or(false),
            ha_priority: req.ha_priority.unwrap_or(0),
            key_name: req.key_name.clone(),
            user_data: req.user_data.clone(),
            desired_state: if req.start == Some(false) {
                DesiredState::Stopped
            } else {
                DesiredState::Running
            },
            restart_policy: req.restart_policy.unwrap_or_default(),
            host: Some(host_id.clone()),
            nics,
            reboot_seq: 0,
            deleting: false,
            force_stop: false,
            migration: None,
            last_migration: None,
            created_at: now_rfc3339(),
        };
        let status = InstanceStatus {
            state: if inst.desired_state == DesiredState::Running {
                InstanceState::Pending
            } else {
                InstanceState::Stopped
            },
            updated_at: now_rfc3339(),
            ..Default::default()
        };
        let record = plan.record(&want);
        let (c, o) = plan.ops(&inst, &record)?;
        compare.extend(c);
        ops.extend(o);
        ops.push(Op::put(keys::instance(&id), encode(&inst)?));
        ops.push(Op::put(keys::instance_status(&id), encode(&status)?));
        let txn = Txn {
            compare,
            success: ops,
            failure: vec![Op::get(&name_key)],
        };
        let r = app.kv().txn(txn).await.map_err(store_err)?;
        if r.succeeded {
            let ips: Vec<&str> = inst.nics.iter().map(|n| n.ipv4.as_str()).collect();
            let host_name = &plan.decision.host_name;
            let msg = format!(
                "instance `{}` placed on {host_name} with {}",
                inst.name,
                ips.join(", ")
            );
            let p = Some(project.as_str());
            super::event::record_in(app, p, &id, "instance.created", &msg).await?;
            let why = format!("placed on {host_name}: {}", plan.decision.reason);
            super::event::record_in(app, p, &id, "instance.placed", &why).await?;
            return Ok(InstanceView::new(&inst, Some(&status)).with_placement(Some(&record)));
        }
        if matches!(
            r.results.first(),
            Some(kumo_store::OpResult::Get { kv: Some(_) })
        ) {
            return Err(Error::conflict_field(
                "name",
                format!("an instance named `{}` already exists", req.name),
            ));
        }
        // Lost a race for an address, the host's capacity or the project's usage: decide again (a
        // fixed address that was taken meanwhile is then reported precisely by `port::plan`).
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention placing the instance; retry",
    ))
}

/// Where a requested NIC goes: a new port (field, network, subnet, fixed address, groups), or an
/// existing unattached port named by the request.
enum NicTarget {
    New(
        String,
        Box<(kumo_types::Network, kumo_types::Subnet)>,
        Option<String>,
        Vec<String>,
    ),
    Existing(String, NicRequest),
}

impl NicTarget {
    /// The port this NIC gets for `instance_id` of `project` (a new one avoiding `pending`
    /// addresses, or the claimed existing one), and whether the port outlives the NIC.
    async fn realize(
        &self,
        app: &App,
        project: &str,
        instance_id: &str,
        pending: &HashSet<std::net::Ipv4Addr>,
    ) -> Result<(port::PortPlan, bool)> {
        match self {
            NicTarget::New(field, target, fixed, sgs) => {
                let (net, subnet) = &**target;
                let p = port::plan(
                    app,
                    field,
                    net,
                    subnet,
                    fixed.as_deref(),
                    sgs.clone(),
                    Some(instance_id),
                    None,
                    pending,
                )
                .await?;
                Ok((p, false))
            }
            NicTarget::Existing(field, req) => Ok((
                port::claim(app, project, field, req, instance_id).await?,
                true,
            )),
        }
    }
}

/// Hot-plug a NIC into an instance (a new port, or an existing unattached one); the agent plugs it
/// into the running VM.
pub async fn attach_nic(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: NicRequest,
) -> Result<InstanceView> {
    let (found, _) = find_in(app, scope, id_or_name).await?;
    let project = found.project.clone();
    let target = if req.port.is_some() {
        NicTarget::Existing("nic".into(), req.clone())
    } else {
        let (net, subnet) = port::resolve_target_for(
            app,
            &project,
            "nic",
            req.network.as_deref(),
            req.subnet.as_deref(),
            req.ipv4.as_deref(),
        )
        .await?;
        let sgs = port::groups_or_default(
            app,
            &project,
            "security_groups",
            req.security_groups.as_deref(),
        )
        .await?;
        NicTarget::New("nic".into(), Box::new((net, subnet)), req.ipv4.clone(), sgs)
    };
    for _ in 0..MAX_ATTEMPTS {
        let (mut inst, rev) = find_in(app, scope, &found.id).await?;
        not_deleting(&inst)?;
        if inst.nics.len() >= MAX_NICS {
            return Err(Error::conflict(format!(
                "instance `{}` already has the maximum of {MAX_NICS} NICs",
                inst.name
            )));
        }
        let slot = (0..MAX_NICS as u8)
            .find(|s| !inst.nics.iter().any(|n| n.slot == *s))
            .unwrap_or(0);
        let (p, keep_port) = target
            .realize(app, &project, &inst.id, &HashSet::new())
            .await?;
        let mut nic = p.nic();
        nic.keep_port = keep_port;
        nic.slot = slot;
        inst.nics.push(nic.clone());
        let key = keys::instance(&inst.id);
        let mut compare = p.compare;
        compare.push(Compare::mod_revision(&key, rev));
        let mut ops = p.ops;
        ops.push(Op::put(&key, encode(&inst)?));
        if commit(app.kv(), compare, ops).await? {
            super::event::record_in(
                app,
                Some(&inst.project),
                &inst.id,
                "instance.nic_attached",
                &format!("{} (port {})", nic.ipv4, nic.port_id),
            )
            .await?;
            let st = status(app, &inst.id).await?;
            return placement::view(app, &inst, st.as_ref()).await;
        }
    }
    Err(Error::unavailable(
        "too much contention attaching the NIC; retry",
    ))
}

/// Unplug a NIC (by port ID or its IPv4); its port goes with it unless it was attached with `port`.
pub async fn detach_nic(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    nic_ref: &str,
) -> Result<InstanceView> {
    for _ in 0..MAX_ATTEMPTS {
        let (mut inst, rev) = find_in(app, scope, id_or_name).await?;
        not_deleting(&inst)?;
        let Some(pos) = inst
            .nics
            .iter()
            .position(|n| n.port_id == nic_ref || n.ipv4 == nic_ref)
        else {
            return Err(Error::not_found("NIC", nic_ref));
        };
        if inst.nics.len() == 1 {
            return Err(Error::conflict("an instance keeps at least one NIC"));
        }
        let nic = inst.nics.remove(pos);
        let key = keys::instance(&inst.id);
        let (mut compare, mut ops) = port::release(app, &nic).await?;
        ops.push(Op::put(&key, encode(&inst)?));
        compare.push(Compare::mod_revision(&key, rev));
        if commit(app.kv(), compare, ops).await? {
            super::event::record_in(
                app,
                Some(&inst.project),
                &inst.id,
                "instance.nic_detached",
                &nic.ipv4,
            )
            .await?;
            let st = status(app, &inst.id).await?;
            return placement::view(app, &inst, st.as_ref()).await;
        }
    }
    Err(Error::unavailable(
        "too much contention detaching the NIC; retry",
    ))
}

const INSTANCES: Kind = Kind {
    prefix: ids::INSTANCE,
    names: KIND,
    key: keys::instance,
    what: "instance",
};

/// An instance by ID or name as `scope` sees it, with the mod revision of its record.
pub async fn find_in(app: &App, scope: &Scope, id_or_name: &str) -> Result<(Instance, i64)> {
    scope::find(app, scope, &INSTANCES, id_or_name).await
}

/// An instance by ID (any project) or name (default project), for the cluster's own work.
pub async fn find(app: &App, id_or_name: &str) -> Result<(Instance, i64)> {
    find_in(app, &Scope::system(), id_or_name).await
}

pub async fn status(app: &App, id: &str) -> Result<Option<InstanceStatus>> {
    Ok(get_json(app.kv(), &keys::instance_status(id))
        .await?
        .map(|(s, _)| s))
}

pub async fn get_in(app: &App, scope: &Scope, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find_in(app, scope, id_or_name).await?;
    let st = status(app, &inst.id).await?;
    placement::view(app, &inst, st.as_ref()).await
}

/// [`get_in`] for the cluster's own work (any project).
pub async fn get(app: &App, id_or_name: &str) -> Result<InstanceView> {
    get_in(app, &Scope::system(), id_or_name).await
}

pub async fn list(
    app: &App,
    scope: &Scope,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> Result<Page<InstanceView>> {
    let insts: Vec<Instance> = scope::list(app, scope, keys::INSTANCES).await?;
    let statuses: std::collections::HashMap<String, InstanceStatus> =
        crate::storeutil::statuses(app.kv(), keys::INSTANCE_STATUS).await?;
    let placements = placement::all(app).await?;
    let mut views: Vec<InstanceView> = insts
        .iter()
        .map(|i| InstanceView::new(i, statuses.get(&i.id)).with_placement(placements.get(&i.id)))
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    super::paginate(views, |v| v.name.clone(), limit, next_token)
}

/// Every instance `scope` lists, with its observed status, unsorted and unpaginated (for front
/// ends that filter and page themselves, such as EC2's `DescribeInstances`).
pub async fn list_all(app: &App, scope: &Scope) -> Result<Vec<(Instance, Option<InstanceStatus>)>> {
    let insts: Vec<Instance> = scope::list(app, scope, keys::INSTANCES).await?;
    let mut statuses: std::collections::HashMap<String, InstanceStatus> =
        crate::storeutil::statuses(app.kv(), keys::INSTANCE_STATUS).await?;
    Ok(insts
        .into_iter()
        .map(|i| {
            let st = statuses.remove(&i.id);
            (i, st)
        })
        .collect())
}

/// The volumes attached to `inst` — its boot volume and those in its volume slots — by point
/// reads (no scan of every volume).
pub async fn volumes_of(app: &App, inst: &Instance) -> Result<Vec<kumo_types::Volume>> {
    let mut ids: Vec<String> = inst.boot_volume_id.iter().cloned().collect();
    for kv in crate::storeutil::list_raw(app.kv(), &keys::volume_slots(&inst.id)).await? {
        ids.push(String::from_utf8_lossy(&kv.value).into_owned());
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some((v, _)) = get_json::<kumo_types::Volume>(app.kv(), &keys::volume(&id)).await?
            && v.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == inst.id)
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// Apply `f` to the instance record with compare-and-swap, retrying on races. `f` may also return
/// extra ops for the same transaction.
async fn update(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    f: impl Fn(&mut Instance) -> Result<Vec<Op>>,
) -> Result<InstanceView> {
    for _ in 0..MAX_ATTEMPTS {
        let (mut inst, rev) = find_in(app, scope, id_or_name).await?;
        let mut ops = f(&mut inst)?;
        let key = keys::instance(&inst.id);
        ops.push(Op::put(&key, encode(&inst)?));
        let r = app
            .kv()
            .txn(Txn {
                compare: vec![Compare::mod_revision(&key, rev)],
                success: ops,
                failure: vec![],
            })
            .await
            .map_err(store_err)?;
        if r.succeeded {
            let st = status(app, &inst.id).await?;
            return placement::view(app, &inst, st.as_ref()).await;
        }
    }
    Err(Error::unavailable(
        "too much contention updating the instance; retry",
    ))
}

fn not_deleting(i: &Instance) -> Result<()> {
    if i.deleting {
        return Err(Error::conflict(format!(
            "instance `{}` is being deleted",
            i.name
        )));
    }
    Ok(())
}

/// [`start_in`] for the cluster's own work (any project).
pub async fn start(app: &App, id_or_name: &str) -> Result<InstanceView> {
    start_in(app, &Scope::system(), id_or_name).await
}

pub async fn start_in(app: &App, scope: &Scope, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find_in(app, scope, id_or_name).await?;
    let prev = status(app, &inst.id).await?.unwrap_or_default();
    let v = update(app, scope, &inst.id, |i| {
        not_deleting(i)?;
        i.desired_state = DesiredState::Running;
        i.force_stop = false;
        if prev.state == InstanceState::Running {
            return Ok(vec![]);
        }
        // A start request clears a stopped/crashed/failed state so the agent starts it again.
        let st = InstanceStatus {
            state: InstanceState::Pending,
            updated_at: now_rfc3339(),
            reboot_seq: i.reboot_seq,
            boot_count: prev.boot_count,
            ..Default::default()
        };
        Ok(vec![Op::put(keys::instance_status(&i.id), encode(&st)?)])
    })
    .await?;
    super::event::record_in(
        app,
        Some(&v.project),
        &v.id,
        "instance.start_requested",
        "start requested",
    )
    .await?;
    Ok(v)
}

/// [`stop_in`] for the cluster's own work (any project).
pub async fn stop(app: &App, id_or_name: &str, req: StopInstanceRequest) -> Result<InstanceView> {
    stop_in(app, &Scope::system(), id_or_name, req).await
}

pub async fn stop_in(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: StopInstanceRequest,
) -> Result<InstanceView> {
    let v = update(app, scope, id_or_name, |i| {
        not_deleting(i)?;
        i.desired_state = DesiredState::Stopped;
        i.force_stop = req.force;
        Ok(vec![])
    })
    .await?;
    super::event::record_in(
        app,
        Some(&v.project),
        &v.id,
        "instance.stop_requested",
        if req.force {
            "forced stop requested"
        } else {
            "stop requested"
        },
    )
    .await?;
    Ok(v)
}

pub async fn reboot(app: &App, scope: &Scope, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find_in(app, scope, id_or_name).await?;
    let st = status(app, &inst.id).await?.unwrap_or_default();
    if inst.desired_state != DesiredState::Running || st.state != InstanceState::Running {
        return Err(Error::conflict(
            format!(
                "instance `{}` is {:?}, not running; only a running instance can be rebooted",
                inst.name, st.state
            )
            .to_lowercase(),
        ));
    }
    let v = update(app, scope, &inst.id, |i| {
        not_deleting(i)?;
        i.reboot_seq += 1;
        Ok(vec![])
    })
    .await?;
    super::event::record_in(
        app,
        Some(&v.project),
        &v.id,
        "instance.reboot_requested",
        "reboot requested",
    )
    .await?;
    Ok(v)
}

/// Delete an instance: refused while it is protected from termination ([`extras`]).
pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find_in(app, scope, id_or_name).await?;
    extras::check_deletable(&inst, &super::attrs::get(app, &inst.id).await?)?;
    delete_unprotected(app, scope, &inst.id).await
}

/// [`delete`] whatever the instance's termination protection says (a guest power-off with the
/// `terminate` shutdown behaviour).
pub async fn delete_unprotected(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
) -> Result<InstanceView> {
    let (inst, _) = find_in(app, scope, id_or_name).await?;
    let mut v = update(app, scope, &inst.id, |i| {
        i.deleting = true;
        i.desired_state = DesiredState::Stopped;
        i.force_stop = true;
        Ok(vec![])
    })
    .await?;
    super::event::record_in(
        app,
        Some(&inst.project),
        &inst.id,
        "instance.delete_requested",
        "delete requested",
    )
    .await?;
    if inst.host.is_none() {
        finalize_delete(app, &inst.id).await?;
        v.state = InstanceState::Deleting;
    }
    Ok(v)
}

/// Remove every trace of a deleted instance from the store: record, status, name, addresses, its
/// share of the host's allocation and of its project's quota — in one transaction.
pub async fn finalize_delete(app: &App, id: &str) -> Result<()> {
    for attempt in 0..quota::ATTEMPTS {
        let Some((inst, rev)) = get_json::<Instance>(app.kv(), &keys::instance(id)).await? else {
            return Ok(());
        };
        if !inst.deleting {
            return Err(Error::conflict(format!(
                "instance {id} is not being deleted"
            )));
        }
        let key = keys::instance(id);
        let (mut compare, mut ops) =
            quota::credit(app, &inst.project, &Delta::instance(&inst)).await?;
        compare.push(Compare::mod_revision(&key, rev));
        ops.extend([
            Op::delete(&key),
            Op::delete(keys::instance_status(id)),
            Op::delete(keys::name(KIND, &inst.project, &inst.name)),
        ]);
        // Ports made with the instance go (their floating IPs stay allocated, unassociated); ports
        // attached with `port` stay, detached. Volumes are detached, or deleted with
        // `delete_on_termination`.
        for n in &inst.nics {
            let (c, o) = port::release(app, n).await?;
            compare.extend(c);
            ops.extend(o);
        }
        let (c, o) = super::volume::release_for(app, &inst).await?;
        compare.extend(c);
        ops.extend(o);
        let (c, o) = placement::release(app, &inst).await?;
        compare.extend(c);
        ops.extend(o);
        // What EC2 shows of it for an hour; its attributes and tags go.
        ops.extend(extras::tombstone_ops(app, &inst).await?);
        let r = app
            .kv()
            .txn(Txn {
                compare,
                success: ops,
                failure: vec![],
            })
            .await
            .map_err(store_err)?;
        if r.succeeded {
            return super::event::record_in(
                app,
                Some(&inst.project),
                id,
                "instance.deleted",
                &format!("instance `{}` deleted", inst.name),
            )
            .await;
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention deleting the instance; retry",
    ))
}

/// Record what the agent observed. Ignored for instances that no longer exist.
pub async fn report_status(app: &App, id: &str, mut st: InstanceStatus) -> Result<()> {
    if st.updated_at.is_empty() {
        st.updated_at = now_rfc3339();
    }
    let key = keys::instance(id);
    let mut compare = vec![Compare {
        key: key.clone(),
        op: kumo_store::CompareOp::Greater,
        target: kumo_store::CompareTarget::CreateRevision(0),
    }];
    if let Some(from) = &st.host {
        // Only the instance's current host speaks for it (a moved instance's old host may report
        // late); the compare keeps a move in between from slipping through.
        let Some((inst, rev)) = get_json::<Instance>(app.kv(), &key).await? else {
            return Ok(());
        };
        if inst.host.as_deref() != Some(from.as_str()) {
            return Ok(());
        }
        compare.push(Compare::mod_revision(&key, rev));
    }
    let txn = Txn {
        compare,
        success: vec![Op::put(keys::instance_status(id), encode(&st)?)],
        failure: vec![],
    };
    if app.kv().txn(txn).await.map_err(store_err)?.succeeded {
        extras::after_status(app, id, &st).await?;
    }
    Ok(())
}

/// Replace an instance's user data (only while it is stopped: the guest reads it at boot).
pub async fn set_user_data(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    user_data: Option<String>,
) -> Result<InstanceView> {
    if let Some(u) = &user_data
        && u.len() > MAX_USER_DATA
    {
        return Err(Error::invalid(
            "user_data",
            format!("{} bytes; the limit is {MAX_USER_DATA}", u.len()),
        ));
    }
    let (inst, _) = find_in(app, scope, id_or_name).await?;
    let st = status(app, &inst.id).await?.unwrap_or_default();
    if inst.desired_state != DesiredState::Stopped || st.state != InstanceState::Stopped {
        return Err(Error::conflict(format!(
            "instance `{}` must be stopped to change its user data",
            inst.name
        )));
    }
    update(app, scope, &inst.id, |i| {
        not_deleting(i)?;
        if i.desired_state != DesiredState::Stopped {
            return Err(Error::conflict(format!(
                "instance `{}` is starting; stop it to change its user data",
                i.name
            )));
        }
        i.user_data = user_data.clone();
        Ok(vec![])
    })
    .await
}

mod assign;
pub mod extras;

pub use assign::{assignments, topology, vxlan_peers};
