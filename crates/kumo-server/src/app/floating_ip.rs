//! Floating IPs: addresses of an external network, associated with a port (DNAT in, SNAT out).

use std::collections::HashSet;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    AllocateFloatingIpRequest, AssociateFloatingIpRequest, Error, FloatingIp, Page, QuotaResource,
    Result, ids, now_rfc3339,
};

use super::attrs::Extra;
use super::quota::{self, Delta};
use super::scope::{self, Scope};
use super::{App, instance, network, port};
use crate::storeutil::{commit, encode, get_json, keys, list_json, store_err};

pub async fn list(app: &App, scope: &Scope) -> Result<Page<FloatingIp>> {
    let items: Vec<FloatingIp> = scope::list(app, scope, keys::FLOATING_IPS).await?;
    Ok(Page {
        items,
        next_token: None,
    })
}

/// By ID or by address, as `scope` sees it.
pub async fn get(app: &App, scope: &Scope, id_or_addr: &str) -> Result<(FloatingIp, i64)> {
    let nf = || Error::not_found("floating IP", id_or_addr);
    let id = if ids::is_id(ids::FLOATING_IP, id_or_addr) {
        id_or_addr.to_string()
    } else {
        let all: Vec<FloatingIp> = list_json(app.kv(), keys::FLOATING_IPS).await?;
        all.into_iter()
            .find(|f| f.address == id_or_addr && scope.sees(&f.project))
            .ok_or_else(nf)?
            .id
    };
    let found = get_json::<FloatingIp>(app.kv(), &keys::floating_ip(&id)).await?;
    scope.visible(
        found,
        |(f, _)| f.project.as_str(),
        "floating IP",
        id_or_addr,
    )
}

pub async fn allocate(
    app: &App,
    scope: &Scope,
    req: AllocateFloatingIpRequest,
) -> Result<FloatingIp> {
    allocate_with(app, scope, req, Extra::none(ids::FLOATING_IP)).await
}

/// [`allocate`] with the ID and the front end's own writes of `extra`, in the same transaction.
pub async fn allocate_with(
    app: &App,
    scope: &Scope,
    req: AllocateFloatingIpRequest,
    extra: Extra,
) -> Result<FloatingIp> {
    let project = scope.project.clone();
    let net = network::get_external(app, &project, "network", &req.network)
        .await
        .map_err(|e| match e {
            Error::Invalid { message, .. } if message.contains("is not external") => {
                Error::invalid(
                    "network",
                    format!("{message}; floating IPs come from external networks"),
                )
            }
            e => e,
        })?;
    let subnet = network::default_subnet(app, &net).await?;
    for attempt in 0..quota::ATTEMPTS {
        let p = port::plan(
            app,
            "network",
            &net,
            &subnet,
            None,
            vec![],
            None,
            None,
            &HashSet::new(),
        )
        .await?;
        let id = extra.id.clone();
        let fip = FloatingIp {
            id: id.clone(),
            project: project.clone(),
            network_id: net.id.clone(),
            subnet_id: subnet.id.clone(),
            address: p.port.ipv4.clone(),
            port_id: None,
            fixed_ip: None,
            created_at: now_rfc3339(),
        };
        let ip_key = keys::ipam(&subnet.id, &fip.address);
        let (mut compare, mut success) =
            quota::charge(app, &project, &Delta::of(QuotaResource::FloatingIps, 1)).await?;
        compare.push(Compare::absent(&ip_key));
        compare.extend(extra.compare.iter().cloned());
        success.extend([
            Op::put(&ip_key, id.clone()),
            Op::put(keys::floating_ip(&id), encode(&fip)?),
        ]);
        success.extend(extra.ops.iter().cloned());
        let txn = Txn {
            compare,
            success,
            failure: vec![],
        };
        if app.kv().txn(txn).await.map_err(store_err)?.succeeded {
            super::event::record_in(
                app,
                Some(&project),
                &id,
                "floating_ip.allocated",
                &fip.address,
            )
            .await?;
            return Ok(fip);
        }
        // The address was taken or the project's usage changed: decide again.
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention allocating a floating IP; retry",
    ))
}

