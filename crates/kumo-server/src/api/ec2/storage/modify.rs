//! `ModifyVolume` and `DescribeVolumesModifications` (Terraform's update of `aws_ebs_volume`).
//!
//! A volume grows through `app::volume::resize`, exactly as `PATCH /v1/volumes/{id}` grows it:
//! online when its instance runs, charged to the project's `volume_gib` quota in the same
//! transaction, never shrunk. The EC2 volume type is a label ([`device::VOLUME_TYPES`]); it may
//! change only to a label that maps onto the volume's own kumo volume type (kumo does not move a
//! volume between pools). kumo provisions no IOPS or throughput: only gp3's baseline is accepted.
//! The last modification of a volume is kept in its attributes; it is `modifying` until the
//! volume's host reports the new size, then `completed`.

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{UpdateVolumeRequest, VolumeView};
use serde::{Deserialize, Serialize};

use super::super::filter::{Filters, Paging};
use super::super::network::util::{self, app};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::device;
use super::volume::{self as ec2_volume, ATTR_TYPE};
use crate::app::attrs::{self, Attrs};
use crate::app::{volume, volume_type};

/// The attribute holding a volume's last modification (JSON).
const ATTR_MODIFICATION: &str = "modification";
const GIB: u64 = 1 << 30;

/// A volume's last modification, as its attributes keep it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Modification {
    original_size: u64,
    target_size: u64,
    original_type: String,
    target_type: String,
    start_time: String,
    /// When the volume's host was first seen with the new size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
}

impl Modification {
    fn of(a: &Attrs) -> Option<Modification> {
        serde_json::from_str(a.value(ATTR_MODIFICATION)?).ok()
    }

    /// `completed` once the host sees the target size (or nothing had to grow).
    fn state(&self, v: &VolumeView) -> &'static str {
        if self.end_time.is_some() || self.target_size <= self.original_size || done(self, v) {
            "completed"
        } else {
            "modifying"
        }
    }
}

fn done(m: &Modification, v: &VolumeView) -> bool {
    v.size_bytes >= m.target_size.saturating_mul(GIB)
}

/// The kumo volume type an EC2 volume-type label maps onto: the operator's type of that name, else
/// the default type.
async fn kumo_type_of(ctx: &Ec2Ctx, label: &str) -> Ec2Result<String> {
    if let Ok(t) = volume_type::get(&ctx.app, label).await {
        return Ok(t.name);
    }
    let (name, _) = volume_type::resolve(&ctx.app, None, None)
        .await
        .map_err(app)?;
    Ok(name)
}

fn write(w: &mut XmlWriter, volume_id: &str, m: &Modification, state: &str) {
    w.text("volumeId", volume_id)
        .text("modificationState", state)
        .int(
            "targetSize",
            i64::try_from(m.target_size).unwrap_or(i64::MAX),
        )
        .text("targetVolumeType", &m.target_type)
        .bool("targetMultiAttachEnabled", false)
        .int(
            "originalSize",
            i64::try_from(m.original_size).unwrap_or(i64::MAX),
        )
        .text("originalVolumeType", &m.original_type)
        .bool("originalMultiAttachEnabled", false);
    if m.target_type == "gp3" {
        w.int("targetIops", 3000).int("targetThroughput", 125);
    }
    if m.original_type == "gp3" {
        w.int("originalIops", 3000).int("originalThroughput", 125);
    }
    w.int("progress", if state == "completed" { 100 } else { 0 })
        .text("startTime", &m.start_time)
        .opt_text("endTime", m.end_time.as_deref());
}

