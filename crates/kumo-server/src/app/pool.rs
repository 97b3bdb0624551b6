//! Storage pools: the built-in `local` (driver `dir`, each host's data directory) and the pools
//! operators add (`dir` elsewhere, `shared-dir`, `lvm-thin`, `rbd`). Each host's agent reports what it
//! sees of every pool (`/pool-status/<pool>/<host>`): capacity, free space, or why it cannot use it.

use kumo_store::{Compare, Op};
use kumo_types::{
    CreatePoolRequest, Error, Host, LOCAL_POOL, Page, Pool, PoolDriver, PoolHostStatus,
    PoolHostUsage, PoolView, Result, Volume, VolumeType, now_rfc3339, validate,
};

use super::{App, host};
use crate::storeutil::{commit, encode, get_json, keys, list_json, list_raw};

/// The built-in pool.
pub fn local() -> Pool {
    Pool {
        name: LOCAL_POOL.into(),
        driver: PoolDriver::Dir,
        path: None,
        volume_group: None,
        thin_pool: None,
        rbd_pool: None,
        ceph_conf: None,
        ceph_user: None,
        builtin: true,
        created_at: String::new(),
    }
}

/// Check a create request and turn it into a pool (pure). Each driver takes exactly its own fields.
pub fn plan(req: CreatePoolRequest, now: String) -> Result<Pool> {
    validate::name("name", &req.name)?;
    if req.driver == PoolDriver::LvmThin {
        // Not built: the machines kumo is developed on have no device-mapper, so the driver could
        // not be exercised for real (see docs/storage.md).
        return Err(Error::invalid(
            "driver",
            "`lvm-thin` is not available in this release; use `dir`, `shared-dir` or `rbd`",
        ));
    }
    let given: [(&str, bool); 6] = [
        ("path", req.path.is_some()),
        ("volume_group", req.volume_group.is_some()),
        ("thin_pool", req.thin_pool.is_some()),
        ("rbd_pool", req.rbd_pool.is_some()),
        ("ceph_conf", req.ceph_conf.is_some()),
        ("ceph_user", req.ceph_user.is_some()),
    ];
    let (needed, optional): (&[&str], &[&str]) = match req.driver {
        PoolDriver::Dir | PoolDriver::SharedDir => (&["path"], &[]),
        PoolDriver::LvmThin => (&["volume_group", "thin_pool"], &[]),
        PoolDriver::Rbd => (&["rbd_pool", "ceph_conf"], &["ceph_user"]),
    };
    for (field, is_given) in given {
        let wanted = needed.contains(&field) || optional.contains(&field);
        if is_given && !wanted {
            return Err(Error::invalid(
                field,
                format!(
                    "not a `{}` pool setting (it takes: {})",
                    req.driver.as_str(),
                    [needed, optional].concat().join(", ")
                ),
            ));
        }
        if !is_given && needed.contains(&field) {
            return Err(Error::invalid(
                field,
                format!("required for a `{}` pool", req.driver.as_str()),
            ));
        }
    }
    for (field, p) in [("path", &req.path), ("ceph_conf", &req.ceph_conf)] {
        if let Some(p) = p {
            let odd = p.contains("/../") || p.ends_with("/..") || p.contains([',', ':', '@']);
            if !p.starts_with('/') || odd {
                return Err(Error::invalid(
                    field,
                    format!("`{p}`: an absolute path without `..`, `,`, `:` or `@`"),
                ));
            }
        }
    }
    for (field, v) in [
        ("volume_group", &req.volume_group),
        ("thin_pool", &req.thin_pool),
        ("rbd_pool", &req.rbd_pool),
        ("ceph_user", &req.ceph_user),
    ] {
        if let Some(v) = v {
            let ok = !v.is_empty()
                && v.len() <= 63
                && !v.starts_with('-')
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
            if !ok {
                return Err(Error::invalid(
                    field,
                    format!("`{v}`: 1 to 63 of a-z, A-Z, 0-9, `-_.+`, not starting with `-`"),
                ));
            }
        }
    }
    Ok(Pool {
        name: req.name,
        driver: req.driver,
        path: req.path,
        volume_group: req.volume_group,
        thin_pool: req.thin_pool,
        rbd_pool: req.rbd_pool,
        ceph_conf: req.ceph_conf,
        ceph_user: match req.driver {
            PoolDriver::Rbd => Some(req.ceph_user.unwrap_or_else(|| "admin".into())),
            _ => None,
        },
        builtin: false,
        created_at: now,
    })
}

