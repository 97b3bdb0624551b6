//! Snapshots: an EC2 snapshot is a kumo snapshot named by its id (`snap-…`), kept inside its
//! volume's file (so a volume with snapshots cannot be deleted: `VolumeInUse` until they are
//! gone). `pending` → `completed` (or `error`) as the host reports; a snapshot being deleted is
//! gone for EC2 at once. The description is an attribute. Snapshots are the project's own:
//! `OwnerId` `self` or the project's account id lists them, any other owner nothing.

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{CreateSnapshotRequest, SnapshotState, SnapshotView, ids as kids};

use super::super::filter::{Filters, Paging};
use super::super::network::util::{self, app, tag_set};
use super::super::{Ec2Ctx, Ec2Result, ids};
use crate::app::attrs::{self, Attrs, Extra};
use crate::app::snapshot;
use crate::app::tags::{self, Tags};

const ATTR_DESCRIPTION: &str = "description";

fn state(s: &SnapshotView) -> Option<&'static str> {
    match s.state {
        SnapshotState::Pending => Some("pending"),
        SnapshotState::Completed => Some("completed"),
        SnapshotState::Error => Some("error"),
        SnapshotState::Deleting => None,
    }
}

fn write_snapshot(w: &mut XmlWriter, s: &SnapshotView, description: &str, tags: Option<&Tags>) {
    let snap = &s.snapshot;
    let st = state(s).unwrap_or("pending");
    w.text("snapshotId", &snap.id)
        .text("volumeId", &snap.volume_id)
        .text("status", st)
        .opt_text("statusMessage", s.status_message.as_deref())
        .text("startTime", &snap.created_at)
        .text("progress", if st == "completed" { "100%" } else { "0%" })
        .text("ownerId", &ids::account_id(&snap.project))
        .int(
            "volumeSize",
            i64::try_from(snap.size_gib).unwrap_or(i64::MAX),
        )
        .text("description", description)
        .bool("encrypted", false)
        .text("storageTier", "standard");
    tag_set(w, tags);
}

