//! Network interfaces: kumo ports (`eni-…` is the port's own id). An interface attached to an
//! instance is `in-use`, with the NIC's slot as `deviceIndex` (0 is the primary interface) and
//! `eni-attach-<hex>` as attachment id; a free-standing port is `available`. A floating IP on the
//! port is its `association`.

use std::collections::HashMap;

use kumo_ec2::Params;
use kumo_ec2::xml::XmlWriter;
use kumo_types::{FloatingIp, Instance, Port};

use super::super::filter::{Filters, Paging};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::address::association_of;
use super::security::{self, Group};
use super::util::{self, app, tag_set};
use crate::app::tags::{self, Tags};
use crate::app::{floating_ip, instance, port};

/// One interface with what EC2 shows about it.
struct View<'a> {
    p: Port,
    nic: Option<(&'a Instance, &'a kumo_types::Nic)>,
    fip: Option<&'a FloatingIp>,
}

impl View<'_> {
    fn status(&self) -> &'static str {
        if self.p.instance_id.is_some() {
            "in-use"
        } else {
            "available"
        }
    }

    fn attachment_id(&self) -> String {
        format!("eni-attach-{}", self.p.id.trim_start_matches("eni-"))
    }
}

fn write_eni(
    w: &mut XmlWriter,
    ctx: &Ec2Ctx,
    v: &View<'_>,
    groups: &HashMap<&str, &Group>,
    tags: Option<&Tags>,
) {
    let p = &v.p;
    let owner = ids::account_id(&p.project);
    let association = |w: &mut XmlWriter, f: &FloatingIp| {
        w.node("association", |w| {
            w.text("publicIp", &f.address)
                .text("publicDnsName", "")
                .text("ipOwnerId", &ids::account_id(&f.project))
                .text("allocationId", &f.id)
                .text("associationId", &association_of(&f.id));
        });
    };
    w.text("networkInterfaceId", &p.id)
        .text("subnetId", &p.subnet_id)
        .text("vpcId", &ids::ec2_id(&p.network_id))
        .text("availabilityZone", &ctx.zone())
        .text("description", p.name.as_deref().unwrap_or_default())
        .text("ownerId", &owner)
        .bool("requesterManaged", false)
        .text("status", v.status())
        .text("macAddress", &p.mac)
        .text("privateIpAddress", &p.ipv4)
        .bool("sourceDestCheck", true)
        .text("interfaceType", "interface")
        .set("groupSet", &p.security_groups, |w, g| {
            w.text("groupId", g)
                .opt_text("groupName", groups.get(g.as_str()).map(|g| g.name.as_str()));
        });
    if let Some((inst, nic)) = v.nic {
        w.node("attachment", |w| {
            w.text("attachmentId", &v.attachment_id())
                .text("instanceId", &inst.id)
                .text("instanceOwnerId", &ids::account_id(&inst.project))
                .int("deviceIndex", i64::from(nic.slot))
                .int("networkCardIndex", 0)
                .text("status", "attached")
                .text("attachTime", &inst.created_at)
                .bool("deleteOnTermination", !nic.keep_port);
        });
    }
    if let Some(f) = v.fip {
        association(w, f);
    }
    tag_set(w, tags);
    w.set("privateIpAddressesSet", [()], |w, ()| {
        w.text("privateIpAddress", &p.ipv4).bool("primary", true);
        if let Some(f) = v.fip {
            association(w, f);
        }
    })
    .empty("ipv6AddressesSet");
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("NetworkInterfaceId")?;
    let filters = Filters::read(
        p,
        &[
            "network-interface-id",
            "subnet-id",
            "vpc-id",
            "availability-zone",
            "attachment.instance-id",
            "attachment.instance-owner-id",
            "attachment.attachment-id",
            "attachment.status",
            "attachment.device-index",
            "attachment.delete-on-termination",
            "private-ip-address",
            "addresses.private-ip-address",
            "addresses.primary",
            "group-id",
            "group-name",
            "status",
            "mac-address",
            "owner-id",
            "description",
            "association.public-ip",
            "association.allocation-id",
            "association.association-id",
            "interface-type",
            "requester-managed",
            "source-dest-check",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=1000)?;
    if paging.is_set() && !wanted.is_empty() {
        return Err(kumo_ec2::Ec2Error::invalid_parameter_combination(
            "NetworkInterfaceId",
            "MaxResults",
        ));
    }
    ctx.ready(p)?;
    let mut ports = port::list(&ctx.app, &ctx.scope, None)
        .await
        .map_err(app)?
        .items;
    for id in &wanted {
        if !ports.iter().any(|p| &p.id == id)
            && ids::is("eni", id)
            && let Ok(found) = port::get(&ctx.app, &ctx.scope, id).await
        {
            ports.push(found);
        }
    }
    if let Some(missing) = wanted.iter().find(|w| !ports.iter().any(|p| &p.id == *w)) {
        return Err(util::err(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{missing}' does not exist"),
        ));
    }
    if !wanted.is_empty() {
        ports.retain(|p| wanted.contains(&p.id));
    }
    let insts: Vec<Instance> = instance::list_all(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let fips = floating_ip::list(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .items;
    let all_groups = security::all(ctx).await?;
    let groups: HashMap<&str, &Group> = all_groups.iter().map(|g| (g.g.id.as_str(), g)).collect();
    let mut views: Vec<View<'_>> = ports
        .into_iter()
        .map(|p| {
            let nic = p.instance_id.as_ref().and_then(|i| {
                let inst = insts.iter().find(|x| &x.id == i)?;
                let nic = inst.nics.iter().find(|n| n.port_id == p.id)?;
                Some((inst, nic))
            });
            let fip = fips
                .iter()
                .find(|f| f.port_id.as_deref() == Some(p.id.as_str()));
            View { p, nic, fip }
        })
        .collect();
    let port_ids: Vec<&str> = views.iter().map(|v| v.p.id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &port_ids)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    views.retain(|v| {
        let p = &v.p;
        filters.matches(
            |name| match name {
                "network-interface-id" => vec![p.id.clone()],
                "subnet-id" => vec![p.subnet_id.clone()],
                "vpc-id" => vec![ids::ec2_id(&p.network_id)],
                "availability-zone" => vec![ctx.zone()],
                "attachment.instance-id" => v.nic.map(|(i, _)| i.id.clone()).into_iter().collect(),
                "attachment.instance-owner-id" => v
                    .nic
                    .map(|(i, _)| ids::account_id(&i.project))
                    .into_iter()
                    .collect(),
                "attachment.attachment-id" => {
                    v.nic.map(|_| v.attachment_id()).into_iter().collect()
                }
                "attachment.status" => v.nic.map(|_| "attached".to_string()).into_iter().collect(),
                "attachment.device-index" => {
                    v.nic.map(|(_, n)| n.slot.to_string()).into_iter().collect()
                }
                "attachment.delete-on-termination" => v
                    .nic
                    .map(|(_, n)| util::bool_text(!n.keep_port).to_string())
                    .into_iter()
                    .collect(),
                "private-ip-address" | "addresses.private-ip-address" => vec![p.ipv4.clone()],
                "addresses.primary" => vec!["true".into()],
                "group-id" => p.security_groups.clone(),
                "group-name" => p
                    .security_groups
                    .iter()
                    .filter_map(|g| groups.get(g.as_str()).map(|g| g.name.clone()))
                    .collect(),
                "status" => vec![v.status().into()],
                "mac-address" => vec![p.mac.clone()],
                "owner-id" => vec![ids::account_id(&p.project)],
                "description" => vec![p.name.clone().unwrap_or_default()],
                "association.public-ip" => v.fip.map(|f| f.address.clone()).into_iter().collect(),
                "association.allocation-id" => v.fip.map(|f| f.id.clone()).into_iter().collect(),
                "association.association-id" => {
                    v.fip.map(|f| association_of(&f.id)).into_iter().collect()
                }
                "interface-type" => vec!["interface".into()],
                "requester-managed" => vec!["false".into()],
                "source-dest-check" => vec!["true".into()],
                _ => vec![],
            },
            tag_map.get(&p.id).unwrap_or(&empty),
        )
    });
    views.sort_by(|a, b| a.p.id.cmp(&b.p.id));
    let page = paging.page(views, |v| v.p.id.clone());
    ctx.respond(|w| {
        w.set("networkInterfaceSet", &page.items, |w, v| {
            write_eni(w, ctx, v, &groups, tag_map.get(&v.p.id));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}
