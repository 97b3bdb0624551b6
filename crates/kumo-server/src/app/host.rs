//! Hosts: registered by their agents; liveness is a store lease the agent keeps alive.

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    Error, Host, HostAllocation, HostInventory, HostState, Instance, Page, Result,
    UpdateHostRequest, ids, now_rfc3339,
};

use super::App;
use crate::scheduler::{Candidate, Gpu};
use crate::storeutil::{commit, encode, get_json, keys, list_json, store_err};

const KIND: &str = "hosts";
const CLUSTER: &str = "cluster";
/// Seconds without a keepalive after which a host counts as not alive.
pub const LEASE_TTL: i64 = 15;

/// Register or re-register the host named by the inventory's hostname (its ID stays stable).
pub async fn register(app: &App, inv: HostInventory) -> Result<Host> {
    let name = inv.hostname.clone();
    let name_key = keys::name(KIND, CLUSTER, &name);
    // Compare-and-swap: an operator's change (labels, state) racing a re-registration is kept, and
    // two first registrations of one name make one host.
    for _ in 0..10 {
        let existing = match app.kv().get(&name_key).await.map_err(store_err)? {
            Some(kv) => {
                let id = String::from_utf8_lossy(&kv.value).to_string();
                get_json::<Host>(app.kv(), &keys::host(&id)).await?
            }
            None => None,
        };
        let now = now_rfc3339();
        let accel = if inv.kvm_usable { "kvm" } else { "tcg" }.to_string();
        let (host, compare) = match existing {
            Some((mut h, rev)) => {
                h.inventory = inv.clone();
                h.accel = accel;
                h.last_heartbeat = now;
                let c = Compare::mod_revision(keys::host(&h.id), rev);
                (h, c)
            }
            None => (
                Host {
                    id: ids::new_id(ids::HOST),
                    name: name.clone(),
                    state: HostState::Ready,
                    inventory: inv.clone(),
                    labels: Default::default(),
                    fencing: None,
                    accel,
                    registered_at: now.clone(),
                    last_heartbeat: now,
                },
                Compare::absent(&name_key),
            ),
        };
        let ops = vec![
            Op::put(&name_key, host.id.clone()),
            Op::put(keys::host(&host.id), encode(&host)?),
        ];
        if commit(app.kv(), vec![compare], ops).await? {
            heartbeat(app, &host.id).await?;
            return Ok(host);
        }
    }
    Err(Error::unavailable(
        "the host record kept changing during registration; retry",
    ))
}

/// Keep the host's liveness lease alive, creating it if it lapsed.
pub async fn heartbeat(app: &App, host_id: &str) -> Result<()> {
    let key = keys::host_lease(host_id);
    if let Some(kv) = app.kv().get(&key).await.map_err(store_err)?
        && kv.lease != 0
        && app.kv().lease_keepalive(kv.lease).await.is_ok()
    {
        return Ok(());
    }
    let lease = app.kv().lease_grant(LEASE_TTL).await.map_err(store_err)?;
    let txn = Txn {
        compare: vec![],
        success: vec![Op::Put {
            key,
            value: now_rfc3339().into_bytes(),
            lease,
        }],
        failure: vec![],
    };
    app.kv().txn(txn).await.map_err(store_err)?;
    Ok(())
}

pub async fn list(app: &App) -> Result<Page<Host>> {
    let items: Vec<Host> = list_json(app.kv(), keys::HOSTS).await?;
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, id_or_name: &str) -> Result<Host> {
    let id = crate::storeutil::resolve_id(app.kv(), ids::HOST, KIND, CLUSTER, id_or_name)
        .await?
        .ok_or_else(|| Error::not_found("host", id_or_name))?;
    get_json(app.kv(), &keys::host(&id))
        .await?
        .map(|(h, _)| h)
        .ok_or_else(|| Error::not_found("host", id_or_name))
}

