//! Networks and subnets. The default network (`default`, a host-local bridge with outbound NAT and one
//! subnet) is created on first start.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    CreateNetworkRequest, CreateSubnetRequest, DEFAULT_PROJECT, Error, IpRange, Network,
    NetworkKind, Page, QuotaResource, Result, Subnet, ids, now_rfc3339, validate,
};

use super::App;
use super::attrs::{self, Extra};
use super::quota::{self, Delta};
use super::scope::{self, Kind, Scope};
use crate::ipam::Cidr;
use crate::storeutil::{commit, encode, keys, list_json, store_err};

const KIND: &str = "networks";
const SUBNET_KIND: &str = "subnets";
pub const DEFAULT_NAME: &str = "default";
/// Addresses below this offset in a subnet are kept for infrastructure by default.
pub const DEFAULT_POOL_SKIP: u32 = 10;

/// The default allocation pool of a subnet: after the first ten addresses, up to the broadcast.
pub fn default_pool(c: &Cidr) -> IpRange {
    let start = u32::from(c.network())
        + DEFAULT_POOL_SKIP.min(u32::from(c.broadcast()) - u32::from(c.network()) - 1);
    IpRange {
        start: Ipv4Addr::from(start).to_string(),
        end: Ipv4Addr::from(u32::from(c.broadcast()) - 1).to_string(),
    }
}

const NETWORKS: Kind = Kind {
    prefix: ids::NETWORK,
    names: KIND,
    key: keys::network,
    what: "network",
};

const SUBNETS: Kind = Kind {
    prefix: ids::SUBNET,
    names: SUBNET_KIND,
    key: keys::subnet,
    what: "subnet",
};

/// The default project's `default` network and subnet (at start-up; idempotent).
pub async fn ensure_default(app: &App) -> Result<Network> {
    let system = Scope::system();
    if let Ok(n) = get(app, &system, DEFAULT_NAME).await {
        return Ok(n);
    }
    let cidr = Cidr::parse("default_network_cidr", &app.cfg.default_network_cidr)?;
    let now = now_rfc3339();
    let net = Network {
        id: ids::new_id(ids::NETWORK),
        name: DEFAULT_NAME.into(),
        project: DEFAULT_PROJECT.into(),
        kind: NetworkKind::Bridge,
        vlan_id: None,
        physical_network: None,
        vni: None,
        mtu: 1500,
        external: false,
        nat: app.cfg.default_nat,
        bridge: app.cfg.default_bridge.clone(),
        cidr: None,
        created_at: now.clone(),
    };
    let subnet = Subnet {
        id: ids::new_id(ids::SUBNET),
        name: DEFAULT_NAME.into(),
        project: DEFAULT_PROJECT.into(),
        network_id: net.id.clone(),
        cidr: app.cfg.default_network_cidr.clone(),
        gateway: Some(cidr.first_host().to_string()),
        allocation_pools: vec![default_pool(&cidr)],
        reserved: vec![],
        dhcp: true,
        dns_servers: vec![],
        routes: vec![],
        created_at: now,
    };
    let name_key = keys::name(KIND, DEFAULT_PROJECT, DEFAULT_NAME);
    for attempt in 0..quota::ATTEMPTS {
        let (mut compare, mut success) =
            quota::charge_unchecked(app, DEFAULT_PROJECT, &Delta::of(QuotaResource::Networks, 1))
                .await?;
        compare.push(Compare::absent(&name_key));
        success.extend([
            Op::put(&name_key, net.id.clone()),
            Op::put(keys::network(&net.id), encode(&net)?),
            Op::put(
                keys::name(SUBNET_KIND, DEFAULT_PROJECT, DEFAULT_NAME),
                subnet.id.clone(),
            ),
            Op::put(keys::subnet(&subnet.id), encode(&subnet)?),
        ]);
        let txn = Txn {
            compare,
            success,
            failure: vec![Op::get(&name_key)],
        };
        let r = app.kv().txn(txn).await.map_err(store_err)?;
        if r.succeeded
            || matches!(
                r.results.first(),
                Some(kumo_store::OpResult::Get { kv: Some(_) })
            )
        {
            // Made by this server, or by another one starting at the same time.
            return get(app, &system, DEFAULT_NAME).await;
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention creating the default network",
    ))
}

