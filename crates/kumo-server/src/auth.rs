//! Authentication. API tokens are 32 random bytes (hex); the store keeps only their SHA-256. On first
//! start the server mints a bootstrap admin token (user `admin`, cloud-admin) and writes it to
//! `<data-dir>/admin.token` (mode 0600) — the only place the clear token ever exists.
//!
//! Who may call what:
//! - `/v1` (the public API): a bearer token, on every listener. [`require_token`] resolves it to a
//!   [`Caller`] (user, project, role; see [`crate::identity::resolve`]), authorizes the request with
//!   [`crate::identity::authorize`], and hands the caller to handlers as `Extension<Caller>` (and to
//!   the audit layer as a response extension). `POST /v1/login` needs no token.
//! - `/internal/v1` (the agents' API), decided by [`decide_internal`]: on the plain listener
//!   (loopback, or an isolated network with `--insecure-plaintext`) a cloud-admin bearer token, as
//!   single-host and split mode always did; on the TLS listener only a host certificate signed by the
//!   cluster CA (mTLS), and the caller then acts only for its own host ([`may_act_for`]). `POST
//!   /internal/v1/join` and `GET /internal/v1/ca` need neither: the join token is the credential.

use std::path::Path;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kumo_store::{Compare, Op};
use kumo_types::{Error, TOKEN_ID_PREFIX, ids};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;
use crate::identity::cache::TtlCache;
use crate::identity::resolve::{PROJECT_HEADER, ResolvedToken, caller_for_token};
use crate::identity::server_key::ServerKey;
use crate::identity::token::{NewToken, TokenRecord, mint};
use crate::identity::{Caller, Role, authorize};
use crate::storeutil::{commit, encode, get_json, keys};

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `n` random bytes, hex-encoded.
pub fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Start-up: identity records ([`crate::identity::bootstrap`]), then ensure an admin token exists
/// whose clear text is in `<data>/admin.token`. If the file is there and its hash is in the store,
/// it is kept (a record from before users existed is upgraded to belong to `admin`); otherwise a
/// new token is minted and stored.
pub async fn bootstrap(app: &App, data_dir: &Path) -> kumo_types::Result<()> {
    crate::identity::bootstrap(app, data_dir).await?;
    let path = data_dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = keys::token(&hash_token(existing.trim()));
        if let Some((mut rec, rev)) = get_json::<TokenRecord>(app.kv(), &key).await? {
            if rec.user.is_none() && rec.role == "admin" {
                rec.user = Some(crate::identity::user::ADMIN.into());
                rec.id = ids::new_id(TOKEN_ID_PREFIX);
                rec.description = Some("bootstrap admin token".into());
                commit(
                    app.kv(),
                    vec![Compare::mod_revision(&key, rev)],
                    vec![Op::put(&key, encode(&rec)?)],
                )
                .await?;
            }
            return Ok(());
        }
    }
    let created = mint(
        app,
        NewToken {
            user: crate::identity::user::ADMIN.into(),
            project: Some(kumo_types::DEFAULT_PROJECT.into()),
            pinned: false,
            description: Some("bootstrap admin token".into()),
            ttl_secs: None,
            created_by: None,
        },
    )
    .await?;
    let tmp = data_dir.join("admin.token.tmp");
    write_secret(&tmp, &created.token)?;
    std::fs::rename(&tmp, &path)?;
    tracing::info!(path = %path.display(), "bootstrap admin token written");
    Ok(())
}

fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Recently resolved credentials, so a busy client does not cost store reads (or a decryption) per
/// request. An entry lives [`AuthCache::TTL`]: a revoked credential or a changed role takes effect
/// within that time on other servers, at once on the server that made the change.
pub struct AuthCache {
    /// Token hash → token and user.
    pub tokens: TtlCache<ResolvedToken>,
    /// Project name → exists.
    pub projects: TtlCache<bool>,
    /// Access key ID → (secret, caller).
    pub access_keys: TtlCache<(String, Caller)>,
    /// Failed logins by user name ([`crate::identity::throttle`]).
    pub login_throttle: std::sync::Mutex<crate::identity::throttle::Throttle>,
    server_key: std::sync::OnceLock<(ServerKey, bool)>,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            tokens: TtlCache::new(Self::TTL, Self::MAX),
            projects: TtlCache::new(Self::TTL, Self::MAX),
            access_keys: TtlCache::new(Self::TTL, Self::MAX),
            login_throttle: std::sync::Mutex::default(),
            server_key: std::sync::OnceLock::new(),
        }
    }
}

