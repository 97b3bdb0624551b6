//! Tables for the network resources and the NICs of `instance show`.

use kumo_types::{
    FloatingIp, IpRange, Nic, Port, Protocol, Route, Router, SecurityGroup, SecurityGroupRule,
    Subnet,
};

use super::*;
use crate::render::net;

const T: &str = "2026-11-21T00:00:00.000Z";

fn subnet() -> Subnet {
    Subnet {
        id: "subnet-1".into(),
        name: "lan-a".into(),
        project: "default".into(),
        network_id: "net-1".into(),
        cidr: "198.18.10.0/24".into(),
        gateway: None,
        allocation_pools: vec![IpRange {
            start: "198.18.10.100".into(),
            end: "198.18.10.149".into(),
        }],
        reserved: vec!["198.18.10.120".into()],
        dhcp: false,
        dns_servers: vec!["198.18.10.2".into()],
        routes: vec![Route {
            destination: "10.0.0.0/8".into(),
            nexthop: "198.18.10.254".into(),
        }],
        created_at: T.into(),
    }
}

fn port() -> Port {
    Port {
        id: "port-1".into(),
        name: Some("vip".into()),
        project: "default".into(),
        network_id: "net-1".into(),
        subnet_id: "subnet-1".into(),
        mac: "52:54:00:aa:bb:cc".into(),
        ipv4: "198.18.10.7".into(),
        instance_id: None,
        security_groups: vec![],
        created_at: T.into(),
    }
}

fn rule(id: &str, protocol: Protocol, ports: (Option<u16>, Option<u16>)) -> SecurityGroupRule {
    SecurityGroupRule {
        id: id.into(),
        direction: kumo_types::Direction::Ingress,
        protocol,
        port_min: ports.0,
        port_max: ports.1,
        remote_cidr: None,
        remote_group: None,
        description: None,
    }
}

fn contains_all(t: &str, want: &[&str]) {
    for s in want {
        assert!(t.contains(s), "missing {s:?} in\n{t}");
    }
}

#[test]
fn subnet_tables() {
    let t = net::subnets_table(&[subnet()]).to_string();
    contains_all(
        &t,
        &[
            "CIDR",
            "POOLS",
            "lan-a",
            "subnet-1",
            "net-1",
            "198.18.10.0/24",
            "198.18.10.100-198.18.10.149",
            "no",
        ],
    );
    let d = net::subnet_detail(&subnet()).to_string();
    contains_all(
        &d,
        &[
            "gateway",
            "none",
            "198.18.10.120",
            "198.18.10.2",
            "10.0.0.0/8 via 198.18.10.254",
        ],
    );
}

#[test]
fn port_tables() {
    let mut attached = port();
    attached.id = "port-2".into();
    attached.name = None;
    attached.instance_id = Some("i-7".into());
    attached.security_groups = vec!["sg-1".into(), "sg-2".into()];
    let t = net::ports_table(&[port(), attached.clone()]).to_string();
    contains_all(
        &t,
        &[
            "MAC",
            "INSTANCE",
            "port-1",
            "vip",
            "198.18.10.7",
            "52:54:00:aa:bb:cc",
            "i-7",
            "sg-1, sg-2",
        ],
    );
    let d = net::port_detail(&port()).to_string();
    contains_all(&d, &["none (only DHCP/ARP pass)", "subnet-1"]);
    let d = net::port_detail(&attached).to_string();
    contains_all(&d, &["i-7", "sg-1, sg-2"]);
}

#[test]
fn router_tables() {
    let r = Router {
        id: "router-1".into(),
        name: "r1".into(),
        project: "default".into(),
        subnets: vec!["subnet-1".into(), "subnet-2".into()],
        external_network: Some("net-pub".into()),
        external_ip: Some("198.19.0.2".into()),
        external_subnet: Some("subnet-pub".into()),
        created_at: T.into(),
    };
    let t = net::routers_table(std::slice::from_ref(&r)).to_string();
    contains_all(
        &t,
        &[
            "EXTERNAL IP",
            "r1",
            "router-1",
            "subnet-1",
            "subnet-2",
            "net-pub",
            "198.19.0.2",
        ],
    );
    let d = net::router_detail(&r).to_string();
    contains_all(&d, &["external subnet", "subnet-pub"]);
    let bare = Router {
        subnets: vec![],
        external_network: None,
        external_ip: None,
        external_subnet: None,
        ..r
    };
    let d = net::router_detail(&bare).to_string();
    assert!(d.contains('-'), "{d}");
}