pub async fn list(app: &App, scope: &Scope) -> Result<Page<Network>> {
    let items: Vec<Network> = scope::list(app, scope, keys::NETWORKS).await?;
    Ok(Page {
        items,
        next_token: None,
    })
}

/// A network by ID or name, as `scope` sees it.
pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<Network> {
    Ok(scope::find(app, scope, &NETWORKS, id_or_name).await?.0)
}

/// A network by ID, whatever its project (agents' assignments, topology).
pub async fn get_any(app: &App, id: &str) -> Result<Network> {
    Ok(scope::find_any(app, &NETWORKS, id).await?.0)
}

/// An external network for a resource of `project`: its own, or any project's external network
/// (external networks are the cloud's shared uplinks: floating IPs and router gateways come from
/// them). `field` names the request field on error.
pub async fn get_external(app: &App, project: &str, field: &str, r: &str) -> Result<Network> {
    let refuse = |m: String| Error::invalid(field, m);
    let net = match get(app, &Scope::within(project), r).await {
        Ok(n) => n,
        Err(Error::NotFound { .. }) => {
            let all: Vec<Network> = list_json(app.kv(), keys::NETWORKS).await?;
            let mut shared = all
                .into_iter()
                .filter(|n| n.external && (n.id == r || n.name == r));
            match (shared.next(), shared.next()) {
                (Some(n), None) => n,
                (Some(_), Some(_)) => {
                    return Err(Error::conflict_field(
                        field,
                        format!("several external networks are named `{r}`; use the network ID"),
                    ));
                }
                _ => return Err(refuse(format!("no network `{r}`"))),
            }
        }
        Err(e) => return Err(e),
    };
    if !net.external {
        return Err(refuse(format!("network `{}` is not external", net.name)));
    }
    Ok(net)
}

/// The external network a resource of `project` gets its address from when none is named: the
/// oldest of the project's own external networks, else the oldest shared one (any project's);
/// `None` when the cloud has none.
pub async fn default_external(app: &App, project: &str) -> Result<Option<Network>> {
    let mut all: Vec<Network> = list_json::<Network>(app.kv(), keys::NETWORKS)
        .await?
        .into_iter()
        .filter(|n| n.external)
        .collect();
    all.sort_by(|a, b| {
        (a.project != project, &a.created_at, &a.id).cmp(&(
            b.project != project,
            &b.created_at,
            &b.id,
        ))
    });
    Ok(all.into_iter().next())
}

/// The subnets `scope` lists, of one network (an ID) or all.
pub async fn list_subnets(app: &App, scope: &Scope, network: Option<&str>) -> Result<Page<Subnet>> {
    let all: Vec<Subnet> = scope::list(app, scope, keys::SUBNETS).await?;
    let items = all
        .into_iter()
        .filter(|s| network.is_none_or(|n| s.network_id == n))
        .collect();
    Ok(Page {
        items,
        next_token: None,
    })
}

/// The subnets of network `network_id` (internal: the network was resolved already).
pub async fn subnets_of(app: &App, network_id: &str) -> Result<Vec<Subnet>> {
    Ok(list_json::<Subnet>(app.kv(), keys::SUBNETS)
        .await?
        .into_iter()
        .filter(|s| s.network_id == network_id)
        .collect())
}

pub async fn get_subnet(app: &App, scope: &Scope, id_or_name: &str) -> Result<Subnet> {
    Ok(scope::find(app, scope, &SUBNETS, id_or_name).await?.0)
}

/// The subnet an instance NIC lands on when only a network is named: its first subnet with a pool.
pub async fn default_subnet(app: &App, net: &Network) -> Result<Subnet> {
    let mut subnets = subnets_of(app, &net.id).await?;
    // The oldest subnet is the network's first.
    subnets.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    subnets
        .into_iter()
        .find(|s| !s.allocation_pools.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "network",
                format!("network `{}` has no subnet to allocate from", net.name),
            )
        })
}

/// Bridge name of a network: `kb` + 10 hex digits of its ID (fits IFNAMSIZ).
pub fn bridge_name(id: &str) -> String {
    let tail = id.rsplit('-').next().unwrap_or(id);
    format!("kb{}", &tail[..tail.len().min(10)])
}

