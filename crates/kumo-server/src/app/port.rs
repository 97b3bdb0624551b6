//! Ports: a NIC's identity on a subnet (fixed MAC and IPv4, security groups). Ports are created with
//! instances (one per NIC) or on their own and attached later. An address is taken iff its key
//! `/ipam/<subnet>/<ip>` exists; the key is created in the same transaction as the port.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    CreatePortRequest, DEFAULT_PROJECT, Error, Nic, Page, Port, Result, Subnet, ids, now_rfc3339,
};

use super::scope::{self, Scope};
use super::{App, network, security_group};
use crate::ipam::{self, Cidr};
use crate::storeutil::{commit, encode, get_json, keys, list_raw, store_err};

const MAX_ATTEMPTS: usize = 30;

/// A port decided but not yet written: the ops and compares that make it real.
pub struct PortPlan {
    pub port: Port,
    pub compare: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl PortPlan {
    pub fn nic(&self) -> Nic {
        Nic {
            port_id: self.port.id.clone(),
            network_id: self.port.network_id.clone(),
            subnet_id: self.port.subnet_id.clone(),
            mac: self.port.mac.clone(),
            ipv4: self.port.ipv4.clone(),
            slot: 0,
            keep_port: false,
        }
    }
}

/// An existing, unattached port of `project` claimed for `instance_id` (a NIC request naming
/// `port`). The NIC takes the port as it is, so `network`, `subnet`, `ipv4` and `security_groups`
/// must be absent.
pub async fn claim(
    app: &App,
    project: &str,
    field: &str,
    req: &kumo_types::NicRequest,
    instance_id: &str,
) -> Result<PortPlan> {
    let Some(port_ref) = req.port.as_deref() else {
        return Err(Error::internal("claim without a port"));
    };
    for (given, what) in [
        (req.network.is_some(), "network"),
        (req.subnet.is_some(), "subnet"),
        (req.ipv4.is_some(), "ipv4"),
        (req.security_groups.is_some(), "security_groups"),
    ] {
        if given {
            return Err(Error::invalid(
                field_name(field, what),
                "a NIC with `port` takes the port's own network, address and security groups; \
                 omit it (change a port's groups with PATCH /v1/ports/{id})",
            ));
        }
    }
    let (mut p, rev) = find(app, &Scope::within(project), port_ref)
        .await?
        .ok_or_else(|| {
            Error::invalid(field_name(field, "port"), format!("no port `{port_ref}`"))
        })?;
    if let Some(other) = &p.instance_id {
        return Err(Error::conflict_field(
            field_name(field, "port"),
            format!("port `{port_ref}` is attached to instance {other}"),
        ));
    }
    p.instance_id = Some(instance_id.to_string());
    let key = keys::port(&p.id);
    Ok(PortPlan {
        compare: vec![Compare::mod_revision(&key, rev)],
        ops: vec![Op::put(&key, encode(&p)?)],
        port: p,
    })
}

/// A port `scope` sees by ID, or by name (in `scope.project`) when no port has that ID; with its
/// mod revision.
async fn find(app: &App, scope: &Scope, id_or_name: &str) -> Result<Option<(Port, i64)>> {
    if let Some(found) = get_json::<Port>(app.kv(), &keys::port(id_or_name)).await? {
        return Ok(scope.sees(&found.0.project).then_some(found));
    }
    let named: Vec<kumo_store::KeyValue> = list_raw(app.kv(), keys::PORTS)
        .await?
        .into_iter()
        .filter(|kv| {
            crate::storeutil::decode::<Port>(kv)
                .is_ok_and(|p| p.name.as_deref() == Some(id_or_name) && p.project == scope.project)
        })
        .collect();
    match named.as_slice() {
        [] => Ok(None),
        [kv] => Ok(Some((crate::storeutil::decode(kv)?, kv.mod_revision))),
        _ => Err(Error::conflict(format!(
            "several ports are named `{id_or_name}`; use the port ID"
        ))),
    }
}

/// What releasing a NIC's port writes: a kept port is only detached (its floating IP stays with it);
/// otherwise the port and its address go, and a floating IP on it loses its association.
pub async fn release(app: &App, nic: &Nic) -> Result<(Vec<Compare>, Vec<Op>)> {
    if nic.keep_port {
        let key = keys::port(&nic.port_id);
        let Some((mut p, rev)) = get_json::<Port>(app.kv(), &key).await? else {
            return Ok((vec![], vec![]));
        };
        p.instance_id = None;
        return Ok((
            vec![Compare::mod_revision(&key, rev)],
            vec![Op::put(&key, encode(&p)?)],
        ));
    }
    let mut compare = vec![];
    let mut ops = vec![
        Op::delete(keys::port(&nic.port_id)),
        Op::delete(keys::ipam(&nic.subnet_id, &nic.ipv4)),
        super::tags::delete_op(&nic.port_id),
    ];
    disassociate_fips(app, &nic.port_id, &mut compare, &mut ops).await?;
    Ok((compare, ops))
}

/// Add the writes that leave floating IPs on `port_id` allocated but unassociated.
async fn disassociate_fips(
    app: &App,
    port_id: &str,
    compare: &mut Vec<Compare>,
    ops: &mut Vec<Op>,
) -> Result<()> {
    for kv in list_raw(app.kv(), keys::FLOATING_IPS).await? {
        let mut f: kumo_types::FloatingIp = crate::storeutil::decode(&kv)?;
        if f.port_id.as_deref() == Some(port_id) {
            f.port_id = None;
            f.fixed_ip = None;
            compare.push(Compare::mod_revision(&kv.key, kv.mod_revision));
            ops.push(Op::put(&kv.key, encode(&f)?));
        }
    }
    Ok(())
}

/// Replace a port's security groups (and so its firewall chains, atomically, on its host).
pub async fn update(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    req: kumo_types::UpdatePortRequest,
) -> Result<Port> {
    if let Some(n) = &req.name {
        kumo_types::validate::name("name", n)?;
    }
    let (found, _) = find(app, scope, id_or_name)
        .await?
        .ok_or_else(|| Error::not_found("port", id_or_name))?;
    let groups = match &req.security_groups {
        Some(g) => {
            Some(security_group::resolve_all(app, &found.project, "security_groups", g).await?)
        }
        None => None,
    };
    for _ in 0..MAX_ATTEMPTS {
        let (mut p, rev) = find(app, scope, &found.id)
            .await?
            .ok_or_else(|| Error::not_found("port", id_or_name))?;
        if let Some(g) = &groups {
            p.security_groups = g.clone();
        }
        if let Some(n) = &req.name {
            p.name = Some(n.clone());
        }
        let key = keys::port(&p.id);
        let (compare, ops) = (
            vec![Compare::mod_revision(&key, rev)],
            vec![Op::put(&key, encode(&p)?)],
        );
        if commit(app.kv(), compare, ops).await? {
            return Ok(p);
        }
    }
    Err(Error::unavailable(
        "too much contention updating the port; retry",
    ))
}

/// The name of request field `name` under `field` (`nics[0].ipv4`); a top-level field when `field`
/// is empty (a port's own request).
fn field_name(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_string()
    } else {
        format!("{field}.{name}")
    }
}

