//! EC2 ids ⇄ kumo ids: pure bijections, in one place for every EC2 action module.
//!
//! kumo's ids already look like AWS's (a prefix, a dash, 17 lowercase hex digits), so most map to
//! themselves: `i-` instances, `ami-` images, `key-` key pairs, `sg-` security groups, `subnet-`
//! subnets, `eni-` ports (network interfaces), `vol-` volumes, `snap-` snapshots, `eipalloc-`
//! floating IPs. A VPC is a kumo network: `vpc-<hex>` is `net-<hex>`, and the network's main route
//! table and default network ACL are `rtb-<hex>` and `acl-<hex>` with the same hex digits (kumo has
//! no records for them: they are views of the network).
//!
//! The account id EC2 shows (`ownerId`, STS `Account`) is a 12-digit number derived from the
//! project name ([`account_id`]): stable, and the same on every server.

use sha2::{Digest, Sha256};

/// The kumo network id of a VPC id (`vpc-<hex>` → `net-<hex>`); `None` if `vpc_id` is not one.
pub fn network_of_vpc(vpc_id: &str) -> Option<String> {
    swap(vpc_id, "vpc", "net")
}

/// The VPC id of a kumo network (`net-<hex>` → `vpc-<hex>`); `None` if `network_id` is not one.
pub fn vpc_of_network(network_id: &str) -> Option<String> {
    swap(network_id, "net", "vpc")
}

/// The main route table of a network (`net-<hex>` → `rtb-<hex>`).
pub fn route_table_of_network(network_id: &str) -> Option<String> {
    swap(network_id, "net", "rtb")
}

/// The network of a main route table id (`rtb-<hex>` → `net-<hex>`).
pub fn network_of_route_table(rtb_id: &str) -> Option<String> {
    swap(rtb_id, "rtb", "net")
}

/// The default network ACL of a network (`net-<hex>` → `acl-<hex>`).
pub fn acl_of_network(network_id: &str) -> Option<String> {
    swap(network_id, "net", "acl")
}

/// The network of a default network ACL id (`acl-<hex>` → `net-<hex>`).
pub fn network_of_acl(acl_id: &str) -> Option<String> {
    swap(acl_id, "acl", "net")
}

/// The kumo id an EC2 id names: the network for `vpc-`/`rtb-`/`acl-`, else the id itself.
pub fn kumo_id(ec2_id: &str) -> String {
    network_of_vpc(ec2_id)
        .or_else(|| network_of_route_table(ec2_id))
        .or_else(|| network_of_acl(ec2_id))
        .unwrap_or_else(|| ec2_id.to_string())
}

/// The EC2 id of a kumo id: `vpc-` for a network, else the id itself.
pub fn ec2_id(kumo_id: &str) -> String {
    vpc_of_network(kumo_id).unwrap_or_else(|| kumo_id.to_string())
}

/// Whether `id` is `<prefix>-` followed by 17 lowercase hex digits.
pub fn is(prefix: &str, id: &str) -> bool {
    hex_of(id, prefix).is_some()
}

/// EC2's resource type of an id, as `DescribeTags` and `TagSpecification` name it
/// (`instance`, `vpc`, …); `None` for an id of no known kind.
pub fn resource_type(id: &str) -> Option<&'static str> {
    const KINDS: [(&str, &str); 12] = [
        ("i", "instance"),
        ("ami", "image"),
        ("key", "key-pair"),
        ("sg", "security-group"),
        ("subnet", "subnet"),
        ("eni", "network-interface"),
        ("vol", "volume"),
        ("snap", "snapshot"),
        ("eipalloc", "elastic-ip"),
        ("vpc", "vpc"),
        ("rtb", "route-table"),
        ("acl", "network-acl"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| is(prefix, id))
        .map(|(_, kind)| *kind)
}

/// The 12-digit account id of a project (stable: a hash of the name, never starting with 0).
pub fn account_id(project: &str) -> String {
    let d = Sha256::digest(project.as_bytes());
    let mut n = 0u64;
    for b in &d[..8] {
        n = (n << 8) | u64::from(*b);
    }
    format!("{}", 100_000_000_000 + n % 900_000_000_000)
}

/// A reservation id (`r-<hex>`) with the hex digits of `instance_id` (the first instance of a
/// launch names its reservation).
pub fn reservation_of(instance_id: &str) -> String {
    match hex_of(instance_id, "i") {
        Some(h) => format!("r-{h}"),
        None => format!("r-{instance_id}"),
    }
}

fn hex_of<'a>(id: &'a str, prefix: &str) -> Option<&'a str> {
    let hex = id.strip_prefix(prefix)?.strip_prefix('-')?;
    (hex.len() == 17
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

fn swap(id: &str, from: &str, to: &str) -> Option<String> {
    hex_of(id, from).map(|h| format!("{to}-{h}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpc_route_table_and_acl_are_views_of_a_network() {
        let net = "net-0123456789abcdef0";
        let vpc = vpc_of_network(net).expect("vpc");
        assert_eq!(vpc, "vpc-0123456789abcdef0");
        assert_eq!(network_of_vpc(&vpc).as_deref(), Some(net));
        let rtb = route_table_of_network(net).expect("rtb");
        assert_eq!(rtb, "rtb-0123456789abcdef0");
        assert_eq!(network_of_route_table(&rtb).as_deref(), Some(net));
        let acl = acl_of_network(net).expect("acl");
        assert_eq!(network_of_acl(&acl).as_deref(), Some(net));
        for id in [&vpc, &rtb, &acl] {
            assert_eq!(kumo_id(id), net);
        }
        assert_eq!(ec2_id(net), vpc);
        assert_eq!(ec2_id("i-0123456789abcdef0"), "i-0123456789abcdef0");
        assert_eq!(kumo_id("sg-0123456789abcdef0"), "sg-0123456789abcdef0");
    }

    #[test]
    fn malformed_ids_map_to_nothing() {
        for bad in [
            "vpc-123",
            "vpc-0123456789ABCDEF0",
            "vpc-0123456789abcdef0x",
            "vpc0123456789abcdef0",
            "net-0123456789abcdeg0",
            "",
        ] {
            assert_eq!(network_of_vpc(bad), None, "{bad}");
            assert_eq!(kumo_id(bad), bad);
        }
        assert_eq!(vpc_of_network("vpc-0123456789abcdef0"), None);
    }

    #[test]
    fn resource_types_and_accounts() {
        assert_eq!(resource_type("i-0123456789abcdef0"), Some("instance"));
        assert_eq!(resource_type("vpc-0123456789abcdef0"), Some("vpc"));
        assert_eq!(
            resource_type("eipalloc-0123456789abcdef0"),
            Some("elastic-ip")
        );
        assert_eq!(resource_type("net-0123456789abcdef0"), None);
        assert_eq!(resource_type("i-1"), None);
        let a = account_id("default");
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(a, account_id("default"), "stable");
        assert_ne!(a, account_id("p1"));
        assert_eq!(reservation_of("i-0123456789abcdef0"), "r-0123456789abcdef0");
    }
}