/// VNIs are allocated from this range.
const VNI_RANGE: std::ops::RangeInclusive<u32> = 1000..=16_000_000;

pub async fn create(app: &App, scope: &Scope, req: CreateNetworkRequest) -> Result<Network> {
    create_with(app, scope, req, Extra::none(ids::NETWORK)).await
}

/// [`create`] with the ID and the front end's own writes of `extra`, in the same transaction.
pub async fn create_with(
    app: &App,
    scope: &Scope,
    req: CreateNetworkRequest,
    extra: Extra,
) -> Result<Network> {
    validate::name("name", &req.name)?;
    let range = match &req.cidr {
        Some(c) => {
            let c = Cidr::parse("cidr", c)?;
            Some(format!("{}/{}", c.network(), c.prefix))
        }
        None => None,
    };
    let project = scope.project.clone();
    let name_key = keys::name(KIND, &project, &req.name);
    if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
        return Err(Error::conflict_field(
            "name",
            format!("network `{}` already exists", req.name),
        ));
    }
    check_kind(&req)?;
    let default_mtu = if req.kind == NetworkKind::Vxlan {
        1450
    } else {
        1500
    };
    let mtu = req.mtu.unwrap_or(default_mtu);
    if !(576..=9000).contains(&mtu) {
        return Err(Error::invalid("mtu", format!("{mtu} is outside 576-9000")));
    }
    let id = extra.id.clone();
    for attempt in 0..quota::ATTEMPTS {
        let (mut compare, mut ops) =
            quota::charge(app, &project, &Delta::of(QuotaResource::Networks, 1)).await?;
        compare.push(Compare::absent(&name_key));
        compare.extend(extra.compare.iter().cloned());
        ops.push(Op::put(&name_key, id.clone()));
        ops.extend(extra.ops.iter().cloned());
        let mut vni = None;
        if req.kind == NetworkKind::Vxlan {
            let used: HashSet<u32> = crate::storeutil::list_raw(app.kv(), "/vni/")
                .await?
                .iter()
                .filter_map(|kv| kv.key.rsplit('/').next().and_then(|s| s.parse().ok()))
                .collect();
            let v = VNI_RANGE
                .clone()
                .find(|v| !used.contains(v))
                .ok_or_else(|| Error::InsufficientCapacity {
                    resource: "vni".into(),
                    message: "no VXLAN network identifier left".into(),
                })?;
            compare.push(Compare::absent(format!("/vni/{v}")));
            ops.push(Op::put(format!("/vni/{v}"), id.clone()));
            vni = Some(v);
        }
        let net = Network {
            bridge: bridge_name(&id),
            id: id.clone(),
            name: req.name.clone(),
            project: project.clone(),
            kind: req.kind,
            vlan_id: req.vlan_id,
            physical_network: req.physical_network.clone(),
            vni,
            mtu,
            external: req.external,
            nat: req.nat,
            cidr: range.clone(),
            created_at: now_rfc3339(),
        };
        ops.push(Op::put(keys::network(&id), encode(&net)?));
        let r = app
            .kv()
            .txn(Txn {
                compare,
                success: ops,
                failure: vec![Op::get(&name_key)],
            })
            .await
            .map_err(store_err)?;
        if r.succeeded {
            super::event::record_in(
                app,
                Some(&project),
                &id,
                "network.created",
                &format!("network `{}` ({:?})", net.name, net.kind),
            )
            .await?;
            return Ok(net);
        }
        if matches!(
            r.results.first(),
            Some(kumo_store::OpResult::Get { kv: Some(_) })
        ) {
            return Err(Error::conflict_field(
                "name",
                format!("network `{}` already exists", req.name),
            ));
        }
        // The project's usage or the VNI changed meanwhile: decide again.
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention creating the network; retry",
    ))
}

