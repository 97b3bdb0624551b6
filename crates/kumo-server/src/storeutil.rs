//! Typed JSON access to the store, and the mapping of store errors onto [`kumo_types::Error`].

use kumo_store::{Compare, KeyValue, Kv, Op, Revision, StoreError, Txn};
use kumo_types::Error;
use serde::{Serialize, de::DeserializeOwned};

/// Store failures become `Unavailable` (retryable) or `Internal`.
pub fn store_err(e: StoreError) -> Error {
    match e {
        StoreError::Unavailable(m) => Error::unavailable(format!("store: {m}")),
        other => Error::internal_with("store", other),
    }
}

pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, Error> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| Error::internal_with(format!("decoding stored record `{}`", kv.key), e))
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::internal_with("encoding record", e))
}

/// Get and decode one record, with its mod revision.
pub async fn get_json<T: DeserializeOwned>(
    kv: &dyn Kv,
    key: &str,
) -> Result<Option<(T, Revision)>, Error> {
    match kv.get(key).await.map_err(store_err)? {
        Some(item) => Ok(Some((decode(&item)?, item.mod_revision))),
        None => Ok(None),
    }
}

/// List and decode every record under a prefix (all pages).
pub async fn list_json<T: DeserializeOwned>(kv: &dyn Kv, prefix: &str) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = kv
            .list(prefix, after.as_deref(), 500)
            .await
            .map_err(store_err)?;
        for item in &page.kvs {
            out.push(decode(item)?);
        }
        if !page.more || page.kvs.is_empty() {
            return Ok(out);
        }
        after = page.kvs.last().map(|k| k.key.clone());
    }
}

/// Keys under a prefix (all pages), with values.
pub async fn list_raw(kv: &dyn Kv, prefix: &str) -> Result<Vec<KeyValue>, Error> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = kv
            .list(prefix, after.as_deref(), 1000)
            .await
            .map_err(store_err)?;
        let more = page.more && !page.kvs.is_empty();
        after = page.kvs.last().map(|k| k.key.clone());
        out.extend(page.kvs);
        if !more {
            return Ok(out);
        }
    }
}

