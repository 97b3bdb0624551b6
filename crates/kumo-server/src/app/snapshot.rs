//! Snapshots of volumes: qcow2 internal snapshots inside the volume's file, taken and deleted by the
//! agent of the volume's host (the worker of a running instance does it over QMP). A clone (a volume
//! created from a snapshot) is an independent copy, so snapshots can go while clones live; a volume
//! cannot go while it has snapshots.

use kumo_store::{Compare, Op};
use kumo_types::{
    CreateSnapshotRequest, Error, Page, QuotaResource, Result, Snapshot, SnapshotState,
    SnapshotStatus, SnapshotView, Volume, ids, now_rfc3339,
};

use super::attrs::{self, Extra};
use super::quota::{self, Delta};
use super::scope::{self, Kind, Scope};
use super::{App, volume};
use crate::storeutil::{commit, encode, get_json, keys, list_json, store_err};

const KIND: &str = "snapshots";

const SNAPSHOTS: Kind = Kind {
    prefix: ids::SNAPSHOT,
    names: KIND,
    key: keys::snapshot,
    what: "snapshot",
};

pub async fn create(app: &App, scope: &Scope, req: CreateSnapshotRequest) -> Result<SnapshotView> {
    create_with(app, scope, req, Extra::none(ids::SNAPSHOT)).await
}

/// [`create`] with the ID and the front end's own writes of `extra`, in the same transaction.
pub async fn create_with(
    app: &App,
    scope: &Scope,
    req: CreateSnapshotRequest,
    extra: Extra,
) -> Result<SnapshotView> {
    kumo_types::validate::name("name", &req.name)?;
    let within = Scope::within(&scope.project);
    let id = extra.id.clone();
    for attempt in 0..quota::ATTEMPTS {
        let (v, vrev) = volume::find(app, &within, &req.volume)
            .await
            .map_err(|_| Error::invalid("volume", format!("no volume `{}`", req.volume)))?;
        if v.deleting {
            return Err(Error::conflict(format!(
                "volume `{}` is being deleted",
                v.name
            )));
        }
        let s = Snapshot {
            id: id.clone(),
            name: req.name.clone(),
            project: scope.project.clone(),
            volume_id: v.id.clone(),
            size_gib: v.size_gib,
            deleting: false,
            created_at: now_rfc3339(),
        };
        let name_key = keys::name(KIND, &s.project, &s.name);
        let (mut compare, mut ops) =
            quota::charge(app, &s.project, &Delta::of(QuotaResource::Snapshots, 1)).await?;
        compare.extend([
            Compare::absent(&name_key),
            // The volume did not change meanwhile (not deleted, same size).
            Compare::mod_revision(keys::volume(&v.id), vrev),
        ]);
        compare.extend(extra.compare.iter().cloned());
        ops.extend(extra.ops.iter().cloned());
        ops.extend([
            Op::put(keys::snapshot(&s.id), encode(&s)?),
            Op::put(
                keys::snapshot_status(&s.id),
                encode(&SnapshotStatus::default())?,
            ),
            Op::put(&name_key, s.id.clone()),
        ]);
        if commit(app.kv(), compare, ops).await? {
            super::event::record_in(
                app,
                Some(&s.project),
                &s.id,
                "snapshot.requested",
                &format!("of volume `{}`", v.name),
            )
            .await?;
            return Ok(SnapshotView::new(&s, None));
        }
        if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
            return Err(Error::conflict_field(
                "name",
                format!("a snapshot named `{}` already exists", s.name),
            ));
        }
        // The volume or the project's usage changed meanwhile: decide again.
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention creating the snapshot; retry",
    ))
}

/// A snapshot by ID or name as `scope` sees it, with its mod revision.
pub async fn find(app: &App, scope: &Scope, id_or_name: &str) -> Result<(Snapshot, i64)> {
    scope::find(app, scope, &SNAPSHOTS, id_or_name).await
}

async fn status(app: &App, id: &str) -> Result<Option<SnapshotStatus>> {
    Ok(get_json(app.kv(), &keys::snapshot_status(id))
        .await?
        .map(|(s, _)| s))
}

pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<SnapshotView> {
    let (s, _) = find(app, scope, id_or_name).await?;
    let st = status(app, &s.id).await?;
    Ok(SnapshotView::new(&s, st.as_ref()))
}

