//! Parsing of the network commands and the request bodies they build.

use kumo_types::{Direction, NetworkKind, Protocol};

use super::*;
use crate::cmd::floating_ip::{self, FloatingIpCmd};
use crate::cmd::network::{self as netcmd, NetworkCmd, PortCmd, SubnetCmd};
use crate::cmd::router::{self, RouterCmd};
use crate::cmd::security_group::{self, SecurityGroupCmd};

fn err(args: &[&str]) -> String {
    match parse(args) {
        Ok(c) => panic!("{args:?} parsed: {:?}", c.cmd),
        Err(e) => e.to_string(),
    }
}

#[test]
fn network_create_with_every_option() {
    let cli = parse(&[
        "network",
        "create",
        "--name",
        "prov",
        "--kind",
        "vlan",
        "--vlan-id",
        "20",
        "--physical-network",
        "physnet1",
        "--mtu",
        "9000",
        "--external",
        "--nat",
    ])
    .expect("parses");
    let Command::Network(NetworkCmd::Create(a)) = cli.cmd else {
        panic!("wrong command: {:?}", cli.cmd)
    };
    let req = netcmd::network_request(&a);
    assert_eq!(req.name, "prov");
    assert_eq!(req.kind, NetworkKind::Vlan);
    assert_eq!(req.vlan_id, Some(20));
    assert_eq!(req.physical_network.as_deref(), Some("physnet1"));
    assert_eq!(req.mtu, Some(9000));
    assert!(req.external && req.nat);

    let cli = parse(&["network", "create", "--name", "lan"]).expect("parses");
    let Command::Network(NetworkCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let body = serde_json::to_value(netcmd::network_request(&a)).expect("json");
    assert_eq!(body["kind"], "bridge");
    assert_eq!(body["mtu"], serde_json::Value::Null);
    assert_eq!(body["external"], false);
}

#[test]
fn network_create_rejects_bad_values() {
    let e = err(&["network", "create", "--name", "x", "--kind", "gre"]);
    assert!(e.contains("--kind") && e.contains("gre"), "{e}");
    let e = err(&["network", "create", "--name", "x", "--vlan-id", "4095"]);
    assert!(e.contains("--vlan-id") && e.contains("4095"), "{e}");
    let e = err(&["network", "create", "--kind", "vxlan"]);
    assert!(e.contains("--name"), "{e}");
}

#[test]
fn network_list_show_delete() {
    assert!(matches!(
        parse(&["network", "list"]).expect("parses").cmd,
        Command::Network(NetworkCmd::List)
    ));
    let Command::Network(NetworkCmd::Delete { name }) =
        parse(&["network", "delete", "lan"]).expect("parses").cmd
    else {
        panic!("wrong command")
    };
    assert_eq!(name, "lan");
    let Command::Network(NetworkCmd::Show { name }) =
        parse(&["network", "show", "net-1"]).expect("parses").cmd
    else {
        panic!("wrong command")
    };
    assert_eq!(name, "net-1");
}

#[test]
fn subnet_create_with_every_option() {
    let cli = parse(&[
        "subnet",
        "create",
        "--name",
        "lan-a",
        "--network",
        "lan",
        "--cidr",
        "198.18.10.0/24",
        "--gateway",
        "198.18.10.1",
        "--pool",
        "198.18.10.100-198.18.10.149",
        "--pool",
        "198.18.10.200-198.18.10.249",
        "--reserved",
        "198.18.10.120",
        "--no-dhcp",
        "--dns",
        "198.18.10.1",
        "--dns",
        "198.18.10.2",
        "--route",
        "10.0.0.0/8=198.18.10.254",
    ])
    .expect("parses");
    let Command::Subnet(SubnetCmd::Create(a)) = cli.cmd else {
        panic!("wrong command: {:?}", cli.cmd)
    };
    let req = netcmd::subnet_request(&a);
    assert_eq!(req.network, "lan");
    assert_eq!(req.cidr, "198.18.10.0/24");
    assert_eq!(req.gateway.as_deref(), Some("198.18.10.1"));
    let pools = req.allocation_pools.expect("pools");
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[1].start, "198.18.10.200");
    assert_eq!(req.reserved, vec!["198.18.10.120".to_string()]);
    assert_eq!(req.dhcp, Some(false));
    assert_eq!(req.dns_servers.len(), 2);
    assert_eq!(req.routes[0].destination, "10.0.0.0/8");
    assert_eq!(req.routes[0].nexthop, "198.18.10.254");
}

