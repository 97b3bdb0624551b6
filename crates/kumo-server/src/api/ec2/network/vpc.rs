//! VPCs. A VPC is a kumo network whose range (`Network::cidr`) is the VPC's CIDR block; its id is
//! `vpc-` + the network id's hex digits. A new VPC's network is `vxlan` when every host has a
//! tunnel endpoint (so the VPC spans hosts), else `bridge`; it has no outbound NAT (like a VPC
//! without an internet gateway). It also gets its own default security group (group name
//! `default`); its main route table and default network ACL are views of the network
//! ([`super::route`]).
//!
//! The kumo `default` network of the `default` project is the default VPC (`isDefault`). Networks
//! made through `/v1` without a range show the smallest CIDR covering their subnets.

use std::collections::HashMap;

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{
    CreateNetworkRequest, DEFAULT_PROJECT, HostState, Network, NetworkKind, Subnet, ids as kids,
};

use super::super::filter::{Filters, Paging};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::security;
use super::util::{self, app, tag_set};
use crate::app::attrs::{self, Attrs};
use crate::app::tags::{self, Tags};
use crate::app::{host, network, security_group};
use crate::ipam::Cidr;

/// The VPC attributes kumo keeps (as `Attrs` values of the network).
pub const DNS_SUPPORT: &str = "enableDnsSupport";
pub const DNS_HOSTNAMES: &str = "enableDnsHostnames";
pub const USAGE_METRICS: &str = "enableNetworkAddressUsageMetrics";

/// A network as EC2 shows it.
pub struct Vpc {
    pub net: Network,
    /// The CIDR block (the network's range, or what covers its subnets).
    pub cidr: Option<String>,
}

impl Vpc {
    pub fn id(&self) -> String {
        ids::ec2_id(&self.net.id)
    }

    pub fn is_default(&self) -> bool {
        is_default(&self.net)
    }
}

/// Whether a network is the default VPC: the `default` project's `default` network.
pub fn is_default(net: &Network) -> bool {
    net.name == network::DEFAULT_NAME && net.project == DEFAULT_PROJECT
}

/// The smallest CIDR covering every one of `cidrs` (pure); `None` for none.
pub fn covering<'a>(cidrs: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let parsed: Vec<Cidr> = cidrs
        .into_iter()
        .filter_map(|c| Cidr::parse_any("cidr", c).ok())
        .collect();
    let first = parsed.first()?;
    let (lo, hi) = parsed.iter().fold((u32::MAX, 0u32), |(lo, hi), c| {
        (
            lo.min(u32::from(c.network())),
            hi.max(u32::from(c.broadcast())),
        )
    });
    let mut prefix = first.prefix.min(32);
    for c in &parsed {
        prefix = prefix.min(c.prefix);
    }
    while prefix > 0 {
        let c = Cidr {
            addr: std::net::Ipv4Addr::from(lo),
            prefix,
        };
        if u32::from(c.network()) <= lo && hi <= u32::from(c.broadcast()) {
            return Some(format!("{}/{prefix}", c.network()));
        }
        prefix -= 1;
    }
    Some("0.0.0.0/0".into())
}

/// The VPC view of `net` (`subnets`: at least the network's own).
pub fn view(net: Network, subnets: &[Subnet]) -> Vpc {
    let cidr = net.cidr.clone().or_else(|| {
        covering(
            subnets
                .iter()
                .filter(|s| s.network_id == net.id)
                .map(|s| s.cidr.as_str()),
        )
    });
    Vpc { net, cidr }
}

/// The network of VPC `vpc_id` as the caller sees it, or `InvalidVpcID.NotFound`.
pub async fn resolve(ctx: &Ec2Ctx, vpc_id: &str) -> Ec2Result<Network> {
    let nf = || Ec2Error::not_found(ResourceKind::Vpc, vpc_id);
    let net_id = ids::network_of_vpc(vpc_id).ok_or_else(nf)?;
    match network::get(&ctx.app, &ctx.scope, &net_id).await {
        Ok(n) => Ok(n),
        Err(kumo_types::Error::NotFound { .. }) => Err(nf()),
        Err(e) => Err(app(e)),
    }
}