pub async fn create(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let volume_id = root.str("VolumeId")?;
    let description = root.opt_str("Description").unwrap_or_default();
    let tag_list = util::tag_specs(p, "snapshot")?;
    if description.chars().count() > 255 {
        return Err(Ec2Error::invalid_parameter_value(
            "Description",
            &description,
            "A description is at most 255 characters.",
        ));
    }
    ctx.ready(p)?;
    let nf = || Ec2Error::not_found(ResourceKind::Volume, &volume_id);
    if !ids::is("vol", &volume_id) {
        return Err(nf());
    }
    let id = kids::new_id(kids::SNAPSHOT);
    let a = Attrs {
        values: [(ATTR_DESCRIPTION.to_string(), description.clone())].into(),
        ..Attrs::default()
    };
    let mut extra = Extra::with_attrs(id.clone(), &a).map_err(app)?;
    extra
        .ops
        .extend(tags::create_op(&ctx.scope.project, &id, &tag_list).map_err(app)?);
    let req = CreateSnapshotRequest {
        name: id.clone(),
        volume: volume_id.clone(),
    };
    let s = match snapshot::create_with(&ctx.app, &ctx.scope, req, extra).await {
        Ok(s) => s,
        Err(kumo_types::Error::Invalid { field, .. }) if field == "volume" => return Err(nf()),
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(util::err("IncorrectState", message));
        }
        Err(e) => return Err(app(e)),
    };
    ctx.target(id.clone());
    let t: Tags = tag_list.into_iter().collect();
    ctx.respond(|w| write_snapshot(w, &s, &description, Some(&t)))
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("SnapshotId")?;
    let owners = p.id_list("Owner")?;
    let restorable = p.id_list("RestorableBy")?;
    let filters = Filters::read(
        p,
        &[
            "snapshot-id",
            "volume-id",
            "status",
            "owner-id",
            "owner-alias",
            "description",
            "volume-size",
            "start-time",
            "progress",
            "encrypted",
            "storage-tier",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=1000)?;
    if paging.is_set() && !wanted.is_empty() {
        return Err(Ec2Error::invalid_parameter_combination(
            "SnapshotId",
            "MaxResults",
        ));
    }
    ctx.ready(p)?;
    let account = ctx.account_id();
    let mine = |o: &String| o == "self" || *o == account;
    let mut views: Vec<SnapshotView> = util::all_pages(|t| async move {
        snapshot::list(
            &ctx.app,
            &ctx.scope,
            Some(crate::app::MAX_PAGE),
            t.as_deref(),
        )
        .await
    })
    .await?;
    for id in &wanted {
        if !views.iter().any(|v| &v.snapshot.id == id)
            && ids::is("snap", id)
            && let Ok(s) = snapshot::get(&ctx.app, &ctx.scope, id).await
        {
            views.push(s);
        }
    }
    // Being deleted is gone, for EC2.
    views.retain(|s| state(s).is_some());
    if !wanted.is_empty() {
        let found: Vec<&str> = views.iter().map(|v| v.snapshot.id.as_str()).collect();
        util::all_found(ResourceKind::Snapshot, &wanted, &found)?;
        views.retain(|v| wanted.contains(&v.snapshot.id));
    }
    if !owners.is_empty() && !owners.iter().any(mine) {
        views.clear();
    }
    if !restorable.is_empty() && !restorable.iter().any(|r| mine(r) || r == "all") {
        views.clear();
    }
    let snap_ids: Vec<&str> = views.iter().map(|v| v.snapshot.id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &snap_ids)
        .await
        .map_err(app)?;
    let all_attrs = attrs::all(&ctx.app).await.map_err(app)?;
    let description = |id: &str| {
        all_attrs
            .get(id)
            .and_then(|a| a.value(ATTR_DESCRIPTION))
            .unwrap_or_default()
            .to_string()
    };
    let empty = Tags::new();
    views.retain(|s| {
        let snap = &s.snapshot;
        let st = state(s).unwrap_or("pending");
        filters.matches(
            |name| match name {
                "snapshot-id" => vec![snap.id.clone()],
                "volume-id" => vec![snap.volume_id.clone()],
                "status" => vec![st.into()],
                "owner-id" => vec![ids::account_id(&snap.project)],
                "description" => vec![description(&snap.id)],
                "volume-size" => vec![snap.size_gib.to_string()],
                "start-time" => vec![snap.created_at.clone()],
                "progress" => vec![if st == "completed" { "100%" } else { "0%" }.into()],
                "encrypted" => vec!["false".into()],
                "storage-tier" => vec!["standard".into()],
                // owner-alias: AWS's own snapshots (`amazon`) and marketplace ones; none here.
                _ => vec![],
            },
            tag_map.get(&snap.id).unwrap_or(&empty),
        )
    });
    views.sort_by(|a, b| a.snapshot.id.cmp(&b.snapshot.id));
    let page = paging.page(views, |v| v.snapshot.id.clone());
    ctx.respond(|w| {
        w.set("snapshotSet", &page.items, |w, s| {
            write_snapshot(
                w,
                s,
                &description(&s.snapshot.id),
                tag_map.get(&s.snapshot.id),
            );
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

pub async fn delete(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let snapshot_id = p.root().str("SnapshotId")?;
    ctx.ready(p)?;
    let nf = || Ec2Error::not_found(ResourceKind::Snapshot, &snapshot_id);
    if !ids::is("snap", &snapshot_id) {
        return Err(nf());
    }
    let s = match snapshot::get(&ctx.app, &ctx.scope, &snapshot_id).await {
        Ok(s) if state(&s).is_some() => s,
        Ok(_) | Err(kumo_types::Error::NotFound { .. }) => return Err(nf()),
        Err(e) => return Err(app(e)),
    };
    ctx.target(s.snapshot.id.clone());
    match snapshot::delete(&ctx.app, &ctx.scope, &s.snapshot.id).await {
        Ok(_) => {}
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(util::err(
                "InvalidSnapshot.InUse",
                format!("The snapshot {snapshot_id} is currently in use: {message}"),
            ));
        }
        Err(e) => return Err(app(e)),
    }
    tags::delete_all(&ctx.app, &s.snapshot.id)
        .await
        .map_err(app)?;
    ctx.respond(|w| {
        w.bool("return", true);
    })
}
