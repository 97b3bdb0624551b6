//! Route tables and network ACLs: read-only views of a VPC's network.
//!
//! - The **main route table** `rtb-<hex of the network>`: the `local` route for the VPC's CIDR
//!   block; for every subnet of the network a kumo router joins, a route to each other subnet that
//!   router joins, and `0.0.0.0/0` through the router when it has an external network (SNAT). The
//!   router is the route's `gatewayId` (`rtr-…`). Subnets are implicitly associated with it.
//! - The **default network ACL** `acl-<hex of the network>`: kumo has no ACLs, only security groups,
//!   so it shows AWS's default entries (rule 100 allows everything, rule 32767 denies the rest, in
//!   both directions), associated with every subnet of the VPC.

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params};
use kumo_types::{Router, Subnet};

use super::super::filter::{Filters, Paging};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::util::{self, app, tag_set};
use super::vpc::{self, Vpc};
use crate::app::tags::{self, Tags};
use crate::app::{network, router};

/// One route of a main route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: String,
    /// `local` or the router's id.
    pub gateway: String,
}

/// The routes of network `net` (its VPC's CIDR `cidr`), given every subnet and router the caller
/// sees (pure).
pub fn routes(net: &str, cidr: Option<&str>, subnets: &[Subnet], routers: &[Router]) -> Vec<Route> {
    let mut out: Vec<Route> = cidr
        .map(|c| Route {
            destination: c.to_string(),
            gateway: "local".into(),
        })
        .into_iter()
        .collect();
    let mine: Vec<&str> = subnets
        .iter()
        .filter(|s| s.network_id == net)
        .map(|s| s.id.as_str())
        .collect();
    for r in routers
        .iter()
        .filter(|r| r.subnets.iter().any(|s| mine.contains(&s.as_str())))
    {
        for s in subnets
            .iter()
            .filter(|s| r.subnets.contains(&s.id) && s.network_id != net)
        {
            let route = Route {
                destination: s.cidr.clone(),
                gateway: r.id.clone(),
            };
            if !out.contains(&route) {
                out.push(route);
            }
        }
        if r.external_network.is_some() && !out.iter().any(|x| x.destination == "0.0.0.0/0") {
            out.push(Route {
                destination: "0.0.0.0/0".into(),
                gateway: r.id.clone(),
            });
        }
    }
    out
}

fn hex(net: &str) -> &str {
    net.trim_start_matches("net-")
}

/// What both describes read: the VPCs, subnets and routers the caller sees, narrowed to `wanted`
/// ids (`to_net` maps a wanted id to its network id; a wanted id of no visible VPC is NotFound).
async fn visible(
    ctx: &Ec2Ctx,
    wanted: &[String],
    to_net: fn(&str) -> Option<String>,
    not_found: impl Fn(&str) -> Ec2Error,
) -> Ec2Result<(Vec<Vpc>, Vec<Subnet>)> {
    let mut vpcs: Vec<Vpc> = vpc::all(ctx).await?.into_values().collect();
    let subnets = network::list_subnets(&ctx.app, &ctx.scope, None)
        .await
        .map_err(app)?
        .items;
    for w in wanted {
        let net = to_net(w).ok_or_else(|| not_found(w))?;
        if !vpcs.iter().any(|v| v.net.id == net) {
            return Err(not_found(w));
        }
    }
    if !wanted.is_empty() {
        vpcs.retain(|v| {
            wanted
                .iter()
                .any(|w| to_net(w).as_deref() == Some(v.net.id.as_str()))
        });
    }
    vpcs.sort_by(|a, b| a.net.id.cmp(&b.net.id));
    Ok((vpcs, subnets))
}