/// The kind-specific fields of a network request (pure).
fn check_kind(req: &CreateNetworkRequest) -> Result<()> {
    match req.kind {
        NetworkKind::Vlan => {
            match req.vlan_id {
                Some(v) if (1..=4094).contains(&v) => {}
                Some(v) => {
                    return Err(Error::invalid(
                        "vlan_id",
                        format!("{v} is not a VLAN ID (1-4094)"),
                    ));
                }
                None => return Err(Error::invalid("vlan_id", "required for vlan networks")),
            }
            match &req.physical_network {
                Some(p) => validate::name("physical_network", p)?,
                None => {
                    return Err(Error::invalid(
                        "physical_network",
                        "required for vlan networks (the host uplink mapping, e.g. physnet1)",
                    ));
                }
            }
        }
        _ => {
            if req.vlan_id.is_some() {
                return Err(Error::invalid(
                    "vlan_id",
                    "only vlan networks take a VLAN ID",
                ));
            }
            if req.physical_network.is_some() {
                return Err(Error::invalid(
                    "physical_network",
                    "only vlan networks take a physical network",
                ));
            }
        }
    }
    Ok(())
}

pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    for attempt in 0..quota::ATTEMPTS {
        let (net, rev): (Network, _) = scope::find(app, scope, &NETWORKS, id_or_name).await?;
        if net.name == DEFAULT_NAME && net.project == DEFAULT_PROJECT {
            return Err(Error::conflict("the default network cannot be deleted"));
        }
        let subnets = subnets_of(app, &net.id).await?;
        if !subnets.is_empty() {
            let names: Vec<&str> = subnets.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::conflict(format!(
                "network `{}` still has subnet(s) {}; delete them first",
                net.name,
                names.join(", ")
            )));
        }
        let key = keys::network(&net.id);
        let (mut compare, mut ops) =
            quota::credit(app, &net.project, &Delta::of(QuotaResource::Networks, 1)).await?;
        compare.push(Compare::mod_revision(&key, rev));
        ops.push(Op::delete(&key));
        ops.push(Op::delete(keys::name(KIND, &net.project, &net.name)));
        ops.extend(attrs::cleanup_ops(app, &net.id).await?);
        if let Some(v) = net.vni {
            ops.push(Op::delete(format!("/vni/{v}")));
        }
        if commit(app.kv(), compare, ops).await? {
            return super::event::record_in(
                app,
                Some(&net.project),
                &net.id,
                "network.deleted",
                &format!("network `{}` deleted", net.name),
            )
            .await;
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention deleting the network; retry",
    ))
}

