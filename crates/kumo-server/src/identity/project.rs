//! Projects (`/projects/<name>`): the tenants. `default` exists from the first start and cannot be
//! deleted. A project with members or resources cannot be deleted either.

use kumo_store::{Compare, Op};
use kumo_types::{
    CreateProjectRequest, DEFAULT_PROJECT, Error, Project, Result, now_rfc3339, validate,
};

use super::caller::Caller;
use super::user::UserRecord;
use crate::app::App;
use crate::storeutil::{commit, encode, get_json, keys, list_json, list_raw, store_err};

const MAX_DESCRIPTION: usize = 500;

/// Where resources that belong to a project live; a project is in use while any record under these
/// prefixes names it in its `project` field.
const RESOURCE_PREFIXES: &[&str] = &[
    keys::INSTANCES,
    keys::VOLUMES,
    keys::SNAPSHOTS,
    keys::NETWORKS,
    keys::SUBNETS,
    keys::PORTS,
    keys::ROUTERS,
    keys::SECURITY_GROUPS,
    keys::FLOATING_IPS,
    keys::KEY_PAIRS,
    keys::IMAGES,
    keys::ACCESS_KEYS,
];

/// `default` (idempotent).
pub async fn ensure_default(app: &App) -> Result<()> {
    let key = keys::project(DEFAULT_PROJECT);
    let rec = Project {
        name: DEFAULT_PROJECT.into(),
        description: "created on first start".into(),
        created_at: now_rfc3339(),
    };
    commit(
        app.kv(),
        vec![Compare::absent(&key)],
        vec![Op::put(&key, encode(&rec)?)],
    )
    .await?;
    Ok(())
}

/// Whether a project exists (cached briefly).
pub async fn exists(app: &App, name: &str) -> Result<bool> {
    if let Some(b) = app.auth_cache.projects.get(name) {
        return Ok(b);
    }
    let b = app
        .kv()
        .get(&keys::project(name))
        .await
        .map_err(store_err)?
        .is_some();
    app.auth_cache.projects.put(name.to_string(), b);
    Ok(b)
}

/// A compare that the project still exists unchanged and an op that rewrites it as it is (bumping
/// its revision): joined to a transaction that adds a member, so a racing deletion fails.
pub async fn touch(app: &App, name: &str, _field: &str) -> Result<(Compare, Op)> {
    let key = keys::project(name);
    let item = app
        .kv()
        .get(&key)
        .await
        .map_err(store_err)?
        .ok_or_else(|| Error::not_found("project", name))?;
    Ok((
        Compare::mod_revision(&key, item.mod_revision),
        Op::put(&key, item.value),
    ))
}

pub async fn create(app: &App, caller: &Caller, req: CreateProjectRequest) -> Result<Project> {
    if !caller.is_cloud_admin() {
        return Err(Error::Forbidden {
            message: "creating projects needs the `cloud-admin` role".into(),
        });
    }
    validate::name("name", &req.name)?;
    if req.description.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let rec = Project {
        name: req.name.clone(),
        description: req.description,
        created_at: now_rfc3339(),
    };
    let key = keys::project(&rec.name);
    if !commit(
        app.kv(),
        vec![Compare::absent(&key)],
        vec![Op::put(&key, encode(&rec)?)],
    )
    .await?
    {
        return Err(Error::conflict_field(
            "name",
            format!("a project named `{}` already exists", rec.name),
        ));
    }
    app.auth_cache.projects.evict(&rec.name);
    Ok(rec)
}

/// The projects the caller may see: all for a cloud admin, else those it is a member of.
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<Project>> {
    let all = list_json::<Project>(app.kv(), keys::PROJECTS).await?;
    if caller.is_cloud_admin() {
        return Ok(all);
    }
    let me = super::user::get_record(app, &caller.user)
        .await?
        .map(|(u, _)| u);
    Ok(all
        .into_iter()
        .filter(|p| {
            me.as_ref()
                .is_some_and(|u| u.memberships.contains_key(&p.name))
        })
        .collect())
}

pub async fn get(app: &App, caller: &Caller, name: &str) -> Result<Project> {
    let visible = list(app, caller).await?;
    visible
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::not_found("project", name))
}

/// Delete a project that has no members and no resources.
pub async fn delete(app: &App, caller: &Caller, name: &str) -> Result<()> {
    if !caller.is_cloud_admin() {
        return Err(Error::Forbidden {
            message: "deleting projects needs the `cloud-admin` role".into(),
        });
    }
    if name == DEFAULT_PROJECT {
        return Err(Error::conflict("the `default` project cannot be deleted"));
    }
    let key = keys::project(name);
    let (_, rev) = get_json::<Project>(app.kv(), &key)
        .await?
        .ok_or_else(|| Error::not_found("project", name))?;
    let members: Vec<String> = list_json::<UserRecord>(app.kv(), keys::USERS)
        .await?
        .into_iter()
        .filter(|u| u.memberships.contains_key(name))
        .map(|u| u.name)
        .collect();
    if !members.is_empty() {
        return Err(Error::conflict(format!(
            "project `{name}` still has members ({}): remove their roles first",
            members.join(", ")
        )));
    }
    for prefix in RESOURCE_PREFIXES {
        let n = list_raw(app.kv(), prefix)
            .await?
            .iter()
            .filter(|kv| {
                serde_json::from_slice::<serde_json::Value>(&kv.value)
                    .is_ok_and(|v| v.get("project").and_then(|p| p.as_str()) == Some(name))
            })
            .count();
        if n > 0 {
            return Err(Error::conflict(format!(
                "project `{name}` still has {n} resource(s) under {prefix}: delete them first"
            )));
        }
    }
    if !commit(
        app.kv(),
        vec![Compare::mod_revision(&key, rev)],
        vec![Op::delete(&key)],
    )
    .await?
    {
        return Err(Error::conflict(format!(
            "project `{name}` changed while it was being deleted (a member was added?): try again"
        )));
    }
    app.auth_cache.projects.evict(name);
    Ok(())
}