pub async fn modify(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let volume_id = root.str("VolumeId")?;
    let size = root.opt_i64("Size", 1..=65536)?;
    let new_type = root.opt_enum("VolumeType", &device::VOLUME_TYPES)?;
    let iops = root.opt_i64("Iops", 0..=i64::MAX)?;
    let throughput = root.opt_i64("Throughput", 0..=i64::MAX)?;
    if root.opt_bool("MultiAttachEnabled")? == Some(true) {
        return Err(util::cannot(
            "MultiAttachEnabled",
            "true",
            "a kumo volume attaches to one instance at a time.",
        ));
    }
    if !ids::is("vol", &volume_id) {
        return Err(Ec2Error::not_found(ResourceKind::Volume, &volume_id));
    }
    let v = ec2_volume::resolve(ctx, &volume_id).await?;
    let a = attrs::get(&ctx.app, &v.volume.id).await.map_err(app)?;
    let old_type = ec2_volume::ec2_type(&v.volume, &a).to_string();
    let target_type = new_type.map_or_else(|| old_type.clone(), str::to_string);
    device::check_provisioned(&target_type, iops, throughput)?;
    let current = v.volume.size_gib;
    let target_size = size.map_or(current, |s| u64::try_from(s).unwrap_or(current));
    if target_size < current {
        return Err(util::cannot(
            "Size",
            &target_size.to_string(),
            &format!("New size cannot be smaller than existing size ({current} GiB)."),
        ));
    }
    if target_type != old_type {
        let (from, to) = (
            v.volume.volume_type.clone(),
            kumo_type_of(ctx, &target_type).await?,
        );
        if from != to {
            return Err(util::cannot(
                "VolumeType",
                &target_type,
                &format!(
                    "`{target_type}` is kumo volume type `{to}`, this volume is on `{from}`; \
                     kumo does not move volumes between volume types (pools)."
                ),
            ));
        }
    }
    if target_size == current && target_type == old_type {
        return Err(Ec2Error::new(
            "InvalidParameterCombination",
            format!(
                "Nothing to modify: volume {volume_id} already has {current} GiB and type \
                 {old_type}; give a larger Size or another VolumeType."
            ),
            400,
        ));
    }
    if let Some(m) = Modification::of(&a)
        && m.state(&v) == "modifying"
    {
        return Err(Ec2Error::new(
            "IncorrectModificationState",
            format!(
                "Cannot modify volume {volume_id}: its modification to {} GiB is still in \
                 progress.",
                m.target_size
            ),
            400,
        ));
    }
    ctx.ready(p)?;
    ctx.target(volume_id.clone());
    let resized = if target_size > current {
        let req = UpdateVolumeRequest {
            size_gib: Some(target_size),
        };
        match volume::resize(&ctx.app, &ctx.scope, &volume_id, req).await {
            Ok(v) => v,
            Err(kumo_types::Error::Invalid { field, message }) if field == "size_gib" => {
                return Err(util::cannot("Size", &target_size.to_string(), &message));
            }
            Err(e) => return Err(app(e)),
        }
    } else {
        v
    };
    let mut m = Modification {
        original_size: current,
        target_size,
        original_type: old_type,
        target_type: target_type.clone(),
        start_time: kumo_types::now_rfc3339(),
        end_time: None,
    };
    if m.state(&resized) == "completed" {
        m.end_time = Some(m.start_time.clone());
    }
    let json =
        serde_json::to_string(&m).map_err(|e| app(kumo_types::Error::internal(e.to_string())))?;
    attrs::update(&ctx.app, &volume_id, |a| {
        a.set(ATTR_MODIFICATION, json.clone());
        a.set(ATTR_TYPE, target_type.clone());
        Ok(())
    })
    .await
    .map_err(app)?;
    let state = m.state(&resized);
    ctx.respond(|w| {
        w.node("volumeModification", |w| write(w, &volume_id, &m, state));
    })
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("VolumeId")?;
    let filters = Filters::read(
        p,
        &[
            "volume-id",
            "modification-state",
            "target-size",
            "target-volume-type",
            "original-size",
            "original-volume-type",
            "start-time",
        ],
    )?;
    let paging = Paging::read(p, 5..=500)?;
    ctx.ready(p)?;
    let views = if wanted.is_empty() {
        ec2_volume::list_all(ctx).await?
    } else {
        let mut out = Vec::new();
        for id in &wanted {
            out.push(ec2_volume::resolve(ctx, id).await?);
        }
        out
    };
    let mut rows: Vec<(VolumeView, Modification)> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for v in views {
        let a = attrs::get(&ctx.app, &v.volume.id).await.map_err(app)?;
        match Modification::of(&a) {
            Some(mut m) => {
                if m.end_time.is_none() && m.state(&v) == "completed" {
                    m.end_time = Some(record_end(ctx, &v.volume.id, &m).await?);
                }
                rows.push((v, m));
            }
            None => {
                if let Some(id) = wanted.iter().find(|w| **w == v.volume.id) {
                    missing.push(id);
                }
            }
        }
    }
    if let Some(id) = missing.first() {
        return Err(Ec2Error::new(
            "InvalidVolumeModification.NotFound",
            format!("Modification for volume '{id}' does not exist."),
            400,
        ));
    }
    let empty = Default::default();
    rows.retain(|(v, m)| {
        filters.matches(
            |name| match name {
                "volume-id" => vec![v.volume.id.clone()],
                "modification-state" => vec![m.state(v).to_string()],
                "target-size" => vec![m.target_size.to_string()],
                "target-volume-type" => vec![m.target_type.clone()],
                "original-size" => vec![m.original_size.to_string()],
                "original-volume-type" => vec![m.original_type.clone()],
                "start-time" => vec![m.start_time.clone()],
                _ => vec![],
            },
            &empty,
        )
    });
    rows.sort_by(|a, b| a.0.volume.id.cmp(&b.0.volume.id));
    let page = paging.page(rows, |(v, _)| v.volume.id.clone());
    ctx.respond(|w| {
        w.set("volumeModificationSet", &page.items, |w, (v, m)| {
            write(w, &v.volume.id, m, m.state(v));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

/// Record when a modification was first seen complete; the time recorded.
async fn record_end(ctx: &Ec2Ctx, volume_id: &str, m: &Modification) -> Ec2Result<String> {
    let now = kumo_types::now_rfc3339();
    let mut done = m.clone();
    done.end_time = Some(now.clone());
    let json = serde_json::to_string(&done)
        .map_err(|e| app(kumo_types::Error::internal(e.to_string())))?;
    attrs::update(&ctx.app, volume_id, |a| {
        // Only the modification that was read (a newer one stays as it is).
        if Modification::of(a).is_some_and(|cur| cur.start_time == m.start_time) {
            a.set(ATTR_MODIFICATION, json.clone());
        }
        Ok(())
    })
    .await
    .map_err(app)?;
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_types::{Volume, VolumeState};

    fn view(size_gib: u64, size_bytes: u64) -> VolumeView {
        VolumeView {
            volume: Volume {
                size_gib,
                ..serde_json::from_value(serde_json::json!({
                    "id": "vol-1", "name": "vol-1", "size_gib": size_gib, "pool": "p",
                    "volume_type": "t", "project": "p1", "host": "h", "created_at": "x"
                }))
                .expect("volume")
            },
            state: VolumeState::Available,
            status_message: None,
            size_bytes,
            plugged_into: None,
        }
    }

    fn m(from: u64, to: u64) -> Modification {
        Modification {
            original_size: from,
            target_size: to,
            original_type: "gp2".into(),
            target_type: "gp2".into(),
            start_time: "t0".into(),
            end_time: None,
        }
    }

    #[test]
    fn a_modification_completes_when_the_host_sees_the_new_size() {
        assert_eq!(m(1, 3).state(&view(3, GIB)), "modifying");
        assert_eq!(m(1, 3).state(&view(3, 3 * GIB)), "completed");
        // A change of type alone has nothing to wait for.
        assert_eq!(m(2, 2).state(&view(2, 0)), "completed");
        let mut ended = m(1, 3);
        ended.end_time = Some("t1".into());
        assert_eq!(ended.state(&view(3, 0)), "completed");
    }
}