pub async fn associate(
    app: &App,
    scope: &Scope,
    id_or_addr: &str,
    req: AssociateFloatingIpRequest,
) -> Result<FloatingIp> {
    let (fip0, _) = get(app, scope, id_or_addr).await?;
    // The port or instance is the floating IP's project's.
    let within = Scope::within(&fip0.project);
    let port_id = match (&req.port, &req.instance) {
        (Some(p), None) => {
            port::get(app, &within, p)
                .await
                .map_err(|_| Error::invalid("port", format!("no port `{p}`")))?
                .id
        }
        (None, Some(i)) => {
            let (inst, _) = instance::find_in(app, &within, i)
                .await
                .map_err(|_| Error::invalid("instance", format!("no instance `{i}`")))?;
            inst.nics
                .first()
                .map(|n| n.port_id.clone())
                .ok_or_else(|| Error::invalid("instance", "the instance has no NIC"))?
        }
        _ => {
            return Err(Error::invalid(
                "port",
                "give exactly one of port or instance",
            ));
        }
    };
    let port = port::get(app, &within, &port_id).await?;
    let net = network::get_any(app, &port.network_id).await?;
    if net.external {
        return Err(Error::invalid(
            "port",
            "the port is on an external network already",
        ));
    }
    let all: Vec<FloatingIp> = list_json(app.kv(), keys::FLOATING_IPS).await?;
    let (mut fip, rev) = get(app, scope, &fip0.id).await?;
    if let Some(other) = all
        .iter()
        .find(|f| f.port_id.as_deref() == Some(port.id.as_str()) && f.id != fip.id)
    {
        return Err(Error::conflict_field(
            "port",
            format!("the port already has floating IP {}", other.address),
        ));
    }
    if fip.port_id.as_deref().is_some_and(|p| p != port.id) {
        return Err(Error::conflict(format!(
            "floating IP {} is associated with another port; disassociate it first",
            fip.address
        )));
    }
    fip.port_id = Some(port.id.clone());
    fip.fixed_ip = Some(port.ipv4.clone());
    save(app, &fip, rev).await?;
    super::event::record_in(
        app,
        Some(&fip.project),
        &fip.id,
        "floating_ip.associated",
        &format!("{} → {}", fip.address, port.ipv4),
    )
    .await?;
    Ok(fip)
}

async fn save(app: &App, fip: &FloatingIp, rev: i64) -> Result<()> {
    let key = keys::floating_ip(&fip.id);
    let txn = Txn {
        compare: vec![Compare::mod_revision(&key, rev)],
        success: vec![Op::put(&key, encode(fip)?)],
        failure: vec![],
    };
    if !app.kv().txn(txn).await.map_err(store_err)?.succeeded {
        return Err(Error::conflict(
            "the floating IP changed concurrently; retry",
        ));
    }
    Ok(())
}

pub async fn disassociate(app: &App, scope: &Scope, id_or_addr: &str) -> Result<FloatingIp> {
    let (mut fip, rev) = get(app, scope, id_or_addr).await?;
    fip.port_id = None;
    fip.fixed_ip = None;
    save(app, &fip, rev).await?;
    super::event::record_in(
        app,
        Some(&fip.project),
        &fip.id,
        "floating_ip.disassociated",
        &fip.address,
    )
    .await?;
    Ok(fip)
}

pub async fn release(app: &App, scope: &Scope, id_or_addr: &str) -> Result<()> {
    for attempt in 0..quota::ATTEMPTS {
        let (fip, rev) = get(app, scope, id_or_addr).await?;
        if fip.port_id.is_some() {
            return Err(Error::conflict(format!(
                "floating IP {} is associated; disassociate it first",
                fip.address
            )));
        }
        let key = keys::floating_ip(&fip.id);
        let (mut compare, mut success) =
            quota::credit(app, &fip.project, &Delta::of(QuotaResource::FloatingIps, 1)).await?;
        compare.push(Compare::mod_revision(&key, rev));
        success.extend([
            Op::delete(&key),
            Op::delete(keys::ipam(&fip.subnet_id, &fip.address)),
        ]);
        success.extend(super::attrs::cleanup_ops(app, &fip.id).await?);
        if commit(app.kv(), compare, success).await? {
            return super::event::record_in(
                app,
                Some(&fip.project),
                &fip.id,
                "floating_ip.released",
                &fip.address,
            )
            .await;
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention releasing the floating IP; retry",
    ))
}
