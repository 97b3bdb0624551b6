//! Security groups. An EC2 security group is a kumo security group named by its id; its EC2 group
//! name and its VPC are the group's attributes ([`crate::app::attrs`]), and the group name is
//! unique per VPC (claimed in the create's own transaction). A group made through `/v1` shows its
//! kumo name as group name and belongs to the project's default VPC, if it has one. Rules map as
//! [`super::rules`] describes.

use std::collections::HashMap;

use kumo_ec2::xml::XmlWriter;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{CreateSecurityGroupRequest, Direction, Network, SecurityGroup, ids as kids};

use super::super::filter::{Filters, Paging};
use super::super::{Ec2Ctx, Ec2Result, ids};
use super::rules::{self, Peer, Spec};
use super::util::{self, app, tag_set};
use super::vpc;
use crate::app::attrs::{self, Attrs, Extra};
use crate::app::tags::{self, Tags};
use crate::app::{network, security_group};

/// The namespace of EC2 group names (unique per VPC, per project).
const GROUP_NAMES: &str = "ec2-group-names";
/// The group name of every VPC's own default group.
pub const DEFAULT_GROUP: &str = "default";

/// The unique-name key of group name `name` in network `net` of `project`.
fn name_key(project: &str, net: &str, name: &str) -> String {
    attrs::name_key(GROUP_NAMES, project, &format!("{net}/{name}"))
}

/// A kumo group as EC2 shows it.
pub struct Group {
    pub g: SecurityGroup,
    pub name: String,
    /// Its network (VPC), if it has one.
    pub network: Option<String>,
    /// A VPC's own default group (cannot be deleted while its VPC lives).
    pub network_default: bool,
}

/// The EC2 view of `g` (`a`: its attributes; `default_net`: the default network of its project,
/// where groups without a VPC of their own belong).
fn view(g: SecurityGroup, a: Option<&Attrs>, default_net: Option<&str>) -> Group {
    let name = a
        .and_then(|a| a.group_name.clone())
        .unwrap_or_else(|| g.name.clone());
    let network = a
        .and_then(|a| a.network.clone())
        .or_else(|| default_net.map(str::to_string));
    Group {
        network_default: a.is_some_and(|a| a.network_default)
            || g.name == security_group::DEFAULT_NAME,
        g,
        name,
        network,
    }
}

/// The default network of `project` (the default VPC), if it has one.
async fn default_network(ctx: &Ec2Ctx, project: &str) -> Option<String> {
    network::get(
        &ctx.app,
        &crate::app::scope::Scope::within(project),
        network::DEFAULT_NAME,
    )
    .await
    .ok()
    .filter(vpc::is_default)
    .map(|n| n.id)
}

