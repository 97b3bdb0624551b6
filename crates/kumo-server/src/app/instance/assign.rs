//! What agents are given: the network topology and each host's assignments. Agents act for the
//! cluster, so this sees every project.

use std::collections::{BTreeMap, HashMap, HashSet};

use kumo_types::{Assignment, AssignmentSnapshot, DesiredState, Instance, NetworkTopology, Result};

use super::super::scope::Scope;
use super::super::{App, image, key_pair, network, pool, volume};
use super::status;
use crate::storeutil::{keys, list_json, store_err};

/// The whole network topology (every agent gets all of it; see `kumo_types::NetworkTopology`).
pub async fn topology(app: &App) -> Result<NetworkTopology> {
    let networks: Vec<kumo_types::Network> = list_json(app.kv(), keys::NETWORKS).await?;
    let insts: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let hosts: Vec<kumo_types::Host> = list_json(app.kv(), keys::HOSTS).await?;
    Ok(NetworkTopology {
        vxlan_peers: vxlan_peers(&networks, &insts, &hosts),
        networks,
        subnets: list_json(app.kv(), keys::SUBNETS).await?,
        ports: list_json(app.kv(), keys::PORTS).await?,
        routers: list_json(app.kv(), keys::ROUTERS).await?,
        security_groups: list_json(app.kv(), keys::SECURITY_GROUPS).await?,
        floating_ips: list_json(app.kv(), keys::FLOATING_IPS).await?,
    })
}

/// Per VXLAN network, the tunnel endpoints of the hosts running instances with a NIC on it (pure).
pub fn vxlan_peers(
    networks: &[kumo_types::Network],
    insts: &[Instance],
    hosts: &[kumo_types::Host],
) -> BTreeMap<String, Vec<String>> {
    let tunnel: HashMap<&str, &str> = hosts
        .iter()
        .filter_map(|h| Some((h.id.as_str(), h.inventory.tunnel_ip.as_deref()?)))
        .collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for net in networks
        .iter()
        .filter(|n| n.kind == kumo_types::NetworkKind::Vxlan)
    {
        let mut ips: Vec<String> = insts
            .iter()
            .filter(|i| i.nics.iter().any(|n| n.network_id == net.id))
            // A migration's target needs the overlay before the guest arrives.
            .flat_map(|i| {
                [
                    i.host.as_deref(),
                    i.migration.as_ref().map(|m| m.target_host.as_str()),
                ]
            })
            .filter_map(|h| tunnel.get(h?).map(|ip| ip.to_string()))
            .collect();
        ips.sort();
        ips.dedup();
        if !ips.is_empty() {
            out.insert(net.id.clone(), ips);
        }
    }
    out
}

/// Everything assigned to `host_id`, resolved for the agent.
pub async fn assignments(app: &App, host_id: &str) -> Result<AssignmentSnapshot> {
    let revision = app.kv().revision().await.map_err(store_err)?;
    let insts: Vec<Instance> = list_json(app.kv(), keys::INSTANCES).await?;
    let all_pools = pool::all(app).await?;
    let mut out = Vec::new();
    // Its own instances, and those migrating to it (the worker receives them).
    for inst in insts.into_iter().filter(|i| {
        i.host.as_deref() == Some(host_id)
            || i.migration
                .as_ref()
                .is_some_and(|m| m.target_host == host_id)
    }) {
        let image = image::get_any(app, &inst.image_id).await?;
        let mut networks = Vec::new();
        for n in &inst.nics {
            networks.push(network::get_any(app, &n.network_id).await?);
        }
        let key_pair = match &inst.key_name {
            Some(k) => key_pair::get(app, &Scope::within(&inst.project), k)
                .await
                .ok(),
            None => None,
        };
        let st = status(app, &inst.id).await?;
        let volumes = volume::attached_to(app, &inst.id).await?;
        let snapshots = volume::snapshots_of(app, &volumes).await?;
        out.push(Assignment {
            instance: inst,
            image,
            networks,
            key_pair,
            status: st,
            pools: pool::used_by(&all_pools, &volumes),
            volumes,
            snapshots,
        });
    }
    // Volumes whose files live here; the worker of a running instance owns its attached ones' online
    // changes.
    let running: HashSet<String> = out
        .iter()
        .filter(|x| !x.instance.deleting && x.instance.desired_state == DesiredState::Running)
        .filter(|x| x.instance.host.as_deref() == Some(host_id))
        .map(|x| x.instance.id.clone())
        .collect();
    let volumes = volume::assignments(app, host_id, &running).await?;
    Ok(AssignmentSnapshot {
        revision,
        assignments: out,
        topology: topology(app).await?,
        volumes,
        pools: pool::custom(app).await?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod vxlan_peer_tests {
    use super::*;

    fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn peers_are_the_tunnel_endpoints_of_hosts_with_ports_on_the_network() {
        let net = |id: &str, kind: &str| -> kumo_types::Network {
            json(serde_json::json!({
                "id": id, "name": id, "project": "default", "kind": kind, "bridge": "kb",
                "mtu": 1450, "vni": 7, "created_at": "t"
            }))
        };
        let host = |id: &str, tunnel: Option<&str>| -> kumo_types::Host {
            json(serde_json::json!({
                "id": id, "name": id, "state": "ready", "accel": "tcg", "registered_at": "t",
                "last_heartbeat": "t",
                "inventory": {"hostname": id, "cpus": 2, "memory_mib": 1024, "disk_free_bytes": 0,
                    "disk_total_bytes": 0, "qemu_version": "7.2", "kernel": "6.1",
                    "kvm_usable": false, "kvm_probe": "", "tunnel_ip": tunnel}
            }))
        };
        let inst = |id: &str, host: &str, nets: &[&str]| -> Instance {
            let mut i: Instance = json(serde_json::json!({
                "id": id, "name": id, "project": "default", "image_id": "img", "instance_type": "nano",
                "vcpus": 1, "memory_mib": 128, "root_disk_gib": 1, "desired_state": "running",
                "host": host, "created_at": "t", "nics": []
            }));
            for n in nets {
                i.nics.push(json(serde_json::json!({
                    "port_id": "p", "network_id": n, "mac": "52:54:00:00:00:01", "ipv4": "198.18.0.2"
                })));
            }
            i
        };
        let networks = vec![
            net("net-x", "vxlan"),
            net("net-b", "bridge"),
            net("net-y", "vxlan"),
        ];
        let hosts = vec![
            host("h1", Some("198.19.0.1")),
            host("h2", Some("198.19.0.2")),
            host("h3", None),
        ];
        let insts = vec![
            inst("i-1", "h1", &["net-x", "net-b"]),
            inst("i-2", "h2", &["net-x"]),
            inst("i-3", "h2", &["net-x"]),
            inst("i-4", "h3", &["net-x", "net-y"]),
        ];
        let peers = vxlan_peers(&networks, &insts, &hosts);
        assert_eq!(
            peers.get("net-x").unwrap(),
            &vec!["198.19.0.1".to_string(), "198.19.0.2".to_string()]
        );
        assert!(!peers.contains_key("net-b"), "not VXLAN");
        assert!(
            !peers.contains_key("net-y"),
            "only a host without an endpoint"
        );
    }
}
