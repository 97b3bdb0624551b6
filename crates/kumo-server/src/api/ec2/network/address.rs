//! Elastic IPs: kumo floating IPs (`eipalloc-…` is the floating IP's own id). An address comes
//! from an external network: `PublicIpv4Pool` names it (its name or id); without it, the oldest
//! of the project's own external networks, else the oldest shared one. An association is the
//! floating IP pointing at a port; its id is `eipassoc-` + the allocation's hex digits (one
//! association per allocation at a time).

use std::collections::HashMap;

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{
    AllocateFloatingIpRequest, AssociateFloatingIpRequest, FloatingIp, Network, Port,
    QuotaResource, ids as kids,
};

use super::super::filter::{Filters, Paging};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::util::{self, app, tag_set};
use crate::app::attrs::Extra;
use crate::app::scope::Scope;
use crate::app::tags::{self, Tags};
use crate::app::{floating_ip, instance, network, port, quota};

/// The association id of an allocation (`eipalloc-<hex>` → `eipassoc-<hex>`).
pub fn association_of(allocation: &str) -> String {
    format!("eipassoc-{}", allocation.trim_start_matches("eipalloc-"))
}

/// The allocation of an association id (`None` if it is not one).
pub fn allocation_of(association: &str) -> Option<String> {
    let hex = association.strip_prefix("eipassoc-")?;
    let id = format!("eipalloc-{hex}");
    ids::is("eipalloc", &id).then_some(id)
}

/// A floating IP by `AllocationId` or (legacy) `PublicIp`, with its mod revision.
async fn resolve(
    ctx: &Ec2Ctx,
    allocation: Option<&str>,
    public_ip: Option<&str>,
) -> Ec2Result<FloatingIp> {
    let (key, nf) = match (allocation, public_ip) {
        (Some(a), _) => (a, Ec2Error::not_found(ResourceKind::Allocation, a)),
        (None, Some(ip)) => (
            ip,
            util::err(
                "InvalidAddress.NotFound",
                format!("Address {ip} not found."),
            ),
        ),
        (None, None) => return Err(Ec2Error::missing_parameter("AllocationId")),
    };
    if allocation.is_some() && !ids::is("eipalloc", key) {
        return Err(nf);
    }
    match floating_ip::get(&ctx.app, &ctx.scope, key).await {
        Ok((f, _)) => Ok(f),
        Err(kumo_types::Error::NotFound { .. }) => Err(nf),
        Err(e) => Err(app(e)),
    }
}

fn write_address(
    w: &mut XmlWriter,
    ctx: &Ec2Ctx,
    f: &FloatingIp,
    ports: &HashMap<String, Port>,
    pools: &HashMap<String, String>,
    tags: Option<&Tags>,
) {
    let p = f.port_id.as_ref().and_then(|p| ports.get(p));
    w.text("publicIp", &f.address)
        .text("allocationId", &f.id)
        .text("domain", "vpc");
    if let Some(port_id) = &f.port_id {
        let owner = ids::account_id(p.map_or(f.project.as_str(), |p| p.project.as_str()));
        w.opt_text("instanceId", p.and_then(|p| p.instance_id.as_deref()))
            .text("associationId", &association_of(&f.id))
            .text("networkInterfaceId", port_id)
            .text("networkInterfaceOwnerId", &owner)
            .opt_text("privateIpAddress", f.fixed_ip.as_deref());
    }
    tag_set(w, tags);
    w.text(
        "publicIpv4Pool",
        pools
            .get(&f.network_id)
            .map_or(f.network_id.as_str(), String::as_str),
    )
    .text("networkBorderGroup", &ctx.region);
}

/// The names of external networks by id (what `publicIpv4Pool` shows).
async fn pool_names(ctx: &Ec2Ctx, fips: &[FloatingIp]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for f in fips {
        if !out.contains_key(&f.network_id)
            && let Ok(n) = network::get_any(&ctx.app, &f.network_id).await
        {
            out.insert(n.id, n.name);
        }
    }
    out
}

