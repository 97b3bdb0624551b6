//! Who is calling: from a bearer token (and `X-Kumo-Project`) to a [`Caller`].
//!
//! The project a request acts in is, in order: the `X-Kumo-Project` header (a project the user
//! belongs to, or any existing one for a cloud admin; never another than a pinned token's), the
//! token's project, the user's only or first membership (by name), and for a cloud admin without
//! any, `default`.

use std::net::IpAddr;

use kumo_types::{DEFAULT_PROJECT, Error, Result};

use super::caller::{Caller, Role};
use super::token::TokenRecord;
use super::user::{self, UserRecord};
use crate::app::App;
use crate::auth::hash_token;
use crate::storeutil::{get_json, keys};

/// The header that picks the project of a request.
pub const PROJECT_HEADER: &str = "x-kumo-project";

/// A token and its user, as cached.
#[derive(Debug, Clone)]
pub struct ResolvedToken {
    pub record: TokenRecord,
    pub user: UserRecord,
    /// What the audit log names the credential.
    pub credential: String,
}

/// Choose the project and role (pure). `pinned` tokens act only in `token_project`.
pub fn choose(
    user: &UserRecord,
    token_project: Option<&str>,
    pinned: bool,
    header: Option<&str>,
) -> Result<(String, Role)> {
    if pinned
        && let (Some(h), Some(t)) = (header, token_project)
        && h != t
    {
        return Err(Error::Forbidden {
            message: format!(
                "this token is pinned to project `{t}`: it cannot act in project `{h}`"
            ),
        });
    }
    let project = header
        .or(token_project)
        .map(str::to_string)
        .or_else(|| user.memberships.keys().next().cloned());
    let project = match (project, user.cloud_admin) {
        (Some(p), _) => p,
        (None, true) => DEFAULT_PROJECT.to_string(),
        (None, false) => {
            return Err(Error::Forbidden {
                message: format!(
                    "user `{}` is not a member of any project: ask an admin for a role",
                    user.name
                ),
            });
        }
    };
    let role = user.role_in(&project).ok_or_else(|| Error::Forbidden {
        message: format!(
            "user `{}` is not a member of project `{project}`{}",
            user.name,
            if header.is_some() {
                " (named by X-Kumo-Project)"
            } else {
                ""
            }
        ),
    })?;
    Ok((project, role))
}

fn unknown_token() -> Error {
    Error::Unauthenticated {
        message: "unknown, revoked or expired token".into(),
    }
}

/// The token and its user (cached for [`crate::auth::AuthCache::TTL`]).
pub async fn resolve_token(app: &App, token: &str) -> Result<ResolvedToken> {
    let hash = hash_token(token.trim());
    let resolved = match app.auth_cache.tokens.get(&hash) {
        Some(r) => r,
        None => {
            let (record, _) = get_json::<TokenRecord>(app.kv(), &keys::token(&hash))
                .await?
                .ok_or_else(unknown_token)?;
            let owner = record.owner().ok_or_else(unknown_token)?.to_string();
            let (user, _) =
                user::get_record(app, &owner)
                    .await?
                    .ok_or_else(|| Error::Unauthenticated {
                        message: format!("the token's user `{owner}` no longer exists"),
                    })?;
            let r = ResolvedToken {
                credential: record.credential_id(&hash),
                record,
                user,
            };
            app.auth_cache.tokens.put(hash, r.clone());
            r
        }
    };
    if resolved.record.expired(chrono::Utc::now().timestamp()) {
        return Err(unknown_token());
    }
    Ok(resolved)
}

/// The caller behind a bearer token, acting in the project `header` names (if any).
pub async fn caller_for_token(
    app: &App,
    token: &str,
    header: Option<&str>,
    source: Option<IpAddr>,
) -> Result<Caller> {
    let r = resolve_token(app, token).await?;
    let (project, role) = choose(
        &r.user,
        r.record.project.as_deref(),
        r.record.pinned,
        header,
    )?;
    if role == Role::CloudAdmin && !super::project::exists(app, &project).await? {
        return Err(Error::not_found("project", project));
    }
    Ok(Caller {
        user: r.user.name.clone(),
        project,
        role,
        credential: Some(r.credential),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_types::ProjectRole;
    use std::collections::BTreeMap;

    fn user(cloud_admin: bool, m: &[(&str, ProjectRole)]) -> UserRecord {
        UserRecord {
            name: "u".into(),
            created_at: String::new(),
            memberships: m
                .iter()
                .map(|(p, r)| (p.to_string(), *r))
                .collect::<BTreeMap<_, _>>(),
            cloud_admin,
            password_hash: None,
        }
    }

    #[test]
    fn project_selection() {
        use ProjectRole::*;
        let u = user(false, &[("b", Reader), ("a", Member)]);
        assert_eq!(
            choose(&u, None, false, None).expect("first"),
            ("a".into(), Role::Member)
        );
        assert_eq!(
            choose(&u, Some("b"), false, None).expect("token's"),
            ("b".into(), Role::Reader)
        );
        assert_eq!(
            choose(&u, Some("b"), false, Some("a")).expect("header wins"),
            ("a".into(), Role::Member)
        );
        let e = choose(&u, None, false, Some("c")).expect_err("not a member");
        assert_eq!(e.code(), "forbidden");
        assert!(e.to_string().contains("`c`"), "{e}");
        let e = choose(&u, Some("b"), true, Some("a")).expect_err("pinned");
        assert!(e.to_string().contains("pinned"), "{e}");
        assert!(choose(&u, Some("b"), true, Some("b")).is_ok());
        let none = user(false, &[]);
        assert_eq!(
            choose(&none, None, false, None).expect_err("none").code(),
            "forbidden"
        );
        let ca = user(true, &[]);
        assert_eq!(
            choose(&ca, None, false, None).expect("ca"),
            ("default".into(), Role::CloudAdmin)
        );
        assert_eq!(
            choose(&ca, None, false, Some("x")).expect("ca anywhere"),
            ("x".into(), Role::CloudAdmin)
        );
    }
}