/// Capacity and usage of a pool (pure). `reports` are the hosts' `(host, status)`; the `local`
/// pool's capacity is what hosts report for their data directory's filesystem.
pub fn view(
    pool: &Pool,
    hosts: &[Host],
    volumes: &[Volume],
    reports: &[(String, PoolHostStatus)],
) -> PoolView {
    let mut per_host: Vec<PoolHostUsage> = hosts
        .iter()
        .map(|h| {
            let mine: Vec<&Volume> = volumes
                .iter()
                .filter(|v| v.pool == pool.name && v.host == h.id)
                .collect();
            let st = if pool.builtin {
                PoolHostStatus {
                    capacity_bytes: h.inventory.disk_total_bytes,
                    free_bytes: h.inventory.disk_free_bytes,
                    ..Default::default()
                }
            } else {
                reports
                    .iter()
                    .find(|(host, _)| host == &h.id)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| PoolHostStatus {
                        error: Some("not reported by the host yet".into()),
                        ..Default::default()
                    })
            };
            PoolHostUsage {
                host: h.id.clone(),
                capacity_bytes: st.capacity_bytes,
                free_bytes: st.free_bytes,
                volumes: mine.len() as u64,
                allocated_gib: mine.iter().map(|v| v.size_gib).sum(),
                error: st.error,
            }
        })
        .collect();
    per_host.sort_by(|a, b| a.host.cmp(&b.host));
    let seen = per_host.iter().filter(|h| h.error.is_none());
    let (capacity_bytes, free_bytes) = if pool.driver.shared() {
        // One store seen from every host: not a sum.
        seen.fold((0, 0), |(c, f), h| {
            (c.max(h.capacity_bytes), f.max(h.free_bytes))
        })
    } else {
        seen.fold((0, 0), |(c, f), h| (c + h.capacity_bytes, f + h.free_bytes))
    };
    PoolView {
        pool: pool.clone(),
        volumes: per_host.iter().map(|h| h.volumes).sum(),
        allocated_gib: per_host.iter().map(|h| h.allocated_gib).sum(),
        capacity_bytes,
        free_bytes,
        hosts: per_host,
    }
}

/// A pool's definition (`local` or stored).
pub async fn find(app: &App, name: &str) -> Result<Pool> {
    if name == LOCAL_POOL {
        return Ok(local());
    }
    get_json(app.kv(), &keys::pool(name))
        .await?
        .map(|(p, _)| p)
        .ok_or_else(|| Error::not_found("pool", name))
}

/// The operator-defined pools.
pub async fn custom(app: &App) -> Result<Vec<Pool>> {
    let mut pools: Vec<Pool> = list_json(app.kv(), keys::POOLS).await?;
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pools)
}

/// `local` and the operator-defined pools.
pub async fn all(app: &App) -> Result<Vec<Pool>> {
    let mut pools = vec![local()];
    pools.extend(custom(app).await?);
    Ok(pools)
}

/// The pools `volumes` live in (pure).
pub fn used_by(pools: &[Pool], volumes: &[Volume]) -> Vec<Pool> {
    pools
        .iter()
        .filter(|p| volumes.iter().any(|v| v.pool == p.name))
        .cloned()
        .collect()
}

async fn reports(app: &App, pool: &str) -> Result<Vec<(String, PoolHostStatus)>> {
    let prefix = keys::pool_status_prefix(pool);
    let mut out = Vec::new();
    for kv in list_raw(app.kv(), &prefix).await? {
        let host = kv.key.strip_prefix(&prefix).unwrap_or_default().to_string();
        out.push((host, crate::storeutil::decode(&kv)?));
    }
    Ok(out)
}

