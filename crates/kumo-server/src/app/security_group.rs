//! Security groups: named sets of stateful allow rules applied to ports. Every project has a `default`
//! group: all egress allowed, ingress allowed from members of the group itself, everything else denied.

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    CreateSecurityGroupRequest, DEFAULT_PROJECT, Direction, Error, Page, Protocol, QuotaResource,
    Result, RuleRequest, SecurityGroup, SecurityGroupRule, ids, now_rfc3339, validate,
};

use super::App;
use super::attrs::{self, Extra};
use super::quota::{self, Delta};
use super::scope::{self, Kind, Scope};
use crate::ipam::Cidr;
use crate::storeutil::{commit, encode, keys, list_json, store_err};

const KIND: &str = "security-groups";
pub const DEFAULT_NAME: &str = "default";
const MAX_RULES: usize = 1000;

fn egress_all() -> SecurityGroupRule {
    SecurityGroupRule {
        id: ids::new_id(ids::SG_RULE),
        direction: Direction::Egress,
        protocol: Protocol::Any,
        port_min: None,
        port_max: None,
        remote_cidr: None,
        remote_group: None,
        description: Some("all egress".into()),
    }
}

const GROUPS: Kind = Kind {
    prefix: ids::SECURITY_GROUP,
    names: KIND,
    key: keys::security_group,
    what: "security group",
};

/// The default project's `default` group (at start-up).
pub async fn ensure_default(app: &App) -> Result<SecurityGroup> {
    ensure_default_in(app, DEFAULT_PROJECT).await
}

/// `project`'s `default` group, made on first use. It counts against the project's security group
/// quota but is never refused by it.
pub async fn ensure_default_in(app: &App, project: &str) -> Result<SecurityGroup> {
    let within = Scope::within(project);
    if let Ok(g) = get(app, &within, DEFAULT_NAME).await {
        return Ok(g);
    }
    let g = default_group(ids::new_id(ids::SECURITY_GROUP), DEFAULT_NAME, project);
    match insert(app, &g, false, &Extra::id(g.id.clone())).await {
        // Made concurrently by another request: theirs is as good.
        Ok(()) | Err(Error::Conflict { .. }) => get(app, &within, DEFAULT_NAME).await,
        Err(e) => Err(e),
    }
}

/// A group with the default group's rules: all egress, all ingress from its own members.
fn default_group(id: String, name: &str, project: &str) -> SecurityGroup {
    SecurityGroup {
        id: id.clone(),
        name: name.into(),
        project: project.into(),
        description: "default group: egress allowed, members talk to each other".into(),
        rules: vec![
            egress_all(),
            SecurityGroupRule {
                id: ids::new_id(ids::SG_RULE),
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                port_min: None,
                port_max: None,
                remote_cidr: None,
                remote_group: Some(id),
                description: Some("members of this group".into()),
            },
        ],
        created_at: now_rfc3339(),
    }
}

/// A network's own default group (an EC2 VPC's `default` group), named `name`, with the default
/// group's rules; `extra` names its ID and adds the front end's writes. Like every project's
/// `default` group it counts against the security group quota but is never refused by it.
pub async fn create_network_default(
    app: &App,
    scope: &Scope,
    name: &str,
    extra: Extra,
) -> Result<SecurityGroup> {
    validate::name("name", name)?;
    let g = default_group(extra.id.clone(), name, &scope.project);
    insert(app, &g, false, &extra).await?;
    Ok(g)
}

/// Write a new group with its name and its share of the quota (`enforce`: refused over the limit),
/// and `extra`'s writes.
async fn insert(app: &App, g: &SecurityGroup, enforce: bool, extra: &Extra) -> Result<()> {
    let name_key = keys::name(KIND, &g.project, &g.name);
    let delta = Delta::of(QuotaResource::SecurityGroups, 1);
    for attempt in 0..quota::ATTEMPTS {
        let (qc, qo) = if enforce {
            quota::charge(app, &g.project, &delta).await?
        } else {
            quota::charge_unchecked(app, &g.project, &delta).await?
        };
        let mut compare = vec![Compare::absent(&name_key)];
        compare.extend(qc);
        compare.extend(extra.compare.iter().cloned());
        let mut success = vec![
            Op::put(&name_key, g.id.clone()),
            Op::put(keys::security_group(&g.id), encode(g)?),
        ];
        success.extend(qo);
        success.extend(extra.ops.iter().cloned());
        let txn = Txn {
            compare,
            success,
            failure: vec![Op::get(&name_key)],
        };
        let r = app.kv().txn(txn).await.map_err(store_err)?;
        if r.succeeded {
            return Ok(());
        }
        if matches!(
            r.results.first(),
            Some(kumo_store::OpResult::Get { kv: Some(_) })
        ) {
            return Err(Error::conflict_field(
                "name",
                format!("security group `{}` already exists", g.name),
            ));
        }
        // Another create or delete in the project changed its usage: decide again.
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention creating the security group; retry",
    ))
}