/// A completed snapshot to clone from, with the host of its volume (field `snapshot` on errors).
pub async fn usable(app: &App, scope: &Scope, id_or_name: &str) -> Result<(Snapshot, String)> {
    let (s, _) = find(app, scope, id_or_name)
        .await
        .map_err(|_| Error::invalid("snapshot", format!("no snapshot `{id_or_name}`")))?;
    let st = status(app, &s.id).await?.unwrap_or_default();
    if s.deleting || st.state != SnapshotState::Completed {
        return Err(Error::conflict_field(
            "snapshot",
            format!("snapshot `{}` is not completed", s.name),
        ));
    }
    let (v, _): (Volume, i64) = get_json(app.kv(), &keys::volume(&s.volume_id))
        .await?
        .ok_or_else(|| Error::internal("snapshot without its volume"))?;
    Ok((s, v.host))
}

pub async fn list(
    app: &App,
    scope: &Scope,
    limit: Option<usize>,
    next_token: Option<&str>,
) -> Result<Page<SnapshotView>> {
    let snaps: Vec<Snapshot> = scope::list(app, scope, keys::SNAPSHOTS).await?;
    let statuses: std::collections::HashMap<String, SnapshotStatus> =
        crate::storeutil::statuses(app.kv(), keys::SNAPSHOT_STATUS).await?;
    let mut views: Vec<SnapshotView> = snaps
        .iter()
        .map(|s| SnapshotView::new(s, statuses.get(&s.id)))
        .collect();
    views.sort_by(|a, b| a.snapshot.name.cmp(&b.snapshot.name));
    super::paginate(views, |v| v.snapshot.name.clone(), limit, next_token)
}

/// Mark a snapshot for deletion; the agent removes it from the volume's file, then the record goes.
pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<SnapshotView> {
    let (mut s, rev) = find(app, scope, id_or_name).await?;
    let cloning: Vec<String> = list_json::<Volume>(app.kv(), keys::VOLUMES)
        .await?
        .into_iter()
        .filter(|v| v.snapshot_id.as_deref() == Some(s.id.as_str()))
        .map(|v| v.id)
        .collect();
    for v in &cloning {
        let st = volume::status(app, v).await?.unwrap_or_default();
        if st.state == kumo_types::VolumeState::Creating {
            return Err(Error::conflict(format!(
                "volume {v} is still being cloned from snapshot `{}`",
                s.name
            )));
        }
    }
    s.deleting = true;
    let key = keys::snapshot(&s.id);
    if !commit(
        app.kv(),
        vec![Compare::mod_revision(&key, rev)],
        vec![Op::put(&key, encode(&s)?)],
    )
    .await?
    {
        return Err(Error::conflict(format!(
            "snapshot `{}` changed concurrently; retry",
            s.name
        )));
    }
    super::event::record_in(
        app,
        Some(&s.project),
        &s.id,
        "snapshot.delete_requested",
        "",
    )
    .await?;
    let st = status(app, &s.id).await?;
    Ok(SnapshotView::new(&s, st.as_ref()))
}

pub async fn report_status(app: &App, id: &str, st: SnapshotStatus) -> Result<()> {
    if get_json::<Snapshot>(app.kv(), &keys::snapshot(id))
        .await?
        .is_none()
    {
        return Err(Error::not_found("snapshot", id));
    }
    app.kv()
        .put(&keys::snapshot_status(id), encode(&st)?)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// The agent removed a deleting snapshot from its volume's file: drop the record and give it back
/// to the project's quota.
pub async fn finalize_delete(app: &App, id: &str) -> Result<()> {
    for attempt in 0..quota::ATTEMPTS {
        let Some((s, rev)) = get_json::<Snapshot>(app.kv(), &keys::snapshot(id)).await? else {
            return Ok(());
        };
        if !s.deleting {
            return Err(Error::conflict(format!(
                "snapshot {id} is not being deleted"
            )));
        }
        let key = keys::snapshot(id);
        let (mut compare, mut ops) =
            quota::credit(app, &s.project, &Delta::of(QuotaResource::Snapshots, 1)).await?;
        compare.push(Compare::mod_revision(&key, rev));
        ops.extend([
            Op::delete(&key),
            Op::delete(keys::snapshot_status(id)),
            Op::delete(keys::name(KIND, &s.project, &s.name)),
        ]);
        ops.extend(attrs::cleanup_ops(app, id).await?);
        if commit(app.kv(), compare, ops).await? {
            return super::event::record_in(app, Some(&s.project), id, "snapshot.deleted", &s.name)
                .await;
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention deleting the snapshot; retry",
    ))
}
