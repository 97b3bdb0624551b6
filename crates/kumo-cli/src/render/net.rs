//! Tables for the network resources: subnets, ports, routers, security groups (with their rules) and
//! floating IPs. Pure: value in, table out. Networks themselves are in the parent module.

use comfy_table::Table;
use kumo_types::{FloatingIp, Port, Router, SecurityGroup, SecurityGroupRule, Subnet};

use super::{detail, opt, table, wire, yes_no};

fn list_or_dash(v: &[String], sep: &str) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(sep)
    }
}

/// `198.18.0.10-198.18.0.99, …`.
fn pools(s: &Subnet) -> Vec<String> {
    s.allocation_pools
        .iter()
        .map(|p| format!("{}-{}", p.start, p.end))
        .collect()
}

pub fn subnets_table(items: &[Subnet]) -> Table {
    let mut t = table(&[
        "NAME", "ID", "NETWORK", "CIDR", "GATEWAY", "DHCP", "POOLS", "CREATED",
    ]);
    for s in items {
        t.add_row(vec![
            s.name.clone(),
            s.id.clone(),
            s.network_id.clone(),
            s.cidr.clone(),
            opt(&s.gateway),
            yes_no(s.dhcp),
            list_or_dash(&pools(s), "\n"),
            s.created_at.clone(),
        ]);
    }
    t
}

pub fn subnet_detail(s: &Subnet) -> Table {
    let routes: Vec<String> = s
        .routes
        .iter()
        .map(|r| format!("{} via {}", r.destination, r.nexthop))
        .collect();
    detail(vec![
        ("name", s.name.clone()),
        ("id", s.id.clone()),
        ("project", s.project.clone()),
        ("network", s.network_id.clone()),
        ("cidr", s.cidr.clone()),
        (
            "gateway",
            s.gateway.clone().unwrap_or_else(|| "none".into()),
        ),
        ("dhcp", yes_no(s.dhcp)),
        ("allocation pools", list_or_dash(&pools(s), "\n")),
        ("reserved", list_or_dash(&s.reserved, ", ")),
        ("dns servers", list_or_dash(&s.dns_servers, ", ")),
        ("routes", list_or_dash(&routes, "\n")),
        ("created", s.created_at.clone()),
    ])
}

pub fn ports_table(items: &[Port]) -> Table {
    let mut t = table(&[
        "ID",
        "NAME",
        "IPV4",
        "MAC",
        "NETWORK",
        "SUBNET",
        "INSTANCE",
        "SECURITY GROUPS",
    ]);
    for p in items {
        t.add_row(vec![
            p.id.clone(),
            opt(&p.name),
            p.ipv4.clone(),
            p.mac.clone(),
            p.network_id.clone(),
            p.subnet_id.clone(),
            opt(&p.instance_id),
            list_or_dash(&p.security_groups, ", "),
        ]);
    }
    t
}

pub fn port_detail(p: &Port) -> Table {
    detail(vec![
        ("id", p.id.clone()),
        ("name", opt(&p.name)),
        ("project", p.project.clone()),
        ("network", p.network_id.clone()),
        ("subnet", p.subnet_id.clone()),
        ("ipv4", p.ipv4.clone()),
        ("mac", p.mac.clone()),
        ("instance", opt(&p.instance_id)),
        (
            "security groups",
            if p.security_groups.is_empty() {
                "none (only DHCP/ARP pass)".into()
            } else {
                p.security_groups.join(", ")
            },
        ),
        ("created", p.created_at.clone()),
    ])
}

pub fn routers_table(items: &[Router]) -> Table {
    let mut t = table(&[
        "NAME",
        "ID",
        "SUBNETS",
        "EXTERNAL NETWORK",
        "EXTERNAL IP",
        "CREATED",
    ]);
    for r in items {
        t.add_row(vec![
            r.name.clone(),
            r.id.clone(),
            list_or_dash(&r.subnets, "\n"),
            opt(&r.external_network),
            opt(&r.external_ip),
            r.created_at.clone(),
        ]);
    }
    t
}

pub fn router_detail(r: &Router) -> Table {
    detail(vec![
        ("name", r.name.clone()),
        ("id", r.id.clone()),
        ("project", r.project.clone()),
        ("subnets", list_or_dash(&r.subnets, "\n")),
        ("external network", opt(&r.external_network)),
        ("external subnet", opt(&r.external_subnet)),
        ("external ip", opt(&r.external_ip)),
        ("created", r.created_at.clone()),
    ])
}

pub fn security_groups_table(items: &[SecurityGroup]) -> Table {
    let mut t = table(&["NAME", "ID", "RULES", "DESCRIPTION", "CREATED"]);
    for g in items {
        t.add_row(vec![
            g.name.clone(),
            g.id.clone(),
            g.rules.len().to_string(),
            g.description.clone(),
            g.created_at.clone(),
        ]);
    }
    t
}

pub fn security_group_detail(g: &SecurityGroup) -> Table {
    detail(vec![
        ("name", g.name.clone()),
        ("id", g.id.clone()),
        ("project", g.project.clone()),
        ("description", g.description.clone()),
        ("rules", g.rules.len().to_string()),
        ("created", g.created_at.clone()),
    ])
}

/// `80`, `8000-8100`, or `any`.
pub fn rule_ports(r: &SecurityGroupRule) -> String {
    match (r.port_min, r.port_max) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        (None, _) => "any".into(),
    }
}

/// `198.18.0.0/24`, `group sg-…`, or `any`.
pub fn rule_remote(r: &SecurityGroupRule) -> String {
    match (&r.remote_cidr, &r.remote_group) {
        (Some(c), _) => c.clone(),
        (None, Some(g)) => format!("group {g}"),
        (None, None) => "any".into(),
    }
}

pub fn rules_table(rules: &[SecurityGroupRule]) -> Table {
    let mut t = table(&[
        "RULE ID",
        "DIRECTION",
        "PROTOCOL",
        "PORTS",
        "REMOTE",
        "DESCRIPTION",
    ]);
    for r in rules {
        t.add_row(vec![
            r.id.clone(),
            wire(&r.direction),
            wire(&r.protocol),
            rule_ports(r),
            rule_remote(r),
            opt(&r.description),
        ]);
    }
    t
}

/// `security-group show`: the group, then its rules.
pub fn security_group_tables(g: &SecurityGroup) -> Vec<Table> {
    vec![security_group_detail(g), rules_table(&g.rules)]
}

pub fn floating_ips_table(items: &[FloatingIp]) -> Table {
    let mut t = table(&["ADDRESS", "ID", "NETWORK", "PORT", "FIXED IP", "CREATED"]);
    for f in items {
        t.add_row(vec![
            f.address.clone(),
            f.id.clone(),
            f.network_id.clone(),
            opt(&f.port_id),
            opt(&f.fixed_ip),
            f.created_at.clone(),
        ]);
    }
    t
}

pub fn floating_ip_detail(f: &FloatingIp) -> Table {
    detail(vec![
        ("address", f.address.clone()),
        ("id", f.id.clone()),
        ("project", f.project.clone()),
        ("network", f.network_id.clone()),
        ("subnet", f.subnet_id.clone()),
        ("port", opt(&f.port_id)),
        ("fixed ip", opt(&f.fixed_ip)),
        ("created", f.created_at.clone()),
    ])
}