/// The kind of network a new VPC gets: `vxlan` when every host that is not down has a tunnel
/// endpoint (`--vxlan-local-ip`), so the VPC reaches instances on any host; else `bridge`.
async fn vpc_kind(ctx: &Ec2Ctx) -> Ec2Result<NetworkKind> {
    let hosts = host::list(&ctx.app).await.map_err(app)?.items;
    let live: Vec<_> = hosts
        .iter()
        .filter(|h| h.state != HostState::Down)
        .collect();
    Ok(
        if !live.is_empty() && live.iter().all(|h| h.inventory.tunnel_ip.is_some()) {
            NetworkKind::Vxlan
        } else {
            NetworkKind::Bridge
        },
    )
}

/// `<item>` of a `vpcSet`.
pub fn write_vpc(w: &mut XmlWriter, v: &Vpc, tags: Option<&Tags>) {
    let hex = v.net.id.trim_start_matches("net-");
    w.text("vpcId", &v.id())
        .text("ownerId", &ids::account_id(&v.net.project))
        .text("state", "available")
        .opt_text("cidrBlock", v.cidr.as_deref())
        .set("cidrBlockAssociationSet", v.cidr.as_deref(), |w, c| {
            w.text("cidrBlock", c)
                .text("associationId", &format!("vpc-cidr-assoc-{hex}"))
                .node("cidrBlockState", |w| {
                    w.text("state", "associated");
                });
        })
        .empty("ipv6CidrBlockAssociationSet")
        .text("dhcpOptionsId", "default")
        .text("instanceTenancy", "default")
        .bool("isDefault", v.is_default());
    tag_set(w, tags);
}

