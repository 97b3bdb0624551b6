//! Users (`/users/<name>`): cloud-wide names, a role per project, an optional argon2id password
//! hash, and the `cloud_admin` flag. The bootstrap user `admin` (cloud-admin, admin of `default`)
//! exists from the first start and owns the bootstrap token.
//!
//! Role changes compare and swap the user record *and* rewrite the project's record in the same
//! transaction (bumping its revision), so a project deletion that saw no members cannot commit
//! after a member was added.

use std::collections::BTreeMap;
use std::time::Instant;

use kumo_store::{Compare, Op};
use kumo_types::{CreateUserRequest, Error, ProjectRole, Result, User, now_rfc3339, validate};
use serde::{Deserialize, Serialize};

use super::caller::{Caller, Role};
use super::{password, project};
use crate::app::App;
use crate::storeutil::{commit, encode, get_json, keys, list_json, list_raw};

/// The bootstrap administrator.
pub const ADMIN: &str = "admin";
const CAS_TRIES: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub memberships: BTreeMap<String, ProjectRole>,
    #[serde(default)]
    pub cloud_admin: bool,
    /// argon2id PHC string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

impl UserRecord {
    pub fn view(&self) -> User {
        User {
            name: self.name.clone(),
            created_at: self.created_at.clone(),
            memberships: self.memberships.clone(),
            cloud_admin: self.cloud_admin,
            has_password: self.password_hash.is_some(),
        }
    }

    pub fn role_in(&self, project: &str) -> Option<Role> {
        if self.cloud_admin {
            return Some(Role::CloudAdmin);
        }
        self.memberships.get(project).map(|r| Role::from(*r))
    }
}

/// May `caller` see or manage `target`'s credentials and roles (pure)? Oneself and cloud admins
/// always; a project admin for users of its current project who are not cloud admins.
pub fn may_manage(caller: &Caller, target: &UserRecord) -> bool {
    caller.user == target.name
        || caller.is_cloud_admin()
        || (caller.role == Role::Admin
            && !target.cloud_admin
            && target.memberships.contains_key(&caller.project))
}

pub async fn get_record(
    app: &App,
    name: &str,
) -> Result<Option<(UserRecord, kumo_store::Revision)>> {
    get_json::<UserRecord>(app.kv(), &keys::user(name)).await
}

fn not_found(name: &str) -> Error {
    Error::not_found("user", name)
}

/// The bootstrap user `admin` (idempotent).
pub async fn ensure_admin(app: &App) -> Result<()> {
    let key = keys::user(ADMIN);
    let rec = UserRecord {
        name: ADMIN.into(),
        created_at: now_rfc3339(),
        memberships: BTreeMap::from([(
            kumo_types::DEFAULT_PROJECT.to_string(),
            ProjectRole::Admin,
        )]),
        cloud_admin: true,
        password_hash: None,
    };
    commit(
        app.kv(),
        vec![Compare::absent(&key)],
        vec![Op::put(&key, encode(&rec)?)],
    )
    .await?;
    Ok(())
}

pub async fn create(app: &App, caller: &Caller, req: CreateUserRequest) -> Result<User> {
    require_cloud_admin(caller, "creating users")?;
    validate::name("name", &req.name)?;
    let password_hash = match req.password {
        Some(p) => Some(password::hash_blocking(p).await?),
        None => None,
    };
    let rec = UserRecord {
        name: req.name.clone(),
        created_at: now_rfc3339(),
        memberships: req.memberships.clone(),
        cloud_admin: req.cloud_admin,
        password_hash,
    };
    let key = keys::user(&req.name);
    let mut compare = vec![Compare::absent(&key)];
    let mut ops = vec![Op::put(&key, encode(&rec)?)];
    for p in req.memberships.keys() {
        let (c, o) = project::touch(app, p, &format!("memberships.{p}")).await?;
        compare.push(c);
        ops.push(o);
    }
    if !commit(app.kv(), compare, ops).await? {
        if get_record(app, &req.name).await?.is_some() {
            return Err(Error::conflict_field(
                "name",
                format!("a user named `{}` already exists", req.name),
            ));
        }
        return Err(Error::CasFailed { key });
    }
    Ok(rec.view())
}

