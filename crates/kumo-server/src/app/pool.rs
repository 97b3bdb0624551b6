//! Storage pools. One built-in pool so far: `local` (driver `dir`), a directory on every host. Its
//! capacity is what the hosts report for the filesystem holding their data directory.

use kumo_types::{Error, Host, LOCAL_POOL, Page, PoolHostUsage, PoolView, Result, Volume};

use super::{App, host};
use crate::storeutil::{keys, list_json};

/// Capacity and usage of the `local` pool (pure).
pub fn local_view(hosts: &[Host], volumes: &[Volume]) -> PoolView {
    let mut per_host: Vec<PoolHostUsage> = hosts
        .iter()
        .map(|h| {
            let mine: Vec<&Volume> = volumes
                .iter()
                .filter(|v| v.pool == LOCAL_POOL && v.host == h.id)
                .collect();
            PoolHostUsage {
                host: h.id.clone(),
                capacity_bytes: h.inventory.disk_total_bytes,
                free_bytes: h.inventory.disk_free_bytes,
                volumes: mine.len() as u64,
                allocated_gib: mine.iter().map(|v| v.size_gib).sum(),
            }
        })
        .collect();
    per_host.sort_by(|a, b| a.host.cmp(&b.host));
    PoolView {
        name: LOCAL_POOL.into(),
        driver: "dir".into(),
        builtin: true,
        volumes: per_host.iter().map(|h| h.volumes).sum(),
        allocated_gib: per_host.iter().map(|h| h.allocated_gib).sum(),
        capacity_bytes: per_host.iter().map(|h| h.capacity_bytes).sum(),
        free_bytes: per_host.iter().map(|h| h.free_bytes).sum(),
        hosts: per_host,
    }
}

async fn local(app: &App) -> Result<PoolView> {
    let hosts = host::list(app).await?.items;
    let volumes: Vec<Volume> = list_json(app.kv(), keys::VOLUMES).await?;
    Ok(local_view(&hosts, &volumes))
}

pub async fn list(app: &App) -> Result<Page<PoolView>> {
    Ok(Page {
        items: vec![local(app).await?],
        next_token: None,
    })
}

pub async fn get(app: &App, name: &str) -> Result<PoolView> {
    if name != LOCAL_POOL {
        return Err(Error::not_found("pool", name));
    }
    local(app).await
}

/// Pools with volumes cannot be deleted; built-in pools never.
pub async fn delete(app: &App, name: &str) -> Result<()> {
    let p = get(app, name).await?;
    if p.volumes > 0 {
        return Err(Error::conflict(format!(
            "pool `{name}` holds {} volume(s); delete them first",
            p.volumes
        )));
    }
    Err(Error::conflict(format!(
        "pool `{name}` is built in and cannot be deleted"
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_summed_per_host_and_over_hosts() {
        let host = |id: &str, total: u64, free: u64| -> Host {
            serde_json::from_value(serde_json::json!({
                "id": id, "name": id, "state": "ready", "accel": "tcg", "registered_at": "t",
                "last_heartbeat": "t",
                "inventory": {"hostname": id, "cpus": 2, "memory_mib": 1024,
                    "disk_free_bytes": free, "disk_total_bytes": total, "qemu_version": "7.2",
                    "kernel": "6.1", "kvm_usable": false, "kvm_probe": ""}
            }))
            .unwrap()
        };
        let vol = |id: &str, host: &str, gib: u64| -> Volume {
            serde_json::from_value(serde_json::json!({
                "id": id, "name": id, "project": "default", "size_gib": gib, "pool": "local",
                "host": host, "created_at": "t"
            }))
            .unwrap()
        };
        let v = local_view(
            &[host("h2", 100, 40), host("h1", 200, 150)],
            &[vol("a", "h1", 10), vol("b", "h1", 5), vol("c", "h2", 1)],
        );
        assert_eq!((v.volumes, v.allocated_gib), (3, 16));
        assert_eq!((v.capacity_bytes, v.free_bytes), (300, 190));
        assert_eq!(v.hosts[0].host, "h1");
        assert_eq!((v.hosts[0].volumes, v.hosts[0].allocated_gib), (2, 15));
        assert_eq!(v.hosts[1].allocated_gib, 1);
    }
}
