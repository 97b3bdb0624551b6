//! The servers of one control plane, as they know each other through the store.
//!
//! Each server registers `/cluster/servers/<id>` (its id and the URL its peers reach it at) under a
//! store lease of [`TTL`] that it keeps alive, so the records listed are the live servers. Servers
//! fetch what only another server has (image files, see [`crate::app::image::replica`]) from each
//! other at `/peer/v1/…`, presenting the peer secret kept in the store (`/cluster/peer-secret`, made
//! on the cluster's first start). Whoever can read the store is trusted with it already: the store
//! holds the cluster CA's key (decision 0009), and with it the power to mint host certificates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kumo_store::{Compare, Kv, Op, Txn};
use kumo_types::{Error, Result, ServerInfo};
use sha2::{Digest, Sha256};

use crate::storeutil::{encode, list_json, store_err};

/// A server record's lease, in seconds: a server that stops is gone from the list this long after.
pub const TTL: i64 = 10;
const PREFIX: &str = "/cluster/servers/";
const SECRET_KEY: &str = "/cluster/peer-secret";
/// The header that carries the peer secret.
pub const SECRET_HEADER: &str = "x-kumo-peer-secret";

/// This server among its peers: who it is and how it reaches them.
#[derive(Clone, Default)]
pub struct Peers {
    /// This server's id (`hostname@listen-address`).
    pub me: String,
    client: Option<reqwest::Client>,
    secret: Arc<String>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("me", &self.me).finish()
    }
}

/// The URL peers reach a server at (pure): `--advertise-url` if given; else its first TLS listener,
/// or its plain listener, when bound to a specific address (not `0.0.0.0`/`::`, which names no
/// host); else none.
pub fn advertise_url(
    given: Option<&str>,
    tls_listen: &[SocketAddr],
    listen: SocketAddr,
) -> Option<String> {
    if let Some(u) = given {
        return Some(u.trim_end_matches('/').to_string());
    }
    if let Some(a) = tls_listen.first() {
        return (!a.ip().is_unspecified()).then(|| format!("https://{a}"));
    }
    (!listen.ip().is_unspecified()).then(|| format!("http://{listen}"))
}

impl Peers {
    /// Join the control plane's servers: make (or read) the peer secret, then keep this server's
    /// record alive. `ca_pem` is the cluster CA, which peers' TLS listeners present certificates of.
    pub async fn start(
        kv: Arc<dyn Kv>,
        me: String,
        url: Option<String>,
        ca_pem: &str,
    ) -> Result<Peers> {
        let secret = ensure_secret(kv.as_ref()).await?;
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| Error::internal_with("the cluster CA for peer requests", e))?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::internal_with("the peer HTTP client", e))?;
        let info = ServerInfo {
            id: me.clone(),
            url,
            started_at: kumo_types::now_rfc3339(),
        };
        if info.url.is_none() {
            tracing::warn!(
                "no URL for the other servers to reach this one (it listens on an unspecified \
                 address): set --advertise-url, or images imported here stay here"
            );
        }
        tokio::spawn(keep_registered(kv, info));
        Ok(Peers {
            me,
            client: Some(client),
            secret: Arc::new(secret),
        })
    }

    /// Whether `presented` is the peer secret (compared as digests: no early exit on a prefix).
    pub fn accepts(&self, presented: &str) -> bool {
        !self.secret.is_empty()
            && Sha256::digest(presented.as_bytes()) == Sha256::digest(self.secret.as_bytes())
    }

    /// GET `path` (after `/peer/v1`) from peer `server`.
    pub async fn get(&self, server: &ServerInfo, path: &str) -> Result<reqwest::Response> {
        self.send(server, reqwest::Method::GET, path, None).await
    }

    /// POST `body` (streamed) to `path` (after `/peer/v1`) of peer `server`.
    pub async fn post_stream(
        &self,
        server: &ServerInfo,
        path: &str,
        body: reqwest::Body,
    ) -> Result<reqwest::Response> {
        self.send(server, reqwest::Method::POST, path, Some(body))
            .await
    }

    async fn send(
        &self,
        server: &ServerInfo,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let (Some(client), Some(url)) = (&self.client, &server.url) else {
            return Err(Error::unavailable(format!(
                "server {} has no URL its peers can reach (--advertise-url)",
                server.id
            )));
        };
        let mut req = client
            .request(method, format!("{url}/peer/v1{path}"))
            .header(SECRET_HEADER, self.secret.as_str());
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::unavailable(format!("server {} unreachable: {e}", server.id)))?;
        if !resp.status().is_success() {
            return Err(Error::unavailable(format!(
                "server {} answered {} for {path}",
                server.id,
                resp.status()
            )));
        }
        Ok(resp)
    }
}

/// The live servers (their records' leases are current).
pub async fn live(kv: &dyn Kv) -> Result<Vec<ServerInfo>> {
    list_json(kv, PREFIX).await
}

async fn ensure_secret(kv: &dyn Kv) -> Result<String> {
    for _ in 0..5 {
        if let Some(v) = kv.get(SECRET_KEY).await.map_err(store_err)? {
            return String::from_utf8(v.value)
                .map_err(|e| Error::internal_with("the peer secret in the store", e));
        }
        let fresh = crate::auth::random_hex(32);
        let r = kv
            .txn(Txn {
                compare: vec![Compare::absent(SECRET_KEY)],
                success: vec![Op::put(SECRET_KEY, fresh.clone().into_bytes())],
                failure: vec![],
            })
            .await
            .map_err(store_err)?;
        if r.succeeded {
            return Ok(fresh);
        }
    }
    Err(Error::unavailable("cannot read or make the peer secret"))
}

/// Keep `/cluster/servers/<id>` under a live lease; re-register when the lease is lost (a store
/// outage longer than [`TTL`]).
async fn keep_registered(kv: Arc<dyn Kv>, info: ServerInfo) {
    let key = format!("{PREFIX}{}", info.id);
    let Ok(value) = encode(&info) else {
        return;
    };
    let mut lease = None;
    loop {
        lease = match lease {
            Some(id) if kv.lease_keepalive(id).await.is_ok() => Some(id),
            _ => match register(kv.as_ref(), &key, &value).await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "registering this server in the store");
                    None
                }
            },
        };
        tokio::time::sleep(Duration::from_secs((TTL / 3).max(1) as u64)).await;
    }
}

async fn register(kv: &dyn Kv, key: &str, value: &[u8]) -> kumo_store::Result<i64> {
    let lease = kv.lease_grant(TTL).await?;
    kv.txn(Txn {
        compare: vec![],
        success: vec![Op::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        }],
        failure: vec![],
    })
    .await?;
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn the_advertised_url_names_a_reachable_listener() {
        let plain = addr("127.0.0.1:8470");
        assert_eq!(
            advertise_url(Some("https://s1.example:8471/"), &[], plain).as_deref(),
            Some("https://s1.example:8471")
        );
        assert_eq!(
            advertise_url(None, &[addr("10.0.0.1:8471")], plain).as_deref(),
            Some("https://10.0.0.1:8471")
        );
        assert_eq!(advertise_url(None, &[addr("0.0.0.0:8471")], plain), None);
        assert_eq!(
            advertise_url(None, &[], plain).as_deref(),
            Some("http://127.0.0.1:8470")
        );
        assert_eq!(advertise_url(None, &[], addr("[::]:8470")), None);
    }
}