/// Addresses a subnet never hands out: network, broadcast, gateway, reserved.
fn infrastructure(cidr: &Cidr, s: &Subnet) -> HashSet<Ipv4Addr> {
    let mut set: HashSet<Ipv4Addr> = s.reserved.iter().filter_map(|r| r.parse().ok()).collect();
    set.insert(cidr.network());
    set.insert(cidr.broadcast());
    if let Some(g) = s.gateway.as_deref().and_then(|g| g.parse().ok()) {
        set.insert(g);
    }
    set
}

/// Resolve where a NIC of a resource of `project` goes: (network, subnet), both of `project`.
pub async fn resolve_target(
    app: &App,
    project: &str,
    field: &str,
    net: Option<&str>,
    subnet: Option<&str>,
) -> Result<(kumo_types::Network, Subnet)> {
    resolve_target_for(app, project, field, net, subnet, None).await
}

/// Like [`resolve_target`]; with only a network and a requested address, the subnet containing the
/// address is chosen.
pub async fn resolve_target_for(
    app: &App,
    project: &str,
    field: &str,
    net: Option<&str>,
    subnet: Option<&str>,
    ipv4: Option<&str>,
) -> Result<(kumo_types::Network, Subnet)> {
    let within = Scope::within(project);
    match subnet {
        Some(s) => {
            let sub = network::get_subnet(app, &within, s).await.map_err(|_| {
                Error::invalid(field_name(field, "subnet"), format!("no subnet `{s}`"))
            })?;
            let n = network::get_any(app, &sub.network_id).await?;
            if let Some(want) = net
                && want != n.id
                && want != n.name
            {
                return Err(Error::invalid(
                    field_name(field, "subnet"),
                    format!("subnet `{s}` is not in network `{want}`"),
                ));
            }
            Ok((n, sub))
        }
        None => {
            let r = net.unwrap_or(network::DEFAULT_NAME);
            let n = network::get(app, &within, r).await.map_err(|_| {
                let hint = if r == network::DEFAULT_NAME && project != DEFAULT_PROJECT {
                    format!(
                        " in project `{project}` (only the `default` project has a default \
                         network; name one of the project's networks)"
                    )
                } else {
                    String::new()
                };
                Error::invalid(
                    field_name(field, "network"),
                    format!("no network `{r}`{hint}"),
                )
            })?;
            let wanted: Option<Ipv4Addr> = ipv4.and_then(|i| i.parse().ok());
            if let Some(ip) = wanted {
                let subs = network::subnets_of(app, &n.id).await?;
                if let Some(s) = subs
                    .into_iter()
                    .find(|s| Cidr::parse("cidr", &s.cidr).is_ok_and(|c| c.contains(ip)))
                {
                    return Ok((n, s));
                }
            }
            let sub = network::default_subnet(app, &n).await?;
            Ok((n, sub))
        }
    }
}