pub async fn allocate(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    if let Some(d) = root.opt_enum("Domain", &["vpc", "standard"])?
        && d == "standard"
    {
        return Err(util::cannot(
            "Domain",
            d,
            "EC2-Classic addresses do not exist in kumo: use vpc.",
        ));
    }
    if let Some(a) = root.opt_str("Address") {
        return Err(util::cannot(
            "Address",
            &a,
            "kumo picks the address; a released address cannot be asked back.",
        ));
    }
    let pool = root.opt_str("PublicIpv4Pool");
    if let Some(g) = root.opt_str("NetworkBorderGroup")
        && g != ctx.region
    {
        return Err(Ec2Error::invalid_parameter_value(
            "NetworkBorderGroup",
            &g,
            &format!("kumo's one network border group is {}.", ctx.region),
        ));
    }
    let tag_list = util::tag_specs(p, "elastic-ip")?;
    ctx.ready(p)?;
    let net: Network = match &pool {
        Some(pool) => network::get_external(&ctx.app, &ctx.scope.project, "network", pool)
            .await
            .map_err(|e| match e {
                kumo_types::Error::Invalid { message, .. } => {
                    Ec2Error::invalid_parameter_value("PublicIpv4Pool", pool, &message)
                }
                e => app(e),
            })?,
        None => match network::default_external(&ctx.app, &ctx.scope.project)
            .await
            .map_err(app)?
        {
            Some(n) => n,
            None => {
                // The quota speaks first, as on EC2; then the missing external network.
                let q = quota::show(&ctx.app, &ctx.scope, None).await.map_err(app)?;
                let one = quota::Delta::of(QuotaResource::FloatingIps, 1);
                quota::check(&q.project, &q.limits, &q.usage, &one).map_err(app)?;
                return Err(util::err(
                    "InsufficientAddressCapacity",
                    "kumo has no external network to take Elastic IPs from; an administrator \
                     makes one with `kumo network create --external` and a subnet",
                ));
            }
        },
    };
    let id = kids::new_id(kids::FLOATING_IP);
    let mut extra = Extra::id(id.clone());
    extra
        .ops
        .extend(tags::create_op(&ctx.scope.project, &id, &tag_list).map_err(app)?);
    let req = AllocateFloatingIpRequest {
        network: net.id.clone(),
    };
    let f = match floating_ip::allocate_with(&ctx.app, &ctx.scope, req, extra).await {
        Ok(f) => f,
        Err(kumo_types::Error::InsufficientCapacity { message, .. }) => {
            return Err(util::err("InsufficientAddressCapacity", message));
        }
        Err(e) => return Err(app(e)),
    };
    ctx.target(f.id.clone());
    ctx.respond(|w| {
        w.text("publicIp", &f.address)
            .text("domain", "vpc")
            .text("allocationId", &f.id)
            .text("publicIpv4Pool", &net.name)
            .text("networkBorderGroup", &ctx.region);
    })
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let public_ips = p.id_list("PublicIp")?;
    let allocations = p.id_list("AllocationId")?;
    let filters = Filters::read(
        p,
        &[
            "allocation-id",
            "association-id",
            "domain",
            "instance-id",
            "network-interface-id",
            "network-interface-owner-id",
            "private-ip-address",
            "public-ip",
            "public-ipv4-pool",
            "network-border-group",
            "tag:*",
        ],
    )?;
    ctx.ready(p)?;
    let mut fips = listed_and_named(ctx, &allocations).await?;
    if let Some(ip) = public_ips
        .iter()
        .find(|ip| !fips.iter().any(|f| &f.address == *ip))
    {
        return Err(util::err(
            "InvalidAddress.NotFound",
            format!("Address {ip} not found."),
        ));
    }
    fips.retain(|f| {
        (allocations.is_empty() || allocations.contains(&f.id))
            && (public_ips.is_empty() || public_ips.contains(&f.address))
    });
    let ports: HashMap<String, Port> = port::list(&ctx.app, &Scope::system(), None)
        .await
        .map_err(app)?
        .items
        .into_iter()
        .filter(|p| {
            fips.iter()
                .any(|f| f.port_id.as_deref() == Some(p.id.as_str()))
        })
        .map(|p| (p.id.clone(), p))
        .collect();
    let pools = pool_names(ctx, &fips).await;
    let fip_ids: Vec<&str> = fips.iter().map(|f| f.id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &fip_ids)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    fips.retain(|f| {
        let p = f.port_id.as_ref().and_then(|p| ports.get(p));
        filters.matches(
            |name| match name {
                "allocation-id" => vec![f.id.clone()],
                "association-id" => f.port_id.iter().map(|_| association_of(&f.id)).collect(),
                "domain" => vec!["vpc".into()],
                "instance-id" => p.and_then(|p| p.instance_id.clone()).into_iter().collect(),
                "network-interface-id" => f.port_id.clone().into_iter().collect(),
                "network-interface-owner-id" => {
                    p.map(|p| ids::account_id(&p.project)).into_iter().collect()
                }
                "private-ip-address" => f.fixed_ip.clone().into_iter().collect(),
                "public-ip" => vec![f.address.clone()],
                "public-ipv4-pool" => {
                    vec![pools.get(&f.network_id).cloned().unwrap_or_default()]
                }
                "network-border-group" => vec![ctx.region.clone()],
                _ => vec![],
            },
            tag_map.get(&f.id).unwrap_or(&empty),
        )
    });
    fips.sort_by(|a, b| a.id.cmp(&b.id));
    ctx.respond(|w| {
        w.set("addressesSet", &fips, |w, f| {
            write_address(w, ctx, f, &ports, &pools, tag_map.get(&f.id));
        });
    })
}

