//! Subnets: a kumo subnet of the VPC's network, named by its id, inside the VPC's CIDR block, in
//! the one availability zone. Addresses are handed out from the network address + 10 up (kumo's
//! default pool), so `availableIpAddressCount` is that pool's free addresses.
//!
//! `ModifySubnetAttribute` stores what changes nothing kumo does (DNS hostname options) and refuses
//! what kumo cannot do (public addresses at launch, IPv6, customer-owned addresses); turning those
//! off is accepted.

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{CreateSubnetRequest, Subnet, ids as kids};

use super::super::filter::{Filters, Paging};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::util::{self, app, tag_set};
use super::vpc;
use crate::app::attrs::{self, Attrs, Extra};
use crate::app::network;
use crate::app::tags::{self, Tags};

const HOSTNAME_TYPE: &str = "privateDnsHostnameTypeOnLaunch";
const DNS_A_RECORD: &str = "enableResourceNameDnsARecordOnLaunch";

/// The zone id of the one availability zone.
pub fn zone_id(ctx: &Ec2Ctx) -> String {
    format!("{}-az1", ctx.region)
}

/// A subnet as EC2 shows it.
struct View {
    s: Subnet,
    free: u64,
    attrs: Attrs,
    default_for_az: bool,
}

async fn view(ctx: &Ec2Ctx, s: Subnet, attrs: Attrs) -> Ec2Result<View> {
    let free = network::free_addresses(&ctx.app, &s).await.map_err(app)?;
    let default_for_az =
        s.name == network::DEFAULT_NAME && s.project == kumo_types::DEFAULT_PROJECT;
    Ok(View {
        s,
        free,
        attrs,
        default_for_az,
    })
}

fn write_subnet(w: &mut XmlWriter, ctx: &Ec2Ctx, v: &View, tags: Option<&Tags>) {
    let s = &v.s;
    w.text("subnetId", &s.id)
        .text(
            "subnetArn",
            &format!(
                "arn:aws:ec2:{}:{}:subnet/{}",
                ctx.region,
                ids::account_id(&s.project),
                s.id
            ),
        )
        .text("state", "available")
        .text("ownerId", &ids::account_id(&s.project))
        .text("vpcId", &ids::ec2_id(&s.network_id))
        .text("cidrBlock", &s.cidr)
        .int(
            "availableIpAddressCount",
            i64::try_from(v.free).unwrap_or(i64::MAX),
        )
        .text("availabilityZone", &ctx.zone())
        .text("availabilityZoneId", &zone_id(ctx))
        .bool("defaultForAz", v.default_for_az)
        .bool("mapPublicIpOnLaunch", false)
        .bool("mapCustomerOwnedIpOnLaunch", false)
        .bool("assignIpv6AddressOnCreation", false)
        .empty("ipv6CidrBlockAssociationSet")
        .bool("enableDns64", false)
        .bool("ipv6Native", false)
        .node("privateDnsNameOptionsOnLaunch", |w| {
            w.text(
                "hostnameType",
                v.attrs.value(HOSTNAME_TYPE).unwrap_or("ip-name"),
            )
            .bool(
                "enableResourceNameDnsARecord",
                v.attrs.value(DNS_A_RECORD) == Some("true"),
            )
            .bool("enableResourceNameDnsAAAARecord", false);
        });
    tag_set(w, tags);
}

/// A subnet by id as the caller sees it, or `InvalidSubnetID.NotFound`.
pub async fn resolve(ctx: &Ec2Ctx, subnet_id: &str) -> Ec2Result<Subnet> {
    let nf = || Ec2Error::not_found(ResourceKind::Subnet, subnet_id);
    if !ids::is("subnet", subnet_id) {
        return Err(nf());
    }
    match network::get_subnet(&ctx.app, &ctx.scope, subnet_id).await {
        Ok(s) => Ok(s),
        Err(kumo_types::Error::NotFound { .. }) => Err(nf()),
        Err(e) => Err(app(e)),
    }
}

