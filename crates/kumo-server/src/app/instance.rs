//! Instances: run, list, show, start, stop, reboot, delete — desired state only. The agent on the
//! instance's host makes it real and reports status back ([`report_status`], [`finalize_delete`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    Assignment, AssignmentSnapshot, DEFAULT_PROJECT, DesiredState, Error, Instance, InstanceState,
    InstanceStatus, InstanceView, NetworkTopology, NicRequest, Page, Result, RunInstanceRequest,
    StopInstanceRequest, ids, now_rfc3339, validate,
};

use super::{App, image, instance_type, key_pair, network, placement, port, security_group};
use crate::storeutil::{commit, encode, get_json, keys, list_json, store_err};

const KIND: &str = "instances";
/// AWS's limit for user data.
pub const MAX_USER_DATA: usize = 16 * 1024;
/// Most NICs per instance.
const MAX_NICS: usize = 8;
const MAX_ATTEMPTS: usize = 20;

pub async fn run(app: &App, req: RunInstanceRequest) -> Result<InstanceView> {
    validate::name("name", &req.name)?;
    let name_key = keys::name(KIND, DEFAULT_PROJECT, &req.name);
    if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
        return Err(Error::conflict_field(
            "name",
            format!("an instance named `{}` already exists", req.name),
        ));
    }
    let image = image::get(app, &req.image).await.map_err(|e| match e {
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
            let p = super::boot_volume::plan(app, rv, &req.name, &image, root_disk_gib).await?;
            p.check_name(app).await?;
            Some(p)
        }
        None => None,
    };
    if let Some(k) = &req.key_name {
        key_pair::get(app, k)
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
    let default_sgs =
        port::groups_or_default(app, "security_groups", req.security_groups.as_deref()).await?;
    let mut targets = Vec::new();
    for (i, n) in nic_reqs.iter().enumerate() {
        let field = format!("nics[{i}]");
        if n.port.is_some() {
            targets.push(NicTarget::Existing(field, n.clone()));
            continue;
        }
        let (net, subnet) = port::resolve_target_for(
            app,
            &field,
            n.network.as_deref(),
            n.subnet.as_deref(),
            n.ipv4.as_deref(),
        )
        .await?;
        let sgs = match &n.security_groups {
            Some(r) => {
                security_group::resolve_all(app, &format!("{field}.security_groups"), r).await?
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
    let id = ids::new_id(ids::INSTANCE);

    for _ in 0..MAX_ATTEMPTS {
        let plan = placement::decide(app, &want).await?;
        let host_id = plan.decision.host.clone();
        let mut compare = vec![Compare::absent(&name_key)];
        let mut ops = vec![Op::put(&name_key, id.clone())];
        let mut nics = Vec::new();
        let mut pending = HashSet::new();
        for t in &targets {
            let (p, keep_port) = t.realize(app, &id, &pending).await?;
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
            project: DEFAULT_PROJECT.into(),
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
            super::event::record(app, &id, "instance.created", &msg).await?;
            let why = format!("placed on {host_name}: {}", plan.decision.reason);
            super::event::record(app, &id, "instance.placed", &why).await?;
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
        // Lost a race for an address or the host's capacity: decide again (a fixed address that was
        // taken meanwhile is then reported precisely by `port::plan`).
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
    /// The port this NIC gets for `instance_id` (a new one avoiding `pending` addresses, or the
    /// claimed existing one), and whether the port outlives the NIC.
    async fn realize(
        &self,
        app: &App,
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
            NicTarget::Existing(field, req) => {
                Ok((port::claim(app, field, req, instance_id).await?, true))
            }
        }
    }
}

/// Hot-plug a NIC into an instance (a new port, or an existing unattached one); the agent plugs it
/// into the running VM.
pub async fn attach_nic(app: &App, id_or_name: &str, req: NicRequest) -> Result<InstanceView> {
    let target = if req.port.is_some() {
        NicTarget::Existing("nic".into(), req.clone())
    } else {
        let (net, subnet) = port::resolve_target_for(
            app,
            "nic",
            req.network.as_deref(),
            req.subnet.as_deref(),
            req.ipv4.as_deref(),
        )
        .await?;
        let sgs =
            port::groups_or_default(app, "security_groups", req.security_groups.as_deref()).await?;
        NicTarget::New("nic".into(), Box::new((net, subnet)), req.ipv4.clone(), sgs)
    };
    for _ in 0..MAX_ATTEMPTS {
        let (mut inst, rev) = find(app, id_or_name).await?;
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
        let (p, keep_port) = target.realize(app, &inst.id, &HashSet::new()).await?;
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
            super::event::record(
                app,
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
pub async fn detach_nic(app: &App, id_or_name: &str, nic_ref: &str) -> Result<InstanceView> {
    for _ in 0..MAX_ATTEMPTS {
        let (mut inst, rev) = find(app, id_or_name).await?;
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
            super::event::record(app, &inst.id, "instance.nic_detached", &nic.ipv4).await?;
            let st = status(app, &inst.id).await?;
            return placement::view(app, &inst, st.as_ref()).await;
        }
    }
    Err(Error::unavailable(
        "too much contention detaching the NIC; retry",
    ))
}

/// Find an instance by ID or name, with the mod revision of its record.
pub async fn find(app: &App, id_or_name: &str) -> Result<(Instance, i64)> {
    let id =
        crate::storeutil::resolve_id(app.kv(), ids::INSTANCE, KIND, DEFAULT_PROJECT, id_or_name)
            .await?
            .ok_or_else(|| Error::not_found("instance", id_or_name))?;
    get_json(app.kv(), &keys::instance(&id))
        .await?
        .ok_or_else(|| Error::not_found("instance", id_or_name))
}

pub async fn status(app: &App, id: &str) -> Result<Option<InstanceStatus>> {
    Ok(get_json(app.kv(), &keys::instance_status(id))
        .await?
        .map(|(s, _)| s))
}

pub async fn get(app: &App, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find(app, id_or_name).await?;
    let st = status(app, &inst.id).await?;
    placement::view(app, &inst, st.as_ref()).await
}

pub async fn list(
    app: &App,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> Result<Page<InstanceView>> {
    let insts: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
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

/// Apply `f` to the instance record with compare-and-swap, retrying on races. `f` may also return
/// extra ops for the same transaction.
async fn update(
    app: &App,
    id_or_name: &str,
    f: impl Fn(&mut Instance) -> Result<Vec<Op>>,
) -> Result<InstanceView> {
    for _ in 0..MAX_ATTEMPTS {
        let (mut inst, rev) = find(app, id_or_name).await?;
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

pub async fn start(app: &App, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find(app, id_or_name).await?;
    let prev = status(app, &inst.id).await?.unwrap_or_default();
    let v = update(app, &inst.id, |i| {
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
    super::event::record(app, &v.id, "instance.start_requested", "start requested").await?;
    Ok(v)
}

pub async fn stop(app: &App, id_or_name: &str, req: StopInstanceRequest) -> Result<InstanceView> {
    let v = update(app, id_or_name, |i| {
        not_deleting(i)?;
        i.desired_state = DesiredState::Stopped;
        i.force_stop = req.force;
        Ok(vec![])
    })
    .await?;
    super::event::record(
        app,
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

pub async fn reboot(app: &App, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find(app, id_or_name).await?;
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
    let v = update(app, &inst.id, |i| {
        not_deleting(i)?;
        i.reboot_seq += 1;
        Ok(vec![])
    })
    .await?;
    super::event::record(app, &v.id, "instance.reboot_requested", "reboot requested").await?;
    Ok(v)
}

pub async fn delete(app: &App, id_or_name: &str) -> Result<InstanceView> {
    let (inst, _) = find(app, id_or_name).await?;
    let mut v = update(app, &inst.id, |i| {
        i.deleting = true;
        i.desired_state = DesiredState::Stopped;
        i.force_stop = true;
        Ok(vec![])
    })
    .await?;
    super::event::record(
        app,
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

/// Remove every trace of a deleted instance from the store: record, status, name, addresses, and its
/// share of the host's allocation — in one transaction.
pub async fn finalize_delete(app: &App, id: &str) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        let Some((inst, rev)) = get_json::<Instance>(app.kv(), &keys::instance(id)).await? else {
            return Ok(());
        };
        let key = keys::instance(id);
        let mut compare = vec![Compare::mod_revision(&key, rev)];
        let mut ops = vec![
            Op::delete(&key),
            Op::delete(keys::instance_status(id)),
            Op::delete(keys::name(KIND, &inst.project, &inst.name)),
        ];
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
            return super::event::record(
                app,
                id,
                "instance.deleted",
                &format!("instance `{}` deleted", inst.name),
            )
            .await;
        }
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
    app.kv().txn(txn).await.map_err(store_err)?;
    Ok(())
}

/// The whole network topology (every agent gets all of it; see `kumo_types::NetworkTopology`).
pub async fn topology(app: &App) -> Result<NetworkTopology> {
    let networks: Vec<kumo_types::Network> = list_json(app.kv(), keys::NETWORKS).await?;
    let insts: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let hosts: Vec<kumo_types::Host> = list_json(app.kv(), keys::HOSTS).await?;
    Ok(NetworkTopology {
        vxlan_peers: vxlan_peers(&networks, &insts, &hosts),
        networks,
        subnets: list_json(app.kv(), keys::SUBNETS).await?,
        ports: list_json(app.kv(), keys::PORTS).await?,
        routers: list_json(app.kv(), keys::ROUTERS).await?,
        security_groups: list_json(app.kv(), keys::SECURITY_GROUPS).await?,
        floating_ips: list_json(app.kv(), keys::FLOATING_IPS).await?,
    })
}

/// Per VXLAN network, the tunnel endpoints of the hosts running instances with a NIC on it (pure).
pub fn vxlan_peers(
    networks: &[kumo_types::Network],
    insts: &[Instance],
    hosts: &[kumo_types::Host],
) -> BTreeMap<String, Vec<String>> {
    let tunnel: HashMap<&str, &str> = hosts
        .iter()
        .filter_map(|h| Some((h.id.as_str(), h.inventory.tunnel_ip.as_deref()?)))
        .collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for net in networks
        .iter()
        .filter(|n| n.kind == kumo_types::NetworkKind::Vxlan)
    {
        let mut ips: Vec<String> = insts
            .iter()
            .filter(|i| i.nics.iter().any(|n| n.network_id == net.id))
            // A migration's target needs the overlay before the guest arrives.
            .flat_map(|i| {
                [
                    i.host.as_deref(),
                    i.migration.as_ref().map(|m| m.target_host.as_str()),
                ]
            })
            .filter_map(|h| tunnel.get(h?).map(|ip| ip.to_string()))
            .collect();
        ips.sort();
        ips.dedup();
        if !ips.is_empty() {
            out.insert(net.id.clone(), ips);
        }
    }
    out
}

/// Everything assigned to `host_id`, resolved for the agent.
pub async fn assignments(app: &App, host_id: &str) -> Result<AssignmentSnapshot> {
    let revision = app.kv().revision().await.map_err(store_err)?;
    let insts: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let all_pools = super::pool::all(app).await?;
    let mut out = Vec::new();
    // Its own instances, and those migrating to it (the worker receives them).
    for inst in insts.into_iter().filter(|i| {
        i.host.as_deref() == Some(host_id)
            || i.migration
                .as_ref()
                .is_some_and(|m| m.target_host == host_id)
    }) {
        let image = image::get(app, &inst.image_id).await?;
        let mut networks = Vec::new();
        for n in &inst.nics {
            networks.push(network::get(app, &n.network_id).await?);
        }
        let key_pair = match &inst.key_name {
            Some(k) => key_pair::get(app, k).await.ok(),
            None => None,
        };
        let st = status(app, &inst.id).await?;
        let volumes = super::volume::attached_to(app, &inst.id).await?;
        let snapshots = super::volume::snapshots_of(app, &volumes).await?;
        out.push(Assignment {
            instance: inst,
            image,
            networks,
            key_pair,
            status: st,
            pools: super::pool::used_by(&all_pools, &volumes),
            volumes,
            snapshots,
        });
    }
    // Volumes whose files live here; the worker of a running instance owns its attached ones' online
    // changes.
    let running: HashSet<String> = out
        .iter()
        .filter(|x| !x.instance.deleting && x.instance.desired_state == DesiredState::Running)
        .filter(|x| x.instance.host.as_deref() == Some(host_id))
        .map(|x| x.instance.id.clone())
        .collect();
    let volumes = super::volume::assignments(app, host_id, &running).await?;
    Ok(AssignmentSnapshot {
        revision,
        assignments: out,
        topology: topology(app).await?,
        volumes,
        pools: super::pool::custom(app).await?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod vxlan_peer_tests {
    use super::*;

    fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn peers_are_the_tunnel_endpoints_of_hosts_with_ports_on_the_network() {
        let net = |id: &str, kind: &str| -> kumo_types::Network {
            json(serde_json::json!({
                "id": id, "name": id, "project": "default", "kind": kind, "bridge": "kb",
                "mtu": 1450, "vni": 7, "created_at": "t"
            }))
        };
        let host = |id: &str, tunnel: Option<&str>| -> kumo_types::Host {
            json(serde_json::json!({
                "id": id, "name": id, "state": "ready", "accel": "tcg", "registered_at": "t",
                "last_heartbeat": "t",
                "inventory": {"hostname": id, "cpus": 2, "memory_mib": 1024, "disk_free_bytes": 0,
                    "disk_total_bytes": 0, "qemu_version": "7.2", "kernel": "6.1",
                    "kvm_usable": false, "kvm_probe": "", "tunnel_ip": tunnel}
            }))
        };
        let inst = |id: &str, host: &str, nets: &[&str]| -> Instance {
            let mut i: Instance = json(serde_json::json!({
                "id": id, "name": id, "project": "default", "image_id": "img", "instance_type": "nano",
                "vcpus": 1, "memory_mib": 128, "root_disk_gib": 1, "desired_state": "running",
                "host": host, "created_at": "t", "nics": []
            }));
            for n in nets {
                i.nics.push(json(serde_json::json!({
                    "port_id": "p", "network_id": n, "mac": "52:54:00:00:00:01", "ipv4": "198.18.0.2"
                })));
            }
            i
        };
        let networks = vec![
            net("net-x", "vxlan"),
            net("net-b", "bridge"),
            net("net-y", "vxlan"),
        ];
        let hosts = vec![
            host("h1", Some("198.19.0.1")),
            host("h2", Some("198.19.0.2")),
            host("h3", None),
        ];
        let insts = vec![
            inst("i-1", "h1", &["net-x", "net-b"]),
            inst("i-2", "h2", &["net-x"]),
            inst("i-3", "h2", &["net-x"]),
            inst("i-4", "h3", &["net-x", "net-y"]),
        ];
        let peers = vxlan_peers(&networks, &insts, &hosts);
        assert_eq!(
            peers.get("net-x").unwrap(),
            &vec!["198.19.0.1".to_string(), "198.19.0.2".to_string()]
        );
        assert!(!peers.contains_key("net-b"), "not VXLAN");
        assert!(
            !peers.contains_key("net-y"),
            "only a host without an endpoint"
        );
    }
}