/// Validate a subnet request into a subnet (pure; `existing` are all subnets, for overlap checks).
pub fn build_subnet(
    req: &CreateSubnetRequest,
    net: &Network,
    existing: &[Subnet],
) -> Result<Subnet> {
    validate::name("name", &req.name)?;
    let cidr = Cidr::parse("cidr", &req.cidr)?;
    if let Some(range) = &net.cidr
        && !within(&cidr, range)
    {
        return Err(Error::invalid(
            "cidr",
            format!(
                "{} is not inside network `{}`'s range {range}",
                req.cidr, net.name
            ),
        ));
    }
    // Every kumo subnet is routed by the hosts themselves, so subnets may not overlap anywhere.
    for s in existing {
        if let Ok(o) = Cidr::parse("cidr", &s.cidr)
            && (o.contains(cidr.network()) || cidr.contains(o.network()))
        {
            let whose = if s.project == net.project {
                format!("subnet `{}` ({})", s.name, s.cidr)
            } else {
                format!(
                    "{}, a subnet of another project (subnets may not overlap anywhere in the cloud)",
                    s.cidr
                )
            };
            return Err(Error::conflict_field(
                "cidr",
                format!("{} overlaps {whose}", req.cidr),
            ));
        }
    }
    let gateway = match req.gateway.as_deref() {
        Some("none") => None,
        Some(g) => {
            let ip: Ipv4Addr = g.parse().map_err(|_| {
                Error::invalid(
                    "gateway",
                    format!("{g:?} is not an IPv4 address (or \"none\")"),
                )
            })?;
            if !cidr.contains(ip) || ip == cidr.network() || ip == cidr.broadcast() {
                return Err(Error::invalid(
                    "gateway",
                    format!("{ip} is not a host address of {}", req.cidr),
                ));
            }
            Some(ip.to_string())
        }
        None => Some(cidr.first_host().to_string()),
    };
    let pools = req
        .allocation_pools
        .clone()
        .unwrap_or_else(|| vec![default_pool(&cidr)]);
    let parsed = crate::ipam::parse_pools("allocation_pools", &cidr, &pools)?;
    for (i, r) in req.reserved.iter().enumerate() {
        let ip: Ipv4Addr = r.parse().map_err(|_| {
            Error::invalid(
                format!("reserved[{i}]"),
                format!("{r:?} is not an IPv4 address"),
            )
        })?;
        if !cidr.contains(ip) {
            return Err(Error::invalid(
                format!("reserved[{i}]"),
                format!("{ip} is outside {}", req.cidr),
            ));
        }
    }
    if let Some(g) = gateway.as_deref().and_then(|g| g.parse::<Ipv4Addr>().ok())
        && parsed.iter().any(|(s, e)| *s <= g && g <= *e)
    {
        return Err(Error::invalid(
            "allocation_pools",
            format!("the pools include the gateway {g}"),
        ));
    }
    for (i, d) in req.dns_servers.iter().enumerate() {
        d.parse::<Ipv4Addr>().map_err(|_| {
            Error::invalid(
                format!("dns_servers[{i}]"),
                format!("{d:?} is not an IPv4 address"),
            )
        })?;
    }
    for (i, r) in req.routes.iter().enumerate() {
        Cidr::parse_any(&format!("routes[{i}].destination"), &r.destination)?;
        let nh: Ipv4Addr = r.nexthop.parse().map_err(|_| {
            Error::invalid(
                format!("routes[{i}].nexthop"),
                format!("{:?} is not an IPv4 address", r.nexthop),
            )
        })?;
        if !cidr.contains(nh) {
            return Err(Error::invalid(
                format!("routes[{i}].nexthop"),
                format!("{nh} is not on {}", req.cidr),
            ));
        }
    }
    Ok(Subnet {
        id: ids::new_id(ids::SUBNET),
        name: req.name.clone(),
        project: net.project.clone(),
        network_id: net.id.clone(),
        cidr: format!("{}/{}", cidr.network(), cidr.prefix),
        gateway,
        allocation_pools: pools,
        reserved: req.reserved.clone(),
        dhcp: req.dhcp.unwrap_or(true),
        dns_servers: req.dns_servers.clone(),
        routes: req.routes.clone(),
        created_at: now_rfc3339(),
    })
}

/// Whether `inner` lies entirely inside the range `outer` (a CIDR; unparsable: no).
pub fn within(inner: &Cidr, outer: &str) -> bool {
    Cidr::parse_any("cidr", outer)
        .is_ok_and(|o| inner.prefix >= o.prefix && o.contains(inner.network()))
}

pub async fn create_subnet(app: &App, scope: &Scope, req: CreateSubnetRequest) -> Result<Subnet> {
    create_subnet_with(app, scope, req, Extra::none(ids::SUBNET)).await
}

/// [`create_subnet`] with the ID and the front end's own writes of `extra`, in the same
/// transaction.
pub async fn create_subnet_with(
    app: &App,
    scope: &Scope,
    req: CreateSubnetRequest,
    extra: Extra,
) -> Result<Subnet> {
    let net = get(app, scope, &req.network)
        .await
        .map_err(|_| Error::invalid("network", format!("no network `{}`", req.network)))?;
    // Subnets may not overlap in any project: the hosts route them all.
    let existing: Vec<Subnet> = list_json(app.kv(), keys::SUBNETS).await?;
    let mut subnet = build_subnet(&req, &net, &existing)?;
    subnet.id = extra.id.clone();
    let name_key = keys::name(SUBNET_KIND, &subnet.project, &subnet.name);
    // Guard against a concurrent overlapping subnet: every subnet creation bumps one key.
    let guard = "/subnet-guard";
    let rev = app
        .kv()
        .get(guard)
        .await
        .map_err(store_err)?
        .map(|kv| kv.mod_revision)
        .unwrap_or(0);
    let mut compare = vec![
        Compare::absent(&name_key),
        Compare::mod_revision(guard, rev),
    ];
    compare.extend(extra.compare);
    let mut success = vec![
        Op::put(&name_key, subnet.id.clone()),
        Op::put(keys::subnet(&subnet.id), encode(&subnet)?),
        Op::put(guard, subnet.id.clone()),
    ];
    success.extend(extra.ops);
    let txn = Txn {
        compare,
        success,
        failure: vec![Op::get(&name_key)],
    };
    let r = app.kv().txn(txn).await.map_err(store_err)?;
    if !r.succeeded {
        if matches!(
            r.results.first(),
            Some(kumo_store::OpResult::Get { kv: Some(_) })
        ) {
            return Err(Error::conflict_field(
                "name",
                format!("subnet `{}` already exists", subnet.name),
            ));
        }
        return Err(Error::conflict(
            "another subnet was created concurrently; retry",
        ));
    }
    super::event::record_in(
        app,
        Some(&subnet.project),
        &subnet.id,
        "subnet.created",
        &format!("subnet `{}` {} in `{}`", subnet.name, subnet.cidr, net.name),
    )
    .await?;
    Ok(subnet)
}

