//! Tags: `CreateTags`, `DeleteTags`, `DescribeTags`, and the helpers every create action uses
//! for `TagSpecification.N` ([`tag_specifications`]) and every action that names a resource by ID
//! ([`owner`]). Tags are stored by [`crate::app::tags`], keyed by the **EC2** id (`vpc-…`,
//! `rtb-…` and `acl-…` of one network are three resources with their own tags).

use std::collections::BTreeMap;

use kumo_ec2::{Ec2Error, Params};

use super::filter::{Filters, Paging};
use super::{Ec2Ctx, Ec2Result, error, ids};
use crate::app::{
    floating_ip, image, instance, key_pair, network, port, security_group, snapshot, tags, volume,
};

/// Tags to put on new resources, by resource type (`instance`, `volume`, …).
pub type TagSpecs = BTreeMap<String, Vec<(String, String)>>;

/// `TagSpecification.N`: tags by resource type. Every `ResourceType` must be one of `allowed`
/// (the first of `allowed` is assumed when one is absent and `allowed` has just one).
pub fn tag_specifications(params: &Params, allowed: &[&str]) -> Ec2Result<TagSpecs> {
    let mut out = TagSpecs::new();
    for spec in params.tag_specifications()? {
        let rt = match (spec.resource_type, allowed) {
            (Some(rt), _) => rt,
            (None, [only]) => (*only).to_string(),
            (None, _) => {
                return Err(Ec2Error::missing_parameter(
                    "TagSpecification.N.ResourceType",
                ));
            }
        };
        if !allowed.contains(&rt.as_str()) {
            return Err(Ec2Error::invalid_parameter_value_message(format!(
                "'{rt}' is not a valid taggable resource type for this operation. Valid here: {}",
                allowed.join(", ")
            )));
        }
        let list = out.entry(rt).or_default();
        for t in spec.tags {
            list.push((t.key, t.value.unwrap_or_default()));
        }
    }
    for list in out.values() {
        tags::merged(&tags::Tags::new(), list).map_err(error::from_app)?;
    }
    Ok(out)
}

/// The project of the resource EC2 id `id` names, as the caller sees it (its own project's, or
/// any for a cloud admin): the `…NotFound` of its kind otherwise, `InvalidID` for an id of no
/// taggable kind. Public images of other projects are seen but not the caller's to tag
/// (`UnauthorizedOperation`).
pub async fn owner(ctx: &Ec2Ctx, id: &str) -> Ec2Result<String> {
    let (app, s) = (&ctx.app, &ctx.scope);
    let kumo = ids::kumo_id(id);
    let project = match ids::resource_type(id) {
        Some("instance") => instance::find_in(app, s, id).await.map(|(i, _)| i.project),
        Some("image") => match image::get(app, s, id).await {
            Ok(img) if s.sees(&img.project) => Ok(img.project),
            Ok(_) => return Err(Ec2Error::unauthorized_operation()),
            Err(e) => Err(e),
        },
        Some("key-pair") => key_pair::get(app, s, id).await.map(|k| k.project),
        Some("security-group") => security_group::get(app, s, id).await.map(|g| g.project),
        Some("subnet") => network::get_subnet(app, s, id).await.map(|n| n.project),
        Some("vpc" | "route-table" | "network-acl") => {
            network::get(app, s, &kumo).await.map(|n| n.project)
        }
        Some("network-interface") => port::get(app, s, id).await.map(|p| p.project),
        Some("volume") => volume::find(app, s, id).await.map(|(v, _)| v.project),
        Some("snapshot") => snapshot::find(app, s, id).await.map(|(v, _)| v.project),
        Some("elastic-ip") => floating_ip::get(app, s, id).await.map(|(f, _)| f.project),
        _ => {
            return Err(Ec2Error::new(
                "InvalidID",
                format!("The ID '{id}' is not valid"),
                400,
            ));
        }
    };
    project.map_err(|e| match e {
        kumo_types::Error::NotFound { kind, .. } => error::not_found(kind, id),
        e => error::from_app(e),
    })
}

fn resource_ids(params: &Params) -> Ec2Result<Vec<String>> {
    let ids = params.id_list("ResourceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing_parameter("ResourceId"));
    }
    Ok(ids)
}

pub async fn create(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = resource_ids(params)?;
    let tags: Vec<(String, String)> = params
        .tags()?
        .into_iter()
        .map(|t| (t.key, t.value.unwrap_or_default()))
        .collect();
    if tags.is_empty() {
        return Err(Ec2Error::missing_parameter("Tag"));
    }
    tags::validate(&tags).map_err(error::from_app)?;
    let mut owners = Vec::new();
    for id in &ids {
        owners.push((id, owner(ctx, id).await?));
    }
    ctx.ready(params)?;
    for (id, project) in owners {
        ctx.target(id.as_str());
        tags::set(&ctx.app, &ctx.scope, &project, id, &tags)
            .await
            .map_err(error::from_app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

pub async fn delete(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let ids = resource_ids(params)?;
    let given = params.tags()?;
    let mut owners = Vec::new();
    for id in &ids {
        owners.push((id, owner(ctx, id).await?));
    }
    ctx.ready(params)?;
    for (id, project) in owners {
        ctx.target(id.as_str());
        let keys: Vec<(String, Option<String>)> = if given.is_empty() {
            tags::get(&ctx.app, &ctx.scope, id)
                .await
                .map_err(error::from_app)?
                .into_keys()
                .map(|k| (k, None))
                .collect()
        } else {
            given
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect()
        };
        tags::remove(&ctx.app, &ctx.scope, &project, id, &keys)
            .await
            .map_err(error::from_app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

pub async fn describe(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let filters = Filters::read(
        params,
        &["resource-id", "resource-type", "key", "value", "tag:*"],
    )?;
    let paging = Paging::read(params, 5..=1000)?;
    ctx.ready(params)?;
    let mut rows: Vec<(String, &'static str, String, String, tags::Tags)> = Vec::new();
    for rec in tags::list(&ctx.app, &ctx.scope)
        .await
        .map_err(error::from_app)?
    {
        let id = rec.id.clone();
        let Some(rt) = ids::resource_type(&id) else {
            continue;
        };
        for (k, v) in &rec.tags {
            rows.push((id.clone(), rt, k.clone(), v.clone(), rec.tags.clone()));
        }
    }
    rows.retain(|(id, rt, k, v, all)| {
        filters.matches(
            |name| match name {
                "resource-id" => vec![id.clone()],
                "resource-type" => vec![rt.to_string()],
                "key" => vec![k.clone()],
                "value" => vec![v.clone()],
                _ => vec![],
            },
            all,
        )
    });
    let page = paging.page(rows, |(id, _, k, _, _)| format!("{id}\u{1}{k}"));
    ctx.respond(|w| {
        w.set("tagSet", &page.items, |w, (id, rt, k, v, _)| {
            w.text("resourceId", id)
                .text("resourceType", rt)
                .text("key", k)
                .text("value", v);
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}