#[test]
fn security_group_show_renders_rules_as_a_table() {
    let mut r1 = rule("sgr-1", Protocol::Tcp, (Some(80), Some(80)));
    r1.remote_cidr = Some("198.18.0.0/15".into());
    r1.description = Some("http".into());
    let mut r2 = rule("sgr-2", Protocol::Udp, (Some(8000), Some(8100)));
    r2.remote_group = Some("sg-db".into());
    let mut r3 = rule("sgr-3", Protocol::Any, (None, None));
    r3.direction = kumo_types::Direction::Egress;
    let g = SecurityGroup {
        id: "sg-1".into(),
        name: "web".into(),
        project: "default".into(),
        description: "web servers".into(),
        rules: vec![r1.clone(), r2.clone(), r3.clone()],
        created_at: T.into(),
    };
    assert_eq!(net::rule_ports(&r1), "80");
    assert_eq!(net::rule_ports(&r2), "8000-8100");
    assert_eq!(net::rule_ports(&r3), "any");
    assert_eq!(net::rule_remote(&r1), "198.18.0.0/15");
    assert_eq!(net::rule_remote(&r2), "group sg-db");
    assert_eq!(net::rule_remote(&r3), "any");

    let tables = net::security_group_tables(&g);
    assert_eq!(tables.len(), 2);
    contains_all(&tables[0].to_string(), &["web servers", "sg-1", "3"]);
    let rules = tables[1].to_string();
    contains_all(
        &rules,
        &[
            "RULE ID",
            "DIRECTION",
            "PORTS",
            "REMOTE",
            "sgr-1",
            "ingress",
            "tcp",
            "http",
            "sgr-2",
            "udp",
            "8000-8100",
            "group sg-db",
            "sgr-3",
            "egress",
        ],
    );
    // One row per rule, plus header.
    assert_eq!(
        rules.lines().filter(|l| l.contains("sgr-")).count(),
        3,
        "{rules}"
    );
    let t = net::security_groups_table(std::slice::from_ref(&g)).to_string();
    contains_all(&t, &["RULES", "web", "3", "web servers"]);
}

#[test]
fn floating_ip_tables() {
    let f = FloatingIp {
        id: "fip-1".into(),
        project: "default".into(),
        network_id: "net-pub".into(),
        subnet_id: "subnet-pub".into(),
        address: "198.19.0.10".into(),
        port_id: Some("port-1".into()),
        fixed_ip: Some("198.18.10.7".into()),
        created_at: T.into(),
    };
    let t = net::floating_ips_table(std::slice::from_ref(&f)).to_string();
    contains_all(
        &t,
        &[
            "ADDRESS",
            "FIXED IP",
            "198.19.0.10",
            "fip-1",
            "port-1",
            "198.18.10.7",
        ],
    );
    let d = net::floating_ip_detail(&FloatingIp {
        port_id: None,
        fixed_ip: None,
        ..f
    })
    .to_string();
    contains_all(&d, &["subnet-pub", "port", "-"]);
}

#[test]
fn instance_show_lists_every_nic() {
    let mut v = view(InstanceState::Running, None);
    // Built from JSON: the NIC type grows fields (e.g. `slot`) that have serde defaults.
    v.nics = serde_json::from_value::<Vec<Nic>>(serde_json::json!([
        {"port_id": "port-1", "network_id": "net-1", "subnet_id": "subnet-1",
         "mac": "52:54:00:00:00:0a", "ipv4": "198.18.0.10"},
        {"port_id": "port-2", "network_id": "net-2",
         "mac": "52:54:00:00:00:0b", "ipv4": "198.18.20.10"},
    ]))
    .expect("nics");
    let d = render::instance_detail(&v).to_string();
    contains_all(
        &d,
        &[
            "nic0 198.18.0.10 52:54:00:00:00:0a port port-1 network net-1 subnet subnet-1",
            "nic1 198.18.20.10 52:54:00:00:00:0b port port-2 network net-2 subnet -",
        ],
    );
}