pub async fn delete_subnet(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    let s = get_subnet(app, scope, id_or_name).await?;
    let used = crate::storeutil::list_raw(app.kv(), &keys::ipam_prefix(&s.id)).await?;
    if !used.is_empty() {
        return Err(Error::conflict(format!(
            "subnet `{}` still has {} address(es) in use (ports, routers, floating IPs)",
            s.name,
            used.len()
        )));
    }
    let routers: Vec<kumo_types::Router> = list_json(app.kv(), keys::ROUTERS).await?;
    if let Some(r) = routers.iter().find(|r| r.subnets.contains(&s.id)) {
        return Err(Error::conflict(format!(
            "subnet `{}` is attached to router `{}`",
            s.name, r.name
        )));
    }
    let mut success = vec![
        Op::delete(keys::subnet(&s.id)),
        Op::delete(keys::name(SUBNET_KIND, &s.project, &s.name)),
    ];
    success.extend(attrs::cleanup_ops(app, &s.id).await?);
    let txn = Txn {
        compare: vec![],
        success,
        failure: vec![],
    };
    app.kv().txn(txn).await.map_err(store_err)?;
    super::event::record_in(
        app,
        Some(&s.project),
        &s.id,
        "subnet.deleted",
        &format!("subnet `{}` deleted", s.name),
    )
    .await
}

/// How many addresses of a subnet's allocation pools are still free (not taken, and not the
/// network, broadcast, gateway or a reserved address).
pub async fn free_addresses(app: &App, s: &Subnet) -> Result<u64> {
    let cidr = Cidr::parse("cidr", &s.cidr)?;
    let pools = crate::ipam::parse_pools("allocation_pools", &cidr, &s.allocation_pools)?;
    let mut unusable: HashSet<Ipv4Addr> =
        s.reserved.iter().filter_map(|r| r.parse().ok()).collect();
    unusable.extend([cidr.network(), cidr.broadcast()]);
    unusable.extend(
        s.gateway
            .as_deref()
            .and_then(|g| g.parse::<Ipv4Addr>().ok()),
    );
    for kv in crate::storeutil::list_raw(app.kv(), &keys::ipam_prefix(&s.id)).await? {
        unusable.extend(
            kv.key
                .rsplit('/')
                .next()
                .and_then(|a| a.parse::<Ipv4Addr>().ok()),
        );
    }
    let in_pools = |ip: &Ipv4Addr| pools.iter().any(|(a, b)| a <= ip && ip <= b);
    // Pools may overlap each other; count each address once.
    let mut ranges: Vec<(u32, u32)> = pools
        .iter()
        .map(|(a, b)| (u32::from(*a), u32::from(*b)))
        .collect();
    ranges.sort_unstable();
    let (mut total, mut end) = (0u64, None::<u32>);
    for (a, b) in ranges {
        let start = match end {
            Some(e) if a <= e => e.saturating_add(1),
            _ => a,
        };
        if start <= b {
            total += u64::from(b - start) + 1;
        }
        end = Some(end.map_or(b, |e| e.max(b)));
    }
    let taken = unusable.iter().filter(|ip| in_pools(ip)).count() as u64;
    Ok(total.saturating_sub(taken))
}