pub async fn associate(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let allocation = root.opt_str("AllocationId");
    let public_ip = root.opt_str("PublicIp");
    let instance_id = root.opt_str("InstanceId");
    let eni = root.opt_str("NetworkInterfaceId");
    let private_ip = root.opt_str("PrivateIpAddress");
    let reassociate = root.opt_bool("AllowReassociation")?.unwrap_or(false);
    root.not_both("InstanceId", "NetworkInterfaceId")?;
    if instance_id.is_none() && eni.is_none() {
        return Err(Ec2Error::missing_parameter("InstanceId"));
    }
    ctx.ready(p)?;
    let f = resolve(ctx, allocation.as_deref(), public_ip.as_deref()).await?;
    ctx.target(f.id.clone());
    // The target is the floating IP's project's (as the app layer resolves it).
    let within = Scope::within(&f.project);
    let target: Port = match (&instance_id, &eni) {
        (Some(i), _) => {
            let (inst, _) = instance::find_in(&ctx.app, &within, i)
                .await
                .map_err(|_| Ec2Error::not_found(ResourceKind::Instance, i))?;
            let nic = inst.nics.first().ok_or_else(|| {
                util::err(
                    "InvalidInstanceID",
                    format!("The instance '{i}' has no network interface"),
                )
            })?;
            port::get(&ctx.app, &within, &nic.port_id)
                .await
                .map_err(app)?
        }
        (None, Some(e)) => port::get(&ctx.app, &within, e).await.map_err(|_| {
            util::err(
                "InvalidNetworkInterfaceID.NotFound",
                format!("The networkInterface ID '{e}' does not exist"),
            )
        })?,
        (None, None) => return Err(Ec2Error::missing_parameter("InstanceId")),
    };
    if let Some(ip) = private_ip.as_deref().filter(|ip| *ip != target.ipv4) {
        return Err(Ec2Error::invalid_parameter_value(
            "PrivateIpAddress",
            ip,
            &format!(
                "kumo network interfaces have one address: {} on {}.",
                target.ipv4, target.id
            ),
        ));
    }
    if f.port_id.as_deref() != Some(target.id.as_str()) {
        if f.port_id.is_some() {
            if !reassociate {
                return Err(util::err(
                    "Resource.AlreadyAssociated",
                    format!(
                        "resource {} is already associated with associate-id {}",
                        f.id,
                        association_of(&f.id)
                    ),
                ));
            }
            floating_ip::disassociate(&ctx.app, &ctx.scope, &f.id)
                .await
                .map_err(app)?;
        }
        // An address already on the interface gives way, as on EC2.
        let others = floating_ip::list(&ctx.app, &within)
            .await
            .map_err(app)?
            .items;
        for other in others
            .iter()
            .filter(|o| o.id != f.id && o.port_id.as_deref() == Some(target.id.as_str()))
        {
            floating_ip::disassociate(&ctx.app, &within, &other.id)
                .await
                .map_err(app)?;
        }
        let req = AssociateFloatingIpRequest {
            port: Some(target.id.clone()),
            instance: None,
        };
        floating_ip::associate(&ctx.app, &ctx.scope, &f.id, req)
            .await
            .map_err(app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true)
            .text("associationId", &association_of(&f.id));
    })
}

