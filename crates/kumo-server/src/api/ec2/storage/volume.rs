//! Volumes and attachments: an EC2 volume is a kumo volume named by its id (`vol-…`), in the one
//! availability zone, made on the first ready host (a volume of a local pool attaches only to
//! instances on its host: `InvalidVolume.ZoneMismatch` otherwise). The EC2 volume type is a label
//! ([`device::VOLUME_TYPES`]): it picks the kumo volume type of the same name if an operator made
//! one, else the default type. `status` is kumo's state, with an attached volume `in-use` at once
//! (kumo's own state turns `in_use` when the host has plugged it). An attachment is `attaching`
//! until the instance's QEMU has the disk (or at once for a stopped instance), `detaching` until it
//! lets go.

use std::collections::HashMap;

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{
    AttachVolumeRequest, CreateVolumeRequest, DesiredState, Instance, InstanceStatus, Volume,
    VolumeState, VolumeView, ids as kids,
};

use super::super::filter::{Filters, Paging};
use super::super::network::util::{self, app, tag_set};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::device::{self, ATTR_DEVICE, ATTR_DEVICE_AT};
use crate::app::attrs::{self, Attrs, Extra};
use crate::app::idempotency::{self, Claim};
use crate::app::scope::Scope;
use crate::app::tags::{self, Tags};
use crate::app::{instance, volume, volume_type};

/// The attribute holding a volume's EC2 volume type.
pub const ATTR_TYPE: &str = "volumeType";

/// The device name of `v`'s attachment (the one the client gave, else the slot's).
pub fn device_of(v: &Volume, a: Option<&Attrs>) -> Option<String> {
    let att = v.attachment.as_ref()?;
    if att.boot {
        return Some(device::ROOT_DEVICE.into());
    }
    let given = a.and_then(|a| {
        (a.value(ATTR_DEVICE_AT) == Some(&device::at(&att.instance_id, att.slot)))
            .then(|| a.value(ATTR_DEVICE))
            .flatten()
    });
    Some(given.map_or_else(|| device::default_name(att.slot), str::to_string))
}

/// One attachment as EC2 shows it.
struct Attachment {
    instance: String,
    device: String,
    state: &'static str,
    delete_on_termination: bool,
}

/// A volume with everything EC2 shows about it.
struct View {
    v: VolumeView,
    attrs: Attrs,
    attachment: Option<Attachment>,
}

impl View {
    fn id(&self) -> &str {
        &self.v.volume.id
    }

    fn status(&self) -> &'static str {
        match self.v.state {
            VolumeState::Deleting => "deleting",
            VolumeState::Error => "error",
            VolumeState::Creating => "creating",
            _ if self.attachment.is_some() => "in-use",
            VolumeState::InUse => "in-use",
            VolumeState::Available => "available",
        }
    }

    fn volume_type(&self) -> &str {
        ec2_type(&self.v.volume, &self.attrs)
    }
}

/// The EC2 volume type of `v`: the label it was made or modified with, else its kumo volume type
/// if that is an EC2 name, else gp2.
pub fn ec2_type<'a>(v: &'a Volume, a: &'a Attrs) -> &'a str {
    a.value(ATTR_TYPE)
        .or_else(|| {
            device::VOLUME_TYPES
                .into_iter()
                .find(|t| *t == v.volume_type)
        })
        .unwrap_or(device::DEFAULT_VOLUME_TYPE)
}

/// The attachment of a volume: its record's, or (while a detach is under way) the instance whose
/// QEMU still has it.
fn attachment(
    v: &VolumeView,
    a: &Attrs,
    insts: &HashMap<String, (Instance, Option<InstanceStatus>)>,
) -> Option<Attachment> {
    let last_device = || a.value(ATTR_DEVICE).map(str::to_string);
    match (&v.volume.attachment, &v.plugged_into) {
        (Some(att), plugged) => {
            let running = insts
                .get(&att.instance_id)
                .is_some_and(|(i, _)| i.desired_state == DesiredState::Running);
            let state =
                if att.boot || plugged.as_deref() == Some(att.instance_id.as_str()) || !running {
                    "attached"
                } else {
                    "attaching"
                };
            Some(Attachment {
                instance: att.instance_id.clone(),
                device: device_of(&v.volume, Some(a)).unwrap_or_default(),
                state,
                delete_on_termination: att.delete_on_termination,
            })
        }
        (None, Some(i)) => Some(Attachment {
            instance: i.clone(),
            device: last_device().unwrap_or_default(),
            state: "detaching",
            delete_on_termination: false,
        }),
        (None, None) => None,
    }
}