/// Change a host's labels: merged, a value sets the label and `null` removes it; compare-and-swap
/// on the host record. Other host fields are not changed here.
/// One compare-and-swap change of host record `id`: `f` edits it and returns the other ops of the same
/// transaction, or `None` to leave it alone. The host as written, or `None` if there is no such host,
/// `f` declined, or the record changed meanwhile.
pub async fn change(
    app: &App,
    id: &str,
    f: impl FnOnce(&mut Host) -> Result<Option<Vec<Op>>>,
) -> Result<Option<Host>> {
    let key = keys::host(id);
    let Some((mut h, rev)) = get_json::<Host>(app.kv(), &key).await? else {
        return Ok(None);
    };
    let Some(mut ops) = f(&mut h)? else {
        return Ok(None);
    };
    ops.insert(0, Op::put(&key, encode(&h)?));
    let written =
        crate::storeutil::commit(app.kv(), vec![Compare::mod_revision(&key, rev)], ops).await?;
    Ok(written.then_some(h))
}

pub async fn update(app: &App, id_or_name: &str, req: UpdateHostRequest) -> Result<Host> {
    let changes = req.labels.unwrap_or_default();
    for (k, v) in &changes {
        kumo_types::validate_label("labels", k, v.as_deref().unwrap_or(""))?;
    }
    for _ in 0..20 {
        let id = get(app, id_or_name).await?.id;
        let key = keys::host(&id);
        let (mut h, rev) = get_json::<Host>(app.kv(), &key)
            .await?
            .ok_or_else(|| Error::not_found("host", id_or_name))?;
        for (k, v) in &changes {
            match v {
                Some(v) => h.labels.insert(k.clone(), v.clone()),
                None => h.labels.remove(k),
            };
        }
        if h.labels.len() > kumo_types::MAX_LABELS {
            return Err(Error::invalid(
                "labels",
                format!(
                    "host `{}` would have {} labels; at most {}",
                    h.name,
                    h.labels.len(),
                    kumo_types::MAX_LABELS
                ),
            ));
        }
        if crate::storeutil::commit(
            app.kv(),
            vec![Compare::mod_revision(&key, rev)],
            vec![Op::put(&key, encode(&h)?)],
        )
        .await?
        {
            return Ok(h);
        }
    }
    Err(Error::unavailable(
        "too much contention updating the host; retry",
    ))
}

/// Scheduler inputs for every host, by name (the order explanations name hosts in), with the mod
/// revision of each host's allocation record (the placement transaction compares it, so
/// concurrent placements cannot overshoot a host).
pub async fn candidates(app: &App) -> Result<Vec<(Candidate, i64)>> {
    let mut hosts: Vec<Host> = list_json(app.kv(), keys::HOSTS).await?;
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        let alive = app
            .kv()
            .get(&keys::host_lease(&h.id))
            .await
            .map_err(store_err)?
            .is_some();
        let (allocated, rev) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(&h.id))
            .await?
            .unwrap_or_default();
        let inv = &h.inventory;
        out.push((
            Candidate {
                id: h.id.clone(),
                name: h.name.clone(),
                state: h.state,
                alive,
                cpus: inv.cpus,
                memory_mib: inv
                    .memory_mib
                    .saturating_sub(app.cfg.host_memory_reserve_mib),
                disk_gib: inv.disk_total_bytes >> 30,
                labels: h.labels.clone(),
                gpus: gpus(inv),
                allocated,
            },
            rev,
        ));
    }
    Ok(out)
}

/// The GPUs of a host as the scheduler sees them, by address.
fn gpus(inv: &HostInventory) -> Vec<Gpu> {
    let mut g: Vec<Gpu> = inv
        .pci_devices
        .iter()
        .filter(|d| d.gpu)
        .map(|d| Gpu {
            address: d.address.clone(),
            model: d.model.clone(),
            iommu: d.iommu_group.is_some(),
        })
        .collect();
    g.sort_by(|a, b| a.address.cmp(&b.address));
    g
}

