//! Join tokens (`/v1/cluster/join-tokens`) and the join itself (`POST /internal/v1/join`): a host's
//! agent presents a one-time token and a certificate signing request, and gets a certificate for its
//! host name signed by the cluster CA.
//!
//! Store layout:
//! - `/join-tokens/<id>`: [`TokenRecord`] — the SHA-256 of the whole token, its expiry, and once
//!   used, by which host and for which certificate serial.
//! - `/host-certs/<host name>`: [`HostCertRecord`] — the last certificate issued to the host.
//!
//! A token is consumed in the transaction that records the certificate: it compares the token
//! record's mod revision, so of two joins racing with one token exactly one gets a certificate (the
//! other is told the token was used).

use kumo_store::Compare;
use kumo_store::Op;
use kumo_types::{
    CreateJoinTokenRequest, Error, JoinRequest, JoinResponse, JoinToken, JoinTokenCreated,
    JoinTokenState, Page, Result, ids, now_rfc3339, validate_host_name,
};
use serde::{Deserialize, Serialize};

use super::App;
use crate::auth::hash_token;
use crate::storeutil::{commit, encode, get_json, list_json, store_err};
use crate::tls::ca::new_serial;

pub const TOKENS: &str = "/join-tokens/";
pub const HOST_CERTS: &str = "/host-certs/";
/// A token's lifetime unless the request says otherwise.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// The longest lifetime a token may have.
pub const MAX_TTL_SECS: u64 = 30 * 86_400;
const MAX_DESCRIPTION: usize = 200;