/// Decide a port on `subnet`: pick (or check) its address against what is taken now plus `pending`
/// (addresses already chosen for the same transaction).
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    app: &App,
    field: &str,
    net: &kumo_types::Network,
    subnet: &Subnet,
    fixed: Option<&str>,
    security_groups: Vec<String>,
    instance_id: Option<&str>,
    name: Option<String>,
    pending: &HashSet<Ipv4Addr>,
) -> Result<PortPlan> {
    let cidr = Cidr::parse("cidr", &subnet.cidr)?;
    let infra = infrastructure(&cidr, subnet);
    let used: HashSet<Ipv4Addr> = list_raw(app.kv(), &keys::ipam_prefix(&subnet.id))
        .await?
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next().and_then(|s| s.parse().ok()))
        .collect();
    let ip = match fixed {
        Some(f) => {
            let ip: Ipv4Addr = f.parse().map_err(|_| {
                Error::invalid(
                    field_name(field, "ipv4"),
                    format!("{f:?} is not an IPv4 address"),
                )
            })?;
            ipam::check_fixed(&field_name(field, "ipv4"), &cidr, ip, &infra)?;
            if used.contains(&ip) || pending.contains(&ip) {
                return Err(Error::conflict_field(
                    field_name(field, "ipv4"),
                    format!("{ip} is already in use in subnet `{}`", subnet.name),
                ));
            }
            ip
        }
        None => {
            let pools = ipam::parse_pools("allocation_pools", &cidr, &subnet.allocation_pools)?;
            let exclude: HashSet<Ipv4Addr> = infra
                .iter()
                .chain(used.iter())
                .chain(pending.iter())
                .copied()
                .collect();
            ipam::pick(&pools, &exclude).ok_or_else(|| Error::InsufficientCapacity {
                resource: "ipv4".into(),
                message: format!(
                    "subnet `{}` ({}) has no free address in its allocation pools",
                    subnet.name, subnet.cidr
                ),
            })?
        }
    };
    let port = Port {
        id: ids::new_id(ids::PORT),
        name,
        project: net.project.clone(),
        network_id: net.id.clone(),
        subnet_id: subnet.id.clone(),
        mac: ipam::random_mac(),
        ipv4: ip.to_string(),
        instance_id: instance_id.map(str::to_string),
        security_groups,
        created_at: now_rfc3339(),
    };
    let ip_key = keys::ipam(&subnet.id, &port.ipv4);
    Ok(PortPlan {
        compare: vec![Compare::absent(&ip_key)],
        ops: vec![
            Op::put(&ip_key, port.id.clone()),
            Op::put(keys::port(&port.id), encode(&port)?),
        ],
        port,
    })
}

