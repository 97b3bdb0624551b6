//! API tokens (`/tokens/<sha256 of the token>`): 32 random bytes (hex) whose clear text exists only
//! in the answer that creates it (and, for the bootstrap token, in `<data-dir>/admin.token`).
//!
//! A token belongs to a user and may name a project: requests act there unless they pick another
//! with `X-Kumo-Project`. Tokens made for another user (by a cloud admin or a project admin) are
//! *pinned*: they act only in their project. Records from before users existed (`role: "admin"`,
//! no `user`) belong to the bootstrap user `admin`.

use kumo_store::{Compare, Op};
use kumo_types::{
    ApiToken, CreateTokenRequest, Error, Result, TOKEN_ID_PREFIX, TokenCreated, ids, now_rfc3339,
};
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::user::{self, UserRecord, may_manage};
use crate::app::App;
use crate::auth::{hash_token, random_hex};
use crate::storeutil::{commit, encode, keys, list_raw};

const MAX_DESCRIPTION: usize = 200;
/// The longest lifetime a token may be given.
pub const MAX_TTL_SECS: u64 = 366 * 86_400;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// `tok-…` (empty in records from before users existed).
    #[serde(default)]
    pub id: String,
    /// Legacy: a label.
    #[serde(default)]
    pub name: String,
    /// Legacy: `admin` in records from before users existed.
    #[serde(default)]
    pub role: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<i64>,
}

impl TokenRecord {
    /// The user the token acts as (legacy admin records: `admin`).
    pub fn owner(&self) -> Option<&str> {
        match &self.user {
            Some(u) => Some(u),
            None if self.role == "admin" => Some(user::ADMIN),
            None => None,
        }
    }

    /// What the audit log and lists call it.
    pub fn credential_id(&self, hash: &str) -> String {
        if self.id.is_empty() {
            format!("legacy:{}", &hash[..hash.len().min(12)])
        } else {
            self.id.clone()
        }
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expires_unix.is_some_and(|t| now >= t)
    }

    pub fn view(&self, hash: &str) -> ApiToken {
        ApiToken {
            id: self.credential_id(hash),
            user: self.owner().unwrap_or("?").to_string(),
            project: self.project.clone(),
            pinned: self.pinned,
            description: self
                .description
                .clone()
                .or_else(|| (!self.name.is_empty()).then(|| self.name.clone())),
            created_at: self.created_at.clone(),
            created_by: self.created_by.clone(),
            expires_at: self.expires_at.clone(),
        }
    }
}

/// What a new token should be.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub user: String,
    pub project: Option<String>,
    pub pinned: bool,
    pub description: Option<String>,
    pub ttl_secs: Option<u64>,
    pub created_by: Option<String>,
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Store a new token and return its clear text once.
pub async fn mint(app: &App, n: NewToken) -> Result<TokenCreated> {
    let token = random_hex(32);
    let hash = hash_token(&token);
    let now = chrono::Utc::now().timestamp();
    let expires_unix = n.ttl_secs.map(|t| now + t as i64);
    let rec = TokenRecord {
        id: ids::new_id(TOKEN_ID_PREFIX),
        name: String::new(),
        role: String::new(),
        created_at: now_rfc3339(),
        user: Some(n.user),
        project: n.project,
        pinned: n.pinned,
        description: n.description,
        created_by: n.created_by,
        expires_at: expires_unix.map(rfc3339),
        expires_unix,
    };
    let key = keys::token(&hash);
    if !commit(
        app.kv(),
        vec![Compare::absent(&key)],
        vec![Op::put(&key, encode(&rec)?)],
    )
    .await?
    {
        return Err(Error::internal(
            "a fresh random token collided with a stored one",
        ));
    }
    Ok(TokenCreated {
        api_token: rec.view(&hash),
        token,
    })
}

/// Check a lifetime (pure).
pub fn ttl_of(ttl: Option<u64>) -> Result<Option<u64>> {
    match ttl {
        None => Ok(None),
        Some(t) if (1..=MAX_TTL_SECS).contains(&t) => Ok(Some(t)),
        Some(t) => Err(Error::invalid(
            "ttl_seconds",
            format!("{t} is out of range: 1 to {MAX_TTL_SECS} seconds"),
        )),
    }
}