#[test]
fn subnet_create_defaults_leave_choices_to_the_server() {
    let cli = parse(&[
        "subnet",
        "create",
        "--name",
        "s",
        "--network",
        "n",
        "--cidr",
        "198.18.0.0/16",
        "--gateway",
        "none",
    ])
    .expect("parses");
    let Command::Subnet(SubnetCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = netcmd::subnet_request(&a);
    assert_eq!(req.gateway.as_deref(), Some("none"));
    assert_eq!(req.allocation_pools, None);
    assert_eq!(req.dhcp, None, "DHCP on unless --no-dhcp");
}

#[test]
fn subnet_create_reports_the_bad_option() {
    let base = ["subnet", "create", "--name", "s", "--network", "n"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        err(&v)
    };
    let e = with(&["--cidr", "198.18.0.1/16"]);
    assert!(e.contains("--cidr") && e.contains("host bits set"), "{e}");
    let e = with(&["--cidr", "198.18.0.0/16", "--pool", "198.18.0.9"]);
    assert!(
        e.contains("--pool") && e.contains("expected START-END"),
        "{e}"
    );
    let e = with(&["--cidr", "198.18.0.0/16", "--route", "10.0.0.0/8"]);
    assert!(e.contains("--route") && e.contains("CIDR=NEXTHOP"), "{e}");
    let e = with(&["--cidr", "198.18.0.0/16", "--gateway", "auto"]);
    assert!(e.contains("--gateway") && e.contains("not an IPv4"), "{e}");
    let e = with(&["--cidr", "198.18.0.0/16", "--dns", "dns.example"]);
    assert!(e.contains("--dns"), "{e}");
}

#[test]
fn subnet_and_port_lists_take_a_network_filter() {
    let Command::Subnet(SubnetCmd::List { network }) =
        parse(&["subnet", "list", "--network", "lan"])
            .expect("parses")
            .cmd
    else {
        panic!("wrong command")
    };
    assert_eq!(network.as_deref(), Some("lan"));
    let Command::Port(PortCmd::List { network }) = parse(&["port", "list"]).expect("parses").cmd
    else {
        panic!("wrong command")
    };
    assert_eq!(network, None);
    assert_eq!(netcmd::filtered_path("ports", None), "ports");
    assert_eq!(
        netcmd::filtered_path("subnets", Some("net 1")),
        "subnets?network=net%201"
    );
    for cmd in [["subnet", "show", "x"], ["subnet", "delete", "x"]] {
        parse(&cmd).expect("parses");
    }
    for cmd in [["port", "show", "port-1"], ["port", "delete", "port-1"]] {
        parse(&cmd).expect("parses");
    }
}

#[test]
fn port_create() {
    let cli = parse(&[
        "port",
        "create",
        "--subnet",
        "lan-a",
        "--ip",
        "198.18.10.7",
        "--security-group",
        "web",
        "--security-group",
        "ssh",
        "--name",
        "vip",
    ])
    .expect("parses");
    let Command::Port(PortCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = netcmd::port_request(&a);
    assert_eq!(req.subnet.as_deref(), Some("lan-a"));
    assert_eq!(req.network, None);
    assert_eq!(req.ipv4.as_deref(), Some("198.18.10.7"));
    assert_eq!(
        req.security_groups,
        Some(vec!["web".to_string(), "ssh".to_string()])
    );
    assert_eq!(req.name.as_deref(), Some("vip"));

    let Command::Port(PortCmd::Create(a)) = parse(&["port", "create", "--network", "lan"])
        .expect("parses")
        .cmd
    else {
        panic!("wrong command")
    };
    let req = netcmd::port_request(&a);
    assert_eq!(req.network.as_deref(), Some("lan"));
    assert_eq!(req.security_groups, None, "the server applies `default`");
    let e = err(&["port", "create", "--ip", "198.18.10"]);
    assert!(e.contains("--ip") && e.contains("not an IPv4"), "{e}");
}

#[test]
fn router_commands() {
    let cli = parse(&[
        "router",
        "create",
        "--name",
        "r1",
        "--external-network",
        "public",
        "--subnet",
        "a",
        "--subnet",
        "b",
    ])
    .expect("parses");
    let Command::Router(RouterCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = router::router_request(&a);
    assert_eq!(req.external_network.as_deref(), Some("public"));
    assert_eq!(req.subnets, vec!["a".to_string(), "b".to_string()]);

    let Command::Router(RouterCmd::AddSubnet { router, subnet }) =
        parse(&["router", "add-subnet", "r1", "c"])
            .expect("parses")
            .cmd
    else {
        panic!("wrong command")
    };
    assert_eq!((router.as_str(), subnet.as_str()), ("r1", "c"));
    assert!(matches!(
        parse(&["router", "remove-subnet", "r1", "c"])
            .expect("parses")
            .cmd,
        Command::Router(RouterCmd::RemoveSubnet { .. })
    ));
    let e = err(&["router", "add-subnet", "r1"]);
    assert!(e.contains("<SUBNET>"), "{e}");
    for cmd in [
        &["router", "list"][..],
        &["router", "show", "r1"],
        &["router", "delete", "r1"],
    ] {
        parse(cmd).expect("parses");
    }
}

#[test]
fn security_group_create_and_rules() {
    let Command::SecurityGroup(SecurityGroupCmd::Create {
        name,
        description,
        no_default_egress,
    }) = parse(&[
        "security-group",
        "create",
        "--name",
        "web",
        "--description",
        "web servers",
        "--no-default-egress",
    ])
    .expect("parses")
    .cmd
    else {
        panic!("wrong command")
    };
    let req = security_group::group_request(&name, &description, no_default_egress);
    assert_eq!(req.description, "web servers");
    assert_eq!(req.allow_all_egress, Some(false));
    let req = security_group::group_request("x", "", false);
    assert_eq!(
        req.allow_all_egress, None,
        "the server's default: allow egress"
    );

    let rule = |extra: &[&str]| {
        let mut v = vec!["security-group", "add-rule", "web"];
        v.extend_from_slice(extra);
        let Command::SecurityGroup(SecurityGroupCmd::AddRule(a)) = parse(&v).expect("parses").cmd
        else {
            panic!("wrong command")
        };
        security_group::rule_request(&a)
    };
    let r = rule(&[
        "--direction",
        "ingress",
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--remote-cidr",
        "198.18.0.0/15",
        "--description",
        "http",
    ])
    .expect("valid");
    assert_eq!(r.direction, Direction::Ingress);
    assert_eq!(r.protocol, Protocol::Tcp);
    assert_eq!((r.port_min, r.port_max), (Some(80), Some(80)));
    assert_eq!(r.remote_cidr.as_deref(), Some("198.18.0.0/15"));
    assert_eq!(r.description.as_deref(), Some("http"));
    let r = rule(&[
        "--direction",
        "egress",
        "--protocol",
        "udp",
        "--ports",
        "8000-8100",
        "--remote-group",
        "db",
    ])
    .expect("valid");
    assert_eq!((r.port_min, r.port_max), (Some(8000), Some(8100)));
    assert_eq!(r.remote_group.as_deref(), Some("db"));
    let r = rule(&["--direction", "ingress"]).expect("valid");
    assert_eq!(r.protocol, Protocol::Any);
    assert_eq!((r.port_min, r.remote_cidr), (None, None));
    let e = rule(&[
        "--direction",
        "ingress",
        "--protocol",
        "icmp",
        "--port",
        "8",
    ])
    .expect_err("ports need tcp/udp");
    assert_eq!(
        e.to_string(),
        "--port/--ports need --protocol tcp or --protocol udp"
    );
    assert_eq!(e.exit_code(), 1);
}

#[test]
fn security_group_rule_options_conflict_precisely() {
    let base = [
        "security-group",
        "add-rule",
        "web",
        "--direction",
        "ingress",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        err(&v)
    };
    let e = with(&["--port", "80", "--ports", "80-90"]);
    assert!(e.contains("--port") && e.contains("--ports"), "{e}");
    let e = with(&["--remote-cidr", "198.18.0.0/15", "--remote-group", "db"]);
    assert!(
        e.contains("--remote-cidr") && e.contains("--remote-group"),
        "{e}"
    );
    let e = with(&["--ports", "90-80"]);
    assert!(e.contains("first port 90 is above last port 80"), "{e}");
    let e = with(&["--port", "0"]);
    assert!(e.contains("--port"), "{e}");
    let e = with(&["--protocol", "sctp"]);
    assert!(e.contains("sctp"), "{e}");
    let e = err(&["security-group", "add-rule", "web"]);
    assert!(e.contains("--direction"), "{e}");
    let Command::SecurityGroup(SecurityGroupCmd::RemoveRule { group, rule_id }) =
        parse(&["security-group", "remove-rule", "web", "sgr-1"])
            .expect("parses")
            .cmd
    else {
        panic!("wrong command")
    };
    assert_eq!((group.as_str(), rule_id.as_str()), ("web", "sgr-1"));
    for cmd in [
        &["security-group", "list"][..],
        &["security-group", "show", "web"],
        &["security-group", "delete", "web"],
    ] {
        parse(cmd).expect("parses");
    }
}

#[test]
fn floating_ip_commands() {
    let Command::FloatingIp(FloatingIpCmd::Allocate { network }) =
        parse(&["floating-ip", "allocate", "--network", "public"])
            .expect("parses")
            .cmd
    else {
        panic!("wrong command")
    };
    assert_eq!(network, "public");
    let Command::FloatingIp(FloatingIpCmd::Associate(a)) = parse(&[
        "floating-ip",
        "associate",
        "198.19.0.10",
        "--instance",
        "web",
    ])
    .expect("parses")
    .cmd
    else {
        panic!("wrong command")
    };
    let req = floating_ip::associate_request(&a);
    assert_eq!(a.fip, "198.19.0.10");
    assert_eq!((req.port, req.instance.as_deref()), (None, Some("web")));
    let e = err(&["floating-ip", "associate", "fip-1"]);
    assert!(e.contains("--port") && e.contains("--instance"), "{e}");
    let e = err(&[
        "floating-ip",
        "associate",
        "fip-1",
        "--port",
        "p",
        "--instance",
        "i",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = err(&["floating-ip", "allocate"]);
    assert!(e.contains("--network"), "{e}");
    for cmd in [
        &["floating-ip", "list"][..],
        &["floating-ip", "show", "fip-1"],
        &["floating-ip", "disassociate", "fip-1"],
        &["floating-ip", "release", "198.19.0.10"],
    ] {
        parse(cmd).expect("parses");
    }
}

#[test]
fn instance_run_with_nics_and_groups() {
    let cli = parse(&[
        "instance",
        "run",
        "--name",
        "web",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--nic",
        "network=lan,ip=198.18.10.50,sg=web+ssh",
        "--nic",
        "subnet=storage-a",
        "--security-group",
        "base",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::Run(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let req = instance::run_request(&a, None);
    let nics = req.nics.expect("nics");
    assert_eq!(nics.len(), 2);
    assert_eq!(nics[0].network.as_deref(), Some("lan"));
    assert_eq!(nics[0].ipv4.as_deref(), Some("198.18.10.50"));
    assert_eq!(
        nics[0].security_groups,
        Some(vec!["web".to_string(), "ssh".to_string()])
    );
    assert_eq!(nics[1].subnet.as_deref(), Some("storage-a"));
    assert_eq!(nics[1].security_groups, None);
    assert_eq!(req.security_groups, Some(vec!["base".to_string()]));
    assert_eq!(req.network, None);

    let e = err(&[
        "instance", "run", "--name", "w", "--image", "i", "--type", "t", "--nic", "lan",
    ]);
    assert!(
        e.contains("--nic") && e.contains("expected KEY=VALUE"),
        "{e}"
    );
    let e = err(&[
        "instance",
        "run",
        "--name",
        "w",
        "--image",
        "i",
        "--type",
        "t",
        "--network",
        "lan",
        "--nic",
        "network=lan",
    ]);
    assert!(e.contains("--network") && e.contains("--nic"), "{e}");
}

#[test]
fn instance_run_without_nics_sends_none() {
    let cli = parse(&[
        "instance", "run", "--name", "w", "--image", "i", "--type", "t",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::Run(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let body = serde_json::to_value(instance::run_request(&a, None)).expect("json");
    assert_eq!(body["nics"], serde_json::Value::Null);
    assert_eq!(body["security_groups"], serde_json::Value::Null);
}

#[test]
fn instance_attach_and_detach_nic() {
    let cli = parse(&[
        "instance",
        "attach-nic",
        "web",
        "--nic",
        "network=backup,ip=198.18.50.9,sg=web",
    ])
    .expect("parses");
    let Command::Instance(InstanceCmd::AttachNic { name, nic }) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(name, "web");
    assert_eq!(nic.network.as_deref(), Some("backup"));
    assert_eq!(nic.ipv4.as_deref(), Some("198.18.50.9"));
    assert_eq!(nic.security_groups, Some(vec!["web".to_string()]));
    let e = err(&["instance", "attach-nic", "web"]);
    assert!(e.contains("--nic"), "{e}");
    let e = err(&["instance", "attach-nic", "web", "--nic", "bogus=1"]);
    assert!(e.contains("bogus"), "{e}");

    let cli = parse(&["instance", "detach-nic", "web", "198.18.50.9"]).expect("parses");
    let Command::Instance(InstanceCmd::DetachNic { name, nic }) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!((name.as_str(), nic.as_str()), ("web", "198.18.50.9"));
    let e = err(&["instance", "detach-nic", "web"]);
    assert!(e.contains("<NIC>"), "{e}");
}

#[test]
fn port_update_and_nic_by_port() {
    let cli = parse(&[
        "port",
        "update",
        "db-port",
        "--security-group",
        "web",
        "--security-group",
        "ssh",
    ])
    .expect("parses");
    let Command::Port(PortCmd::Update(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let body = netcmd::port_update_request(&a).expect("a change");
    assert_eq!(
        body.security_groups,
        Some(vec!["web".to_string(), "ssh".to_string()])
    );
    assert_eq!(body.name, None);
    let cli = parse(&["port", "update", "p", "--no-security-groups"]).expect("parses");
    let Command::Port(PortCmd::Update(a)) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(
        netcmd::port_update_request(&a).and_then(|b| b.security_groups),
        Some(vec![])
    );
    let cli = parse(&["port", "update", "p"]).expect("parses");
    let Command::Port(PortCmd::Update(a)) = cli.cmd else {
        panic!("wrong command")
    };
    assert!(
        netcmd::port_update_request(&a).is_none(),
        "nothing to change"
    );
    let e = err(&[
        "port",
        "update",
        "p",
        "--security-group",
        "web",
        "--no-security-groups",
    ]);
    assert!(e.contains("--no-security-groups"), "{e}");

    let nic = crate::syntax::parse_nic("port=db-port").expect("parses");
    assert_eq!(nic.port.as_deref(), Some("db-port"));
    assert!(crate::syntax::parse_nic("port=a,port=b").is_err());
}
