//! Security groups: named sets of stateful allow rules applied to ports. Every project has a `default`
//! group: all egress allowed, ingress allowed from members of the group itself, everything else denied.

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    CreateSecurityGroupRequest, DEFAULT_PROJECT, Direction, Error, Page, Protocol, Result,
    RuleRequest, SecurityGroup, SecurityGroupRule, ids, now_rfc3339, validate,
};

use super::App;
use crate::ipam::Cidr;
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

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

pub async fn ensure_default(app: &App) -> Result<SecurityGroup> {
    if let Ok(g) = get(app, DEFAULT_NAME).await {
        return Ok(g);
    }
    let id = ids::new_id(ids::SECURITY_GROUP);
    let g = SecurityGroup {
        id: id.clone(),
        name: DEFAULT_NAME.into(),
        project: DEFAULT_PROJECT.into(),
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
                remote_group: Some(id.clone()),
                description: Some("members of this group".into()),
            },
        ],
        created_at: now_rfc3339(),
    };
    insert(app, &g).await?;
    get(app, DEFAULT_NAME).await
}

async fn insert(app: &App, g: &SecurityGroup) -> Result<()> {
    let name_key = keys::name(KIND, &g.project, &g.name);
    let txn = Txn {
        compare: vec![Compare::absent(&name_key)],
        success: vec![
            Op::put(&name_key, g.id.clone()),
            Op::put(keys::security_group(&g.id), encode(g)?),
        ],
        failure: vec![],
    };
    if !app.kv().txn(txn).await.map_err(store_err)?.succeeded {
        return Err(Error::conflict_field(
            "name",
            format!("security group `{}` already exists", g.name),
        ));
    }
    Ok(())
}

pub async fn create(app: &App, req: CreateSecurityGroupRequest) -> Result<SecurityGroup> {
    validate::name("name", &req.name)?;
    if req.description.len() > 255 {
        return Err(Error::invalid("description", "at most 255 characters"));
    }
    let g = SecurityGroup {
        id: ids::new_id(ids::SECURITY_GROUP),
        name: req.name,
        project: DEFAULT_PROJECT.into(),
        description: req.description,
        rules: if req.allow_all_egress.unwrap_or(true) {
            vec![egress_all()]
        } else {
            vec![]
        },
        created_at: now_rfc3339(),
    };
    insert(app, &g).await?;
    Ok(g)
}

pub async fn list(app: &App) -> Result<Page<SecurityGroup>> {
    let mut items: Vec<SecurityGroup> = list_json(app.kv(), keys::SECURITY_GROUPS).await?;
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, id_or_name: &str) -> Result<SecurityGroup> {
    let id = crate::storeutil::resolve_id(
        app.kv(),
        ids::SECURITY_GROUP,
        KIND,
        DEFAULT_PROJECT,
        id_or_name,
    )
    .await?
    .ok_or_else(|| Error::not_found("security group", id_or_name))?;
    get_json(app.kv(), &keys::security_group(&id))
        .await?
        .map(|(g, _)| g)
        .ok_or_else(|| Error::not_found("security group", id_or_name))
}

/// Resolve a list of group references (IDs or names); `field` names the request field on error.
pub async fn resolve_all(app: &App, field: &str, refs: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let g = get(app, r).await.map_err(|_| {
            Error::invalid(format!("{field}[{i}]"), format!("no security group `{r}`"))
        })?;
        if !out.contains(&g.id) {
            out.push(g.id);
        }
    }
    Ok(out)
}

/// Validate a rule request into a rule (pure apart from resolving `remote_group`).
pub async fn build_rule(app: &App, req: RuleRequest) -> Result<SecurityGroupRule> {
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
            get(app, r)
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
    id_or_name: &str,
    f: impl Fn(&mut SecurityGroup) -> Result<()>,
) -> Result<SecurityGroup> {
    for _ in 0..20 {
        let g = get(app, id_or_name).await?;
        let key = keys::security_group(&g.id);
        let Some((mut cur, rev)) = get_json::<SecurityGroup>(app.kv(), &key).await? else {
            return Err(Error::not_found("security group", id_or_name));
        };
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

pub async fn add_rule(app: &App, id_or_name: &str, req: RuleRequest) -> Result<SecurityGroup> {
    let rule = build_rule(app, req).await?;
    update(app, id_or_name, |g| {
        let same = |r: &SecurityGroupRule| {
            (
                r.direction,
                r.protocol,
                r.port_min,
                r.port_max,
                &r.remote_cidr,
                &r.remote_group,
            ) == (
                rule.direction,
                rule.protocol,
                rule.port_min,
                rule.port_max,
                &rule.remote_cidr,
                &rule.remote_group,
            )
        };
        if g.rules.iter().any(same) {
            return Err(Error::conflict(
                "an identical rule already exists in this group",
            ));
        }
        if g.rules.len() >= MAX_RULES {
            return Err(Error::invalid(
                "rules",
                format!("a group holds at most {MAX_RULES} rules"),
            ));
        }
        g.rules.push(rule.clone());
        Ok(())
    })
    .await
}

pub async fn remove_rule(app: &App, id_or_name: &str, rule_id: &str) -> Result<SecurityGroup> {
    update(app, id_or_name, |g| {
        let before = g.rules.len();
        g.rules.retain(|r| r.id != rule_id);
        if g.rules.len() == before {
            return Err(Error::not_found("security group rule", rule_id));
        }
        Ok(())
    })
    .await
}

pub async fn delete(app: &App, id_or_name: &str) -> Result<()> {
    let g = get(app, id_or_name).await?;
    if g.name == DEFAULT_NAME {
        return Err(Error::conflict(
            "the default security group cannot be deleted",
        ));
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
    let txn = Txn {
        compare: vec![],
        success: vec![
            Op::delete(keys::security_group(&g.id)),
            Op::delete(keys::name(KIND, &g.project, &g.name)),
        ],
        failure: vec![],
    };
    app.kv().txn(txn).await.map_err(store_err)?;
    Ok(())
}
