//! Bearer-token authentication. Tokens are 32 random bytes (hex); the store keeps only their SHA-256.
//! On first start the server mints a bootstrap admin token and writes it to `<data-dir>/admin.token`
//! (mode 0600) — the only place the clear token ever exists.

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
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
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

/// Middleware: require `Authorization: Bearer <token>` whose hash is stored.
pub async fn require_token(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Err(Error::Unauthenticated { message: "send `Authorization: Bearer <token>` (the bootstrap token is in <data-dir>/admin.token)".into() }.into());
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
            }
            .into());
        }
        app.auth_cache.remember(hash);
    }
    Ok(next.run(req).await)
}
