//! Images (AMIs): `DescribeImages`, `CreateImage` (from an instance's boot volume, through
//! `app::image::import`), `DeregisterImage` — kumo images, including other projects' public
//! ones, which EC2 shows as owned by `amazon` so that `Owner=amazon` and Terraform's
//! `owners = ["amazon"]` find them.

use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{Image, ImageState, ImportImageRequest, Visibility};

use super::filter::{Filters, Paging};
use super::render::{ROOT_DEVICE, parse_time, tag_set};
use super::tags::tag_specifications;
use super::{Ec2Ctx, Ec2Result, error, ids};
use crate::app::{attrs, image, instance, tags};

/// Attribute of an image: its EC2 description.
const ATTR_DESCRIPTION: &str = "description";

const FILTERS: &[&str] = &[
    "image-id",
    "name",
    "state",
    "owner-id",
    "owner-alias",
    "is-public",
    "architecture",
    "image-type",
    "root-device-type",
    "root-device-name",
    "virtualization-type",
    "hypervisor",
    "platform-details",
    "description",
    "tag:*",
];

fn image_id(id: &str) -> Ec2Result<()> {
    if !ids::is("ami", id) {
        return Err(Ec2Error::new(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"ami-...\")"),
            400,
        ));
    }
    Ok(())
}

fn state(img: &Image) -> &'static str {
    match img.state {
        ImageState::Available => "available",
        ImageState::Importing => "pending",
        ImageState::Error => "failed",
    }
}

/// One image as this caller sees it.
struct Shown {
    img: Image,
    tags: tags::Tags,
    description: String,
    /// Another project's public image: owner alias `amazon`.
    foreign: bool,
}

impl Shown {
    fn owner(&self) -> String {
        ids::account_id(&self.img.project)
    }

    fn field(&self, name: &str) -> Vec<String> {
        let one = |s: &str| vec![s.to_string()];
        match name {
            "image-id" => one(&self.img.id),
            "name" => one(&self.img.name),
            "state" => one(state(&self.img)),
            "owner-id" => vec![self.owner()],
            "owner-alias" => {
                if self.foreign {
                    one("amazon")
                } else {
                    vec![]
                }
            }
            "is-public" => one(if self.img.visibility == Visibility::Public {
                "true"
            } else {
                "false"
            }),
            "architecture" => one("x86_64"),
            "image-type" => one("machine"),
            "root-device-type" => one("ebs"),
            "root-device-name" => one(ROOT_DEVICE),
            "virtualization-type" => one("hvm"),
            "hypervisor" => one("xen"),
            "platform-details" => one("Linux/UNIX"),
            "description" => one(&self.description),
            _ => vec![],
        }
    }
}