/// The security groups a new port of `project` gets: the named ones, or the project's default group.
pub async fn groups_or_default(
    app: &App,
    project: &str,
    field: &str,
    refs: Option<&[String]>,
) -> Result<Vec<String>> {
    match refs {
        Some(r) => security_group::resolve_all(app, project, field, r).await,
        None => Ok(vec![
            security_group::ensure_default_in(app, project).await?.id,
        ]),
    }
}

/// Create a free-standing port (attach it to an instance later). Race-free: a lost race for the
/// address is decided again.
pub async fn create(app: &App, scope: &Scope, req: CreatePortRequest) -> Result<Port> {
    if let Some(n) = &req.name {
        kumo_types::validate::name("name", n)?;
    }
    let project = &scope.project;
    let (net, subnet) = resolve_target(
        app,
        project,
        "",
        req.network.as_deref(),
        req.subnet.as_deref(),
    )
    .await?;
    let sgs = groups_or_default(
        app,
        project,
        "security_groups",
        req.security_groups.as_deref(),
    )
    .await?;
    // Racing creates all pick the lowest free address: spread the retries out, and retry as long
    // as other creates are making progress.
    for attempt in 0..super::quota::ATTEMPTS {
        let p = plan(
            app,
            "",
            &net,
            &subnet,
            req.ipv4.as_deref(),
            sgs.clone(),
            None,
            req.name.clone(),
            &HashSet::new(),
        )
        .await?;
        let txn = Txn {
            compare: p.compare,
            success: p.ops,
            failure: vec![],
        };
        if app.kv().txn(txn).await.map_err(store_err)?.succeeded {
            return Ok(p.port);
        }
        if req.ipv4.is_some() {
            return Err(Error::conflict_field(
                "ipv4",
                "the requested address was taken concurrently",
            ));
        }
        super::quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention allocating an address; retry",
    ))
}

pub async fn list(app: &App, scope: &Scope, network: Option<&str>) -> Result<Page<Port>> {
    let all: Vec<Port> = scope::list(app, scope, keys::PORTS).await?;
    let items = all
        .into_iter()
        .filter(|p| network.is_none_or(|n| p.network_id == n))
        .collect();
    Ok(Page {
        items,
        next_token: None,
    })
}

/// A port by ID (or name, in `scope.project`).
pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<Port> {
    find(app, scope, id_or_name)
        .await?
        .map(|(p, _)| p)
        .ok_or_else(|| Error::not_found("port", id_or_name))
}

/// Ops that remove a port, free its address and drop its tags.
pub fn delete_ops(p: &Port) -> Vec<Op> {
    vec![
        Op::delete(keys::port(&p.id)),
        Op::delete(keys::ipam(&p.subnet_id, &p.ipv4)),
        super::tags::delete_op(&p.id),
    ]
}

pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    let (p, rev) = find(app, scope, id_or_name)
        .await?
        .ok_or_else(|| Error::not_found("port", id_or_name))?;
    let id = p.id.as_str();
    if let Some(i) = &p.instance_id {
        return Err(Error::conflict(format!(
            "port `{id}` is attached to instance {i}; detach it first"
        )));
    }
    let mut compare = vec![Compare::mod_revision(keys::port(id), rev)];
    let mut ops = delete_ops(&p);
    // A floating IP on the port stays allocated but loses its association.
    disassociate_fips(app, id, &mut compare, &mut ops).await?;
    if !commit(app.kv(), compare, ops).await? {
        return Err(Error::conflict(format!(
            "port `{id}` changed concurrently; retry"
        )));
    }
    Ok(())
}