pub async fn create(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let vpc_id = root.str("VpcId")?;
    let cidr = root.str("CidrBlock")?;
    let zone = root.opt_str("AvailabilityZone");
    let zone_id_given = root.opt_str("AvailabilityZoneId");
    if root.opt_bool("Ipv6Native")? == Some(true) {
        return Err(util::cannot(
            "Ipv6Native",
            "true",
            "kumo subnets are IPv4 only.",
        ));
    }
    let tag_list = util::tag_specs(p, "subnet")?;
    if let Some(z) = zone.as_deref().filter(|z| *z != ctx.zone()) {
        return Err(Ec2Error::invalid_parameter_value(
            "AvailabilityZone",
            z,
            &format!("kumo has one availability zone: {}.", ctx.zone()),
        ));
    }
    if let Some(z) = zone_id_given.as_deref().filter(|z| *z != zone_id(ctx)) {
        return Err(Ec2Error::invalid_parameter_value(
            "AvailabilityZoneId",
            z,
            &format!("kumo has one availability zone: {}.", zone_id(ctx)),
        ));
    }
    ctx.ready(p)?;
    let net = vpc::resolve(ctx, &vpc_id).await?;
    let id = kids::new_id(kids::SUBNET);
    let mut extra = Extra::id(id.clone());
    extra
        .ops
        .extend(tags::create_op(&ctx.scope.project, &id, &tag_list).map_err(app)?);
    let req = CreateSubnetRequest {
        name: id.clone(),
        network: net.id.clone(),
        cidr: cidr.clone(),
        ..CreateSubnetRequest::default()
    };
    let s = match network::create_subnet_with(&ctx.app, &ctx.scope, req, extra).await {
        Ok(s) => s,
        Err(kumo_types::Error::Invalid { field, message }) if field == "cidr" => {
            return Err(util::err(
                "InvalidSubnet.Range",
                format!("The CIDR '{cidr}' is invalid: {message}"),
            ));
        }
        Err(kumo_types::Error::Conflict {
            field: Some(f),
            message,
        }) if f == "cidr" => {
            return Err(util::err(
                "InvalidSubnet.Conflict",
                format!("The CIDR '{cidr}' conflicts with another subnet: {message}"),
            ));
        }
        Err(e) => return Err(app(e)),
    };
    ctx.target(s.id.clone());
    let v = view(ctx, s, Attrs::default()).await?;
    let tag_map: Tags = tag_list.into_iter().collect();
    ctx.respond(|w| {
        w.node("subnet", |w| write_subnet(w, ctx, &v, Some(&tag_map)));
    })
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("SubnetId")?;
    let filters = Filters::read(
        p,
        &[
            "subnet-id",
            "vpc-id",
            "cidr",
            "cidr-block",
            "cidrBlock",
            "availability-zone",
            "availability-zone-id",
            "availabilityZone",
            "state",
            "default-for-az",
            "defaultForAz",
            "owner-id",
            "map-public-ip-on-launch",
            "available-ip-address-count",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=1000)?;
    ctx.ready(p)?;
    let mut subnets = network::list_subnets(&ctx.app, &ctx.scope, None)
        .await
        .map_err(app)?
        .items;
    for id in &wanted {
        if !subnets.iter().any(|s| &s.id == id)
            && let Ok(s) = resolve(ctx, id).await
        {
            subnets.push(s);
        }
    }
    if !wanted.is_empty() {
        let found: Vec<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
        util::all_found(ResourceKind::Subnet, &wanted, &found)?;
        subnets.retain(|s| wanted.contains(&s.id));
    }
    let subnet_ids: Vec<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &subnet_ids)
        .await
        .map_err(app)?;
    let mut all_attrs = attrs::all(&ctx.app).await.map_err(app)?;
    let mut views = Vec::new();
    for s in subnets {
        let a = all_attrs.remove(&s.id).unwrap_or_default();
        views.push(view(ctx, s, a).await?);
    }
    let empty = Tags::new();
    views.retain(|v| {
        filters.matches(
            |name| match name {
                "subnet-id" => vec![v.s.id.clone()],
                "vpc-id" => vec![ids::ec2_id(&v.s.network_id)],
                "cidr" | "cidr-block" | "cidrBlock" => vec![v.s.cidr.clone()],
                "availability-zone" | "availabilityZone" => vec![ctx.zone()],
                "availability-zone-id" => vec![zone_id(ctx)],
                "state" => vec!["available".into()],
                "default-for-az" | "defaultForAz" => {
                    vec![util::bool_text(v.default_for_az).into()]
                }
                "owner-id" => vec![ids::account_id(&v.s.project)],
                "map-public-ip-on-launch" => vec!["false".into()],
                "available-ip-address-count" => vec![v.free.to_string()],
                _ => vec![],
            },
            tag_map.get(&v.s.id).unwrap_or(&empty),
        )
    });
    views.sort_by(|a, b| a.s.id.cmp(&b.s.id));
    let page = paging.page(views, |v| v.s.id.clone());
    ctx.respond(|w| {
        w.set("subnetSet", &page.items, |w, v| {
            write_subnet(w, ctx, v, tag_map.get(&v.s.id));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

pub async fn delete(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let subnet_id = p.root().str("SubnetId")?;
    ctx.ready(p)?;
    let s = resolve(ctx, &subnet_id).await?;
    ctx.target(s.id.clone());
    match network::delete_subnet(&ctx.app, &ctx.scope, &s.id).await {
        Ok(()) => {}
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(Ec2Error::dependency_violation(format!(
                "The subnet '{subnet_id}' has dependencies and cannot be deleted: {message}"
            )));
        }
        Err(e) => return Err(app(e)),
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

pub async fn modify_attribute(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let subnet_id = root.str("SubnetId")?;
    let mut set: Vec<(&str, String)> = Vec::new();
    let refuse_true = [
        (
            "MapPublicIpOnLaunch",
            "kumo gives instances no public address at launch: allocate an Elastic IP \
             (AllocateAddress) and associate it.",
        ),
        ("AssignIpv6AddressOnCreation", "kumo subnets are IPv4 only."),
        ("EnableDns64", "kumo subnets are IPv4 only."),
        (
            "EnableResourceNameDnsAAAARecordOnLaunch",
            "kumo subnets are IPv4 only.",
        ),
        (
            "MapCustomerOwnedIpOnLaunch",
            "kumo has no customer-owned address pools.",
        ),
    ];
    let mut given = 0;
    for (param, why) in refuse_true {
        match util::attr_bool(&root, param)? {
            Some(true) => return Err(util::cannot(&format!("{param}.Value"), "true", why)),
            Some(false) => given += 1,
            None => {}
        }
    }
    if let Some(v) = util::attr_bool(&root, "EnableResourceNameDnsARecordOnLaunch")? {
        set.push((DNS_A_RECORD, util::bool_text(v).into()));
    }
    if let Some(t) = root.opt_enum(
        "PrivateDnsHostnameTypeOnLaunch",
        &["ip-name", "resource-name"],
    )? {
        set.push((HOSTNAME_TYPE, t.into()));
    }
    if given + set.len() == 0 {
        return Err(Ec2Error::missing_parameter(
            "an attribute (MapPublicIpOnLaunch, PrivateDnsHostnameTypeOnLaunch, …)",
        ));
    }
    ctx.ready(p)?;
    let s = resolve(ctx, &subnet_id).await?;
    ctx.target(s.id.clone());
    if !set.is_empty() {
        attrs::update(&ctx.app, &s.id, |a| {
            for (k, v) in &set {
                a.set(k, v.clone());
            }
            Ok(())
        })
        .await
        .map_err(app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}