pub async fn create(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let cidr = root.str("CidrBlock")?;
    if root.opt_bool("AmazonProvidedIpv6CidrBlock")? == Some(true) {
        return Err(util::cannot(
            "AmazonProvidedIpv6CidrBlock",
            "true",
            "kumo networks are IPv4 only.",
        ));
    }
    if let Some(t) = root.opt_str("InstanceTenancy")
        && t != "default"
    {
        return Err(util::cannot(
            "InstanceTenancy",
            &t,
            "kumo has no dedicated hosts: only `default` tenancy.",
        ));
    }
    let tag_list = util::tag_specs(p, "vpc")?;
    match Cidr::parse_any("CidrBlock", &cidr) {
        Ok(c) if (16..=28).contains(&c.prefix) && c.network() == c.addr => {}
        _ => {
            return Err(util::err(
                "InvalidVpc.Range",
                format!("The CIDR '{cidr}' is invalid: a VPC's block is /16 to /28"),
            ));
        }
    }
    ctx.ready(p)?;
    let kind = vpc_kind(ctx).await?;
    let net_id = kids::new_id(kids::NETWORK);
    let vpc_id = ids::ec2_id(&net_id);
    let mut extra = attrs::Extra::id(net_id.clone());
    extra
        .ops
        .extend(tags::create_op(&ctx.scope.project, &vpc_id, &tag_list).map_err(app)?);
    let req = CreateNetworkRequest {
        name: vpc_id.clone(),
        kind,
        cidr: Some(cidr),
        ..CreateNetworkRequest::default()
    };
    let net = network::create_with(&ctx.app, &ctx.scope, req, extra)
        .await
        .map_err(app)?;
    ctx.target(vpc_id.clone());
    if let Err(e) = security::create_vpc_default(ctx, &net).await {
        // Without its default group the VPC is not whole: take it back.
        if let Err(undo) = network::delete(&ctx.app, &ctx.scope, &net.id).await {
            tracing::error!(vpc = %vpc_id, error = %undo, "could not remove a half-made VPC");
        }
        return Err(e);
    }
    let tag_map: Tags = tag_list.into_iter().collect();
    let v = view(net, &[]);
    ctx.respond(|w| {
        w.node("vpc", |w| write_vpc(w, &v, Some(&tag_map)));
    })
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("VpcId")?;
    let filters = Filters::read(
        p,
        &[
            "vpc-id",
            "cidr",
            "cidr-block-association.cidr-block",
            "cidr-block-association.state",
            "state",
            "is-default",
            "owner-id",
            "dhcp-options-id",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=1000)?;
    if paging.is_set() && !wanted.is_empty() {
        return Err(Ec2Error::invalid_parameter_combination(
            "VpcId",
            "MaxResults",
        ));
    }
    ctx.ready(p)?;
    let nets = network::list(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .items;
    let subnets = network::list_subnets(&ctx.app, &ctx.scope, None)
        .await
        .map_err(app)?
        .items;
    let mut vpcs: Vec<Vpc> = nets.into_iter().map(|n| view(n, &subnets)).collect();
    // By id, a cloud admin reaches other projects' VPCs too.
    for id in &wanted {
        if !vpcs.iter().any(|v| &v.id() == id)
            && let Ok(n) = resolve(ctx, id).await
        {
            let subs = network::subnets_of(&ctx.app, &n.id).await.map_err(app)?;
            vpcs.push(view(n, &subs));
        }
    }
    if !wanted.is_empty() {
        let found: Vec<String> = vpcs.iter().map(Vpc::id).collect();
        let found: Vec<&str> = found.iter().map(String::as_str).collect();
        util::all_found(ResourceKind::Vpc, &wanted, &found)?;
        vpcs.retain(|v| wanted.contains(&v.id()));
    }
    let vpc_ids: Vec<String> = vpcs.iter().map(Vpc::id).collect();
    let vpc_refs: Vec<&str> = vpc_ids.iter().map(String::as_str).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &vpc_refs)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    vpcs.retain(|v| {
        filters.matches(
            |name| match name {
                "vpc-id" => vec![v.id()],
                "cidr" | "cidr-block-association.cidr-block" => {
                    v.cidr.clone().into_iter().collect()
                }
                "cidr-block-association.state" => vec!["associated".into()],
                "state" => vec!["available".into()],
                "is-default" => vec![util::bool_text(v.is_default()).into()],
                "owner-id" => vec![ids::account_id(&v.net.project)],
                "dhcp-options-id" => vec!["default".into()],
                _ => vec![],
            },
            tag_map.get(&v.id()).unwrap_or(&empty),
        )
    });
    vpcs.sort_by_key(Vpc::id);
    let page = paging.page(vpcs, Vpc::id);
    ctx.respond(|w| {
        w.set("vpcSet", &page.items, |w, v| {
            write_vpc(w, v, tag_map.get(&v.id()));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

pub async fn delete(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let vpc_id = p.root().str("VpcId")?;
    ctx.ready(p)?;
    let net = resolve(ctx, &vpc_id).await?;
    ctx.target(vpc_id.clone());
    let dependencies = || {
        Ec2Error::dependency_violation(format!(
            "The vpc '{vpc_id}' has dependencies and cannot be deleted."
        ))
    };
    let subnets = network::subnets_of(&ctx.app, &net.id).await.map_err(app)?;
    if !subnets.is_empty() {
        return Err(dependencies());
    }
    let groups = security::groups_of_network(ctx, &net.id).await?;
    if groups.iter().any(|(_, a)| !a.network_default) {
        return Err(dependencies());
    }
    network::delete(&ctx.app, &ctx.scope, &net.id)
        .await
        .map_err(app)?;
    // Deleting a group (like the network) drops its tags in the same transaction.
    for (g, _) in groups {
        match security_group::delete(&ctx.app, &ctx.scope, &g.id).await {
            Ok(()) | Err(kumo_types::Error::NotFound { .. }) => {}
            Err(e) => return Err(app(e)),
        }
    }
    // Tags kept under the EC2-only ids: the VPC's, its route table's and its network ACL's.
    for id in [
        Some(vpc_id.clone()),
        ids::route_table_of_network(&net.id),
        ids::acl_of_network(&net.id),
    ]
    .into_iter()
    .flatten()
    {
        tags::delete_all(&ctx.app, &id).await.map_err(app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

/// The value of a VPC attribute (stored, else its default).
fn attribute(net: &Network, a: &Attrs, name: &str) -> bool {
    match a.value(name) {
        Some(v) => v == "true",
        None => match name {
            DNS_SUPPORT => true,
            DNS_HOSTNAMES => is_default(net),
            _ => false,
        },
    }
}

pub async fn modify_attribute(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let vpc_id = root.str("VpcId")?;
    let given: Vec<(&str, bool)> = [
        ("EnableDnsSupport", DNS_SUPPORT),
        ("EnableDnsHostnames", DNS_HOSTNAMES),
        ("EnableNetworkAddressUsageMetrics", USAGE_METRICS),
    ]
    .into_iter()
    .map(|(param, attr)| Ok(util::attr_bool(&root, param)?.map(|v| (attr, v))))
    .collect::<Result<Vec<_>, Ec2Error>>()?
    .into_iter()
    .flatten()
    .collect();
    let (attr, value) = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(Ec2Error::missing_parameter(
                "EnableDnsSupport, EnableDnsHostnames or EnableNetworkAddressUsageMetrics",
            ));
        }
        _ => {
            return Err(Ec2Error::invalid_parameter_combination_message(
                "Fields for multiple attribute types specified: give one attribute per request",
            ));
        }
    };
    match (attr, value) {
        (DNS_SUPPORT, false) => {
            return Err(util::cannot(
                "EnableDnsSupport.Value",
                "false",
                "Every kumo network serves DNS for its instances; it cannot be turned off.",
            ));
        }
        (USAGE_METRICS, true) => {
            return Err(util::cannot(
                "EnableNetworkAddressUsageMetrics.Value",
                "true",
                "kumo publishes no network address usage metrics.",
            ));
        }
        _ => {}
    }
    ctx.ready(p)?;
    let net = resolve(ctx, &vpc_id).await?;
    ctx.target(vpc_id);
    attrs::update(&ctx.app, &net.id, |a| {
        a.set(attr, util::bool_text(value));
        Ok(())
    })
    .await
    .map_err(app)?;
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

pub async fn describe_attribute(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let vpc_id = root.str("VpcId")?;
    let attr = root.enum_value("Attribute", &[DNS_SUPPORT, DNS_HOSTNAMES, USAGE_METRICS])?;
    ctx.ready(p)?;
    let net = resolve(ctx, &vpc_id).await?;
    let a = attrs::get(&ctx.app, &net.id).await.map_err(app)?;
    let value = attribute(&net, &a, attr);
    ctx.respond(|w| {
        w.text("vpcId", &vpc_id).node(attr, |w| {
            w.bool("value", value);
        });
    })
}

/// The networks the caller lists, as VPCs by network id (for other actions' `vpcId`s).
pub async fn all(ctx: &Ec2Ctx) -> Ec2Result<HashMap<String, Vpc>> {
    let nets = network::list(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .items;
    let subnets = network::list_subnets(&ctx.app, &ctx.scope, None)
        .await
        .map_err(app)?
        .items;
    Ok(nets
        .into_iter()
        .map(|n| (n.id.clone(), view(n, &subnets)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_cidrs() {
        assert_eq!(covering(["10.0.1.0/24"]).as_deref(), Some("10.0.1.0/24"));
        assert_eq!(
            covering(["10.0.1.0/24", "10.0.2.0/24"]).as_deref(),
            Some("10.0.0.0/22")
        );
        assert_eq!(
            covering(["198.18.0.0/24", "198.18.0.128/25"]).as_deref(),
            Some("198.18.0.0/24")
        );
        assert_eq!(
            covering(["10.0.0.0/8", "192.168.0.0/16"]).as_deref(),
            Some("0.0.0.0/0")
        );
        assert_eq!(covering(Vec::<&str>::new()), None);
    }
}