async fn view_of(app: &App, pool: &Pool) -> Result<PoolView> {
    let hosts = host::list(app).await?.items;
    let volumes: Vec<Volume> = list_json(app.kv(), keys::VOLUMES).await?;
    Ok(view(
        pool,
        &hosts,
        &volumes,
        &reports(app, &pool.name).await?,
    ))
}

pub async fn list(app: &App) -> Result<Page<PoolView>> {
    let mut items = vec![view_of(app, &local()).await?];
    for p in custom(app).await? {
        items.push(view_of(app, &p).await?);
    }
    Ok(Page {
        items,
        next_token: None,
    })
}

pub async fn get(app: &App, name: &str) -> Result<PoolView> {
    view_of(app, &find(app, name).await?).await
}

pub async fn create(app: &App, req: CreatePoolRequest) -> Result<PoolView> {
    let pool = plan(req, now_rfc3339())?;
    let key = keys::pool(&pool.name);
    if pool.name == LOCAL_POOL
        || !commit(
            app.kv(),
            vec![Compare::absent(&key)],
            vec![Op::put(&key, encode(&pool)?)],
        )
        .await?
    {
        return Err(Error::conflict_field(
            "name",
            format!("a pool named `{}` already exists", pool.name),
        ));
    }
    super::event::record(
        app,
        &pool.name,
        "pool.created",
        &format!("pool `{}` (driver {})", pool.name, pool.driver.as_str()),
    )
    .await?;
    view_of(app, &pool).await
}

/// Pools with volumes, or named by a volume type, cannot be deleted; built-in pools never.
pub async fn delete(app: &App, name: &str) -> Result<()> {
    let pool = find(app, name).await?;
    let volumes = list_json::<Volume>(app.kv(), keys::VOLUMES)
        .await?
        .into_iter()
        .filter(|v| v.pool == name)
        .count();
    if volumes > 0 {
        return Err(Error::conflict(format!(
            "pool `{name}` holds {volumes} volume(s); delete them first"
        )));
    }
    if pool.builtin {
        return Err(Error::conflict(format!(
            "pool `{name}` is built in and cannot be deleted"
        )));
    }
    let types: Vec<String> = list_json::<VolumeType>(app.kv(), keys::VOLUME_TYPES)
        .await?
        .into_iter()
        .filter(|t| t.pool == name)
        .map(|t| t.name)
        .collect();
    if !types.is_empty() {
        return Err(Error::conflict(format!(
            "pool `{name}` is the pool of volume type(s) {}; delete them first",
            types.join(", ")
        )));
    }
    let key = keys::pool(name);
    let (_, rev) = get_json::<Pool>(app.kv(), &key)
        .await?
        .ok_or_else(|| Error::not_found("pool", name))?;
    let mut ops = vec![Op::delete(&key)];
    for kv in list_raw(app.kv(), &keys::pool_status_prefix(name)).await? {
        ops.push(Op::delete(&kv.key));
    }
    if !commit(app.kv(), vec![Compare::mod_revision(&key, rev)], ops).await? {
        return Err(Error::conflict(format!(
            "pool `{name}` changed concurrently; retry"
        )));
    }
    super::event::record(app, name, "pool.deleted", &format!("pool `{name}`")).await?;
    Ok(())
}

