//! Security group rules between EC2's `IpPermissions` and kumo's rules, as pure functions.
//!
//! One EC2 permission (a protocol, a port range, several IPv4 ranges and source groups) is one
//! kumo rule per range and per group. Back, kumo's rules are grouped by (protocol, ports) into
//! permissions again. The mapping:
//!
//! | EC2 | kumo |
//! |---|---|
//! | `IpProtocol` `-1` / `all` (ports ignored) | `any` |
//! | `tcp` / `6`, `udp` / `17` with `FromPort`–`ToPort` | `tcp` / `udp`, `port_min`–`port_max`; `0`–`65535` is every port (no range) |
//! | `icmp` / `1` with `-1`/`-1` (or no ports) | `icmp` (all of ICMP; kumo cannot pick ICMP types) |
//! | `IpRanges.N.CidrIp` | `remote_cidr` (a rule without a peer is shown as `0.0.0.0/0`) |
//! | `Groups.N.GroupId` / `GroupName` | `remote_group` |
//! | `Ipv6Ranges`, `PrefixListIds`, other protocols, ICMP types | refused (kumo is IPv4 only and filters tcp, udp, icmp or everything) |

use kumo_ec2::{Ec2Error, Node, Params};
use kumo_types::{Direction, Protocol, RuleRequest, SecurityGroupRule};

use crate::ipam::Cidr;

/// A peer of a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An IPv4 CIDR.
    Cidr(String),
    /// A security group, by id or (legacy, `Groups.N.GroupName`) by name.
    GroupId(String),
    GroupName(String),
    /// An IPv6 range or a prefix list: kumo has no such rules.
    Unsupported(String),
}

/// One peer of one permission: what becomes one kumo rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub protocol: Protocol,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    pub peer: Peer,
    pub description: Option<String>,
}

/// `IpProtocol` as kumo's protocol.
pub fn protocol(name: &str, value: &str) -> Result<Protocol, Ec2Error> {
    match value.to_ascii_lowercase().as_str() {
        "-1" | "all" => Ok(Protocol::Any),
        "tcp" | "6" => Ok(Protocol::Tcp),
        "udp" | "17" => Ok(Protocol::Udp),
        "icmp" | "1" => Ok(Protocol::Icmp),
        _ => Err(Ec2Error::invalid_parameter_value(
            name,
            value,
            "kumo security groups filter tcp, udp, icmp or every protocol (-1).",
        )),
    }
}