impl AuthCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    const MAX: usize = 10_000;

    /// Users or roles changed: forget what was resolved from them.
    pub fn clear_identities(&self) {
        self.tokens.clear();
        self.access_keys.clear();
    }

    /// Set at start-up: the server key and whether it is the cluster's.
    pub fn set_server_key(&self, key: ServerKey, matches_cluster: bool) {
        let _ = self.server_key.set((key, matches_cluster));
    }

    /// The server key (loaded from, or made in, `data_dir` when start-up did not set it).
    pub fn server_key(&self, data_dir: &Path) -> kumo_types::Result<ServerKey> {
        if self.server_key.get().is_none() {
            let key = crate::identity::server_key::load_or_create(data_dir)?;
            let _ = self.server_key.set((key, true));
        }
        match self.server_key.get() {
            Some((k, true)) => Ok(k.clone()),
            Some((_, false)) => Err(crate::identity::server_key::mismatch(data_dir)),
            None => Err(Error::internal("the server key is not loaded")),
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

fn no_token() -> Error {
    Error::Unauthenticated {
        message: "send `Authorization: Bearer <token>` (the bootstrap token is in <data-dir>/admin.token)".into(),
    }
}

/// Who a failed authentication tried to be, for the audit log: `sha256:` + 12 hex digits of the
/// presented token's hash (correlates attempts without storing the secret).
#[derive(Debug, Clone)]
pub struct FailedCredential(pub String);

/// The client address of a request, when the listener recorded it.
pub fn source_of(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// What a request presents to authenticate: its bearer token, `X-Kumo-Project` and address.
#[derive(Debug, Clone)]
pub struct Presented {
    pub token: Option<String>,
    pub project: Option<String>,
    pub source: Option<std::net::IpAddr>,
}

impl Presented {
    pub fn of(req: &Request) -> Presented {
        Presented {
            token: bearer(req.headers()).map(str::to_string),
            project: req
                .headers()
                .get(PROJECT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            source: source_of(req),
        }
    }
}

/// Resolve the caller from what a request presented.
pub async fn caller_of(app: &App, p: &Presented) -> Result<Caller, Error> {
    let token = p.token.as_deref().ok_or_else(no_token)?;
    caller_for_token(app, token, p.project.as_deref(), p.source).await
}

/// Middleware on `/v1`: authenticate ([`caller_of`]), authorize ([`authorize`]), attach the
/// [`Caller`] to the request (for handlers) and to the response (for the audit layer). A failure's
/// response carries what is known of the caller for the audit log.
pub async fn require_token(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let presented = Presented::of(&req);
    let caller = match caller_of(&app, &presented).await {
        Ok(c) => c,
        Err(e) => {
            let mut resp = ApiError(e).into_response();
            if let Some(t) = &presented.token {
                let h = hash_token(t);
                resp.extensions_mut()
                    .insert(FailedCredential(format!("sha256:{}", &h[..12])));
            }
            return resp;
        }
    };
    let path = req.uri().path().to_string();
    if let Err(e) = authorize(&caller, req.method(), &path) {
        let mut resp = ApiError(e).into_response();
        resp.extensions_mut().insert(caller);
        return resp;
    }
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(caller);
    resp
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
            let caller = caller_of(&app, &Presented::of(&req)).await?;
            if caller.role != Role::CloudAdmin {
                return Err(Error::Forbidden {
                    message: format!(
                        "the agents' API needs a cloud-admin token; user `{}` is `{}`",
                        caller.user,
                        caller.role.as_str()
                    ),
                }
                .into());
            }
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
