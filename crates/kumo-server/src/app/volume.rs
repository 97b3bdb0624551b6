//! Volumes (decision 0007): create, grow, attach, detach, delete. The API writes desired state; the
//! agent of the volume's host makes the file and reports status, and the worker of the instance it is
//! attached to plugs it into the running VM.

use kumo_store::{Compare, Op};
use kumo_types::{
    AttachVolumeRequest, CreateVolumeRequest, Error, ImageKind, Instance, MAX_VOLUMES_PER_INSTANCE,
    Page, QuotaResource, Result, UpdateVolumeRequest, Volume, VolumeAttachment, VolumeStatus,
    VolumeView, ids, now_rfc3339,
};

use super::attrs::{self, Extra};
use super::quota::{self, Delta};
use super::scope::{self, Kind, Scope};
use super::{App, host, image, instance};
use crate::storeutil::{commit, encode, get_json, keys, list_json, list_raw, store_err};

const KIND: &str = "volumes";
const MAX_ATTEMPTS: usize = 30;
const GIB: u64 = 1 << 30;
/// Largest volume: 64 TiB.
const MAX_SIZE_GIB: u64 = 64 * 1024;

const VOLUMES: Kind = Kind {
    prefix: ids::VOLUME,
    names: KIND,
    key: keys::volume,
    what: "volume",
};

pub async fn create(app: &App, scope: &Scope, req: CreateVolumeRequest) -> Result<VolumeView> {
    create_with(app, scope, req, Extra::none(ids::VOLUME)).await
}

/// [`create`] with the ID and the front end's own writes of `extra`, in the same transaction.
pub async fn create_with(
    app: &App,
    scope: &Scope,
    req: CreateVolumeRequest,
    extra: Extra,
) -> Result<VolumeView> {
    kumo_types::validate::name("name", &req.name)?;
    // Images, snapshots and source volumes are the project's own (or public images).
    let within = Scope::within(&scope.project);
    let (mut volume_type, mut pool) =
        super::volume_type::resolve(app, req.volume_type.as_deref(), req.pool.as_deref()).await?;
    let image = match &req.image {
        Some(r) => {
            let img = image::get(app, &within, r)
                .await
                .map_err(|_| Error::invalid("image", format!("no image `{r}`")))?;
            if img.kind != ImageKind::Disk {
                return Err(Error::invalid(
                    "image",
                    format!("image `{r}` is a kernel+initrd image; volumes start from disk images"),
                ));
            }
            image::require_usable(&img, image::Use::Volume)?;
            Some(img)
        }
        None => None,
    };
    if req.image.is_some() && req.snapshot.is_some() {
        return Err(Error::invalid(
            "snapshot",
            "give `image` or `snapshot`, not both",
        ));
    }
    let snapshot = match &req.snapshot {
        Some(r) => Some(super::snapshot::usable(app, &within, r).await?),
        None => None,
    };
    if let Some((s, _)) = &snapshot {
        // A clone is made by the pool's own tools, next to its source.
        let (src, _) = find_any(app, &s.volume_id).await?;
        if req.volume_type.is_none() && req.pool.is_none() {
            (volume_type, pool) = (src.volume_type, src.pool);
        } else if src.pool != pool {
            return Err(Error::invalid(
                if req.pool.is_some() {
                    "pool"
                } else {
                    "volume_type"
                },
                format!(
                    "a clone of snapshot `{}` is made in its volume's pool `{}`, not `{pool}`",
                    s.name, src.pool
                ),
            ));
        }
    }
    let min_gib = match (&image, &snapshot) {
        (Some(i), _) => i.virtual_size_bytes.div_ceil(GIB).max(1),
        (_, Some((s, _))) => s.size_gib,
        _ => 1,
    };
    let size_gib = match (req.size_gib, image.is_some() || snapshot.is_some()) {
        (Some(s), _) => s,
        (None, true) => min_gib,
        (None, false) => {
            return Err(Error::invalid(
                "size_gib",
                "required for a blank volume (1 to 65536)",
            ));
        }
    };
    if !(1..=MAX_SIZE_GIB).contains(&size_gib) {
        return Err(Error::invalid(
            "size_gib",
            format!("{size_gib}: must be 1 to {MAX_SIZE_GIB}"),
        ));
    }
    if size_gib < min_gib {
        let what = if snapshot.is_some() {
            "snapshot"
        } else {
            "image"
        };
        return Err(Error::invalid(
            "size_gib",
            format!("{size_gib} GiB is smaller than the {what}'s {min_gib} GiB"),
        ));
    }
    let host = match (&req.host, &snapshot) {
        // A clone is made from the source volume's file: on its host.
        (_, Some((_, host))) => host::get(app, host).await?,
        (Some(h), None) => host::get(app, h)
            .await
            .map_err(|_| Error::invalid("host", format!("no host `{h}`")))?,
        (None, None) => host::list(app)
            .await?
            .items
            .into_iter()
            .find(|h| h.state == kumo_types::HostState::Ready)
            .ok_or_else(|| Error::InsufficientCapacity {
                resource: "host".into(),
                message: "no ready host to hold the volume".into(),
            })?,
    };
    let v = Volume {
        id: extra.id.clone(),
        name: req.name.clone(),
        project: scope.project.clone(),
        size_gib,
        pool,
        volume_type,
        image_id: image.map(|i| i.id),
        snapshot_id: snapshot.map(|(s, _)| s.id),
        host: host.id,
        attachment: None,
        deleting: false,
        created_at: now_rfc3339(),
    };
    let name_key = keys::name(KIND, &v.project, &v.name);
    for attempt in 0..quota::ATTEMPTS {
        let (mut compare, mut ops) = quota::charge(
            app,
            &v.project,
            &Delta::of(QuotaResource::VolumeGib, size_gib),
        )
        .await?;
        compare.push(Compare::absent(&name_key));
        compare.extend(extra.compare.iter().cloned());
        ops.extend(extra.ops.iter().cloned());
        ops.extend([
            Op::put(keys::volume(&v.id), encode(&v)?),
            Op::put(
                keys::volume_status(&v.id),
                encode(&VolumeStatus::default())?,
            ),
            Op::put(&name_key, v.id.clone()),
        ]);
        if commit(app.kv(), compare, ops).await? {
            super::event::record_in(
                app,
                Some(&v.project),
                &v.id,
                "volume.created",
                &format!("volume `{}` ({size_gib} GiB)", v.name),
            )
            .await?;
            return Ok(VolumeView::new(&v, None));
        }
        if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
            return Err(Error::conflict_field(
                "name",
                format!("a volume named `{}` already exists", v.name),
            ));
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention creating the volume; retry",
    ))
}