/// The kumo port range of an EC2 permission's `FromPort`/`ToPort` for `protocol`.
pub fn ports(
    name: &str,
    protocol: Protocol,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(Option<u16>, Option<u16>), Ec2Error> {
    let bad = |why: &str| {
        Ec2Error::invalid_parameter_value(
            name,
            &format!("{}-{}", from.unwrap_or(-1), to.unwrap_or(-1)),
            why,
        )
    };
    match protocol {
        Protocol::Any => Ok((None, None)),
        Protocol::Icmp => match (from, to) {
            (None | Some(-1), None | Some(-1)) => Ok((None, None)),
            _ => Err(bad(
                "kumo allows all of ICMP or none of it: use FromPort=-1 and ToPort=-1.",
            )),
        },
        Protocol::Tcp | Protocol::Udp => match (from, to) {
            (None, None) | (Some(0), Some(65535)) => Ok((None, None)),
            (Some(a), Some(b)) if (1..=65535).contains(&a) && (a..=65535).contains(&b) => {
                Ok((u16::try_from(a).ok(), u16::try_from(b).ok()))
            }
            _ => Err(bad(
                "A port range is FromPort..ToPort within 1-65535 (0-65535 for every port).",
            )),
        },
    }
}

/// The permissions of a request: `IpPermissions.N`, or the legacy top-level form (`IpProtocol`,
/// `FromPort`, `ToPort`, `CidrIp`, `SourceSecurityGroupName`). Each is expanded into one
/// [`Spec`] per peer; a permission without a peer is refused.
pub fn read(params: &Params) -> Result<Vec<Spec>, Ec2Error> {
    let root = params.root();
    let mut out = Vec::new();
    for perm in root.list("IpPermissions")? {
        out.extend(permission(&perm)?);
    }
    let legacy = [
        "IpProtocol",
        "FromPort",
        "ToPort",
        "CidrIp",
        "SourceSecurityGroupName",
    ]
    .iter()
    .any(|m| root.has(m));
    if legacy {
        if !out.is_empty() {
            return Err(Ec2Error::invalid_parameter_combination(
                "IpPermissions",
                "IpProtocol",
            ));
        }
        let proto = protocol("IpProtocol", &root.str("IpProtocol")?)?;
        let (min, max) = ports(
            "FromPort",
            proto,
            root.opt_i64("FromPort", -1..=65535)?,
            root.opt_i64("ToPort", -1..=65535)?,
        )?;
        if let Some(owner) = root.opt_str("SourceSecurityGroupOwnerId") {
            let _ = owner; // the caller's own account: groups resolve in its project anyway
        }
        let peer = match (
            root.opt_str("CidrIp"),
            root.opt_str("SourceSecurityGroupName"),
        ) {
            (Some(c), None) => Peer::Cidr(cidr("CidrIp", &c)?),
            (None, Some(g)) => Peer::GroupName(g),
            (Some(_), Some(_)) => {
                return Err(Ec2Error::invalid_parameter_combination(
                    "CidrIp",
                    "SourceSecurityGroupName",
                ));
            }
            (None, None) => return Err(Ec2Error::missing_parameter("CidrIp")),
        };
        out.push(Spec {
            protocol: proto,
            port_min: min,
            port_max: max,
            peer,
            description: None,
        });
    }
    if out.is_empty() {
        return Err(Ec2Error::missing_parameter("IpPermissions"));
    }
    Ok(out)
}

fn cidr(name: &str, value: &str) -> Result<String, Ec2Error> {
    let c = Cidr::parse_any(name, value).map_err(|_| {
        Ec2Error::invalid_parameter_value(name, value, "Expected an IPv4 CIDR such as 10.0.0.0/16.")
    })?;
    Ok(format!("{}/{}", c.network(), c.prefix))
}

fn permission(perm: &Node<'_>) -> Result<Vec<Spec>, Ec2Error> {
    let proto = protocol(&perm.path("IpProtocol"), &perm.str("IpProtocol")?)?;
    let (min, max) = ports(
        &perm.path("FromPort"),
        proto,
        perm.opt_i64("FromPort", -1..=65535)?,
        perm.opt_i64("ToPort", -1..=65535)?,
    )?;
    let spec = |peer: Peer, description: Option<String>| Spec {
        protocol: proto,
        port_min: min,
        port_max: max,
        peer,
        description,
    };
    let mut out = Vec::new();
    for r in perm.list("IpRanges")? {
        let c = cidr(&r.path("CidrIp"), &r.str("CidrIp")?)?;
        out.push(spec(Peer::Cidr(c), r.opt_str("Description")));
    }
    for g in perm.list("Groups")? {
        let _ = g.opt_str("UserId");
        let _ = g.opt_str("VpcId");
        let peer = match (g.opt_str("GroupId"), g.opt_str("GroupName")) {
            (Some(id), _) => Peer::GroupId(id),
            (None, Some(name)) => Peer::GroupName(name),
            (None, None) => return Err(Ec2Error::missing_parameter(&g.path("GroupId"))),
        };
        out.push(spec(peer, g.opt_str("Description")));
    }
    for r in perm.list("Ipv6Ranges")? {
        let c = r.str("CidrIpv6")?;
        let _ = r.opt_str("Description");
        out.push(spec(Peer::Unsupported(c), None));
    }
    for r in perm.list("PrefixListIds")? {
        let id = r.str("PrefixListId")?;
        let _ = r.opt_str("Description");
        out.push(spec(Peer::Unsupported(id), None));
    }
    if out.is_empty() {
        return Err(Ec2Error::missing_parameter(&format!(
            "{}.IpRanges or {}.Groups",
            perm.name(),
            perm.name()
        )));
    }
    Ok(out)
}

/// The kumo rule request of a spec whose group peer is resolved to `group` (an id).
pub fn request(direction: Direction, s: &Spec, group: Option<String>) -> RuleRequest {
    RuleRequest {
        direction,
        protocol: s.protocol,
        port_min: s.port_min,
        port_max: s.port_max,
        remote_cidr: match &s.peer {
            Peer::Cidr(c) => Some(c.clone()),
            _ => None,
        },
        remote_group: group,
        description: s.description.clone(),
    }
}

/// Whether kumo rule `r` is what spec `s` (group resolved to `group`) names.
pub fn same(r: &SecurityGroupRule, direction: Direction, s: &Spec, group: Option<&str>) -> bool {
    let any = |c: Option<&str>| c.is_none_or(|c| c == "0.0.0.0/0");
    let peer_same = match &s.peer {
        Peer::Cidr(c) => {
            r.remote_group.is_none()
                && (r.remote_cidr.as_deref() == Some(c.as_str())
                    || c == "0.0.0.0/0" && any(r.remote_cidr.as_deref()))
        }
        Peer::GroupId(_) | Peer::GroupName(_) => {
            r.remote_cidr.is_none() && r.remote_group.as_deref() == group
        }
        Peer::Unsupported(_) => false,
    };
    r.direction == direction
        && r.protocol == s.protocol
        && r.port_min == s.port_min
        && r.port_max.or(r.port_min) == s.port_max.or(s.port_min)
        && peer_same
}

/// EC2's `ipProtocol` of a kumo protocol.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Any => "-1",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    }
}

