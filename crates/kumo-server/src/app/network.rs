//! Networks. The spine has one: `default`, a bridge with DHCP and NAT, created on first start.

use kumo_store::{Compare, Op, Txn};
use kumo_types::{DEFAULT_PROJECT, Error, Network, Page, Result, ids, now_rfc3339};

use super::App;
use crate::ipam::Cidr;
use crate::storeutil::{encode, get_json, keys, list_json, store_err};

const KIND: &str = "networks";
pub const DEFAULT_NAME: &str = "default";

pub async fn ensure_default(app: &App) -> Result<Network> {
    if let Ok(n) = get(app, DEFAULT_NAME).await {
        return Ok(n);
    }
    let cidr = Cidr::parse("default_network_cidr", &app.cfg.default_network_cidr)?;
    let net = Network {
        id: ids::new_id(ids::NETWORK),
        name: DEFAULT_NAME.into(),
        project: DEFAULT_PROJECT.into(),
        cidr: app.cfg.default_network_cidr.clone(),
        gateway: cidr.first_host().to_string(),
        bridge: app.cfg.default_bridge.clone(),
        nat: app.cfg.default_nat,
        mtu: 1500,
        created_at: now_rfc3339(),
    };
    let name_key = keys::name(KIND, DEFAULT_PROJECT, DEFAULT_NAME);
    let txn = Txn {
        compare: vec![Compare::absent(&name_key)],
        success: vec![
            Op::put(&name_key, net.id.clone()),
            Op::put(keys::network(&net.id), encode(&net)?),
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

pub async fn get(app: &App, id_or_name: &str) -> Result<Network> {
    let id = if ids::is_id(ids::NETWORK, id_or_name) {
        id_or_name.to_string()
    } else {
        match app
            .kv()
            .get(&keys::name(KIND, DEFAULT_PROJECT, id_or_name))
            .await
            .map_err(store_err)?
        {
            Some(kv) => String::from_utf8_lossy(&kv.value).into_owned(),
            None => return Err(Error::not_found("network", id_or_name)),
        }
    };
    get_json(app.kv(), &keys::network(&id))
        .await?
        .map(|(n, _)| n)
        .ok_or_else(|| Error::not_found("network", id_or_name))
}