pub mod keys {
    pub fn instance(id: &str) -> String {
        format!("/instances/{id}")
    }
    pub fn instance_status(id: &str) -> String {
        format!("/instance-status/{id}")
    }
    pub fn name(kind: &str, project: &str, name: &str) -> String {
        format!("/names/{kind}/{project}/{name}")
    }
    pub fn image(id: &str) -> String {
        format!("/images/{id}")
    }
    pub fn instance_type(name: &str) -> String {
        format!("/instance-types/{name}")
    }
    pub fn key_pair(id: &str) -> String {
        format!("/key-pairs/{id}")
    }
    pub fn network(id: &str) -> String {
        format!("/networks/{id}")
    }
    pub fn subnet(id: &str) -> String {
        format!("/subnets/{id}")
    }
    pub fn port(id: &str) -> String {
        format!("/ports/{id}")
    }
    pub fn router(id: &str) -> String {
        format!("/routers/{id}")
    }
    pub fn security_group(id: &str) -> String {
        format!("/security-groups/{id}")
    }
    pub fn floating_ip(id: &str) -> String {
        format!("/floating-ips/{id}")
    }
    pub fn host(id: &str) -> String {
        format!("/hosts/{id}")
    }
    pub fn host_alloc(id: &str) -> String {
        format!("/host-alloc/{id}")
    }
    pub fn host_lease(id: &str) -> String {
        format!("/host-leases/{id}")
    }
    /// Addresses taken in a subnet.
    pub fn ipam_prefix(subnet: &str) -> String {
        format!("/ipam/{subnet}/")
    }
    pub fn ipam(subnet: &str, ip: &str) -> String {
        format!("/ipam/{subnet}/{ip}")
    }
    pub fn token(hash: &str) -> String {
        format!("/tokens/{hash}")
    }
    pub fn volume(id: &str) -> String {
        format!("/volumes/{id}")
    }
    pub fn volume_status(id: &str) -> String {
        format!("/volume-status/{id}")
    }
    pub fn snapshot(id: &str) -> String {
        format!("/snapshots/{id}")
    }
    pub fn snapshot_status(id: &str) -> String {
        format!("/snapshot-status/{id}")
    }
    pub const SNAPSHOTS: &str = "/snapshots/";
    pub const SNAPSHOT_STATUS: &str = "/snapshot-status/";
    pub fn volume_type(name: &str) -> String {
        format!("/volume-types/{name}")
    }
    pub const VOLUME_TYPES: &str = "/volume-types/";
    pub fn volume_slot(instance: &str, slot: u8) -> String {
        format!("/volume-slots/{instance}/{slot}")
    }
    pub fn volume_slots(instance: &str) -> String {
        format!("/volume-slots/{instance}/")
    }
    pub fn host_drain(id: &str) -> String {
        format!("/host-drain/{id}")
    }
    pub fn host_fence(id: &str) -> String {
        format!("/host-fence/{id}")
    }
    pub fn pool(name: &str) -> String {
        format!("/pools/{name}")
    }
    pub const POOLS: &str = "/pools/";
    pub fn pool_status_prefix(name: &str) -> String {
        format!("/pool-status/{name}/")
    }
    pub fn pool_status(name: &str, host: &str) -> String {
        format!("/pool-status/{name}/{host}")
    }
    pub const VOLUMES: &str = "/volumes/";
    pub const VOLUME_STATUS: &str = "/volume-status/";
    pub const INSTANCES: &str = "/instances/";
    pub const INSTANCE_STATUS: &str = "/instance-status/";
    pub const IMAGES: &str = "/images/";
    pub const INSTANCE_TYPES: &str = "/instance-types/";
    pub const KEY_PAIRS: &str = "/key-pairs/";
    pub const NETWORKS: &str = "/networks/";
    pub const SUBNETS: &str = "/subnets/";
    pub const PORTS: &str = "/ports/";
    pub const ROUTERS: &str = "/routers/";
    pub const SECURITY_GROUPS: &str = "/security-groups/";
    pub const FLOATING_IPS: &str = "/floating-ips/";
    pub const HOSTS: &str = "/hosts/";
    pub const EVENTS: &str = "/events/";
    /// A project's quota limits (absent: the defaults apply).
    pub fn quota(project: &str) -> String {
        format!("/quotas/{project}")
    }
    pub const QUOTAS: &str = "/quotas/";
    /// A project's usage counters, changed in the transaction of every create and final delete.
    pub fn usage(project: &str) -> String {
        format!("/usage/{project}")
    }
    pub const USAGE: &str = "/usage/";
    pub fn placement_group(name: &str) -> String {
        format!("/placement-groups/{name}")
    }
    pub const PLACEMENT_GROUPS: &str = "/placement-groups/";
    pub fn instance_placement(id: &str) -> String {
        format!("/instance-placement/{id}")
    }
    pub const INSTANCE_PLACEMENT: &str = "/instance-placement/";
    // Identity and audit (issue 6).
    pub fn project(name: &str) -> String {
        format!("/projects/{name}")
    }
    pub const PROJECTS: &str = "/projects/";
    pub fn user(name: &str) -> String {
        format!("/users/{name}")
    }
    pub const USERS: &str = "/users/";
    pub const TOKENS: &str = "/tokens/";
    pub fn access_key(id: &str) -> String {
        format!("/access-keys/{id}")
    }
    pub const ACCESS_KEYS: &str = "/access-keys/";
    /// One audit record; the sequence number is zero-padded so keys sort in chain order.
    pub fn audit(seq: u64) -> String {
        format!("/audit/{seq:020}")
    }
    pub const AUDIT: &str = "/audit/";
    /// The audit chain's head (last seq and hash): every append compares and swaps it.
    pub const AUDIT_HEAD: &str = "/audit-head";
    /// The last pruned audit record (seq and hash): what the remaining chain is verified from.
    pub const AUDIT_ANCHOR: &str = "/audit-anchor";
    /// A check value of the servers' `server.key` (never the key itself).
    pub const SERVER_KEY_CHECK: &str = "/cluster/server-key-check";
}

/// Apply `ops` if every `compare` holds: `Ok(false)` when one did not (lost a race; decide again).
pub async fn commit(kv: &dyn Kv, compare: Vec<Compare>, ops: Vec<Op>) -> Result<bool, Error> {
    let r = kv
        .txn(Txn {
            compare,
            success: ops,
            failure: vec![],
        })
        .await
        .map_err(store_err)?;
    Ok(r.succeeded)
}

/// Resolve a reference that is either an ID (`prefix-…`) or a name in `project` (looked up under
/// `/names/<kind>/<project>/<name>`) to the ID; `None` when no such name exists. IDs are returned as
/// given (the caller's read of the record decides whether it exists).
pub async fn resolve_id(
    kv: &dyn Kv,
    prefix: &str,
    kind: &str,
    project: &str,
    id_or_name: &str,
) -> Result<Option<String>, Error> {
    if kumo_types::ids::is_id(prefix, id_or_name) {
        return Ok(Some(id_or_name.to_string()));
    }
    Ok(kv
        .get(&keys::name(kind, project, id_or_name))
        .await
        .map_err(store_err)?
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

/// Every status record under `prefix` (`/<kind>-status/<id>`), by ID; undecodable ones are skipped.
pub async fn statuses<T: DeserializeOwned>(
    kv: &dyn Kv,
    prefix: &str,
) -> Result<std::collections::HashMap<String, T>, Error> {
    Ok(list_raw(kv, prefix)
        .await?
        .iter()
        .filter_map(|kv| {
            let id = kv.key.rsplit('/').next()?.to_string();
            serde_json::from_slice(&kv.value).ok().map(|s| (id, s))
        })
        .collect())
}
