//! Volume types: the built-in `default` (the `local` pool) plus custom ones naming a pool and a tier.

use kumo_store::{Compare, Op};
use kumo_types::{
    CreateVolumeTypeRequest, DEFAULT_VOLUME_TYPE, Error, LOCAL_POOL, Page, Result, Volume,
    VolumeType, validate,
};

use super::App;
use crate::storeutil::{commit, encode, get_json, keys, list_json};

fn builtin() -> VolumeType {
    VolumeType {
        name: DEFAULT_VOLUME_TYPE.into(),
        pool: LOCAL_POOL.into(),
        tier: None,
        description: Some("qcow2 files on each host's own disk".into()),
        builtin: true,
    }
}

pub async fn list(app: &App) -> Result<Page<VolumeType>> {
    let mut items = vec![builtin()];
    let mut custom: Vec<VolumeType> = list_json(app.kv(), keys::VOLUME_TYPES).await?;
    custom.sort_by(|a, b| a.name.cmp(&b.name));
    items.extend(custom);
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, name: &str) -> Result<VolumeType> {
    if name == DEFAULT_VOLUME_TYPE {
        return Ok(builtin());
    }
    get_json(app.kv(), &keys::volume_type(name))
        .await?
        .map(|(t, _)| t)
        .ok_or_else(|| Error::not_found("volume type", name))
}

pub async fn create(app: &App, req: CreateVolumeTypeRequest) -> Result<VolumeType> {
    validate::name("name", &req.name)?;
    if super::pool::find(app, &req.pool).await.is_err() {
        let mut names = vec![LOCAL_POOL.to_string()];
        names.extend(super::pool::custom(app).await?.into_iter().map(|p| p.name));
        return Err(Error::invalid(
            "pool",
            format!(
                "no storage pool `{}` (pools: {})",
                req.pool,
                names.join(", ")
            ),
        ));
    }
    if let Some(t) = &req.tier {
        validate::name("tier", t)?;
    }
    let t = VolumeType {
        name: req.name.clone(),
        pool: req.pool,
        tier: req.tier,
        description: req.description,
        builtin: false,
    };
    let key = keys::volume_type(&t.name);
    if t.name == DEFAULT_VOLUME_TYPE
        || !commit(
            app.kv(),
            vec![Compare::absent(&key)],
            vec![Op::put(&key, encode(&t)?)],
        )
        .await?
    {
        return Err(Error::conflict_field(
            "name",
            format!("a volume type named `{}` already exists", t.name),
        ));
    }
    Ok(t)
}

pub async fn delete(app: &App, name: &str) -> Result<()> {
    let t = get(app, name).await?;
    if t.builtin {
        return Err(Error::conflict(format!(
            "volume type `{name}` is built in and cannot be deleted"
        )));
    }
    let users = list_json::<Volume>(app.kv(), keys::VOLUMES)
        .await?
        .into_iter()
        .filter(|v| v.volume_type == name)
        .count();
    if users > 0 {
        return Err(Error::conflict(format!(
            "volume type `{name}` is used by {users} volume(s)"
        )));
    }
    let key = keys::volume_type(name);
    let (_, rev) = get_json::<VolumeType>(app.kv(), &key)
        .await?
        .ok_or_else(|| Error::not_found("volume type", name))?;
    if !commit(
        app.kv(),
        vec![Compare::mod_revision(&key, rev)],
        vec![Op::delete(&key)],
    )
    .await?
    {
        return Err(Error::conflict(format!(
            "volume type `{name}` changed concurrently; retry"
        )));
    }
    Ok(())
}

/// The volume type and pool a create request resolves to (errors name the field).
pub async fn resolve(app: &App, ty: Option<&str>, pool: Option<&str>) -> Result<(String, String)> {
    let t = match ty {
        Some(n) => get(app, n)
            .await
            .map_err(|_| Error::invalid("volume_type", format!("no volume type `{n}`")))?,
        None => builtin(),
    };
    match pool {
        Some(p) if p != t.pool => Err(Error::invalid(
            "pool",
            format!(
                "no storage pool `{p}` for volume type `{}` (its pool is `{}`)",
                t.name, t.pool
            ),
        )),
        _ => Ok((t.name, t.pool)),
    }
}