/// Every group the caller lists, as EC2 shows them.
pub async fn all(ctx: &Ec2Ctx) -> Ec2Result<Vec<Group>> {
    let groups = security_group::list(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .items;
    let attrs = attrs::all(&ctx.app).await.map_err(app)?;
    let default_net = default_network(ctx, &ctx.scope.project).await;
    Ok(groups
        .into_iter()
        .map(|g| {
            let a = attrs.get(&g.id);
            view(g, a, default_net.as_deref())
        })
        .collect())
}

/// A group by id as the caller sees it, or `InvalidGroup.NotFound`.
pub async fn get(ctx: &Ec2Ctx, group_id: &str) -> Ec2Result<Group> {
    let nf = || Ec2Error::not_found(ResourceKind::SecurityGroup, group_id);
    if !ids::is("sg", group_id) {
        return Err(nf());
    }
    let g = match security_group::get(&ctx.app, &ctx.scope, group_id).await {
        Ok(g) => g,
        Err(kumo_types::Error::NotFound { .. }) => return Err(nf()),
        Err(e) => return Err(app(e)),
    };
    let a = attrs::get(&ctx.app, &g.id).await.map_err(app)?;
    let default_net = default_network(ctx, &g.project).await;
    Ok(view(g, Some(&a), default_net.as_deref()))
}

/// A group by `GroupId` or (legacy, default VPC) `GroupName`.
async fn by_id_or_name(ctx: &Ec2Ctx, id: Option<String>, name: Option<String>) -> Ec2Result<Group> {
    match (id, name) {
        (Some(id), _) => get(ctx, &id).await,
        (None, Some(name)) => {
            let default_net = default_network(ctx, &ctx.scope.project).await;
            all(ctx)
                .await?
                .into_iter()
                .find(|g| g.name == name && g.network == default_net)
                .ok_or_else(|| Ec2Error::not_found(ResourceKind::SecurityGroup, &name))
        }
        (None, None) => Err(Ec2Error::missing_parameter("GroupId")),
    }
}

/// The groups of network `net` with their attributes (a VPC's dependents).
pub async fn groups_of_network(ctx: &Ec2Ctx, net: &str) -> Ec2Result<Vec<(SecurityGroup, Attrs)>> {
    let groups = security_group::list(&ctx.app, &ctx.scope)
        .await
        .map_err(app)?
        .items;
    let mut attrs = attrs::all(&ctx.app).await.map_err(app)?;
    Ok(groups
        .into_iter()
        .filter_map(|g| {
            let a = attrs.remove(&g.id)?;
            (a.network.as_deref() == Some(net)).then_some((g, a))
        })
        .collect())
}

/// The default group of a new VPC: the default group's rules, group name `default`.
pub async fn create_vpc_default(ctx: &Ec2Ctx, net: &Network) -> Ec2Result<SecurityGroup> {
    let id = kids::new_id(kids::SECURITY_GROUP);
    let a = Attrs {
        network: Some(net.id.clone()),
        group_name: Some(DEFAULT_GROUP.into()),
        network_default: true,
        names: vec![name_key(&ctx.scope.project, &net.id, DEFAULT_GROUP)],
        ..Attrs::default()
    };
    let extra = Extra::with_attrs(id.clone(), &a).map_err(app)?;
    security_group::create_network_default(&ctx.app, &ctx.scope, &id, extra)
        .await
        .map_err(app)
}

/// The default group of VPC network `net_id` (what instances in the VPC get when they name none).
pub async fn default_of_network(ctx: &Ec2Ctx, net_id: &str) -> Ec2Result<Option<String>> {
    Ok(all(ctx)
        .await?
        .into_iter()
        .find(|g| g.network_default && g.network.as_deref() == Some(net_id))
        .map(|g| g.g.id))
}

fn write_group(w: &mut XmlWriter, g: &Group, tags: Option<&Tags>) {
    let owner = ids::account_id(&g.g.project);
    w.text("ownerId", &owner)
        .text("groupId", &g.g.id)
        .text("groupName", &g.name)
        .text("groupDescription", &g.g.description)
        .opt_text("vpcId", g.network.as_deref().map(ids::ec2_id).as_deref());
    for (wrapper, direction) in [
        ("ipPermissions", Direction::Ingress),
        ("ipPermissionsEgress", Direction::Egress),
    ] {
        w.set(
            wrapper,
            rules::permissions(&g.g.rules, direction),
            |w, perm| {
                let list = perm.rules;
                w.text("ipProtocol", rules::protocol_name(perm.protocol));
                if let Some((from, to)) = perm.ports {
                    w.int("fromPort", from).int("toPort", to);
                }
                w.set(
                    "groups",
                    list.iter().filter(|r| r.remote_group.is_some()),
                    |w, r| {
                        w.opt_text("description", r.description.as_deref())
                            .opt_text("groupId", r.remote_group.as_deref())
                            .text("userId", &owner);
                    },
                )
                .set(
                    "ipRanges",
                    list.iter().filter_map(|r| Some((rules::shown_cidr(r)?, r))),
                    |w, (c, r)| {
                        w.text("cidrIp", &c)
                            .opt_text("description", r.description.as_deref());
                    },
                )
                .empty("ipv6Ranges")
                .empty("prefixListIds");
            },
        );
    }
    tag_set(w, tags);
}

pub async fn create(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let name = root.str("GroupName")?;
    let description = root.str("GroupDescription")?;
    let vpc_id = root.opt_str("VpcId");
    let tag_list = util::tag_specs(p, "security-group")?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(Ec2Error::invalid_parameter_value(
            "GroupName",
            &name,
            "A group name is 1 to 255 characters.",
        ));
    }
    if name.starts_with("sg-") {
        return Err(Ec2Error::invalid_parameter_value(
            "GroupName",
            &name,
            "Group names may not start with sg-.",
        ));
    }
    if name == DEFAULT_GROUP {
        return Err(Ec2Error::invalid_parameter_value_message(
            "Cannot use reserved security group name: default",
        ));
    }
    if description.chars().count() > 255 {
        return Err(Ec2Error::invalid_parameter_value(
            "GroupDescription",
            &description,
            "A description is at most 255 characters.",
        ));
    }
    ctx.ready(p)?;
    let net = match &vpc_id {
        Some(v) => vpc::resolve(ctx, v).await?,
        None => {
            let id = default_network(ctx, &ctx.scope.project)
                .await
                .ok_or_else(|| {
                    util::err(
                        "VPCIdNotSpecified",
                        "No default VPC for this user: give VpcId",
                    )
                })?;
            network::get_any(&ctx.app, &id).await.map_err(app)?
        }
    };
    let vpc = ids::ec2_id(&net.id);
    let taken = all(ctx)
        .await?
        .into_iter()
        .any(|g| g.name == name && g.network.as_deref() == Some(net.id.as_str()));
    if taken {
        return Err(Ec2Error::security_group_duplicate(&name, &vpc));
    }
    let id = kids::new_id(kids::SECURITY_GROUP);
    let a = Attrs {
        network: Some(net.id.clone()),
        group_name: Some(name.clone()),
        names: vec![name_key(&ctx.scope.project, &net.id, &name)],
        ..Attrs::default()
    };
    let mut extra = Extra::with_attrs(id.clone(), &a).map_err(app)?;
    extra
        .ops
        .extend(tags::create_op(&ctx.scope.project, &id, &tag_list).map_err(app)?);
    let req = CreateSecurityGroupRequest {
        name: id.clone(),
        description,
        allow_all_egress: Some(true),
    };
    match security_group::create_with(&ctx.app, &ctx.scope, req, extra).await {
        Ok(_) => {}
        // The name was claimed concurrently.
        Err(kumo_types::Error::Unavailable { .. })
            if attrs::holder(
                &ctx.app,
                GROUP_NAMES,
                &ctx.scope.project,
                &format!("{}/{name}", net.id),
            )
            .await
            .map_err(app)?
            .is_some() =>
        {
            return Err(Ec2Error::security_group_duplicate(&name, &vpc));
        }
        Err(e) => return Err(app(e)),
    }
    ctx.target(id.clone());
    let tag_map: Tags = tag_list.into_iter().collect();
    ctx.respond(|w| {
        w.text("groupId", &id);
        if !tag_map.is_empty() {
            tag_set(w, Some(&tag_map));
        }
    })
}

