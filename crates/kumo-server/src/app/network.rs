//! Networks and subnets. The default network (`default`, a host-local bridge with outbound NAT and one
//! subnet) is created on first start.

use std::net::Ipv4Addr;

use kumo_store::{Compare, Op, Txn};
use kumo_types::{
    DEFAULT_PROJECT, Error, IpRange, Network, NetworkKind, Page, Result, Subnet, ids, now_rfc3339,
};

use super::App;
use crate::ipam::Cidr;
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

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

pub async fn ensure_default(app: &App) -> Result<Network> {
    if let Ok(n) = get(app, DEFAULT_NAME).await {
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
    let txn = Txn {
        compare: vec![Compare::absent(&name_key)],
        success: vec![
            Op::put(&name_key, net.id.clone()),
            Op::put(keys::network(&net.id), encode(&net)?),
            Op::put(
                keys::name(SUBNET_KIND, DEFAULT_PROJECT, DEFAULT_NAME),
                subnet.id.clone(),
            ),
            Op::put(keys::subnet(&subnet.id), encode(&subnet)?),
        ],
        failure: vec![],
    };
    app.kv().txn(txn).await.map_err(store_err)?;
    get(app, DEFAULT_NAME).await
}

pub async fn list(app: &App) -> Result<Page<Network>> {
    let items: Vec<Network> = list_json(app.kv(), keys::NETWORKS).await?;
    Ok(Page {
        items,
        next_token: None,
    })
}

async fn resolve(app: &App, kind: &str, prefix: &str, id_or_name: &str) -> Result<Option<String>> {
    if ids::is_id(prefix, id_or_name) {
        return Ok(Some(id_or_name.to_string()));
    }
    Ok(app
        .kv()
        .get(&keys::name(kind, DEFAULT_PROJECT, id_or_name))
        .await
        .map_err(store_err)?
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

pub async fn get(app: &App, id_or_name: &str) -> Result<Network> {
    let Some(id) = resolve(app, KIND, ids::NETWORK, id_or_name).await? else {
        return Err(Error::not_found("network", id_or_name));
    };
    get_json(app.kv(), &keys::network(&id))
        .await?
        .map(|(n, _)| n)
        .ok_or_else(|| Error::not_found("network", id_or_name))
}

pub async fn list_subnets(app: &App, network: Option<&str>) -> Result<Page<Subnet>> {
    let all: Vec<Subnet> = list_json(app.kv(), keys::SUBNETS).await?;
    let items = all
        .into_iter()
        .filter(|s| network.is_none_or(|n| s.network_id == n))
        .collect();
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get_subnet(app: &App, id_or_name: &str) -> Result<Subnet> {
    let Some(id) = resolve(app, SUBNET_KIND, ids::SUBNET, id_or_name).await? else {
        return Err(Error::not_found("subnet", id_or_name));
    };
    get_json(app.kv(), &keys::subnet(&id))
        .await?
        .map(|(n, _)| n)
        .ok_or_else(|| Error::not_found("subnet", id_or_name))
}

/// The subnet an instance NIC lands on when only a network is named: its first subnet with a pool.
pub async fn default_subnet(app: &App, net: &Network) -> Result<Subnet> {
    let subnets = list_subnets(app, Some(&net.id)).await?.items;
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