/// A volume by ID or name as `scope` sees it, with its mod revision.
pub async fn find(app: &App, scope: &Scope, id_or_name: &str) -> Result<(Volume, i64)> {
    scope::find(app, scope, &VOLUMES, id_or_name).await
}

/// A volume by ID, whatever its project (internal).
pub async fn find_any(app: &App, id: &str) -> Result<(Volume, i64)> {
    scope::find_any(app, &VOLUMES, id).await
}

pub async fn status(app: &App, id: &str) -> Result<Option<VolumeStatus>> {
    Ok(get_json(app.kv(), &keys::volume_status(id))
        .await?
        .map(|(s, _)| s))
}

pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<VolumeView> {
    let (v, _) = find(app, scope, id_or_name).await?;
    let st = status(app, &v.id).await?;
    Ok(VolumeView::new(&v, st.as_ref()))
}

pub async fn list(
    app: &App,
    scope: &Scope,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> Result<Page<VolumeView>> {
    let vols: Vec<Volume> = scope::list(app, scope, keys::VOLUMES).await?;
    let statuses: std::collections::HashMap<String, VolumeStatus> =
        crate::storeutil::statuses(app.kv(), keys::VOLUME_STATUS).await?;
    let mut views: Vec<VolumeView> = vols
        .iter()
        .map(|v| VolumeView::new(v, statuses.get(&v.id)))
        .collect();
    views.sort_by(|a, b| a.volume.name.cmp(&b.volume.name));
    super::paginate(views, |v| v.volume.name.clone(), limit, next_token)
}

/// Change a volume with `f` under compare-and-swap (retrying lost races); returns the new view.
async fn update(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    f: impl Fn(&mut Volume) -> Result<()>,
) -> Result<VolumeView> {
    for attempt in 0..MAX_ATTEMPTS {
        if let Some(v) = update_once(app, scope, id_or_name, &f).await? {
            return Ok(v);
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention updating the volume; retry",
    ))
}

/// One compare-and-swap attempt at changing a volume (`None`: something changed meanwhile). A
/// new attachment claims its slot key (`/volume-slots/<instance>/<slot>`, compared absent), so two
/// concurrent attaches to one instance cannot take the same slot; a detach frees it. Growth is
/// charged to the project's `volume_gib` quota in the same transaction.
async fn update_once(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    f: &impl Fn(&mut Volume) -> Result<()>,
) -> Result<Option<VolumeView>> {
    let (mut v, rev) = find(app, scope, id_or_name).await?;
    if v.deleting {
        return Err(Error::conflict(format!(
            "volume `{}` is being deleted",
            v.name
        )));
    }
    let before = v.attachment.clone();
    let size_before = v.size_gib;
    f(&mut v)?;
    let key = keys::volume(&v.id);
    let (mut compare, mut ops) = match v.size_gib.saturating_sub(size_before) {
        0 => (vec![], vec![]),
        grow => quota::charge(app, &v.project, &Delta::of(QuotaResource::VolumeGib, grow)).await?,
    };
    compare.push(Compare::mod_revision(&key, rev));
    ops.push(Op::put(&key, encode(&v)?));
    match (&before, &v.attachment) {
        (None, Some(a)) if !a.boot => {
            let slot = keys::volume_slot(&a.instance_id, a.slot);
            compare.push(Compare::absent(&slot));
            ops.push(Op::put(&slot, v.id.clone()));
        }
        (Some(b), None) if !b.boot => {
            ops.push(Op::delete(keys::volume_slot(&b.instance_id, b.slot)))
        }
        _ => {}
    }
    if !commit(app.kv(), compare, ops).await? {
        return Ok(None);
    }
    let st = status(app, &v.id).await?;
    Ok(Some(VolumeView::new(&v, st.as_ref())))
}

/// Grow a volume (online if its instance runs).
pub async fn resize(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: UpdateVolumeRequest,
) -> Result<VolumeView> {
    let Some(size) = req.size_gib else {
        return get(app, scope, id_or_name).await;
    };
    let v = update(app, scope, id_or_name, |v| {
        if size < v.size_gib {
            return Err(Error::invalid(
                "size_gib",
                format!(
                    "{size} GiB is smaller than the volume's {} GiB; volumes only grow",
                    v.size_gib
                ),
            ));
        }
        if size > MAX_SIZE_GIB {
            return Err(Error::invalid(
                "size_gib",
                format!("{size}: must be at most {MAX_SIZE_GIB}"),
            ));
        }
        v.size_gib = size;
        Ok(())
    })
    .await?;
    super::event::record_in(
        app,
        Some(&v.volume.project),
        &v.volume.id,
        "volume.resized",
        &format!("{size} GiB"),
    )
    .await?;
    Ok(v)
}

pub async fn attach(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: AttachVolumeRequest,
) -> Result<VolumeView> {
    attach_at(app, scope, id_or_name, req, None).await
}

/// [`attach`] in slot `slot` (0–7) when given, else the lowest free one. A taken slot is refused
/// with a conflict on field `slot`.
pub async fn attach_at(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: AttachVolumeRequest,
    slot: Option<u8>,
) -> Result<VolumeView> {
    if let Some(s) = slot
        && s >= MAX_VOLUMES_PER_INSTANCE
    {
        return Err(Error::invalid(
            "slot",
            format!(
                "{s}: an instance has volume slots 0 to {}",
                MAX_VOLUMES_PER_INSTANCE - 1
            ),
        ));
    }
    let (current, _) = find(app, scope, id_or_name).await?;
    // The instance is the volume's project's.
    let (inst, _) = instance::find_in(app, &Scope::within(&current.project), &req.instance)
        .await
        .map_err(|_| Error::invalid("instance", format!("no instance `{}`", req.instance)))?;
    if inst.deleting {
        return Err(Error::conflict(format!(
            "instance `{}` is being deleted",
            inst.name
        )));
    }
    let shared = super::pool::find(app, &current.pool).await?.driver.shared();
    let mut attached = None;
    for _ in 0..MAX_ATTEMPTS {
        // Slots in use, read afresh on every attempt (the slot keys make the choice race-free).
        let mut taken: Vec<u8> = list_json::<Volume>(app.kv(), keys::VOLUMES)
            .await?
            .into_iter()
            .filter_map(|v| v.attachment.filter(|a| a.instance_id == inst.id && !a.boot))
            .map(|a| a.slot)
            .collect();
        for kv in crate::storeutil::list_raw(app.kv(), &keys::volume_slots(&inst.id)).await? {
            if let Some(s) = kv.key.rsplit('/').next().and_then(|s| s.parse().ok()) {
                taken.push(s);
            }
        }
        attached = update_once(app, scope, &current.id, &|v: &mut Volume| {
            if let Some(a) = &v.attachment {
                return Err(Error::conflict(format!(
                    "volume `{}` is attached to instance {}; detach it first",
                    v.name, a.instance_id
                )));
            }
            if shared {
                // A shared pool's volume attaches anywhere; its home follows the instance.
                if let Some(h) = &inst.host {
                    v.host = h.clone();
                }
            } else if inst.host.as_deref() != Some(v.host.as_str()) {
                return Err(Error::invalid(
                    "instance",
                    format!(
                        "volume `{}` lives on host {} and instance `{}` runs on {}; a volume of a \
                     local pool (`{}`) attaches only to instances on its host",
                        v.name,
                        v.host,
                        inst.name,
                        inst.host.as_deref().unwrap_or("no host"),
                        v.pool
                    ),
                ));
            }
            let slot = match slot {
                Some(s) if taken.contains(&s) => {
                    return Err(Error::conflict_field(
                        "slot",
                        format!("slot {s} of instance `{}` is taken", inst.name),
                    ));
                }
                Some(s) => s,
                None => (0..MAX_VOLUMES_PER_INSTANCE)
                    .find(|s| !taken.contains(s))
                    .ok_or_else(|| {
                        Error::conflict(format!(
                            "instance `{}` already has {MAX_VOLUMES_PER_INSTANCE} volumes",
                            inst.name
                        ))
                    })?,
            };
            v.attachment = Some(VolumeAttachment {
                instance_id: inst.id.clone(),
                delete_on_termination: req.delete_on_termination,
                slot,
                boot: false,
            });
            Ok(())
        })
        .await?;
        if attached.is_some() {
            break;
        }
    }
    let Some(v) = attached else {
        return Err(Error::unavailable(
            "too much contention attaching the volume; retry",
        ));
    };
    super::event::record_in(
        app,
        Some(&v.volume.project),
        &v.volume.id,
        "volume.attach_requested",
        &format!("to instance `{}`", inst.name),
    )
    .await?;
    Ok(v)
}

pub async fn detach(app: &App, scope: &Scope, id_or_name: &str) -> Result<VolumeView> {
    let v = update(app, scope, id_or_name, |v| {
        match &v.attachment {
            None => {
                return Err(Error::conflict(format!(
                    "volume `{}` is not attached",
                    v.name
                )));
            }
            Some(a) if a.boot => {
                return Err(Error::conflict(format!(
                    "volume `{}` is the boot volume of instance {}; it stays attached for the \
                     instance's life",
                    v.name, a.instance_id
                )));
            }
            Some(_) => {}
        }
        v.attachment = None;
        Ok(())
    })
    .await?;
    super::event::record_in(
        app,
        Some(&v.volume.project),
        &v.volume.id,
        "volume.detach_requested",
        "",
    )
    .await?;
    Ok(v)
}

/// Mark a volume for deletion (its host's agent removes the file, then the record goes).
pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<VolumeView> {
    let (found, _) = find(app, scope, id_or_name).await?;
    let snaps: Vec<String> = list_json::<kumo_types::Snapshot>(app.kv(), keys::SNAPSHOTS)
        .await?
        .into_iter()
        .filter(|s| s.volume_id == found.id)
        .map(|s| s.name)
        .collect();
    if !snaps.is_empty() {
        return Err(Error::conflict(format!(
            "volume `{}` has snapshots ({}); they live in its file: delete them first",
            found.name,
            snaps.join(", ")
        )));
    }
    let v = update(app, scope, &found.id, |v| {
        if let Some(a) = &v.attachment {
            return Err(Error::conflict(format!(
                "volume `{}` is attached to instance {}; detach it first",
                v.name, a.instance_id
            )));
        }
        v.deleting = true;
        Ok(())
    })
    .await?;
    super::event::record_in(
        app,
        Some(&v.volume.project),
        &v.volume.id,
        "volume.delete_requested",
        "",
    )
    .await?;
    Ok(v)
}

/// The agent removed the file: drop the record, its status and its name, and give its size back to
/// the project's quota.
pub async fn finalize_delete(app: &App, id: &str) -> Result<()> {
    for attempt in 0..quota::ATTEMPTS {
        let Some((v, rev)) = get_json::<Volume>(app.kv(), &keys::volume(id)).await? else {
            return Ok(());
        };
        if !v.deleting {
            return Err(Error::conflict(format!("volume {id} is not being deleted")));
        }
        let key = keys::volume(id);
        let (mut compare, mut ops) = quota::credit(
            app,
            &v.project,
            &Delta::of(QuotaResource::VolumeGib, v.size_gib),
        )
        .await?;
        compare.push(Compare::mod_revision(&key, rev));
        ops.extend([
            Op::delete(&key),
            Op::delete(keys::volume_status(id)),
            Op::delete(keys::name(KIND, &v.project, &v.name)),
        ]);
        ops.extend(attrs::cleanup_ops(app, id).await?);
        if commit(app.kv(), compare, ops).await? {
            return super::event::record_in(app, Some(&v.project), id, "volume.deleted", &v.name)
                .await;
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention deleting the volume; retry",
    ))
}

/// Agent-reported observed state.
pub async fn report_status(app: &App, id: &str, st: VolumeStatus) -> Result<()> {
    if get_json::<Volume>(app.kv(), &keys::volume(id))
        .await?
        .is_none()
    {
        return Err(Error::not_found("volume", id));
    }
    app.kv()
        .put(&keys::volume_status(id), encode(&st)?)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// The volumes attached to `instance_id`.
pub async fn attached_to(app: &App, instance_id: &str) -> Result<Vec<Volume>> {
    let mut v: Vec<Volume> = list_json::<Volume>(app.kv(), keys::VOLUMES)
        .await?
        .into_iter()
        .filter(|v| {
            v.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
        })
        .collect();
    v.sort_by_key(|v| v.attachment.as_ref().map(|a| a.slot));
    Ok(v)
}

/// The snapshots of `volumes`.
pub async fn snapshots_of(app: &App, volumes: &[Volume]) -> Result<Vec<kumo_types::Snapshot>> {
    if volumes.is_empty() {
        return Ok(vec![]);
    }
    Ok(list_json::<kumo_types::Snapshot>(app.kv(), keys::SNAPSHOTS)
        .await?
        .into_iter()
        .filter(|s| volumes.iter().any(|v| v.id == s.volume_id))
        .collect())
}

/// What deleting `inst` does to its volumes, as compares and ops for the instance's final
/// transaction: `delete_on_termination` volumes are marked for deletion, the others detached.
pub async fn release_for(app: &App, inst: &Instance) -> Result<(Vec<Compare>, Vec<Op>)> {
    let (mut compare, mut ops) = (vec![], vec![]);
    for kv in list_raw(app.kv(), keys::VOLUMES).await? {
        let mut v: Volume = crate::storeutil::decode(&kv)?;
        let Some(a) = v.attachment.take() else {
            continue;
        };
        if a.instance_id != inst.id {
            continue;
        }
        v.deleting = a.delete_on_termination;
        compare.push(Compare::mod_revision(&kv.key, kv.mod_revision));
        ops.push(Op::put(&kv.key, encode(&v)?));
        if !a.boot {
            ops.push(Op::delete(keys::volume_slot(&inst.id, a.slot)));
        }
    }
    Ok((compare, ops))
}

/// The volumes whose files live on `host_id`, resolved for its agent; `running` are the instances
/// that should be running there.
pub async fn assignments(
    app: &App,
    host_id: &str,
    running: &std::collections::HashSet<String>,
) -> Result<Vec<kumo_types::VolumeAssignment>> {
    let snaps: Vec<kumo_types::Snapshot> = list_json(app.kv(), keys::SNAPSHOTS).await?;
    let pools = super::pool::all(app).await?;
    let mut out = Vec::new();
    for v in list_json::<Volume>(app.kv(), keys::VOLUMES)
        .await?
        .into_iter()
        .filter(|v| v.host == host_id)
    {
        let image = match &v.image_id {
            Some(i) => image::get_any(app, i).await.ok(),
            None => None,
        };
        let snapshot_source = v
            .snapshot_id
            .as_ref()
            .and_then(|s| snaps.iter().find(|x| &x.id == s))
            .map(|s| s.volume_id.clone());
        let in_running_instance = v
            .attachment
            .as_ref()
            .is_some_and(|a| running.contains(&a.instance_id));
        let snapshots = snaps
            .iter()
            .filter(|s| s.volume_id == v.id)
            .cloned()
            .collect();
        let Some(pool) = pools.iter().find(|p| p.name == v.pool).cloned() else {
            continue; // a pool cannot be deleted while it holds volumes
        };
        out.push(kumo_types::VolumeAssignment {
            pool,
            volume: v,
            snapshots,
            snapshot_source,
            image,
            in_running_instance,
        });
    }
    Ok(out)
}

/// The ops that move instance `instance_id`'s attached volumes' home to `host` (the instance moved
/// there: HA restart, drain, migration); for the moving transaction.
pub async fn follow_ops(app: &App, instance_id: &str, host: &str) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for mut v in list_json::<Volume>(app.kv(), keys::VOLUMES).await? {
        if v.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance_id)
        {
            v.host = host.to_string();
            ops.push(Op::put(keys::volume(&v.id), encode(&v)?));
        }
    }
    Ok(ops)
}