/// Who a credential is for and in which project, checked against the caller's rights: oneself
/// (any project one belongs to), or — for a cloud admin or the admin of the caller's project —
/// another user, then pinned to that project. Returns (owner, project, pinned).
pub async fn target_of(
    app: &App,
    caller: &Caller,
    user: Option<&str>,
    project: Option<&str>,
) -> Result<(UserRecord, Option<String>, bool)> {
    let name = user.unwrap_or(&caller.user);
    let (target, _) = user::get_record(app, name)
        .await?
        .ok_or_else(|| Error::not_found("user", name))?;
    let myself = target.name == caller.user;
    if !myself && !may_manage(caller, &target) {
        return Err(Error::Forbidden {
            message: format!(
                "making credentials for user `{name}` needs the `cloud-admin` role, or `admin` of a \
                 project `{name}` belongs to (and `{name}` must not be a cloud admin)"
            ),
        });
    }
    let project = match project {
        Some(p) => Some(p.to_string()),
        None if myself => None,
        None => Some(caller.project.clone()),
    };
    if let Some(p) = &project {
        if !super::project::exists(app, p).await? {
            return Err(Error::not_found("project", p.clone()));
        }
        if target.role_in(p).is_none() {
            return Err(Error::invalid(
                "project",
                format!("user `{name}` is not a member of project `{p}`"),
            ));
        }
        if !myself && !caller.is_cloud_admin() && *p != caller.project {
            return Err(Error::Forbidden {
                message: format!(
                    "a project admin makes credentials for others only in its own project `{}`",
                    caller.project
                ),
            });
        }
    }
    Ok((target, project, !myself))
}

pub async fn create(app: &App, caller: &Caller, req: CreateTokenRequest) -> Result<TokenCreated> {
    if let Some(d) = &req.description
        && d.chars().count() > MAX_DESCRIPTION
    {
        return Err(Error::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let ttl = ttl_of(req.ttl_seconds)?;
    let (target, project, pinned) =
        target_of(app, caller, req.user.as_deref(), req.project.as_deref()).await?;
    mint(
        app,
        NewToken {
            user: target.name,
            project,
            pinned,
            description: req.description,
            ttl_secs: ttl,
            created_by: Some(caller.user.clone()),
        },
    )
    .await
}

/// Every token with its hash.
async fn all(app: &App) -> Result<Vec<(String, TokenRecord)>> {
    Ok(list_raw(app.kv(), keys::TOKENS)
        .await?
        .into_iter()
        .filter_map(|kv| {
            let hash = kv.key.strip_prefix(keys::TOKENS)?.to_string();
            serde_json::from_slice::<TokenRecord>(&kv.value)
                .ok()
                .map(|r| (hash, r))
        })
        .collect())
}

/// May the caller see or revoke this token?
async fn may_see(app: &App, caller: &Caller, rec: &TokenRecord) -> Result<bool> {
    let Some(owner) = rec.owner() else {
        return Ok(caller.is_cloud_admin());
    };
    if owner == caller.user || caller.is_cloud_admin() {
        return Ok(true);
    }
    let Some((target, _)) = user::get_record(app, owner).await? else {
        return Ok(false);
    };
    Ok(may_manage(caller, &target) && rec.project.as_deref() == Some(caller.project.as_str()))
}

/// The tokens the caller may manage: its own; a cloud admin's: all; a project admin's: also those
/// of its project's users bound to that project. `user` narrows the list.
pub async fn list(app: &App, caller: &Caller, user: Option<&str>) -> Result<Vec<ApiToken>> {
    let mut out = Vec::new();
    for (hash, rec) in all(app).await? {
        if user.is_some_and(|u| rec.owner() != Some(u)) {
            continue;
        }
        if may_see(app, caller, &rec).await? {
            out.push(rec.view(&hash));
        }
    }
    out.sort_by(|a, b| (&a.user, &a.created_at, &a.id).cmp(&(&b.user, &b.created_at, &b.id)));
    Ok(out)
}

/// Revoke a token by ID (works at once on this server, within the cache TTL on the others).
pub async fn revoke(app: &App, caller: &Caller, id: &str) -> Result<()> {
    for (hash, rec) in all(app).await? {
        if rec.credential_id(&hash) != id {
            continue;
        }
        if !may_see(app, caller, &rec).await? {
            break;
        }
        commit(app.kv(), vec![], vec![Op::delete(keys::token(&hash))]).await?;
        app.auth_cache.tokens.evict(&hash);
        return Ok(());
    }
    Err(Error::not_found("token", id))
}
