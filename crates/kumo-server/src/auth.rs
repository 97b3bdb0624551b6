//! Authentication. API tokens are 32 random bytes (hex); the store keeps only their SHA-256. On first
//! start the server mints a bootstrap admin token and writes it to `<data-dir>/admin.token` (mode
//! 0600) — the only place the clear token ever exists.
//!
//! Who may call what:
//! - `/v1` (the public API): a bearer token, on every listener.
//! - `/internal/v1` (the agents' API), decided by [`decide_internal`]: on the plain listener
//!   (loopback, or an isolated network with `--insecure-plaintext`) a bearer token, as single-host and
//!   split mode always did; on the TLS listener only a host certificate signed by the cluster CA
//!   (mTLS), and the caller then acts only for its own host ([`may_act_for`]). `POST
//!   /internal/v1/join` and `GET /internal/v1/ca` need neither: the join token is the credential.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use kumo_store::{Compare, Op, Txn};
use kumo_types::{Error, now_rfc3339};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;
use crate::storeutil::{encode, keys, store_err};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    pub created_at: String,
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_token() -> String {
    random_hex(32)
}

/// `n` random bytes, hex-encoded.
pub fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Ensure an admin token exists whose clear text is in `<data>/admin.token`. If the file is there and
/// its hash is in the store, nothing changes; otherwise a new token is minted and stored.
pub async fn bootstrap(app: &App, data_dir: &Path) -> kumo_types::Result<()> {
    let path = data_dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = keys::token(&hash_token(existing.trim()));
        if app.kv().get(&key).await.map_err(store_err)?.is_some() {
            return Ok(());
        }
    }
    let token = new_token();
    let rec = TokenRecord {
        name: "admin".into(),
        role: "admin".into(),
        created_at: now_rfc3339(),
    };
    let key = keys::token(&hash_token(&token));
    app.kv()
        .txn(Txn {
            compare: vec![Compare::absent(&key)],
            success: vec![Op::put(&key, encode(&rec)?)],
            failure: vec![],
        })
        .await
        .map_err(store_err)?;
    let tmp = data_dir.join("admin.token.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    tracing::info!(path = %path.display(), "bootstrap admin token written");
    Ok(())
}

/// Recently verified token hashes, so a busy client does not cost a store read per request. An entry
/// lives [`AuthCache::TTL`]: a revoked token stops working within that time.
#[derive(Default)]
pub struct AuthCache {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl AuthCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    const MAX: usize = 10_000;

    fn fresh(&self, hash: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(hash).is_some_and(|t| t.elapsed() < Self::TTL)
    }

    fn remember(&self, hash: String) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= Self::MAX {
            seen.retain(|_, t| t.elapsed() < Self::TTL);
        }
        seen.insert(hash, std::time::Instant::now());
    }
}

/// Check `Authorization: Bearer <token>` against the stored token hashes.
async fn check_bearer(app: &App, headers: &axum::http::HeaderMap) -> Result<(), Error> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Err(Error::Unauthenticated { message: "send `Authorization: Bearer <token>` (the bootstrap token is in <data-dir>/admin.token)".into() });
    };
    let hash = hash_token(token.trim());
    if !app.auth_cache.fresh(&hash) {
        if app
            .kv()
            .get(&keys::token(&hash))
            .await
            .map_err(store_err)?
            .is_none()
        {
            return Err(Error::Unauthenticated {
                message: "unknown token".into(),
            });
        }
        app.auth_cache.remember(hash);
    }
    Ok(())
}

/// Middleware: require `Authorization: Bearer <token>` whose hash is stored.
pub async fn require_token(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_bearer(&app, req.headers()).await?;
    Ok(next.run(req).await)
}

/// Request extension: the request came over the TLS listener, with the identity its client
/// certificate names (`None`: no certificate). Requests on the plain listener have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPeer(pub Option<crate::tls::identity::PeerIdentity>);

/// Request extension on `/internal/v1` routes: on whose behalf the caller acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCaller {
    /// A bearer token on the plain listener: any host (single-host and split mode).
    Admin,
    /// A host certificate: this host only.
    Host(String),
}

/// What authenticates an `/internal/v1` request (pure).
#[derive(Debug)]
pub enum InternalAuth {
    /// Plain listener: check the bearer token.
    Bearer,
    /// TLS with a host certificate.
    Host(String),
    Refuse(Error),
}

pub fn decide_internal(tls: Option<&TlsPeer>) -> InternalAuth {
    use crate::tls::identity::PeerIdentity;
    match tls {
        None => InternalAuth::Bearer,
        Some(TlsPeer(Some(PeerIdentity::Host(name)))) => InternalAuth::Host(name.clone()),
        Some(TlsPeer(Some(PeerIdentity::Other(cn)))) => InternalAuth::Refuse(Error::Forbidden {
            message: format!(
                "the client certificate {cn:?} is not a host certificate (no `kumo:host:` name)"
            ),
        }),
        Some(TlsPeer(None)) => InternalAuth::Refuse(Error::Unauthenticated {
            message: "the agents' API over TLS needs a host certificate: join the host first \
                      (`kumo agent --join-token … --ca-fingerprint …`)"
                .into(),
        }),
    }
}

/// A host certificate acts only for its own host (pure).
pub fn may_act_for(caller: &AgentCaller, host_name: &str) -> Result<(), Error> {
    match caller {
        AgentCaller::Admin => Ok(()),
        AgentCaller::Host(me) if me == host_name => Ok(()),
        AgentCaller::Host(me) => Err(Error::Forbidden {
            message: format!(
                "this certificate is for host {me:?}; it cannot act for host {host_name:?}"
            ),
        }),
    }
}

/// Middleware on `/internal/v1`: see [`decide_internal`]; attaches the [`AgentCaller`].
pub async fn require_agent(
    State(app): State<App>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = match decide_internal(req.extensions().get::<TlsPeer>()) {
        InternalAuth::Bearer => {
            check_bearer(&app, req.headers()).await?;
            AgentCaller::Admin
        }
        InternalAuth::Host(name) => AgentCaller::Host(name),
        InternalAuth::Refuse(e) => return Err(e.into()),
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::PeerIdentity;

    #[test]
    fn internal_routes_take_tokens_on_the_plain_listener_and_host_certificates_over_tls() {
        assert!(matches!(decide_internal(None), InternalAuth::Bearer));
        assert!(matches!(
            decide_internal(Some(&TlsPeer(Some(PeerIdentity::Host("h1".into()))))),
            InternalAuth::Host(h) if h == "h1"
        ));
        let InternalAuth::Refuse(e) = decide_internal(Some(&TlsPeer(None))) else {
            panic!("no certificate over TLS must be refused");
        };
        assert_eq!(e.code(), "unauthenticated");
        let InternalAuth::Refuse(e) =
            decide_internal(Some(&TlsPeer(Some(PeerIdentity::Other("x".into())))))
        else {
            panic!("a non-host certificate must be refused");
        };
        assert_eq!(e.code(), "forbidden");
    }

    #[test]
    fn a_host_acts_only_for_itself() {
        assert!(may_act_for(&AgentCaller::Admin, "h1").is_ok());
        assert!(may_act_for(&AgentCaller::Host("h1".into()), "h1").is_ok());
        let e = may_act_for(&AgentCaller::Host("h2".into()), "h1").expect_err("h2 as h1");
        assert_eq!(e.code(), "forbidden");
        assert!(e.to_string().contains("\"h2\"") && e.to_string().contains("\"h1\""));
    }
}