pub async fn describe(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let wanted_ids = p.id_list("GroupId")?;
    let wanted_names = p.id_list("GroupName")?;
    let filters = Filters::read(
        p,
        &[
            "group-id",
            "group-name",
            "vpc-id",
            "description",
            "owner-id",
            "tag:*",
        ],
    )?;
    let paging = Paging::read(p, 5..=1000)?;
    ctx.ready(p)?;
    let mut groups = all(ctx).await?;
    for id in &wanted_ids {
        if !groups.iter().any(|g| &g.g.id == id)
            && let Ok(g) = get(ctx, id).await
        {
            groups.push(g);
        }
    }
    if !wanted_ids.is_empty() {
        let found: Vec<&str> = groups.iter().map(|g| g.g.id.as_str()).collect();
        util::all_found(ResourceKind::SecurityGroup, &wanted_ids, &found)?;
    }
    if !wanted_names.is_empty() {
        let found: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        util::all_found(ResourceKind::SecurityGroup, &wanted_names, &found)?;
    }
    groups.retain(|g| {
        (wanted_ids.is_empty() || wanted_ids.contains(&g.g.id))
            && (wanted_names.is_empty() || wanted_names.contains(&g.name))
    });
    let ids_: Vec<&str> = groups.iter().map(|g| g.g.id.as_str()).collect();
    let tag_map = tags::for_ids(&ctx.app, &ctx.scope, &ids_)
        .await
        .map_err(app)?;
    let empty = Tags::new();
    groups.retain(|g| {
        filters.matches(
            |name| match name {
                "group-id" => vec![g.g.id.clone()],
                "group-name" => vec![g.name.clone()],
                "vpc-id" => g.network.as_deref().map(ids::ec2_id).into_iter().collect(),
                "description" => vec![g.g.description.clone()],
                "owner-id" => vec![ids::account_id(&g.g.project)],
                _ => vec![],
            },
            tag_map.get(&g.g.id).unwrap_or(&empty),
        )
    });
    groups.sort_by(|a, b| a.g.id.cmp(&b.g.id));
    let page = paging.page(groups, |g| g.g.id.clone());
    ctx.respond(|w| {
        w.set("securityGroupInfo", &page.items, |w, g| {
            write_group(w, g, tag_map.get(&g.g.id));
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

pub async fn delete(ctx: &Ec2Ctx, p: &Params) -> Ec2Result {
    let root = p.root();
    let id = root.opt_str("GroupId");
    let name = root.opt_str("GroupName");
    ctx.ready(p)?;
    let g = by_id_or_name(ctx, id, name).await?;
    ctx.target(g.g.id.clone());
    if g.network_default {
        return Err(util::err(
            "CannotDelete",
            format!(
                "the specified group: \"{}\" name: \"{}\" is the default group of its VPC and \
                 cannot be deleted by a user",
                g.g.id, g.name
            ),
        ));
    }
    match security_group::delete(&ctx.app, &ctx.scope, &g.g.id).await {
        Ok(()) => {}
        Err(kumo_types::Error::Conflict { message, .. }) => {
            return Err(Ec2Error::dependency_violation(format!(
                "resource {} has a dependent object: {message}",
                g.g.id
            )));
        }
        Err(e) => return Err(app(e)),
    }
    ctx.respond(|w| {
        w.bool("return", true).text("groupId", &g.g.id);
    })
}

/// The group id a spec's group peer names (resolved in the caller's project), or `None` for a
/// CIDR peer.
async fn peer_group(ctx: &Ec2Ctx, s: &Spec, groups: &[Group]) -> Ec2Result<Option<String>> {
    match &s.peer {
        Peer::GroupId(id) => {
            if !groups.iter().any(|g| &g.g.id == id) {
                return Err(Ec2Error::not_found(ResourceKind::SecurityGroup, id));
            }
            Ok(Some(id.clone()))
        }
        Peer::GroupName(name) => {
            let default_net = default_network(ctx, &ctx.scope.project).await;
            groups
                .iter()
                .find(|g| &g.name == name && g.network == default_net)
                .map(|g| Some(g.g.id.clone()))
                .ok_or_else(|| Ec2Error::not_found(ResourceKind::SecurityGroup, name))
        }
        Peer::Cidr(_) | Peer::Unsupported(_) => Ok(None),
    }
}

fn write_rule(w: &mut XmlWriter, g: &SecurityGroup, r: &kumo_types::SecurityGroupRule) {
    let owner = ids::account_id(&g.project);
    w.text("securityGroupRuleId", &r.id)
        .text("groupId", &g.id)
        .text("groupOwnerId", &owner)
        .bool("isEgress", r.direction == Direction::Egress)
        .text("ipProtocol", rules::protocol_name(r.protocol));
    match rules::port_range(r) {
        Some((from, to)) => {
            w.int("fromPort", from).int("toPort", to);
        }
        None => {
            w.int("fromPort", -1).int("toPort", -1);
        }
    }
    if let Some(c) = rules::shown_cidr(r) {
        w.text("cidrIpv4", &c);
    }
    if let Some(peer) = &r.remote_group {
        w.node("referencedGroupInfo", |w| {
            w.text("groupId", peer).text("userId", &owner);
        });
    }
    w.opt_text("description", r.description.as_deref());
}

/// AuthorizeSecurityGroupIngress / AuthorizeSecurityGroupEgress.
pub async fn authorize(ctx: &Ec2Ctx, p: &Params, direction: Direction) -> Ec2Result {
    let root = p.root();
    let id = root.opt_str("GroupId");
    let name = match direction {
        Direction::Ingress => root.opt_str("GroupName"),
        Direction::Egress => None,
    };
    let specs = rules::read(p)?;
    let tag_list = util::tag_specs(p, "security-group-rule")?;
    if let Some(Peer::Unsupported(what)) = specs
        .iter()
        .map(|s| &s.peer)
        .find(|p| matches!(p, Peer::Unsupported(_)))
    {
        return Err(util::cannot(
            "IpPermissions",
            what,
            "kumo security groups take IPv4 ranges and security groups only (no IPv6 ranges, no \
             prefix lists).",
        ));
    }
    ctx.ready(p)?;
    let g = by_id_or_name(ctx, id, name).await?;
    ctx.target(g.g.id.clone());
    let groups = all(ctx).await?;
    let mut reqs = Vec::new();
    for s in &specs {
        let peer = peer_group(ctx, s, &groups).await?;
        reqs.push(rules::request(direction, s, peer));
    }
    let (group, added) = match security_group::add_rules(&ctx.app, &ctx.scope, &g.g.id, reqs).await
    {
        Ok(r) => r,
        Err(kumo_types::Error::Conflict { field: Some(f), .. }) if f == "rules" => {
            return Err(util::err(
                "InvalidPermission.Duplicate",
                "the specified rule already exists in this security group",
            ));
        }
        Err(kumo_types::Error::Invalid { field, message }) if field == "rules" => {
            return Err(util::err("RulesPerSecurityGroupLimitExceeded", message));
        }
        Err(e) => return Err(app(e)),
    };
    let mut rule_tags = HashMap::new();
    if !tag_list.is_empty() {
        for r in &added {
            let t = tags::set(&ctx.app, &ctx.scope, &group.project, &r.id, &tag_list)
                .await
                .map_err(app)?;
            rule_tags.insert(r.id.clone(), t);
        }
    }
    ctx.respond(|w| {
        w.bool("return", true);
        w.set("securityGroupRuleSet", &added, |w, r| {
            write_rule(w, &group, r);
            tag_set(w, rule_tags.get(&r.id));
        });
    })
}

/// RevokeSecurityGroupIngress / RevokeSecurityGroupEgress: by permissions (every one must name an
/// existing rule: else `InvalidPermission.NotFound` and nothing changes) or by
/// `SecurityGroupRuleId.N`.
pub async fn revoke(ctx: &Ec2Ctx, p: &Params, direction: Direction) -> Ec2Result {
    let root = p.root();
    let id = root.opt_str("GroupId");
    let name = match direction {
        Direction::Ingress => root.opt_str("GroupName"),
        Direction::Egress => None,
    };
    let rule_ids = p.id_list("SecurityGroupRuleId")?;
    let specs = if rule_ids.is_empty() {
        rules::read(p)?
    } else {
        if root.has("IpPermissions") {
            return Err(Ec2Error::invalid_parameter_combination(
                "SecurityGroupRuleId",
                "IpPermissions",
            ));
        }
        vec![]
    };
    ctx.ready(p)?;
    let g = by_id_or_name(ctx, id, name).await?;
    ctx.target(g.g.id.clone());
    let groups = all(ctx).await?;
    let mut remove = Vec::new();
    for rid in &rule_ids {
        match g
            .g
            .rules
            .iter()
            .find(|r| &r.id == rid && r.direction == direction)
        {
            Some(r) => remove.push(r.clone()),
            None => {
                return Err(util::err(
                    "InvalidSecurityGroupRuleId.NotFound",
                    format!("The security group rule ID '{rid}' does not exist"),
                ));
            }
        }
    }
    for s in &specs {
        let peer = match peer_group(ctx, s, &groups).await {
            Ok(p) => p,
            Err(e) if e.code() == "InvalidGroup.NotFound" => None,
            Err(e) => return Err(e),
        };
        let found =
            g.g.rules
                .iter()
                .find(|r| rules::same(r, direction, s, peer.as_deref()) && !remove.contains(r));
        match found {
            Some(r) if !matches!(s.peer, Peer::Unsupported(_)) => remove.push(r.clone()),
            _ => {
                return Err(util::err(
                    "InvalidPermission.NotFound",
                    "The specified rule does not exist in this security group.",
                ));
            }
        }
    }
    let ids_: Vec<String> = remove.iter().map(|r| r.id.clone()).collect();
    match security_group::remove_rules(&ctx.app, &ctx.scope, &g.g.id, &ids_).await {
        Ok(_) => {}
        Err(kumo_types::Error::NotFound { .. }) => {
            return Err(util::err(
                "InvalidPermission.NotFound",
                "The specified rule does not exist in this security group.",
            ));
        }
        Err(e) => return Err(app(e)),
    }
    for r in &ids_ {
        tags::delete_all(&ctx.app, r).await.map_err(app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
        w.set("revokedSecurityGroupRuleSet", &remove, |w, r| {
            w.text("securityGroupRuleId", &r.id)
                .text("groupId", &g.g.id)
                .bool("isEgress", r.direction == Direction::Egress)
                .text("ipProtocol", rules::protocol_name(r.protocol));
            let (from, to) = rules::port_range(r).unwrap_or((-1, -1));
            w.int("fromPort", from).int("toPort", to);
            w.opt_text("cidrIpv4", rules::shown_cidr(r).as_deref())
                .opt_text("referencedGroupId", r.remote_group.as_deref())
                .opt_text("description", r.description.as_deref());
        });
    })
}