fn key(id: &str) -> String {
    format!("{TOKENS}{id}")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenUse {
    pub host_name: String,
    pub serial: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 (hex) of the whole token `<id>.<secret>`.
    pub hash: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    /// `expires_at` in unix seconds (what expiry is decided on).
    pub expires_unix: i64,
    #[serde(default)]
    pub used: Option<TokenUse>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostCertRecord {
    pub host_name: String,
    pub serial: String,
    pub issued_at: String,
    pub not_after: String,
    pub join_token: String,
    /// The certificate a renewal replaced: still accepted until it expires, so a host that renewed
    /// keeps working on every server while it switches over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_not_after: Option<String>,
    /// Set when the host was removed: no certificate of this host is accepted any more (a new join
    /// replaces the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The lifetime a create request asks for, checked (pure).
pub fn ttl_of(req: &CreateJoinTokenRequest) -> Result<u64> {
    match req.ttl_seconds {
        None => Ok(DEFAULT_TTL_SECS),
        Some(t) if (1..=MAX_TTL_SECS).contains(&t) => Ok(t),
        Some(t) => Err(Error::invalid(
            "ttl_seconds",
            format!("{t} is out of range: 1 to {MAX_TTL_SECS} seconds (30 days)"),
        )),
    }
}

/// The ID part of a presented token `<id>.<secret>` (pure); `None` if it has no such shape.
pub fn token_id(token: &str) -> Option<&str> {
    let (id, secret) = token.trim().split_once('.')?;
    (ids::is_id(ids::JOIN_TOKEN, id) && !secret.is_empty()).then_some(id)
}

/// Where a token is in its life at `now` (unix seconds; pure).
pub fn state_of(rec: &TokenRecord, now: i64) -> JoinTokenState {
    if rec.used.is_some() {
        JoinTokenState::Used
    } else if now >= rec.expires_unix {
        JoinTokenState::Expired
    } else {
        JoinTokenState::Valid
    }
}

fn unknown() -> Error {
    Error::Unauthenticated {
        message: "unknown join token (never created, or deleted): create one with \
                  `kumo cluster join-token create`"
            .into(),
    }
}

/// May the presented token (its SHA-256 `hash`) join a host now? Pure: unknown and expired tokens
/// are `Unauthenticated` (401), used ones `Forbidden` (403); each message says which.
pub fn check_token(rec: Option<&TokenRecord>, hash: &str, now: i64) -> Result<()> {
    let Some(rec) = rec.filter(|r| r.hash == hash) else {
        return Err(unknown());
    };
    match state_of(rec, now) {
        JoinTokenState::Valid => Ok(()),
        JoinTokenState::Expired => Err(Error::Unauthenticated {
            message: format!(
                "join token {} expired at {}: create a new one with `kumo cluster join-token create`",
                rec.id, rec.expires_at
            ),
        }),
        JoinTokenState::Used => {
            let (host, at) = rec
                .used
                .as_ref()
                .map_or(("?", "?"), |u| (u.host_name.as_str(), u.at.as_str()));
            Err(Error::Forbidden {
                message: format!(
                    "join token {} was already used (host {host:?} joined with it at {at}); \
                     join tokens are one-time: create a new one",
                    rec.id
                ),
            })
        }
    }
}

fn view(rec: &TokenRecord, now: i64) -> JoinToken {
    JoinToken {
        id: rec.id.clone(),
        description: rec.description.clone(),
        created_at: rec.created_at.clone(),
        expires_at: rec.expires_at.clone(),
        state: state_of(rec, now),
        used_by: rec.used.as_ref().map(|u| u.host_name.clone()),
        used_at: rec.used.as_ref().map(|u| u.at.clone()),
    }
}

pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub async fn create(app: &App, req: CreateJoinTokenRequest) -> Result<JoinTokenCreated> {
    let ttl = ttl_of(&req)?;
    let description = req.description.map(|d| d.trim().to_string());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(Error::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let ca = crate::tls::ensure_ca(app, None).await?;
    let id = ids::new_id(ids::JOIN_TOKEN);
    let secret: [u8; 32] = rand::random();
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{id}.{secret}");
    let now = unix_now();
    let expires_unix = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let rec = TokenRecord {
        id: id.clone(),
        hash: hash_token(&token),
        description: description.filter(|d| !d.is_empty()),
        created_at: now_rfc3339(),
        expires_at: rfc3339(expires_unix),
        expires_unix,
        used: None,
    };
    let k = key(&id);
    if !commit(
        app.kv(),
        vec![Compare::absent(&k)],
        vec![Op::put(&k, encode(&rec)?)],
    )
    .await?
    {
        return Err(Error::CasFailed { key: k });
    }
    super::event::record(
        app,
        &id,
        "join_token.created",
        &format!("expires at {}", rec.expires_at),
    )
    .await?;
    Ok(JoinTokenCreated {
        token,
        ca_fingerprint: ca.fingerprint(),
        join_token: view(&rec, now),
    })
}

pub async fn list(app: &App) -> Result<Page<JoinToken>> {
    let now = unix_now();
    let recs: Vec<TokenRecord> = list_json(app.kv(), TOKENS).await?;
    Ok(Page {
        items: recs.iter().map(|r| view(r, now)).collect(),
        next_token: None,
    })
}

pub async fn get(app: &App, id: &str) -> Result<JoinToken> {
    get_json::<TokenRecord>(app.kv(), &key(id))
        .await?
        .map(|(r, _)| view(&r, unix_now()))
        .ok_or_else(|| Error::not_found("join token", id))
}

pub async fn delete(app: &App, id: &str) -> Result<()> {
    if !app.kv().delete(&key(id)).await.map_err(store_err)? {
        return Err(Error::not_found("join token", id));
    }
    super::event::record(app, id, "join_token.deleted", "").await
}

/// Trade a join token and a CSR for a host certificate (see the module docs).
pub async fn join(app: &App, req: JoinRequest) -> Result<JoinResponse> {
    validate_host_name("host_name", &req.host_name)?;
    let id = token_id(&req.token).ok_or_else(unknown)?;
    let k = key(id);
    let found = get_json::<TokenRecord>(app.kv(), &k).await?;
    let now = unix_now();
    check_token(
        found.as_ref().map(|(r, _)| r),
        &hash_token(req.token.trim()),
        now,
    )?;
    let Some((mut rec, rev)) = found else {
        return Err(unknown());
    };
    let ca = crate::tls::ensure_ca(app, None).await?;
    let cert = ca.sign_host_csr(&req.csr, &req.host_name, new_serial(), now)?;
    let at = now_rfc3339();
    rec.used = Some(TokenUse {
        host_name: req.host_name.clone(),
        serial: cert.serial.clone(),
        at: at.clone(),
    });
    let issued = HostCertRecord {
        host_name: req.host_name.clone(),
        serial: cert.serial.clone(),
        issued_at: at,
        not_after: rfc3339(cert.not_after),
        join_token: rec.id.clone(),
        previous_serial: None,
        previous_not_after: None,
        revoked_at: None,
    };
    let won = commit(
        app.kv(),
        vec![Compare::mod_revision(&k, rev)],
        vec![
            Op::put(&k, encode(&rec)?),
            Op::put(format!("{HOST_CERTS}{}", req.host_name), encode(&issued)?),
        ],
    )
    .await?;
    if !won {
        // Someone else used (or deleted) the token meanwhile: say which.
        let again = get_json::<TokenRecord>(app.kv(), &k).await?;
        check_token(again.as_ref().map(|(r, _)| r), &rec.hash, now)?;
        return Err(Error::CasFailed { key: k });
    }
    super::event::record(
        app,
        &rec.id,
        "host.joined",
        &format!(
            "host {:?} joined; certificate serial {} valid until {}",
            req.host_name, cert.serial, issued.not_after
        ),
    )
    .await?;
    Ok(JoinResponse {
        host_name: req.host_name,
        certificate: cert.cert_pem,
        ca_certificate: ca.cert_pem.clone(),
        serial: cert.serial,
        not_after: issued.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(expires_unix: i64, used: bool) -> TokenRecord {
        TokenRecord {
            id: "jt-0123456789abcdef0".into(),
            hash: hash_token("jt-0123456789abcdef0.s3cret"),
            description: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: rfc3339(expires_unix),
            expires_unix,
            used: used.then(|| TokenUse {
                host_name: "h1".into(),
                serial: "01".into(),
                at: "2026-01-01T00:10:00Z".into(),
            }),
        }
    }

    #[test]
    fn token_ids_are_read_from_the_presented_token() {
        assert_eq!(
            token_id("jt-0123456789abcdef0.s3cret"),
            Some("jt-0123456789abcdef0")
        );
        for bad in [
            "",
            "jt-0123456789abcdef0",
            "jt-0123456789abcdef0.",
            "x.y",
            "../a.b",
        ] {
            assert_eq!(token_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_are_valid_then_expired_or_used_and_errors_say_which() {
        let hash = hash_token("jt-0123456789abcdef0.s3cret");
        assert!(check_token(Some(&rec(100, false)), &hash, 99).is_ok());
        let e = check_token(Some(&rec(100, false)), &hash, 100).expect_err("expired");
        assert_eq!(e.code(), "unauthenticated");
        assert!(e.to_string().contains("expired"), "{e}");
        let e = check_token(Some(&rec(100, true)), &hash, 50).expect_err("used");
        assert_eq!(e.code(), "forbidden");
        assert!(
            e.to_string().contains("already used") && e.to_string().contains("h1"),
            "{e}"
        );
        let e = check_token(
            Some(&rec(100, false)),
            &hash_token("jt-0123456789abcdef0.x"),
            50,
        )
        .expect_err("wrong secret");
        assert!(e.to_string().contains("unknown join token"), "{e}");
        let e = check_token(None, &hash, 50).expect_err("unknown");
        assert_eq!(e.code(), "unauthenticated");
    }

    #[test]
    fn ttl_defaults_and_bounds() {
        let r = |t| CreateJoinTokenRequest {
            ttl_seconds: t,
            description: None,
        };
        assert_eq!(ttl_of(&r(None)).expect("default"), DEFAULT_TTL_SECS);
        assert_eq!(ttl_of(&r(Some(60))).expect("60"), 60);
        for bad in [0, MAX_TTL_SECS + 1] {
            assert_eq!(
                ttl_of(&r(Some(bad))).expect_err("bad").field(),
                Some("ttl_seconds")
            );
        }
    }
}