pub async fn disassociate(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let association = root.opt_str("AssociationId");
    let public_ip = root.opt_str("PublicIp");
    ctx.ready(p)?;
    let nf = |a: &str| {
        util::err(
            "InvalidAssociationID.NotFound",
            format!("The association ID '{a}' does not exist"),
        )
    };
    let f = match (&association, &public_ip) {
        (Some(a), _) => {
            let alloc = allocation_of(a).ok_or_else(|| nf(a))?;
            let f = resolve(ctx, Some(&alloc), None).await.map_err(|_| nf(a))?;
            if f.port_id.is_none() {
                return Err(nf(a));
            }
            f
        }
        (None, Some(ip)) => resolve(ctx, None, Some(ip)).await?,
        (None, None) => return Err(Ec2Error::missing_parameter("AssociationId")),
    };
    ctx.target(f.id.clone());
    if f.port_id.is_some() {
        floating_ip::disassociate(&ctx.app, &ctx.scope, &f.id)
            .await
            .map_err(app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

pub async fn release(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let allocation = root.opt_str("AllocationId");
    let public_ip = root.opt_str("PublicIp");
    if let Some(g) = root.opt_str("NetworkBorderGroup")
        && g != ctx.region
    {
        return Err(Ec2Error::invalid_parameter_value(
            "NetworkBorderGroup",
            &g,
            &format!("kumo's one network border group is {}.", ctx.region),
        ));
    }
    ctx.ready(p)?;
    let f = resolve(ctx, allocation.as_deref(), public_ip.as_deref()).await?;
    ctx.target(f.id.clone());
    if f.port_id.is_some() {
        return Err(util::err(
            "InvalidIPAddress.InUse",
            format!(
                "Address {} ({}) is in use: disassociate it first",
                f.address, f.id
            ),
        ));
    }
    match floating_ip::release(&ctx.app, &ctx.scope, &f.id).await {
        Ok(()) => {}
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(util::err("InvalidIPAddress.InUse", message));
        }
        Err(e) => return Err(app(e)),
    }
    ctx.respond(|w| {
        w.bool("return", true);
    })
}

/// The addresses the caller lists, plus those `allocations` name (`InvalidAllocationID.NotFound`
/// for any that does not exist).
async fn listed_and_named(ctx: &Ec2Ctx, allocations: &[String]) -> Ec2Result<Vec<FloatingIp>> {
    let mut fips = floating_ip::list(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .items;
    for a in allocations {
        if !fips.iter().any(|f| &f.id == a)
            && let Ok(f) = resolve(ctx, Some(a), None).await
        {
            fips.push(f);
        }
    }
    if !allocations.is_empty() {
        let found: Vec<&str> = fips.iter().map(|f| f.id.as_str()).collect();
        util::all_found(ResourceKind::Allocation, allocations, &found)?;
    }
    Ok(fips)
}

pub async fn describe_attribute(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let allocations = p.id_list("AllocationId")?;
    let root = p.root();
    let _attr = root.enum_value("Attribute", &["domain-name"])?;
    let paging = Paging::read(p, 1..=1000)?;
    ctx.ready(p)?;
    let mut fips = listed_and_named(ctx, &allocations).await?;
    if !allocations.is_empty() {
        fips.retain(|f| allocations.contains(&f.id));
    }
    fips.sort_by(|a, b| a.id.cmp(&b.id));
    let page = paging.page(fips, |f| f.id.clone());
    ctx.respond(|w| {
        // kumo keeps no reverse DNS (PTR) records: no `ptrRecord`.
        w.set("addressSet", &page.items, |w, f| {
            w.text("publicIp", &f.address).text("allocationId", &f.id);
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_are_named_after_their_allocation() {
        let alloc = "eipalloc-0123456789abcdef0";
        let assoc = association_of(alloc);
        assert_eq!(assoc, "eipassoc-0123456789abcdef0");
        assert_eq!(allocation_of(&assoc).as_deref(), Some(alloc));
        assert_eq!(allocation_of("eipassoc-xyz"), None);
        assert_eq!(allocation_of("eipalloc-0123456789abcdef0"), None);
    }
}