/// A host's report on a pool (internal API).
pub async fn report(app: &App, name: &str, host_id: &str, st: PoolHostStatus) -> Result<()> {
    find(app, name).await?;
    app.kv()
        .put(&keys::pool_status(name, host_id), encode(&st)?)
        .await
        .map_err(crate::storeutil::store_err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn host(id: &str, total: u64, free: u64) -> Host {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "state": "ready", "accel": "tcg", "registered_at": "t",
            "last_heartbeat": "t",
            "inventory": {"hostname": id, "cpus": 2, "memory_mib": 1024,
                "disk_free_bytes": free, "disk_total_bytes": total, "qemu_version": "7.2",
                "kernel": "6.1", "kvm_usable": false, "kvm_probe": ""}
        }))
        .unwrap()
    }

    fn vol(id: &str, pool: &str, host: &str, gib: u64) -> Volume {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "project": "default", "size_gib": gib, "pool": pool,
            "host": host, "created_at": "t"
        }))
        .unwrap()
    }

    fn req(driver: PoolDriver) -> CreatePoolRequest {
        CreatePoolRequest {
            name: "p".into(),
            driver,
            path: None,
            volume_group: None,
            thin_pool: None,
            rbd_pool: None,
            ceph_conf: None,
            ceph_user: None,
        }
    }

    #[test]
    fn local_usage_is_summed_per_host_and_over_hosts() {
        let v = view(
            &local(),
            &[host("h2", 100, 40), host("h1", 200, 150)],
            &[
                vol("a", "local", "h1", 10),
                vol("b", "local", "h1", 5),
                vol("c", "local", "h2", 1),
                vol("d", "other", "h2", 7),
            ],
            &[],
        );
        assert_eq!((v.volumes, v.allocated_gib), (3, 16));
        assert_eq!((v.capacity_bytes, v.free_bytes), (300, 190));
        assert_eq!(v.hosts[0].host, "h1");
        assert_eq!((v.hosts[0].volumes, v.hosts[0].allocated_gib), (2, 15));
        assert_eq!(v.hosts[1].allocated_gib, 1);
    }

    #[test]
    fn shared_pools_count_the_store_once_and_show_host_errors() {
        let mut r = req(PoolDriver::Rbd);
        r.rbd_pool = Some("kumo".into());
        r.ceph_conf = Some("/etc/ceph/ceph.conf".into());
        let pool = plan(r, "t".into()).unwrap();
        assert_eq!(pool.ceph_user.as_deref(), Some("admin"));
        let ok = PoolHostStatus {
            capacity_bytes: 1000,
            free_bytes: 600,
            ..Default::default()
        };
        let bad = PoolHostStatus {
            error: Some("ceph unreachable".into()),
            ..Default::default()
        };
        let v = view(
            &pool,
            &[host("h1", 1, 1), host("h2", 1, 1), host("h3", 1, 1)],
            &[vol("a", "p", "h1", 3)],
            &[
                ("h1".into(), ok.clone()),
                ("h2".into(), ok),
                ("h3".into(), bad),
            ],
        );
        assert_eq!((v.capacity_bytes, v.free_bytes), (1000, 600));
        assert_eq!((v.volumes, v.allocated_gib), (1, 3));
        assert_eq!(v.hosts[2].error.as_deref(), Some("ceph unreachable"));
    }

    #[test]
    fn each_driver_takes_exactly_its_fields() {
        let e = plan(req(PoolDriver::Dir), "t".into()).unwrap_err();
        assert_eq!(e.field(), Some("path"));
        let mut r = req(PoolDriver::Dir);
        r.path = Some("/srv/kumo".into());
        r.rbd_pool = Some("x".into());
        let e = plan(r, "t".into()).unwrap_err();
        assert_eq!(e.field(), Some("rbd_pool"));
        assert!(e.to_string().contains("it takes: path"), "{e}");
        let mut r = req(PoolDriver::SharedDir);
        r.path = Some("relative/dir".into());
        assert_eq!(plan(r, "t".into()).unwrap_err().field(), Some("path"));
        let mut r = req(PoolDriver::LvmThin);
        r.volume_group = Some("vg0".into());
        r.thin_pool = Some("thin".into());
        let e = plan(r, "t".into()).unwrap_err();
        assert_eq!(e.field(), Some("driver"));
        assert!(e.to_string().contains("not available"), "{e}");
        let mut r = req(PoolDriver::Rbd);
        r.rbd_pool = Some("-bad".into());
        r.ceph_conf = Some("/etc/ceph/ceph.conf".into());
        assert_eq!(plan(r, "t".into()).unwrap_err().field(), Some("rbd_pool"));
        let mut r = req(PoolDriver::Rbd);
        r.rbd_pool = Some("kumo".into());
        assert_eq!(plan(r, "t".into()).unwrap_err().field(), Some("ceph_conf"));
    }
}