fn write_volume(w: &mut XmlWriter, ctx: &Ec2Ctx, v: &View, tags: Option<&Tags>) {
    let vol = &v.v.volume;
    let vtype = v.volume_type();
    w.text("volumeId", &vol.id)
        .int("size", i64::try_from(vol.size_gib).unwrap_or(i64::MAX))
        .text("snapshotId", vol.snapshot_id.as_deref().unwrap_or_default())
        .text("availabilityZone", &ctx.zone())
        .text("status", v.status())
        .text("createTime", &vol.created_at)
        .set("attachmentSet", v.attachment.as_ref(), |w, a| {
            w.text("volumeId", &vol.id)
                .text("instanceId", &a.instance)
                .text("device", &a.device)
                .text("status", a.state)
                .text("attachTime", &vol.created_at)
                .bool("deleteOnTermination", a.delete_on_termination);
        });
    tag_set(w, tags);
    w.text("volumeType", vtype);
    if vtype == "gp3" {
        w.int("iops", 3000).int("throughput", 125);
    }
    w.bool("encrypted", false).bool("multiAttachEnabled", false);
}

/// Every instance the caller lists, by id, with its status.
async fn instances(ctx: &Ec2Ctx) -> Ec2Result<HashMap<String, (Instance, Option<InstanceStatus>)>> {
    Ok(instance::list_all(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .into_iter()
        .map(|(i, s)| (i.id.clone(), (i, s)))
        .collect())
}

/// A volume by id as the caller sees it, or `InvalidVolume.NotFound`.
pub async fn resolve(ctx: &Ec2Ctx, volume_id: &str) -> Ec2Result<VolumeView> {
    let nf = || Ec2Error::not_found(ResourceKind::Volume, volume_id);
    if !ids::is("vol", volume_id) {
        return Err(nf());
    }
    match volume::get(&ctx.app, &ctx.scope, volume_id).await {
        Ok(v) => Ok(v),
        Err(kumo_types::Error::NotFound { .. }) => Err(nf()),
        Err(e) => Err(app(e)),
    }
}

async fn view_of(ctx: &Ec2Ctx, v: VolumeView) -> Ec2Result<View> {
    let a = attrs::get(&ctx.app, &v.volume.id).await.map_err(app)?;
    let insts = instances(ctx).await?;
    let attachment = attachment(&v, &a, &insts);
    Ok(View {
        v,
        attrs: a,
        attachment,
    })
}

/// What a `CreateVolume` asks for (its `ClientToken` digest).
#[derive(Debug)]
struct CreateArgs {
    size: Option<i64>,
    snapshot: Option<String>,
    volume_type: Option<&'static str>,
    tags: Vec<(String, String)>,
}

pub async fn create(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let zone = root.str("AvailabilityZone")?;
    let size = root.opt_i64("Size", 1..=65536)?;
    let snapshot = root.opt_str("SnapshotId");
    let volume_type = root.opt_enum("VolumeType", &device::VOLUME_TYPES)?;
    let iops = root.opt_i64("Iops", 0..=i64::MAX)?;
    let throughput = root.opt_i64("Throughput", 0..=i64::MAX)?;
    let token = p.client_token()?;
    let tag_list = util::tag_specs(p, "volume")?;
    for (param, why) in [
        (
            "Encrypted",
            "kumo has no key service to encrypt volumes with.",
        ),
        (
            "MultiAttachEnabled",
            "a kumo volume attaches to one instance at a time.",
        ),
    ] {
        if root.opt_bool(param)? == Some(true) {
            return Err(util::cannot(param, "true", why));
        }
    }
    if zone != ctx.zone() {
        return Err(Ec2Error::invalid_parameter_value(
            "AvailabilityZone",
            &zone,
            &format!("kumo has one availability zone: {}.", ctx.zone()),
        ));
    }
    device::check_provisioned(
        volume_type.unwrap_or(device::DEFAULT_VOLUME_TYPE),
        iops,
        throughput,
    )?;
    if size.is_none() && snapshot.is_none() {
        return Err(Ec2Error::missing_parameter("Size"));
    }
    if let Some(s) = snapshot.as_deref().filter(|s| !ids::is("snap", s)) {
        return Err(Ec2Error::not_found(ResourceKind::Snapshot, s));
    }
    ctx.ready(p)?;
    let id = kids::new_id(kids::VOLUME);
    let args = CreateArgs {
        size,
        snapshot: snapshot.clone(),
        volume_type,
        tags: tag_list.clone(),
    };
    if let Some(t) = &token {
        let digest = idempotency::digest(&args);
        match idempotency::claim(
            &ctx.app,
            &ctx.scope,
            t,
            ctx.action(),
            &digest,
            std::slice::from_ref(&id),
        )
        .await
        .map_err(app)?
        {
            Claim::Fresh => {}
            Claim::Mismatch => return Err(Ec2Error::idempotent_parameter_mismatch()),
            Claim::Replay(made) => {
                let first = made.first().cloned().unwrap_or_default();
                let v = view_of(ctx, resolve(ctx, &first).await?).await?;
                let t = tags::get(&ctx.app, &ctx.scope, &first).await.map_err(app)?;
                return ctx.respond(|w| write_volume(w, ctx, &v, Some(&t)));
            }
        }
    }
    let made = create_volume(ctx, &id, &args).await;
    if made.is_err()
        && let Some(t) = &token
        && let Err(e) = idempotency::release(&ctx.app, &ctx.scope, t).await
    {
        tracing::warn!(error = %e, "could not release a client token");
    }
    let v = made?;
    ctx.target(id.clone());
    let v = view_of(ctx, v).await?;
    let t: Tags = tag_list.into_iter().collect();
    ctx.respond(|w| write_volume(w, ctx, &v, Some(&t)))
}

async fn create_volume(ctx: &Ec2Ctx, id: &str, args: &CreateArgs) -> Ec2Result<VolumeView> {
    let ec2_type = args.volume_type.unwrap_or(device::DEFAULT_VOLUME_TYPE);
    // An operator's kumo volume type named after the EC2 type, else the default.
    let kumo_type = volume_type::get(&ctx.app, ec2_type)
        .await
        .ok()
        .map(|t| t.name);
    let a = Attrs {
        values: [(ATTR_TYPE.to_string(), ec2_type.to_string())].into(),
        ..Attrs::default()
    };
    let mut extra = Extra::with_attrs(id.to_string(), &a).map_err(app)?;
    extra
        .ops
        .extend(tags::create_op(&ctx.scope.project, id, &args.tags).map_err(app)?);
    let req = CreateVolumeRequest {
        name: id.to_string(),
        size_gib: args.size.and_then(|s| u64::try_from(s).ok()),
        snapshot: args.snapshot.clone(),
        volume_type: kumo_type,
        ..CreateVolumeRequest::default()
    };
    match volume::create_with(&ctx.app, &ctx.scope, req, extra).await {
        Ok(v) => Ok(v),
        Err(kumo_types::Error::Invalid { field, .. }) if field == "snapshot" => {
            Err(Ec2Error::not_found(
                ResourceKind::Snapshot,
                args.snapshot.as_deref().unwrap_or_default(),
            ))
        }
        Err(kumo_types::Error::Conflict {
            field: Some(f),
            message,
        }) if f == "snapshot" => Err(util::err("IncorrectState", message)),
        Err(kumo_types::Error::Invalid { field, message }) if field == "size_gib" => {
            Err(Ec2Error::invalid_parameter_value(
                "Size",
                &args.size.unwrap_or_default().to_string(),
                &message,
            ))
        }
        Err(kumo_types::Error::InsufficientCapacity { message, .. }) => {
            Err(Ec2Error::new("InsufficientVolumeCapacity", message, 500))
        }
        Err(e) => Err(app(e)),
    }
}

/// Every volume the caller lists.
pub async fn list_all(ctx: &Ec2Ctx) -> Ec2Result<Vec<VolumeView>> {
    util::all_pages(|t| async move {
        volume::list(
            &ctx.app,
            &ctx.scope,
            Some(crate::app::MAX_PAGE),
            t.as_deref(),
        )
        .await
    })
    .await
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("VolumeId")?;
    let filters = Filters::read(
        p,
        &[
            "volume-id",
            "status",
            "size",
            "availability-zone",
            "create-time",
            "snapshot-id",
            "volume-type",
            "encrypted",
            "multi-attach-enabled",
            "attachment.instance-id",
            "attachment.device",
            "attachment.status",
            "attachment.delete-on-termination",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=500)?;
    if paging.is_set() && !wanted.is_empty() {
        return Err(Ec2Error::invalid_parameter_combination(
            "VolumeId",
            "MaxResults",
        ));
    }
    ctx.ready(p)?;
    let mut views = list_all(ctx).await?;
    for id in &wanted {
        if !views.iter().any(|v| &v.volume.id == id)
            && let Ok(v) = resolve(ctx, id).await
        {
            views.push(v);
        }
    }
    if !wanted.is_empty() {
        let found: Vec<&str> = views.iter().map(|v| v.volume.id.as_str()).collect();
        util::all_found(ResourceKind::Volume, &wanted, &found)?;
        views.retain(|v| wanted.contains(&v.volume.id));
    }
    let insts = instances(ctx).await?;
    let mut all_attrs = attrs::all(&ctx.app).await.map_err(app)?;
    let mut list: Vec<View> = views
        .into_iter()
        .map(|v| {
            let a = all_attrs.remove(&v.volume.id).unwrap_or_default();
            let attachment = attachment(&v, &a, &insts);
            View {
                v,
                attrs: a,
                attachment,
            }
        })
        .collect();
    let vol_ids: Vec<&str> = list.iter().map(View::id).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &vol_ids)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    list.retain(|v| {
        let vol = &v.v.volume;
        let att = v.attachment.as_ref();
        filters.matches(
            |name| match name {
                "volume-id" => vec![vol.id.clone()],
                "status" => vec![v.status().into()],
                "size" => vec![vol.size_gib.to_string()],
                "availability-zone" => vec![ctx.zone()],
                "create-time" => vec![vol.created_at.clone()],
                "snapshot-id" => vol.snapshot_id.clone().into_iter().collect(),
                "volume-type" => vec![v.volume_type().into()],
                "encrypted" | "multi-attach-enabled" => vec!["false".into()],
                "attachment.instance-id" => att.map(|a| a.instance.clone()).into_iter().collect(),
                "attachment.device" => att.map(|a| a.device.clone()).into_iter().collect(),
                "attachment.status" => att.map(|a| a.state.to_string()).into_iter().collect(),
                "attachment.delete-on-termination" => att
                    .map(|a| util::bool_text(a.delete_on_termination).to_string())
                    .into_iter()
                    .collect(),
                _ => vec![],
            },
            tag_map.get(&vol.id).unwrap_or(&empty),
        )
    });
    list.sort_by(|a, b| a.id().cmp(b.id()));
    let page = paging.page(list, |v| v.id().to_string());
    ctx.respond(|w| {
        w.set("volumeSet", &page.items, |w, v| {
            write_volume(w, ctx, v, tag_map.get(v.id()));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

pub async fn delete(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let volume_id = p.root().str("VolumeId")?;
    ctx.ready(p)?;
    let v = resolve(ctx, &volume_id).await?;
    ctx.target(volume_id.clone());
    if let Some(a) = &v.volume.attachment {
        return Err(util::err(
            "VolumeInUse",
            format!(
                "Volume {volume_id} is currently attached to {}",
                a.instance_id
            ),
        ));
    }
    match volume::delete(&ctx.app, &ctx.scope, &volume_id).await {
        Ok(_) => {}
        Err(kumo_types::Error::Conflict { message, .. })
            if message.contains("snapshot") || message.contains("attached") =>
        {
            // kumo keeps snapshots inside their volume: it goes after them (a retry succeeds
            // once they are deleted).
            return Err(util::err("VolumeInUse", message));
        }
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(util::err("IncorrectState", message));
        }
        Err(e) => return Err(app(e)),
    }
    tags::delete_all(&ctx.app, &volume_id).await.map_err(app)?;
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

fn write_attachment(w: &mut XmlWriter, v: &Volume, instance: &str, device: &str, state: &str) {
    w.text("attachTime", &kumo_types::now_rfc3339())
        .text("device", device)
        .text("instanceId", instance)
        .text("status", state)
        .text("volumeId", &v.id)
        .bool(
            "deleteOnTermination",
            v.attachment
                .as_ref()
                .is_some_and(|a| a.delete_on_termination),
        );
}

pub async fn attach(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let device_name = root.str("Device")?;
    let instance_id = root.str("InstanceId")?;
    let volume_id = root.str("VolumeId")?;
    let slot = device::slot(&device_name)?;
    ctx.ready(p)?;
    let v = resolve(ctx, &volume_id).await?;
    ctx.target(volume_id.clone());
    let (inst, _) = instance::find_in(&ctx.app, &Scope::within(&v.volume.project), &instance_id)
        .await
        .map_err(|_| Ec2Error::not_found(ResourceKind::Instance, &instance_id))?;
    ctx.target(inst.id.clone());
    if v.volume.attachment.is_some() || v.plugged_into.is_some() {
        return Err(util::err(
            "VolumeInUse",
            format!("{volume_id} is already attached to an instance"),
        ));
    }
    if matches!(
        v.state,
        VolumeState::Creating | VolumeState::Error | VolumeState::Deleting
    ) {
        return Err(util::err(
            "IncorrectState",
            format!("{volume_id} is not 'available'."),
        ));
    }
    if inst.deleting {
        return Err(Ec2Error::incorrect_instance_state(&inst.id, "attached to"));
    }
    attrs::update(&ctx.app, &v.volume.id, |a| {
        a.set(ATTR_DEVICE, device_name.clone());
        a.set(ATTR_DEVICE_AT, device::at(&inst.id, slot));
        Ok(())
    })
    .await
    .map_err(app)?;
    let req = AttachVolumeRequest {
        instance: inst.id.clone(),
        delete_on_termination: false,
    };
    let attached = match volume::attach_at(&ctx.app, &ctx.scope, &v.volume.id, req, Some(slot))
        .await
    {
        Ok(a) => a,
        Err(kumo_types::Error::Conflict { field: Some(f), .. }) if f == "slot" => {
            return Err(Ec2Error::invalid_parameter_value_message(format!(
                "Invalid value '{device_name}' for unixDevice. Attachment point {device_name} is \
                 already in use"
            )));
        }
        Err(kumo_types::Error::Invalid { field, message }) if field == "instance" => {
            return Err(util::err(
                "InvalidVolume.ZoneMismatch",
                format!(
                    "The volume '{volume_id}' is not in the same availability zone as instance \
                     '{}': {message}",
                    inst.id
                ),
            ));
        }
        Err(kumo_types::Error::Conflict { message, .. }) if message.contains("already has") => {
            return Err(util::err("AttachmentLimitExceeded", message));
        }
        Err(kumo_types::Error::Conflict { message, .. }) if message.contains("instance") => {
            return Err(util::err("IncorrectInstanceState", message));
        }
        Err(e) => return Err(app(e)),
    };
    ctx.respond(|w| write_attachment(w, &attached.volume, &inst.id, &device_name, "attaching"))
}

pub async fn detach(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let volume_id = root.str("VolumeId")?;
    let instance_id = root.opt_str("InstanceId");
    let device_name = root.opt_str("Device");
    if root.opt_bool("Force")? == Some(true) {
        return Err(util::cannot(
            "Force",
            "true",
            "kumo detaches only what the guest releases (it asks, and retries until the guest \
             lets go); stop the instance to release a stuck volume.",
        ));
    }
    ctx.ready(p)?;
    let v = resolve(ctx, &volume_id).await?;
    ctx.target(volume_id.clone());
    let a = attrs::get(&ctx.app, &v.volume.id).await.map_err(app)?;
    let Some(att) = v.volume.attachment.clone() else {
        return Err(util::err(
            "IncorrectState",
            format!("Volume '{volume_id}' is in the 'available' state."),
        ));
    };
    let device = device_of(&v.volume, Some(&a)).unwrap_or_default();
    if instance_id.as_deref().is_some_and(|i| i != att.instance_id)
        || device_name.as_deref().is_some_and(|d| d != device)
    {
        return Err(util::err(
            "InvalidAttachment.NotFound",
            format!(
                "Volume {volume_id} can not be detached from {} at {} because it is not attached \
                 there",
                instance_id.as_deref().unwrap_or(&att.instance_id),
                device_name.as_deref().unwrap_or(&device)
            ),
        ));
    }
    if att.boot {
        return Err(util::err(
            "OperationNotPermitted",
            format!(
                "The volume '{volume_id}' is the root device of instance '{}' and cannot be \
                 detached",
                att.instance_id
            ),
        ));
    }
    match volume::detach(&ctx.app, &ctx.scope, &v.volume.id).await {
        Ok(_) => {}
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(util::err("IncorrectState", message));
        }
        Err(e) => return Err(app(e)),
    }
    ctx.respond(|w| write_attachment(w, &v.volume, &att.instance_id, &device, "detaching"))
}
