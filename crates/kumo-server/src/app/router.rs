//! Routers: join subnets (their gateways route to each other; unjoined subnets stay isolated) and
//! optionally SNAT them to an external network (the NAT/internet gateway of a VPC).

use std::collections::HashSet;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{CreateRouterRequest, Error, Page, Result, Router, ids, now_rfc3339, validate};

use super::scope::{self, Kind, Scope};
use super::{App, network, port};
use crate::storeutil::{encode, keys, list_json, store_err};

const KIND: &str = "routers";

const ROUTERS: Kind = Kind {
    prefix: ids::ROUTER,
    names: KIND,
    key: keys::router,
    what: "router",
};

pub async fn list(app: &App, scope: &Scope) -> Result<Page<Router>> {
    let mut items: Vec<Router> = scope::list(app, scope, keys::ROUTERS).await?;
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<Router> {
    Ok(scope::find(app, scope, &ROUTERS, id_or_name).await?.0)
}

/// Resolve and check a subnet of `project` for attachment: it needs a gateway and no other router.
async fn attachable(
    app: &App,
    project: &str,
    field: &str,
    subnet: &str,
    routers: &[Router],
    me: Option<&str>,
) -> Result<String> {
    let s = network::get_subnet(app, &Scope::within(project), subnet)
        .await
        .map_err(|_| Error::invalid(field, format!("no subnet `{subnet}`")))?;
    if s.gateway.is_none() {
        return Err(Error::invalid(
            field,
            format!("subnet `{}` has no gateway to route through", s.name),
        ));
    }
    if let Some(r) = routers
        .iter()
        .find(|r| r.subnets.contains(&s.id) && Some(r.id.as_str()) != me)
    {
        return Err(Error::conflict_field(
            field,
            format!(
                "subnet `{}` is already attached to router `{}`",
                s.name, r.name
            ),
        ));
    }
    let net = network::get_any(app, &s.network_id).await?;
    if net.external {
        return Err(Error::invalid(
            field,
            format!(
                "subnet `{}` is on an external network; use external_network",
                s.name
            ),
        ));
    }
    Ok(s.id)
}

pub async fn create(app: &App, scope: &Scope, req: CreateRouterRequest) -> Result<Router> {
    validate::name("name", &req.name)?;
    let project = scope.project.clone();
    let name_key = keys::name(KIND, &project, &req.name);
    if app.kv().get(&name_key).await.map_err(store_err)?.is_some() {
        return Err(Error::conflict_field(
            "name",
            format!("router `{}` already exists", req.name),
        ));
    }
    let routers: Vec<Router> = list_json(app.kv(), keys::ROUTERS).await?;
    let mut subnets = Vec::new();
    for (i, s) in req.subnets.iter().enumerate() {
        let id = attachable(app, &project, &format!("subnets[{i}]"), s, &routers, None).await?;
        if !subnets.contains(&id) {
            subnets.push(id);
        }
    }
    let id = ids::new_id(ids::ROUTER);
    let mut compare = vec![Compare::absent(&name_key)];
    let mut ops = vec![Op::put(&name_key, id.clone())];
    let mut router = Router {
        id: id.clone(),
        name: req.name.clone(),
        project: project.clone(),
        subnets,
        external_network: None,
        external_ip: None,
        external_subnet: None,
        created_at: now_rfc3339(),
    };
    if let Some(ext) = &req.external_network {
        let net = network::get_external(app, &project, "external_network", ext).await?;
        let subnet = network::default_subnet(app, &net).await?;
        // The router's external address is allocated like a port's; the IPAM key names the router.
        let p = port::plan(
            app,
            "external_network",
            &net,
            &subnet,
            None,
            vec![],
            None,
            None,
            &HashSet::new(),
        )
        .await?;
        let ip_key = keys::ipam(&subnet.id, &p.port.ipv4);
        compare.push(Compare::absent(&ip_key));
        ops.push(Op::put(&ip_key, id.clone()));
        router.external_network = Some(net.id);
        router.external_subnet = Some(subnet.id);
        router.external_ip = Some(p.port.ipv4);
    }
    ops.push(Op::put(keys::router(&id), encode(&router)?));
    // Attachments are exclusive: guard them with the routers' collective revision.
    let guard = "/router-guard";
    let rev = app
        .kv()
        .get(guard)
        .await
        .map_err(store_err)?
        .map(|kv| kv.mod_revision)
        .unwrap_or(0);
    compare.push(Compare::mod_revision(guard, rev));
    ops.push(Op::put(guard, id.clone()));
    if !app
        .kv()
        .txn(Txn {
            compare,
            success: ops,
            failure: vec![],
        })
        .await
        .map_err(store_err)?
        .succeeded
    {
        return Err(Error::conflict("routers changed concurrently; retry"));
    }
    super::event::record_in(
        app,
        Some(&project),
        &id,
        "router.created",
        &format!("router `{}`", router.name),
    )
    .await?;
    Ok(router)
}

async fn update(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    f: impl AsyncFnOnce(&mut Router, &[Router]) -> Result<()>,
) -> Result<Router> {
    let (mut cur, rev): (Router, _) = scope::find(app, scope, &ROUTERS, id_or_name).await?;
    let key = keys::router(&cur.id);
    let all: Vec<Router> = list_json(app.kv(), keys::ROUTERS).await?;
    f(&mut cur, &all).await?;
    let guard = "/router-guard";
    let grev = app
        .kv()
        .get(guard)
        .await
        .map_err(store_err)?
        .map(|kv| kv.mod_revision)
        .unwrap_or(0);
    let txn = Txn {
        compare: vec![
            Compare::mod_revision(&key, rev),
            Compare::mod_revision(guard, grev),
        ],
        success: vec![Op::put(&key, encode(&cur)?), Op::put(guard, cur.id.clone())],
        failure: vec![],
    };
    if !app.kv().txn(txn).await.map_err(store_err)?.succeeded {
        return Err(Error::conflict("routers changed concurrently; retry"));
    }
    Ok(cur)
}

pub async fn add_interface(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    subnet: &str,
) -> Result<Router> {
    let r = update(
        app,
        scope,
        id_or_name,
        async |r: &mut Router, all: &[Router]| {
            let s = attachable(app, &r.project, "subnet", subnet, all, Some(&r.id)).await?;
            if r.subnets.contains(&s) {
                return Err(Error::conflict_field(
                    "subnet",
                    format!("subnet `{subnet}` is already attached to this router"),
                ));
            }
            r.subnets.push(s);
            Ok(())
        },
    )
    .await?;
    super::event::record_in(
        app,
        Some(&r.project),
        &r.id,
        "router.interface_added",
        &format!("subnet `{subnet}` joined"),
    )
    .await?;
    Ok(r)
}

pub async fn remove_interface(
    app: &App,
    scope: &Scope,
    id_or_name: &str,
    subnet: &str,
) -> Result<Router> {
    let router = get(app, scope, id_or_name).await?;
    let s = network::get_subnet(app, &Scope::within(&router.project), subnet).await?;
    let r = update(
        app,
        scope,
        &router.id,
        async |r: &mut Router, _: &[Router]| {
            let before = r.subnets.len();
            r.subnets.retain(|x| *x != s.id);
            if r.subnets.len() == before {
                return Err(Error::not_found("router interface", subnet));
            }
            Ok(())
        },
    )
    .await?;
    super::event::record_in(
        app,
        Some(&r.project),
        &r.id,
        "router.interface_removed",
        &format!("subnet `{subnet}` left"),
    )
    .await?;
    Ok(r)
}

pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    let r = get(app, scope, id_or_name).await?;
    if !r.subnets.is_empty() {
        return Err(Error::conflict(format!(
            "router `{}` still joins {} subnet(s); remove its interfaces first",
            r.name,
            r.subnets.len()
        )));
    }
    let mut ops = vec![
        Op::delete(keys::router(&r.id)),
        Op::delete(keys::name(KIND, &r.project, &r.name)),
    ];
    if let (Some(s), Some(ip)) = (&r.external_subnet, &r.external_ip) {
        ops.push(Op::delete(keys::ipam(s, ip)));
    }
    app.kv()
        .txn(Txn {
            compare: vec![],
            success: ops,
            failure: vec![],
        })
        .await
        .map_err(store_err)?;
    super::event::record_in(
        app,
        Some(&r.project),
        &r.id,
        "router.deleted",
        &format!("router `{}` deleted", r.name),
    )
    .await
}
