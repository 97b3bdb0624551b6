//! The `--nic`, `--pool`, `--route`, `--ports`, `--gateway` and CIDR mini-syntaxes.

use kumo_types::{IpRange, NicRequest, Route};

use crate::syntax::{
    parse_cidr, parse_gateway, parse_nic, parse_pool, parse_port_range, parse_route,
};

#[test]
fn pool_parses_and_rejects_precisely() {
    assert_eq!(
        parse_pool("198.18.0.100-198.18.0.199"),
        Ok(IpRange {
            start: "198.18.0.100".into(),
            end: "198.18.0.199".into()
        })
    );
    assert_eq!(
        parse_pool("198.18.0.5-198.18.0.5").map(|r| r.end),
        Ok("198.18.0.5".into())
    );
    assert_eq!(
        parse_pool("198.18.0.100"),
        Err("`198.18.0.100`: expected START-END, e.g. 198.18.0.100-198.18.0.199".into())
    );
    assert_eq!(
        parse_pool("198.18.0.300-198.18.0.1"),
        Err("start `198.18.0.300` is not an IPv4 address".into())
    );
    assert_eq!(
        parse_pool("198.18.0.1-x"),
        Err("end `x` is not an IPv4 address".into())
    );
    assert_eq!(
        parse_pool("198.18.0.9-198.18.0.2"),
        Err("start 198.18.0.9 is after end 198.18.0.2".into())
    );
}

#[test]
fn cidr_must_be_a_network_address() {
    assert_eq!(parse_cidr("198.18.10.0/24"), Ok("198.18.10.0/24".into()));
    assert_eq!(parse_cidr("0.0.0.0/0"), Ok("0.0.0.0/0".into()));
    assert_eq!(parse_cidr("198.18.10.7/32"), Ok("198.18.10.7/32".into()));
    assert_eq!(
        parse_cidr("198.18.10.1/24"),
        Err("`198.18.10.1/24` has host bits set (did you mean 198.18.10.0/24?)".into())
    );
    assert_eq!(
        parse_cidr("198.18.10.0/33"),
        Err("prefix length `33` is not a number from 0 to 32".into())
    );
    assert_eq!(
        parse_cidr("198.18.10.0"),
        Err("`198.18.10.0`: expected an IPv4 CIDR such as 10.0.0.0/24".into())
    );
    assert_eq!(
        parse_cidr("fd00::/64"),
        Err("network address `fd00::` is not an IPv4 address".into())
    );
}

#[test]
fn route_is_cidr_equals_nexthop() {
    assert_eq!(
        parse_route("10.0.0.0/8=198.18.0.1"),
        Ok(Route {
            destination: "10.0.0.0/8".into(),
            nexthop: "198.18.0.1".into()
        })
    );
    assert_eq!(
        parse_route("10.0.0.0/8"),
        Err("`10.0.0.0/8`: expected CIDR=NEXTHOP, e.g. 10.0.0.0/8=198.18.0.1".into())
    );
    assert_eq!(
        parse_route("10.0.0.0/8=gw"),
        Err("next hop `gw` is not an IPv4 address".into())
    );
    assert_eq!(
        parse_route("10.1.0.0/8=198.18.0.1"),
        Err("`10.1.0.0/8` has host bits set (did you mean 10.0.0.0/8?)".into())
    );
}

#[test]
fn port_range_is_min_dash_max() {
    assert_eq!(parse_port_range("8000-8100"), Ok((8000, 8100)));
    assert_eq!(parse_port_range("22-22"), Ok((22, 22)));
    assert_eq!(
        parse_port_range("8000"),
        Err("`8000`: expected MIN-MAX, e.g. 8000-8100".into())
    );
    assert_eq!(
        parse_port_range("0-10"),
        Err("port `0` is not a number from 1 to 65535".into())
    );
    assert_eq!(
        parse_port_range("10-70000"),
        Err("port `70000` is not a number from 1 to 65535".into())
    );
    assert_eq!(
        parse_port_range("9000-8000"),
        Err("first port 9000 is above last port 8000".into())
    );
}

#[test]
fn gateway_is_an_address_or_none() {
    assert_eq!(parse_gateway("none"), Ok("none".into()));
    assert_eq!(parse_gateway("NONE"), Ok("none".into()));
    assert_eq!(parse_gateway("198.18.0.1"), Ok("198.18.0.1".into()));
    assert_eq!(
        parse_gateway("router"),
        Err("gateway `router` is not an IPv4 address".into())
    );
}

#[test]
fn nic_spec_parses_every_key() {
    assert_eq!(
        parse_nic("network=lan,subnet=lan-a,ip=198.18.0.50,sg=web+ssh"),
        Ok(NicRequest {
            network: Some("lan".into()),
            subnet: Some("lan-a".into()),
            ipv4: Some("198.18.0.50".into()),
            security_groups: Some(vec!["web".into(), "ssh".into()]),
            port: None,
        })
    );
    assert_eq!(
        parse_nic("network=lan"),
        Ok(NicRequest {
            network: Some("lan".into()),
            ..Default::default()
        })
    );
    // Without a network the server uses the default one, as for a bare port.
    assert_eq!(
        parse_nic("sg=web").map(|n| n.security_groups),
        Ok(Some(vec!["web".into()]))
    );
}

#[test]
fn nic_spec_errors_are_precise() {
    for (spec, want) in [
        (
            "lan",
            "`lan`: expected KEY=VALUE (keys: network, subnet, ip, sg, port)",
        ),
        (
            "network=lan,mac=52:54:00:00:00:01",
            "unknown key `mac` (keys: network, subnet, ip, sg, port)",
        ),
        ("network=a,network=b", "`network` is given twice"),
        ("network=", "`network=` needs a value"),
        (
            "network=lan,ip=198.18.0",
            "address `198.18.0` is not an IPv4 address",
        ),
        (
            "network=lan,sg=web+",
            "`sg=web+`: empty group name (separate groups with +)",
        ),
        (
            "",
            "``: expected KEY=VALUE (keys: network, subnet, ip, sg, port)",
        ),
    ] {
        assert_eq!(parse_nic(spec), Err(want.to_string()), "spec {spec:?}");
    }
}