pub async fn describe_route_tables(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("RouteTableId")?;
    let filters = Filters::read(
        p,
        &[
            "route-table-id",
            "vpc-id",
            "owner-id",
            "association.main",
            "association.route-table-association-id",
            "association.route-table-id",
            "association.subnet-id",
            "route.destination-cidr-block",
            "route.gateway-id",
            "route.state",
            "route.origin",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=100)?;
    ctx.ready(p)?;
    let (vpcs, subnets) = visible(ctx, &wanted, ids::network_of_route_table, |id| {
        util::err(
            "InvalidRouteTableID.NotFound",
            format!("The routeTable ID '{id}' does not exist"),
        )
    })
    .await?;
    let routers = router::list(&ctx.app, &ctx.scope).await.map_err(app)?.items;
    let tables: Vec<(String, &Vpc, Vec<Route>)> = vpcs
        .iter()
        .filter_map(|v| {
            let id = ids::route_table_of_network(&v.net.id)?;
            Some((
                id,
                v,
                routes(&v.net.id, v.cidr.as_deref(), &subnets, &routers),
            ))
        })
        .collect();
    let table_ids: Vec<&str> = tables.iter().map(|(id, _, _)| id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &table_ids)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    let tables: Vec<_> = tables
        .into_iter()
        .filter(|(id, v, rs)| {
            filters.matches(
                |name| match name {
                    "route-table-id" | "association.route-table-id" => vec![id.clone()],
                    "vpc-id" => vec![v.id()],
                    "owner-id" => vec![ids::account_id(&v.net.project)],
                    "association.main" => vec!["true".into()],
                    "association.route-table-association-id" => {
                        vec![format!("rtbassoc-{}", hex(&v.net.id))]
                    }
                    "route.destination-cidr-block" => {
                        rs.iter().map(|r| r.destination.clone()).collect()
                    }
                    "route.gateway-id" => rs.iter().map(|r| r.gateway.clone()).collect(),
                    "route.state" => vec!["active".into()],
                    "route.origin" => vec!["CreateRouteTable".into(), "CreateRoute".into()],
                    // Subnets are associated implicitly, never explicitly.
                    _ => vec![],
                },
                tag_map.get(id).unwrap_or(&empty),
            )
        })
        .collect();
    let page = paging.page(tables, |(id, _, _)| id.clone());
    ctx.respond(|w| {
        w.set("routeTableSet", &page.items, |w, (id, v, rs)| {
            write_route_table(w, id, v, rs, tag_map.get(id));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

fn write_route_table(w: &mut XmlWriter, id: &str, v: &Vpc, rs: &[Route], tags: Option<&Tags>) {
    w.text("routeTableId", id)
        .text("vpcId", &v.id())
        .text("ownerId", &ids::account_id(&v.net.project))
        .set("routeSet", rs, |w, r| {
            w.text("destinationCidrBlock", &r.destination)
                .text("gatewayId", &r.gateway)
                .text("state", "active")
                .text(
                    "origin",
                    if r.gateway == "local" {
                        "CreateRouteTable"
                    } else {
                        "CreateRoute"
                    },
                );
        })
        .set("associationSet", [()], |w, ()| {
            w.text(
                "routeTableAssociationId",
                &format!("rtbassoc-{}", hex(&v.net.id)),
            )
            .text("routeTableId", id)
            .bool("main", true)
            .node("associationState", |w| {
                w.text("state", "associated");
            });
        })
        .empty("propagatingVgwSet");
    tag_set(w, tags);
}

/// AWS's default network ACL entries: (rule number, action, egress).
const ENTRIES: [(i64, &str, bool); 4] = [
    (100, "allow", true),
    (32767, "deny", true),
    (100, "allow", false),
    (32767, "deny", false),
];

pub async fn describe_network_acls(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted = p.id_list("NetworkAclId")?;
    let filters = Filters::read(
        p,
        &[
            "network-acl-id",
            "vpc-id",
            "default",
            "owner-id",
            "association.association-id",
            "association.network-acl-id",
            "association.subnet-id",
            "entry.cidr",
            "entry.egress",
            "entry.protocol",
            "entry.rule-action",
            "entry.rule-number",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=100)?;
    ctx.ready(p)?;
    let (vpcs, subnets) = visible(ctx, &wanted, ids::network_of_acl, |id| {
        util::err(
            "InvalidNetworkAclID.NotFound",
            format!("The networkAcl ID '{id}' does not exist"),
        )
    })
    .await?;
    let acls: Vec<(String, &Vpc, Vec<&Subnet>)> = vpcs
        .iter()
        .filter_map(|v| {
            let id = ids::acl_of_network(&v.net.id)?;
            let subs = subnets
                .iter()
                .filter(|s| s.network_id == v.net.id)
                .collect();
            Some((id, v, subs))
        })
        .collect();
    let acl_ids: Vec<&str> = acls.iter().map(|(id, _, _)| id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &acl_ids)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    let acls: Vec<_> = acls
        .into_iter()
        .filter(|(id, v, subs)| {
            filters.matches(
                |name| match name {
                    "network-acl-id" | "association.network-acl-id" => vec![id.clone()],
                    "vpc-id" => vec![v.id()],
                    "default" => vec!["true".into()],
                    "owner-id" => vec![ids::account_id(&v.net.project)],
                    "association.association-id" => subs
                        .iter()
                        .map(|s| format!("aclassoc-{}", s.id.trim_start_matches("subnet-")))
                        .collect(),
                    "association.subnet-id" => subs.iter().map(|s| s.id.clone()).collect(),
                    "entry.cidr" => vec!["0.0.0.0/0".into()],
                    "entry.egress" => vec!["true".into(), "false".into()],
                    "entry.protocol" => vec!["-1".into()],
                    "entry.rule-action" => vec!["allow".into(), "deny".into()],
                    "entry.rule-number" => vec!["100".into(), "32767".into()],
                    _ => vec![],
                },
                tag_map.get(id).unwrap_or(&empty),
            )
        })
        .collect();
    let page = paging.page(acls, |(id, _, _)| id.clone());
    ctx.respond(|w| {
        w.set("networkAclSet", &page.items, |w, (id, v, subs)| {
            w.text("networkAclId", id)
                .text("vpcId", &v.id())
                .bool("default", true)
                .text("ownerId", &ids::account_id(&v.net.project))
                .set("entrySet", ENTRIES, |w, (n, action, egress)| {
                    w.int("ruleNumber", n)
                        .text("protocol", "-1")
                        .text("ruleAction", action)
                        .bool("egress", egress)
                        .text("cidrBlock", "0.0.0.0/0");
                })
                .set("associationSet", subs, |w, s| {
                    w.text(
                        "networkAclAssociationId",
                        &format!("aclassoc-{}", s.id.trim_start_matches("subnet-")),
                    )
                    .text("networkAclId", id)
                    .text("subnetId", &s.id);
                });
            tag_set(w, tag_map.get(id));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(id: &str, net: &str, cidr: &str) -> Subnet {
        Subnet {
            id: id.into(),
            name: id.into(),
            project: "p".into(),
            network_id: net.into(),
            cidr: cidr.into(),
            gateway: None,
            allocation_pools: vec![],
            reserved: vec![],
            dhcp: true,
            dns_servers: vec![],
            routes: vec![],
            created_at: String::new(),
        }
    }

    #[test]
    fn routes_are_local_plus_what_routers_join() {
        let subs = [
            subnet("s1", "n1", "10.0.1.0/24"),
            subnet("s2", "n2", "10.1.0.0/24"),
            subnet("s3", "n3", "10.2.0.0/24"),
        ];
        let r = Router {
            id: "rtr-1".into(),
            name: "r".into(),
            project: "p".into(),
            subnets: vec!["s1".into(), "s2".into()],
            external_network: Some("ext".into()),
            external_ip: None,
            external_subnet: None,
            created_at: String::new(),
        };
        let got = routes("n1", Some("10.0.0.0/16"), &subs, std::slice::from_ref(&r));
        let want = [
            ("10.0.0.0/16", "local"),
            ("10.1.0.0/24", "rtr-1"),
            ("0.0.0.0/0", "rtr-1"),
        ];
        assert_eq!(
            got.iter()
                .map(|r| (r.destination.as_str(), r.gateway.as_str()))
                .collect::<Vec<_>>(),
            want
        );
        assert_eq!(routes("n3", Some("10.2.0.0/16"), &subs, &[r]).len(), 1);
    }
}