/// EC2's `fromPort`/`toPort` of a kumo rule (`None` for every protocol: EC2 omits them).
pub fn port_range(r: &SecurityGroupRule) -> Option<(i64, i64)> {
    match r.protocol {
        Protocol::Any => None,
        Protocol::Icmp => Some((-1, -1)),
        Protocol::Tcp | Protocol::Udp => Some(match (r.port_min, r.port_max.or(r.port_min)) {
            (Some(a), Some(b)) => (i64::from(a), i64::from(b)),
            _ => (0, 65535),
        }),
    }
}

/// The CIDR EC2 shows for a kumo rule's peer: its CIDR, or `0.0.0.0/0` for any peer.
pub fn shown_cidr(r: &SecurityGroupRule) -> Option<String> {
    match (&r.remote_cidr, &r.remote_group) {
        (_, Some(_)) => None,
        (Some(c), None) => Some(c.clone()),
        (None, None) => Some("0.0.0.0/0".into()),
    }
}

/// One EC2 permission made of kumo rules: a protocol, a port range, and the rules (one per peer).
pub struct Permission<'a> {
    pub protocol: Protocol,
    pub ports: Option<(i64, i64)>,
    pub rules: Vec<&'a SecurityGroupRule>,
}

/// kumo rules of one direction grouped into EC2 permissions by (protocol, ports), in the order
/// their first rule appears.
pub fn permissions(rules: &[SecurityGroupRule], direction: Direction) -> Vec<Permission<'_>> {
    let mut out: Vec<Permission<'_>> = Vec::new();
    for r in rules.iter().filter(|r| r.direction == direction) {
        let (protocol, ports) = (r.protocol, port_range(r));
        match out
            .iter_mut()
            .find(|p| p.protocol == protocol && p.ports == ports)
        {
            Some(p) => p.rules.push(r),
            None => out.push(Permission {
                protocol,
                ports,
                rules: vec![r],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (*k, *v))).expect("params")
    }

    #[test]
    fn permissions_expand_into_one_spec_per_peer() {
        let p = params(&[
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "22"),
            ("IpPermissions.1.ToPort", "22"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/16"),
            ("IpPermissions.1.IpRanges.1.Description", "ssh"),
            ("IpPermissions.1.IpRanges.2.CidrIp", "0.0.0.0/0"),
            ("IpPermissions.1.Groups.1.GroupId", "sg-1"),
            ("IpPermissions.2.IpProtocol", "-1"),
            ("IpPermissions.2.FromPort", "0"),
            ("IpPermissions.2.ToPort", "0"),
            ("IpPermissions.2.Ipv6Ranges.1.CidrIpv6", "::/0"),
        ]);
        let specs = read(&p).expect("specs");
        assert!(p.finish().is_ok());
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0].port_min, Some(22));
        assert_eq!(specs[0].peer, Peer::Cidr("10.0.0.0/16".into()));
        assert_eq!(specs[0].description.as_deref(), Some("ssh"));
        assert_eq!(specs[2].peer, Peer::GroupId("sg-1".into()));
        assert_eq!(specs[3].protocol, Protocol::Any);
        assert_eq!(specs[3].peer, Peer::Unsupported("::/0".into()));
    }

    #[test]
    fn legacy_form_and_refusals() {
        let p = params(&[
            ("IpProtocol", "udp"),
            ("FromPort", "53"),
            ("ToPort", "53"),
            ("CidrIp", "10.1.0.0/16"),
        ]);
        let s = read(&p).expect("legacy");
        assert_eq!(
            (s[0].protocol, s[0].port_min, s[0].port_max),
            (Protocol::Udp, Some(53), Some(53))
        );
        for bad in [
            vec![
                ("IpPermissions.1.IpProtocol", "gre"),
                ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
            ],
            vec![
                ("IpPermissions.1.IpProtocol", "icmp"),
                ("IpPermissions.1.FromPort", "8"),
                ("IpPermissions.1.ToPort", "0"),
                ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
            ],
            vec![
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.FromPort", "22"),
                ("IpPermissions.1.ToPort", "22"),
            ],
            vec![
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.5/8"),
            ],
            vec![],
        ] {
            assert!(read(&params(&bad)).is_err(), "{bad:?}");
        }
    }

    fn rule(
        dir: Direction,
        proto: Protocol,
        ports: Option<(u16, u16)>,
        cidr: Option<&str>,
    ) -> SecurityGroupRule {
        SecurityGroupRule {
            id: "sgr-1".into(),
            direction: dir,
            protocol: proto,
            port_min: ports.map(|p| p.0),
            port_max: ports.map(|p| p.1),
            remote_cidr: cidr.map(str::to_string),
            remote_group: None,
            description: None,
        }
    }

    #[test]
    fn rules_round_trip_and_match() {
        let all_egress = rule(Direction::Egress, Protocol::Any, None, None);
        let revoke = Spec {
            protocol: Protocol::Any,
            port_min: None,
            port_max: None,
            peer: Peer::Cidr("0.0.0.0/0".into()),
            description: None,
        };
        assert!(same(&all_egress, Direction::Egress, &revoke, None));
        assert!(!same(&all_egress, Direction::Ingress, &revoke, None));
        assert_eq!(shown_cidr(&all_egress).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(port_range(&all_egress), None);
        let ssh = rule(
            Direction::Ingress,
            Protocol::Tcp,
            Some((22, 22)),
            Some("10.0.0.0/16"),
        );
        let web = rule(
            Direction::Ingress,
            Protocol::Tcp,
            Some((22, 22)),
            Some("10.9.0.0/16"),
        );
        let any_tcp = rule(Direction::Ingress, Protocol::Tcp, None, Some("10.0.0.0/16"));
        let rules = [ssh, web, any_tcp, all_egress];
        let perms = permissions(&rules, Direction::Ingress);
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[0].rules.len(), 2);
        assert_eq!(perms[1].ports, Some((0, 65535)));
        assert_eq!(
            ports("p", Protocol::Tcp, Some(0), Some(65535)).expect("all"),
            (None, None)
        );
        assert!(ports("p", Protocol::Tcp, Some(0), Some(80)).is_err());
        assert_eq!(
            ports("p", Protocol::Any, Some(0), Some(0)).expect("ignored"),
            (None, None)
        );
    }
}