/// A txn op list that adds (`add`) or removes the instance's resources (vCPUs, memory, root disk,
/// GPUs) to or from its host's allocation, guarded by the allocation's mod revision.
pub fn alloc_update(
    host_id: &str,
    current: &HostAllocation,
    rev: i64,
    inst: &Instance,
    add: bool,
) -> Result<(Compare, Op)> {
    let mut a = current.clone();
    let (vcpus, mem, disk) = (u64::from(inst.vcpus), inst.memory_mib, inst.root_disk_gib);
    if add {
        a.vcpus += vcpus;
        a.memory_mib += mem;
        a.disk_gib += disk;
        a.instances += 1;
        a.gpu_devices.extend(inst.gpu_devices.iter().cloned());
        a.gpu_devices.sort();
    } else {
        a.vcpus = a.vcpus.saturating_sub(vcpus);
        a.memory_mib = a.memory_mib.saturating_sub(mem);
        a.disk_gib = a.disk_gib.saturating_sub(disk);
        a.instances = a.instances.saturating_sub(1);
        a.gpu_devices.retain(|d| !inst.gpu_devices.contains(d));
    }
    let key = keys::host_alloc(host_id);
    Ok((Compare::mod_revision(&key, rev), Op::put(&key, encode(&a)?)))
}

/// Remove a host from the cluster (decommissioning): it must be in `maintenance` (drained) or `down`,
/// with no instance and no volume on it. Its record, lease, allocation and HA/drain state go, and its
/// certificates are revoked in the same transaction: its agent can no longer talk to the cluster. A
/// new join (with a new token) brings it back as a new host.
pub async fn remove(app: &App, id_or_name: &str) -> Result<Host> {
    let h = get(app, id_or_name).await?;
    if !matches!(h.state, HostState::Maintenance | HostState::Down) {
        return Err(Error::conflict(format!(
            "host `{}` is {:?}; drain it first (`kumo host drain {}`), or it must be down",
            h.name, h.state, h.name
        )));
    }
    let on_it: Vec<String> = list_json::<Instance>(app.kv(), keys::INSTANCES)
        .await?
        .into_iter()
        .filter(|i| {
            i.host.as_deref() == Some(h.id.as_str())
                || i.migration.as_ref().is_some_and(|m| m.target_host == h.id)
        })
        .map(|i| i.name)
        .collect();
    if !on_it.is_empty() {
        return Err(Error::conflict(format!(
            "host `{}` still has instances: {} (move or delete them first)",
            h.name,
            on_it.join(", ")
        )));
    }
    let vols: Vec<String> = list_json::<kumo_types::Volume>(app.kv(), keys::VOLUMES)
        .await?
        .into_iter()
        .filter(|v| v.host == h.id)
        .map(|v| v.id)
        .collect();
    if !vols.is_empty() {
        return Err(Error::conflict(format!(
            "host `{}` is the home of volumes {}: delete them or move their instances first",
            h.name,
            vols.join(", ")
        )));
    }
    let hkey = keys::host(&h.id);
    let (_, hrev) = get_json::<Host>(app.kv(), &hkey)
        .await?
        .ok_or_else(|| Error::not_found("host", id_or_name))?;
    let (mut compare, mut ops) = super::host_cert::revoke_ops(app, &h.name).await?;
    compare.push(Compare::mod_revision(&hkey, hrev));
    ops.extend([
        Op::delete(hkey),
        Op::delete(keys::name(KIND, CLUSTER, &h.name)),
        Op::delete(keys::host_alloc(&h.id)),
        Op::delete(keys::host_lease(&h.id)),
        Op::delete(keys::host_fence(&h.id)),
        Op::delete(keys::host_drain(&h.id)),
    ]);
    if !crate::storeutil::commit(app.kv(), compare, ops).await? {
        return Err(Error::conflict("the host changed meanwhile; retry"));
    }
    super::event::record(
        app,
        &h.id,
        "host.removed",
        &format!("host `{}` removed; its certificates are revoked", h.name),
    )
    .await?;
    Ok(h)
}