pub async fn create(
    app: &App,
    scope: &Scope,
    req: CreateSecurityGroupRequest,
) -> Result<SecurityGroup> {
    create_with(app, scope, req, Extra::none(ids::SECURITY_GROUP)).await
}

/// [`create`] with the ID and the front end's own writes of `extra`, in the same transaction.
pub async fn create_with(
    app: &App,
    scope: &Scope,
    req: CreateSecurityGroupRequest,
    extra: Extra,
) -> Result<SecurityGroup> {
    validate::name("name", &req.name)?;
    if req.description.len() > 255 {
        return Err(Error::invalid("description", "at most 255 characters"));
    }
    let g = SecurityGroup {
        id: extra.id.clone(),
        name: req.name,
        project: scope.project.clone(),
        description: req.description,
        rules: if req.allow_all_egress.unwrap_or(true) {
            vec![egress_all()]
        } else {
            vec![]
        },
        created_at: now_rfc3339(),
    };
    insert(app, &g, true, &extra).await?;
    Ok(g)
}

pub async fn list(app: &App, scope: &Scope) -> Result<Page<SecurityGroup>> {
    let mut items: Vec<SecurityGroup> = scope::list(app, scope, keys::SECURITY_GROUPS).await?;
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<SecurityGroup> {
    Ok(scope::find(app, scope, &GROUPS, id_or_name).await?.0)
}

/// Resolve group references (IDs or names) of `project`; `field` names the request field on error.
pub async fn resolve_all(
    app: &App,
    project: &str,
    field: &str,
    refs: &[String],
) -> Result<Vec<String>> {
    let within = Scope::within(project);
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let g = get(app, &within, r).await.map_err(|_| {
            Error::invalid(format!("{field}[{i}]"), format!("no security group `{r}`"))
        })?;
        if !out.contains(&g.id) {
            out.push(g.id);
        }
    }
    Ok(out)
}

/// Validate a rule request for a group of `project` into a rule (pure apart from resolving
/// `remote_group` in that project).
pub async fn build_rule(app: &App, project: &str, req: RuleRequest) -> Result<SecurityGroupRule> {
    let ports = matches!(req.protocol, Protocol::Tcp | Protocol::Udp);
    match (req.port_min, req.port_max) {
        (Some(_), _) | (_, Some(_)) if !ports => {
            return Err(Error::invalid(
                "port_min",
                "ports apply to tcp and udp only",
            ));
        }
        (Some(a), Some(b)) if a > b => {
            return Err(Error::invalid(
                "port_max",
                format!("{b} is below port_min {a}"),
            ));
        }
        (Some(0), _) => return Err(Error::invalid("port_min", "ports are 1-65535")),
        (None, Some(_)) => return Err(Error::invalid("port_min", "required with port_max")),
        _ => {}
    }
    if req.remote_cidr.is_some() && req.remote_group.is_some() {
        return Err(Error::invalid(
            "remote_group",
            "give remote_cidr or remote_group, not both",
        ));
    }
    if let Some(c) = &req.remote_cidr {
        Cidr::parse_any("remote_cidr", c)?;
    }
    let remote_group = match &req.remote_group {
        Some(r) => Some(
            get(app, &Scope::within(project), r)
                .await
                .map_err(|_| Error::invalid("remote_group", format!("no security group `{r}`")))?
                .id,
        ),
        None => None,
    };
    Ok(SecurityGroupRule {
        id: ids::new_id(ids::SG_RULE),
        direction: req.direction,
        protocol: req.protocol,
        port_min: req.port_min,
        port_max: req.port_max.or(req.port_min),
        remote_cidr: req.remote_cidr,
        remote_group,
        description: req.description,
    })
}

async fn update(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    f: impl Fn(&mut SecurityGroup) -> Result<()>,
) -> Result<SecurityGroup> {
    for _ in 0..20 {
        let (mut cur, rev): (SecurityGroup, _) =
            scope::find(app, scope, &GROUPS, id_or_name).await?;
        let key = keys::security_group(&cur.id);
        f(&mut cur)?;
        let txn = Txn {
            compare: vec![Compare::mod_revision(&key, rev)],
            success: vec![Op::put(&key, encode(&cur)?)],
            failure: vec![],
        };
        if app.kv().txn(txn).await.map_err(store_err)?.succeeded {
            return Ok(cur);
        }
    }
    Err(Error::unavailable(
        "too much contention updating the security group; retry",
    ))
}

pub async fn add_rule(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: RuleRequest,
) -> Result<SecurityGroup> {
    Ok(add_rules(app, scope, id_or_name, vec![req]).await?.0)
}

/// What makes two rules the same rule: direction, protocol, ports, peer CIDR, peer group.
pub type RuleKey<'a> = (
    Direction,
    Protocol,
    Option<u16>,
    Option<u16>,
    Option<&'a str>,
    Option<&'a str>,
);

