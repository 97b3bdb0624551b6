//! The network API: networks of three kinds, subnets with IPAM, ports (race-free allocation), routers,
//! security groups and floating IPs — validation, conflicts and bookkeeping, through real HTTP.

mod common;

use std::collections::HashSet;

use common::Cloud;
use serde_json::{Value, json};

fn post(c: &Cloud, path: &str, body: Value) -> (u16, Value) {
    c.http("POST", path, Some(&body.to_string()))
}

fn created(c: &Cloud, path: &str, body: Value) -> Value {
    let (s, v) = post(c, path, body);
    assert!((200..300).contains(&s), "POST {path}: {s} {v}");
    v
}

fn err(r: (u16, Value), status: u16, field: Option<&str>) {
    assert_eq!(r.0, status, "{}", r.1);
    if let Some(f) = field {
        assert_eq!(r.1["field"], f, "{}", r.1);
    }
}

#[test]
fn networks_subnets_ports_routers_groups_floating_ips() {
    let cloud = Cloud::start();

    // Networks: kinds and their validation.
    let vlan = created(
        &cloud,
        "/v1/networks",
        json!({"name": "research", "kind": "vlan", "vlan_id": 20, "physical_network": "physnet1"}),
    );
    assert_eq!(vlan["vlan_id"], 20);
    assert!(vlan["bridge"].as_str().unwrap().len() <= 15);
    let vx = created(
        &cloud,
        "/v1/networks",
        json!({"name": "overlay", "kind": "vxlan"}),
    );
    assert_eq!(vx["mtu"], 1450);
    assert!(vx["vni"].as_u64().is_some());
    let vx2 = created(
        &cloud,
        "/v1/networks",
        json!({"name": "overlay2", "kind": "vxlan"}),
    );
    assert_ne!(vx["vni"], vx2["vni"], "VNIs must be distinct");
    err(
        post(
            &cloud,
            "/v1/networks",
            json!({"name": "x", "kind": "vlan", "physical_network": "p"}),
        ),
        422,
        Some("vlan_id"),
    );
    err(
        post(
            &cloud,
            "/v1/networks",
            json!({"name": "x", "kind": "vlan", "vlan_id": 5000, "physical_network": "p"}),
        ),
        422,
        Some("vlan_id"),
    );
    err(
        post(&cloud, "/v1/networks", json!({"name": "x", "vlan_id": 5})),
        422,
        Some("vlan_id"),
    );
    err(
        post(&cloud, "/v1/networks", json!({"name": "x", "mtu": 100})),
        422,
        Some("mtu"),
    );
    err(
        post(&cloud, "/v1/networks", json!({"name": "research"})),
        409,
        Some("name"),
    );

    // Subnets: validation, overlap anywhere is refused.
    let sub = created(
        &cloud,
        "/v1/subnets",
        json!({"name": "research-a", "network": "research", "cidr": "198.18.20.0/24",
        "allocation_pools": [{"start": "198.18.20.100", "end": "198.18.20.199"}], "dns_servers": ["198.18.20.1"],
        "routes": [{"destination": "198.18.99.0/24", "nexthop": "198.18.20.254"}]}),
    );
    assert_eq!(sub["gateway"], "198.18.20.1");
    err(
        post(
            &cloud,
            "/v1/subnets",
            json!({"name": "o", "network": "overlay", "cidr": "198.18.20.128/25"}),
        ),
        409,
        Some("cidr"),
    );
    err(
        post(
            &cloud,
            "/v1/subnets",
            json!({"name": "o", "network": "overlay", "cidr": "198.18.0.0/16"}),
        ),
        409,
        Some("cidr"),
    );
    err(
        post(
            &cloud,
            "/v1/subnets",
            json!({"name": "o", "network": "overlay", "cidr": "198.18.30.0/24", "gateway": "198.18.31.1"}),
        ),
        422,
        Some("gateway"),
    );
    err(
        post(
            &cloud,
            "/v1/subnets",
            json!({"name": "o", "network": "overlay", "cidr": "198.18.30.0/24",
        "allocation_pools": [{"start": "198.18.30.1", "end": "198.18.30.9"}]}),
        ),
        422,
        Some("allocation_pools"),
    );
    err(
        post(
            &cloud,
            "/v1/subnets",
            json!({"name": "o", "network": "nope", "cidr": "198.18.30.0/24"}),
        ),
        422,
        Some("network"),
    );
    created(
        &cloud,
        "/v1/subnets",
        json!({"name": "overlay-a", "network": "overlay", "cidr": "198.18.30.0/24"}),
    );

    // 50 concurrent port creations on one subnet: 50 distinct addresses inside the pool.
    let (url, token) = (cloud.url(), cloud.token.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let ips: Vec<String> = rt.block_on(async {
        let client = reqwest::Client::new();
        let futs = (0..50).map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                let r = client
                    .post(format!("{url}/v1/ports"))
                    .bearer_auth(token)
                    .json(&json!({"subnet": "research-a"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                r.json::<Value>().await.unwrap()["ipv4"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        });
        futures::future::join_all(futs).await
    });
    let distinct: HashSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 50, "duplicate addresses: {ips:?}");
    for ip in &ips {
        let last: u32 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((100..=199).contains(&last), "{ip} outside the pool");
    }
    // A fixed address: granted once, then a precise conflict.
    let p = created(
        &cloud,
        "/v1/ports",
        json!({"subnet": "research-a", "ipv4": "198.18.20.250"}),
    );
    assert_eq!(p["ipv4"], "198.18.20.250");
    err(
        post(
            &cloud,
            "/v1/ports",
            json!({"subnet": "research-a", "ipv4": "198.18.20.250"}),
        ),
        409,
        Some("ipv4"),
    );
    err(
        post(
            &cloud,
            "/v1/ports",
            json!({"subnet": "research-a", "ipv4": "198.18.20.1"}),
        ),
        422,
        Some("ipv4"),
    );
    err(
        post(
            &cloud,
            "/v1/ports",
            json!({"subnet": "research-a", "ipv4": "198.18.21.5"}),
        ),
        422,
        Some("ipv4"),
    );
    // Deleting a port frees its address; a subnet with ports cannot go.
    let pid = p["id"].as_str().unwrap();
    assert_eq!(
        cloud.http("DELETE", &format!("/v1/ports/{pid}"), None).0,
        204
    );
    created(
        &cloud,
        "/v1/ports",
        json!({"subnet": "research-a", "ipv4": "198.18.20.250"}),
    );
    err(
        cloud.http("DELETE", "/v1/subnets/research-a", None),
        409,
        None,
    );
    err(
        cloud.http("DELETE", "/v1/networks/research", None),
        409,
        None,
    );

    // Security groups: rules validated, duplicates refused, removal works; default group exists.
    let groups = cloud.http("GET", "/v1/security-groups", None).1;
    assert!(
        groups["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "default")
    );
    let web = created(&cloud, "/v1/security-groups", json!({"name": "web"}));
    assert_eq!(
        web["rules"].as_array().unwrap().len(),
        1,
        "a new group allows all egress"
    );
    let web = created(
        &cloud,
        "/v1/security-groups/web/rules",
        json!({"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_cidr": "198.18.0.0/15"}),
    );
    let rule = web["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port_min"] == 80)
        .unwrap()
        .clone();
    assert_eq!(rule["port_max"], 80);
    err(
        post(
            &cloud,
            "/v1/security-groups/web/rules",
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_cidr": "198.18.0.0/15"}),
        ),
        409,
        None,
    );
    err(
        post(
            &cloud,
            "/v1/security-groups/web/rules",
            json!({"direction": "ingress", "protocol": "icmp", "port_min": 1}),
        ),
        422,
        Some("port_min"),
    );
    err(
        post(
            &cloud,
            "/v1/security-groups/web/rules",
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 90, "port_max": 80}),
        ),
        422,
        Some("port_max"),
    );
    err(
        post(
            &cloud,
            "/v1/security-groups/web/rules",
            json!({"direction": "ingress", "remote_cidr": "198.18.0.1/15"}),
        ),
        422,
        Some("remote_cidr"),
    );
    err(
        post(
            &cloud,
            "/v1/security-groups/web/rules",
            json!({"direction": "sideways"}),
        ),
        422,
        Some("direction"),
    );
    let rid = rule["id"].as_str().unwrap();
    let after = cloud.http(
        "DELETE",
        &format!("/v1/security-groups/web/rules/{rid}"),
        None,
    );
    assert_eq!(after.0, 200);
    assert_eq!(after.1["rules"].as_array().unwrap().len(), 1);
    err(
        cloud.http("DELETE", "/v1/security-groups/default", None),
        409,
        None,
    );

    // Routers join subnets (exclusively) and SNAT to an external network.
    created(
        &cloud,
        "/v1/networks",
        json!({"name": "public", "external": true}),
    );
    created(
        &cloud,
        "/v1/subnets",
        json!({"name": "public-a", "network": "public", "cidr": "198.19.0.0/24"}),
    );
    let r = created(
        &cloud,
        "/v1/routers",
        json!({"name": "r1", "external_network": "public", "subnets": ["research-a"]}),
    );
    assert!(r["external_ip"].as_str().unwrap().starts_with("198.19.0."));
    let r = created(
        &cloud,
        "/v1/routers/r1/interfaces",
        json!({"subnet": "overlay-a"}),
    );
    assert_eq!(r["subnets"].as_array().unwrap().len(), 2);
    err(
        post(
            &cloud,
            "/v1/routers",
            json!({"name": "r2", "subnets": ["overlay-a"]}),
        ),
        409,
        Some("subnets[0]"),
    );
    err(
        post(
            &cloud,
            "/v1/routers",
            json!({"name": "r2", "external_network": "research"}),
        ),
        422,
        Some("external_network"),
    );
    err(cloud.http("DELETE", "/v1/routers/r1", None), 409, None);

    // Floating IPs: only from external networks; one per port; release needs disassociation.
    err(
        post(&cloud, "/v1/floating-ips", json!({"network": "research"})),
        422,
        Some("network"),
    );
    let f = created(&cloud, "/v1/floating-ips", json!({"network": "public"}));
    let addr = f["address"].as_str().unwrap().to_string();
    assert_ne!(Some(addr.as_str()), r["external_ip"].as_str());
    let port = created(&cloud, "/v1/ports", json!({"subnet": "overlay-a"}));
    let port_id = port["id"].as_str().unwrap();
    let f = created(
        &cloud,
        &format!("/v1/floating-ips/{addr}/associate"),
        json!({"port": port_id}),
    );
    assert_eq!(f["fixed_ip"], port["ipv4"]);
    err(
        cloud.http("DELETE", &format!("/v1/floating-ips/{addr}"), None),
        409,
        None,
    );
    let f2 = created(&cloud, "/v1/floating-ips", json!({"network": "public"}));
    err(
        post(
            &cloud,
            &format!("/v1/floating-ips/{}/associate", f2["id"].as_str().unwrap()),
            json!({"port": port_id}),
        ),
        409,
        Some("port"),
    );
    assert_eq!(
        post(
            &cloud,
            &format!("/v1/floating-ips/{addr}/disassociate"),
            json!({})
        )
        .0,
        200
    );
    assert_eq!(
        cloud
            .http("DELETE", &format!("/v1/floating-ips/{addr}"), None)
            .0,
        204
    );
    // The topology is what agents receive: check the server kept it consistent.
    let subnets = cloud.http("GET", "/v1/subnets", None).1;
    assert!(subnets["items"].as_array().unwrap().len() >= 4);
}

