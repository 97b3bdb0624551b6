//! Floating IPs: addresses of an external network, associated with a port (DNAT in, SNAT out).

use std::collections::HashSet;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    AllocateFloatingIpRequest, AssociateFloatingIpRequest, DEFAULT_PROJECT, Error, FloatingIp,
    Page, Result, ids, now_rfc3339,
};

use super::{App, instance, network, port};
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

pub async fn list(app: &App) -> Result<Page<FloatingIp>> {
    let items: Vec<FloatingIp> = list_json(app.kv(), keys::FLOATING_IPS).await?;
    Ok(Page {
        items,
        next_token: None,
    })
}

/// By ID or by address.
pub async fn get(app: &App, id_or_addr: &str) -> Result<(FloatingIp, i64)> {
    if ids::is_id(ids::FLOATING_IP, id_or_addr) {
        return get_json(app.kv(), &keys::floating_ip(id_or_addr))
            .await?
            .ok_or_else(|| Error::not_found("floating IP", id_or_addr));
    }
    let all: Vec<FloatingIp> = list_json(app.kv(), keys::FLOATING_IPS).await?;
    let f = all
        .into_iter()
        .find(|f| f.address == id_or_addr)
        .ok_or_else(|| Error::not_found("floating IP", id_or_addr))?;
    get_json(app.kv(), &keys::floating_ip(&f.id))
        .await?
        .ok_or_else(|| Error::not_found("floating IP", id_or_addr))
}

pub async fn allocate(app: &App, req: AllocateFloatingIpRequest) -> Result<FloatingIp> {
    let net = network::get(app, &req.network)
        .await
        .map_err(|_| Error::invalid("network", format!("no network `{}`", req.network)))?;
    if !net.external {
        return Err(Error::invalid(
            "network",
            format!(
                "network `{}` is not external; floating IPs come from external networks",
                net.name
            ),
        ));
    }
    let subnet = network::default_subnet(app, &net).await?;
    for _ in 0..20 {
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
        let id = ids::new_id(ids::FLOATING_IP);
        let fip = FloatingIp {
            id: id.clone(),
            project: DEFAULT_PROJECT.into(),
            network_id: net.id.clone(),
            subnet_id: subnet.id.clone(),
            address: p.port.ipv4.clone(),
            port_id: None,
            fixed_ip: None,
            created_at: now_rfc3339(),
        };
        let ip_key = keys::ipam(&subnet.id, &fip.address);
        let txn = Txn {
            compare: vec![Compare::absent(&ip_key)],
            success: vec![
                Op::put(&ip_key, id.clone()),
                Op::put(keys::floating_ip(&id), encode(&fip)?),
            ],
            failure: vec![],
        };
        if app.kv().txn(txn).await.map_err(store_err)?.succeeded {
            super::event::record(app, &id, "floating_ip.allocated", &fip.address).await?;
            return Ok(fip);
        }
    }
    Err(Error::unavailable(
        "too much contention allocating a floating IP; retry",
    ))
}

pub async fn associate(
    app: &App,
    id_or_addr: &str,
    req: AssociateFloatingIpRequest,
) -> Result<FloatingIp> {
    let port_id = match (&req.port, &req.instance) {
        (Some(p), None) => {
            port::get(app, p)
                .await
                .map_err(|_| Error::invalid("port", format!("no port `{p}`")))?
                .id
        }
        (None, Some(i)) => {
            let (inst, _) = instance::find(app, i)
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
    let port = port::get(app, &port_id).await?;
    let net = network::get(app, &port.network_id).await?;
    if net.external {
        return Err(Error::invalid(
            "port",
            "the port is on an external network already",
        ));
    }
    let all: Vec<FloatingIp> = list_json(app.kv(), keys::FLOATING_IPS).await?;
    let (mut fip, rev) = get(app, id_or_addr).await?;
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
    super::event::record(
        app,
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

pub async fn disassociate(app: &App, id_or_addr: &str) -> Result<FloatingIp> {
    let (mut fip, rev) = get(app, id_or_addr).await?;
    fip.port_id = None;
    fip.fixed_ip = None;
    save(app, &fip, rev).await?;
    super::event::record(app, &fip.id, "floating_ip.disassociated", &fip.address).await?;
    Ok(fip)
}

pub async fn release(app: &App, id_or_addr: &str) -> Result<()> {
    let (fip, rev) = get(app, id_or_addr).await?;
    if fip.port_id.is_some() {
        return Err(Error::conflict(format!(
            "floating IP {} is associated; disassociate it first",
            fip.address
        )));
    }
    let key = keys::floating_ip(&fip.id);
    let txn = Txn {
        compare: vec![Compare::mod_revision(&key, rev)],
        success: vec![
            Op::delete(&key),
            Op::delete(keys::ipam(&fip.subnet_id, &fip.address)),
        ],
        failure: vec![],
    };
    if !app.kv().txn(txn).await.map_err(store_err)?.succeeded {
        return Err(Error::conflict(
            "the floating IP changed concurrently; retry",
        ));
    }
    super::event::record(app, &fip.id, "floating_ip.released", &fip.address).await
}