fn require_cloud_admin(caller: &Caller, what: &str) -> Result<()> {
    if caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden {
            message: format!("{what} needs the `cloud-admin` role"),
        })
    }
}

pub async fn list(app: &App, caller: &Caller) -> Result<Vec<User>> {
    let all = list_json::<UserRecord>(app.kv(), keys::USERS).await?;
    Ok(all
        .iter()
        .filter(|u| {
            caller.is_cloud_admin()
                || u.name == caller.user
                || (caller.role == Role::Admin && u.memberships.contains_key(&caller.project))
        })
        .map(UserRecord::view)
        .collect())
}

pub async fn get(app: &App, caller: &Caller, name: &str) -> Result<User> {
    let (rec, _) = get_record(app, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let visible = caller.is_cloud_admin()
        || rec.name == caller.user
        || (caller.role == Role::Admin && rec.memberships.contains_key(&caller.project));
    if !visible {
        return Err(not_found(name));
    }
    Ok(rec.view())
}

/// Delete a user with every token and access key it owns, in one transaction.
pub async fn delete(app: &App, caller: &Caller, name: &str) -> Result<()> {
    require_cloud_admin(caller, "deleting users")?;
    if name == ADMIN {
        return Err(Error::conflict(
            "the bootstrap user `admin` cannot be deleted (it owns the bootstrap token)",
        ));
    }
    if name == caller.user {
        return Err(Error::conflict("you cannot delete yourself"));
    }
    for _ in 0..CAS_TRIES {
        let (_, rev) = get_record(app, name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let key = keys::user(name);
        let mut ops = vec![Op::delete(&key)];
        for kv in list_raw(app.kv(), keys::TOKENS).await? {
            if let Ok(t) = serde_json::from_slice::<super::token::TokenRecord>(&kv.value)
                && t.owner() == Some(name)
            {
                ops.push(Op::delete(&kv.key));
            }
        }
        for kv in list_raw(app.kv(), keys::ACCESS_KEYS).await? {
            if let Ok(k) = serde_json::from_slice::<super::access_key::AccessKeyRecord>(&kv.value)
                && k.user == name
            {
                ops.push(Op::delete(&kv.key));
            }
        }
        if commit(app.kv(), vec![Compare::mod_revision(&key, rev)], ops).await? {
            app.auth_cache.clear_identities();
            return Ok(());
        }
    }
    Err(Error::CasFailed {
        key: keys::user(name),
    })
}

/// Read-modify-CAS a user record; `extra` compares and ops join the transaction.
async fn update(
    app: &App,
    name: &str,
    extra: impl Fn() -> Vec<(Compare, Op)>,
    f: impl Fn(&mut UserRecord) -> Result<()>,
) -> Result<UserRecord> {
    let key = keys::user(name);
    for _ in 0..CAS_TRIES {
        let (mut rec, rev) = get_record(app, name)
            .await?
            .ok_or_else(|| not_found(name))?;
        f(&mut rec)?;
        let (mut compare, mut ops) = (
            vec![Compare::mod_revision(&key, rev)],
            vec![Op::put(&key, encode(&rec)?)],
        );
        for (c, o) in extra() {
            compare.push(c);
            ops.push(o);
        }
        if commit(app.kv(), compare, ops).await? {
            app.auth_cache.clear_identities();
            return Ok(rec);
        }
    }
    Err(Error::CasFailed { key })
}

/// Give `name` a role in `project` (cloud-admin, or admin of that project for its non-cloud-admin
/// users). A project admin cannot change its own role.
pub async fn set_role(
    app: &App,
    caller: &Caller,
    name: &str,
    project_name: &str,
    role: ProjectRole,
) -> Result<User> {
    check_role_change(app, caller, name, project_name).await?;
    let (c, o) = project::touch(app, project_name, "project").await?;
    let rec = update(
        app,
        name,
        || vec![(c.clone(), o.clone())],
        |u| {
            u.memberships.insert(project_name.to_string(), role);
            Ok(())
        },
    )
    .await?;
    Ok(rec.view())
}

pub async fn remove_role(
    app: &App,
    caller: &Caller,
    name: &str,
    project_name: &str,
) -> Result<User> {
    check_role_change(app, caller, name, project_name).await?;
    let rec = update(app, name, Vec::new, |u| {
        if u.memberships.remove(project_name).is_none() {
            return Err(Error::not_found(
                "membership",
                format!("{name} in {project_name}"),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(rec.view())
}

async fn check_role_change(
    app: &App,
    caller: &Caller,
    name: &str,
    project_name: &str,
) -> Result<()> {
    let (target, _) = get_record(app, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if caller.is_cloud_admin() {
        return Ok(());
    }
    if caller.role != Role::Admin || caller.project != project_name {
        return Err(Error::Forbidden {
            message: format!(
                "managing roles in project `{project_name}` needs the `admin` role there (or `cloud-admin`)"
            ),
        });
    }
    if target.cloud_admin {
        return Err(Error::Forbidden {
            message: format!("user `{name}` is a cloud admin: only a cloud admin can change it"),
        });
    }
    if name == caller.user {
        return Err(Error::Forbidden {
            message: "a project admin cannot change its own role".into(),
        });
    }
    Ok(())
}

/// Set a user's password (oneself, or a cloud admin for anyone).
pub async fn set_password(
    app: &App,
    caller: &Caller,
    name: &str,
    password: String,
) -> Result<User> {
    if caller.user != name && !caller.is_cloud_admin() {
        return Err(Error::Forbidden {
            message: "only the user itself or a cloud admin can set a password".into(),
        });
    }
    let hash = password::hash_blocking(password).await?;
    let rec = update(app, name, Vec::new, |u| {
        u.password_hash = Some(hash.clone());
        Ok(())
    })
    .await?;
    Ok(rec.view())
}

/// Check a user name and password (argon2id); the same `Unauthenticated` error for an unknown
/// user and a wrong password. Throttled by name ([`super::throttle`]): while a name is locked the
/// answer is `TooManyRequests` and the password is not checked.
pub async fn check_password(app: &App, name: &str, password: String) -> Result<UserRecord> {
    let throttle = &app.auth_cache.login_throttle;
    let locked = throttle
        .lock()
        .map_or(Ok(()), |t| t.check(name, Instant::now()));
    if let Err(wait) = locked {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(Error::TooManyRequests {
            message: format!("too many failed logins for user `{name}`; try again in {secs} s"),
            retry_after_secs: secs,
        });
    }
    let checked = check_password_once(app, name, password).await;
    if let Ok(mut t) = throttle.lock() {
        match &checked {
            Ok(_) => t.succeeded(name),
            Err(Error::Unauthenticated { .. }) => {
                if let Some(lock) = t.failed(name, Instant::now()) {
                    tracing::warn!(
                        user = name,
                        lock_secs = lock.as_secs(),
                        "failed logins: locked"
                    );
                }
            }
            Err(_) => {}
        }
    }
    checked
}

/// One password check, unthrottled.
async fn check_password_once(app: &App, name: &str, password: String) -> Result<UserRecord> {
    let rec = match validate::name("user", name) {
        Ok(()) => get_record(app, name).await?.map(|(r, _)| r),
        Err(_) => None,
    };
    let phc = rec.as_ref().and_then(|r| r.password_hash.clone());
    if password::verify_blocking(password, phc).await
        && let Some(rec) = rec
    {
        return Ok(rec);
    }
    Err(Error::Unauthenticated {
        message: "wrong user name or password".into(),
    })
}