/// Existing ports: attached at launch or later by `port`, kept (detached, with their address) when
/// the NIC or the instance goes; their security groups can be changed.
#[test]
fn existing_ports_attach_detach_and_change_groups() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    created(&cloud, "/v1/security-groups", json!({"name": "web"}));
    let p = created(
        &cloud,
        "/v1/ports",
        json!({"name": "db-port", "ipv4": "198.18.0.77"}),
    );
    let pid = p["id"].as_str().unwrap().to_string();
    let stopped = |name: &str, nics: Value| json!({"name": name, "image": "tiny", "instance_type": "nano", "start": false, "nics": nics});
    // A NIC with `port` takes the port as it is.
    err(
        post(
            &cloud,
            "/v1/instances",
            stopped("x", json!([{"port": "db-port", "ipv4": "198.18.0.9"}])),
        ),
        422,
        Some("nics[0].ipv4"),
    );
    err(
        post(
            &cloud,
            "/v1/instances",
            stopped("x", json!([{"port": "no-such-port"}])),
        ),
        422,
        Some("nics[0].port"),
    );
    let a = created(
        &cloud,
        "/v1/instances",
        stopped("a", json!([{"port": "db-port"}])),
    );
    assert_eq!(a["ipv4"], "198.18.0.77", "{a}");
    assert_eq!(a["nics"][0]["port_id"], pid.as_str());
    let (_, port) = cloud.http("GET", &format!("/v1/ports/{pid}"), None);
    assert_eq!(port["instance_id"], a["id"]);
    // Attached ports cannot be taken by another instance, nor deleted.
    err(
        post(
            &cloud,
            "/v1/instances",
            stopped("b", json!([{"port": pid}])),
        ),
        409,
        Some("nics[0].port"),
    );
    let (_, list) = cloud.http("GET", "/v1/instances", None);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    err(
        cloud.http("DELETE", &format!("/v1/ports/{pid}"), None),
        409,
        None,
    );

    // Its groups change in place.
    let (s, v) = cloud.http(
        "PATCH",
        &format!("/v1/ports/{pid}"),
        Some(&json!({"security_groups": ["web"]}).to_string()),
    );
    assert_eq!(s, 200, "{v}");
    let (_, web) = cloud.http("GET", "/v1/security-groups/web", None);
    assert_eq!(v["security_groups"], json!([web["id"]]));
    err(
        cloud.http(
            "PATCH",
            &format!("/v1/ports/{pid}"),
            Some(&json!({"security_groups": ["nope"]}).to_string()),
        ),
        422,
        Some("security_groups[0]"),
    );

    // Deleting the instance keeps the port and its address.
    let (s, _) = cloud.http("DELETE", "/v1/instances/a", None);
    assert_eq!(s, 202);
    cloud.wait_gone("a");
    let (_, port) = cloud.http("GET", &format!("/v1/ports/{pid}"), None);
    assert_eq!(port["instance_id"], Value::Null, "{port}");
    assert_eq!(port["ipv4"], "198.18.0.77");
    err(
        post(&cloud, "/v1/ports", json!({"ipv4": "198.18.0.77"})),
        409,
        Some("ipv4"),
    );

    // Attach it later to another instance, then detach it: still there.
    let b = created(&cloud, "/v1/instances", stopped("b", Value::Null));
    let (s, v) = post(&cloud, "/v1/instances/b/nics", json!({"port": "db-port"}));
    assert!((200..300).contains(&s), "{s} {v}");
    assert_eq!(v["nics"].as_array().unwrap().len(), 2);
    let (s, v) = cloud.http("DELETE", "/v1/instances/b/nics/198.18.0.77", None);
    assert!((200..300).contains(&s), "{s} {v}");
    let (_, port) = cloud.http("GET", &format!("/v1/ports/{pid}"), None);
    assert_eq!(port["instance_id"], Value::Null, "{port}");
    assert!(b["id"].is_string());
    let (s, _) = cloud.http("DELETE", &format!("/v1/ports/{pid}"), None);
    assert_eq!(s, 204);
}