pub async fn describe(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let wanted = params.id_list("ImageId")?;
    for id in &wanted {
        image_id(id)?;
    }
    let owners = params.id_list("Owner")?;
    let executable_by = params.id_list("ExecutableBy")?;
    let _ = params.root().opt_bool("IncludeDeprecated")?;
    let _ = params.root().opt_bool("IncludeDisabled")?;
    let filters = Filters::read(params, FILTERS)?;
    let paging = Paging::read(params, 5..=1000)?;
    if let Some(bad) = executable_by
        .iter()
        .find(|e| !matches!(e.as_str(), "self" | "all") && **e != ctx.account_id())
    {
        return Err(Ec2Error::invalid_parameter_value_message(format!(
            "Invalid value for ExecutableBy: {bad} (kumo knows self, all and your own account)"
        )));
    }
    ctx.ready(params)?;
    let all = image::list(&ctx.app, &ctx.scope)
        .await
        .map_err(error::from_app)?
        .items;
    let ids: Vec<&str> = all.iter().map(|i| i.id.as_str()).collect();
    let mut tags = tags::for_ids(&ctx.app, &ctx.scope, &ids)
        .await
        .map_err(error::from_app)?;
    let mut attrs = attrs::all(&ctx.app).await.map_err(error::from_app)?;
    let mut shown: Vec<Shown> = all
        .into_iter()
        .map(|img| Shown {
            tags: tags.remove(&img.id).unwrap_or_default(),
            description: attrs
                .remove(&img.id)
                .and_then(|a| a.value(ATTR_DESCRIPTION).map(str::to_string))
                .unwrap_or_default(),
            foreign: !ctx.scope.sees(&img.project),
            img,
        })
        .collect();
    if !wanted.is_empty() {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| !shown.iter().any(|s| &s.img.id == *w))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Ec2Error::not_found_ids(ResourceKind::Image, &missing));
        }
        shown.retain(|s| wanted.contains(&s.img.id));
    }
    if !owners.is_empty() {
        let me = ctx.account_id();
        shown.retain(|s| {
            owners.iter().any(|o| match o.as_str() {
                "self" => !s.foreign,
                "amazon" | "aws-marketplace" => s.foreign,
                account => s.owner() == account || (account == me && !s.foreign),
            })
        });
    }
    shown.retain(|s| filters.matches(|n| s.field(n), &s.tags));
    let page = paging.page(shown, |s| s.img.id.clone());
    ctx.respond(|w| {
        w.set("imagesSet", &page.items, write_image);
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

fn write_image(w: &mut kumo_ec2::xml::XmlWriter, s: &Shown) {
    let img = &s.img;
    let gib = img.virtual_size_bytes.div_ceil(1 << 30).max(1) as i64;
    w.text("imageId", &img.id)
        .text("imageLocation", &format!("{}/{}", s.owner(), img.name))
        .text("imageState", state(img))
        .text("imageOwnerId", &s.owner())
        .timestamp("creationDate", &parse_time(&img.created_at))
        .bool("isPublic", img.visibility == Visibility::Public)
        .text("architecture", "x86_64")
        .text("imageType", "machine")
        .text("name", &img.name)
        .text("description", &s.description);
    if s.foreign {
        w.text("imageOwnerAlias", "amazon");
    }
    w.text("rootDeviceType", "ebs")
        .text("rootDeviceName", ROOT_DEVICE)
        .set("blockDeviceMapping", [()], |w, ()| {
            w.text("deviceName", ROOT_DEVICE).node("ebs", |w| {
                w.bool("deleteOnTermination", true)
                    .int("volumeSize", gib)
                    .text("volumeType", "gp2")
                    .bool("encrypted", false);
            });
        })
        .text("virtualizationType", "hvm")
        .text("hypervisor", "xen")
        .bool("enaSupport", true)
        .text("sriovNetSupport", "simple")
        .text("platformDetails", "Linux/UNIX")
        .text("usageOperation", "RunInstances")
        .text("bootMode", "legacy-bios");
    if img.state == ImageState::Error {
        w.node("stateReason", |w| {
            w.text("code", "Client.ImportError").text(
                "message",
                img.status_message.as_deref().unwrap_or("the import failed"),
            );
        });
    }
    tag_set(w, &s.tags);
}

pub async fn create(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let instance_id = params.root().str("InstanceId")?;
    let name = params.root().str("Name")?;
    let description = params.root().opt_str("Description");
    // kumo never reboots an instance to image it: the image is crash-consistent if it runs.
    let _no_reboot = params.root().opt_bool("NoReboot")?;
    let specs = tag_specifications(params, &["image", "snapshot"])?;
    if specs.contains_key("snapshot") {
        return Err(Ec2Error::unsupported(
            "kumo images are not backed by snapshots: tag the image (ResourceType=image) only",
        ));
    }
    kumo_types::validate::name("name", &name).map_err(|_| {
        Ec2Error::invalid_parameter_value_message(format!(
            "Invalid value '{name}' for Name: kumo image names are 1-63 characters of a-z, 0-9 \
             and '-', starting with a letter"
        ))
    })?;
    let (inst, _) = instance::find_in(&ctx.app, &ctx.scope, &instance_id)
        .await
        .map_err(error::from_app)?;
    let Some(volume) = inst.boot_volume_id.clone() else {
        return Err(Ec2Error::unsupported(format!(
            "instance '{instance_id}' has no boot volume (its root disk is a local file): only \
             instances launched with an EBS root volume can be imaged"
        )));
    };
    ctx.ready(params)?;
    let img = image::import(
        &ctx.app,
        &ctx.scope,
        ImportImageRequest {
            name,
            volume: Some(volume),
            ..Default::default()
        },
    )
    .await
    .map_err(error::from_app)?;
    ctx.target(&img.id);
    ctx.target(&inst.id);
    if let Some(list) = specs.get("image") {
        tags::set(&ctx.app, &ctx.scope, &img.project, &img.id, list)
            .await
            .map_err(error::from_app)?;
    }
    if let Some(d) = description {
        attrs::update(&ctx.app, &img.id, |a| {
            a.set(ATTR_DESCRIPTION, d.clone());
            Ok(())
        })
        .await
        .map_err(error::from_app)?;
    }
    ctx.respond(|w| {
        w.text("imageId", &img.id);
    })
}

pub async fn deregister(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let id = params.root().str("ImageId")?;
    image_id(&id)?;
    let _ = params.root().opt_bool("DeleteAssociatedSnapshots")?;
    let img = image::get(&ctx.app, &ctx.scope, &id)
        .await
        .map_err(error::from_app)?;
    if !ctx.scope.sees(&img.project) {
        return Err(Ec2Error::unauthorized_operation());
    }
    ctx.ready(params)?;
    ctx.target(&img.id);
    // Its tags and attributes go in the same transaction.
    image::delete(&ctx.app, &ctx.scope, &img.id)
        .await
        .map_err(error::from_app)?;
    ctx.respond(|w| {
        w.bool("return", true);
    })
}