/// The [`RuleKey`] of a rule (everything but ID and description; a peer of 0.0.0.0/0 is any
/// peer).
pub fn rule_key(r: &SecurityGroupRule) -> RuleKey<'_> {
    let cidr = r.remote_cidr.as_deref().filter(|c| *c != "0.0.0.0/0");
    (
        r.direction,
        r.protocol,
        r.port_min,
        r.port_max,
        cidr,
        r.remote_group.as_deref(),
    )
}

/// Add several rules at once (all or none, one transaction). A rule identical to one the group
/// has, or given twice, is refused with a conflict on field `rules`. Returns the group and the new
/// rules.
pub async fn add_rules(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    reqs: Vec<RuleRequest>,
) -> Result<(SecurityGroup, Vec<SecurityGroupRule>)> {
    let g = get(app, scope, id_or_name).await?;
    let mut rules = Vec::new();
    for req in reqs {
        rules.push(build_rule(app, &g.project, req).await?);
    }
    let g = update(app, scope, &g.id, |g| {
        for (i, rule) in rules.iter().enumerate() {
            let key = rule_key(rule);
            if g.rules.iter().any(|r| rule_key(r) == key)
                || rules[..i].iter().any(|r| rule_key(r) == key)
            {
                return Err(Error::conflict_field(
                    "rules",
                    "an identical rule already exists in this group",
                ));
            }
        }
        if g.rules.len() + rules.len() > MAX_RULES {
            return Err(Error::invalid(
                "rules",
                format!("a group holds at most {MAX_RULES} rules"),
            ));
        }
        g.rules.extend(rules.iter().cloned());
        Ok(())
    })
    .await?;
    Ok((g, rules))
}

/// Remove several rules at once by ID (all or none): `NotFound` if the group lacks one of them.
pub async fn remove_rules(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    rule_ids: &[String],
) -> Result<SecurityGroup> {
    update(app, scope, id_or_name, |g| {
        if let Some(missing) = rule_ids
            .iter()
            .find(|id| !g.rules.iter().any(|r| &r.id == *id))
        {
            return Err(Error::not_found("security group rule", missing.clone()));
        }
        g.rules.retain(|r| !rule_ids.contains(&r.id));
        Ok(())
    })
    .await
}

pub async fn remove_rule(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    rule_id: &str,
) -> Result<SecurityGroup> {
    update(app, scope, id_or_name, |g| {
        let before = g.rules.len();
        g.rules.retain(|r| r.id != rule_id);
        if g.rules.len() == before {
            return Err(Error::not_found("security group rule", rule_id));
        }
        Ok(())
    })
    .await
}

pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    for attempt in 0..quota::ATTEMPTS {
        let (g, rev): (SecurityGroup, _) = scope::find(app, scope, &GROUPS, id_or_name).await?;
        if g.name == DEFAULT_NAME {
            return Err(Error::conflict(
                "the default security group cannot be deleted",
            ));
        }
        let extra = attrs::get(app, &g.id).await?;
        if extra.network_default
            && let Some(net) = &extra.network
            && super::network::get_any(app, net).await.is_ok()
        {
            return Err(Error::conflict(format!(
                "security group `{}` is the default group of network {net}; it goes with the network",
                g.name
            )));
        }
        let ports: Vec<kumo_types::Port> = list_json(app.kv(), keys::PORTS).await?;
        let users: Vec<&str> = ports
            .iter()
            .filter(|p| p.security_groups.contains(&g.id))
            .map(|p| p.id.as_str())
            .collect();
        if !users.is_empty() {
            return Err(Error::conflict(format!(
                "security group `{}` is in use by port(s) {}",
                g.name,
                users.join(", ")
            )));
        }
        let groups: Vec<SecurityGroup> = list_json(app.kv(), keys::SECURITY_GROUPS).await?;
        let referenced = groups.iter().find(|o| {
            o.id != g.id
                && o.rules
                    .iter()
                    .any(|r| r.remote_group.as_deref() == Some(g.id.as_str()))
        });
        if let Some(other) = referenced {
            return Err(Error::conflict(format!(
                "security group `{}` is referenced by rules of group `{}`",
                g.name, other.name
            )));
        }
        let key = keys::security_group(&g.id);
        let (mut compare, mut ops) = quota::credit(
            app,
            &g.project,
            &Delta::of(QuotaResource::SecurityGroups, 1),
        )
        .await?;
        compare.push(Compare::mod_revision(&key, rev));
        ops.push(Op::delete(&key));
        ops.push(Op::delete(keys::name(KIND, &g.project, &g.name)));
        ops.extend(attrs::cleanup_ops(app, &g.id).await?);
        if commit(app.kv(), compare, ops).await? {
            return Ok(());
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention deleting the security group; retry",
    ))
}
