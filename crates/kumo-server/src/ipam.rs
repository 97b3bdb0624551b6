//! IPv4 address management as pure functions. The app layer makes an allocation real by creating the
//! key `/ipam/<network>/<ip>` in the same compare-and-swap transaction as the instance, so two
//! concurrent requests can never get the same address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use kumo_types::Error;

/// A parsed IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(field: &str, s: &str) -> Result<Cidr, Error> {
        let bad = || {
            Error::invalid(
                field,
                format!("{s:?} is not an IPv4 CIDR like 198.18.0.0/24"),
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(Error::invalid(
                field,
                format!("prefix /{prefix} is not allowed: use /8 to /30"),
            ));
        }
        let c = Cidr { addr, prefix };
        if c.network() != addr {
            return Err(Error::invalid(
                field,
                format!(
                    "{s} has host bits set; the network address is {}/{prefix}",
                    c.network()
                ),
            ));
        }
        Ok(c)
    }
    /// Parse any IPv4 CIDR (prefix 0–32, host bits allowed to be zero only), e.g. for rule peers.
    pub fn parse_any(field: &str, s: &str) -> Result<Cidr, Error> {
        let bad = || {
            Error::invalid(
                field,
                format!("{s:?} is not an IPv4 CIDR like 198.18.0.0/24"),
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let c = Cidr { addr, prefix };
        if prefix < 32 && c.network() != addr {
            return Err(Error::invalid(
                field,
                format!(
                    "{s} has host bits set; the network is {}/{prefix}",
                    c.network()
                ),
            ));
        }
        Ok(c)
    }
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            return 0;
        }
        u32::MAX << (32 - u32::from(self.prefix))
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.mask())
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }
    /// First usable host address (conventionally the gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

/// The lowest free address in `cidr` that is not the network, broadcast, gateway or in `used`,
/// starting at offset `skip` (addresses below it are reserved for infrastructure).
pub fn next_free(
    cidr: &Cidr,
    gateway: Ipv4Addr,
    used: &HashSet<Ipv4Addr>,
    skip: u32,
) -> Option<Ipv4Addr> {
    let start = u32::from(cidr.network()) + skip.max(1);
    let end = u32::from(cidr.broadcast());
    (start..end)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gateway && !used.contains(ip))
}

/// Parse allocation pools into address pairs (validated to lie inside `cidr`, start ≤ end).
pub fn parse_pools(
    field: &str,
    cidr: &Cidr,
    pools: &[kumo_types::IpRange],
) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>, Error> {
    pools
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("{field}[{i}]");
            let s: Ipv4Addr = r.start.parse().map_err(|_| {
                Error::invalid(&f, format!("start {:?} is not an IPv4 address", r.start))
            })?;
            let e: Ipv4Addr = r.end.parse().map_err(|_| {
                Error::invalid(&f, format!("end {:?} is not an IPv4 address", r.end))
            })?;
            if !cidr.contains(s) || !cidr.contains(e) || s > e {
                return Err(Error::invalid(
                    &f,
                    format!(
                        "{s}-{e} must be an ascending range inside {}/{}",
                        cidr.network(),
                        cidr.prefix
                    ),
                ));
            }
            Ok((s, e))
        })
        .collect()
}

/// The lowest address of the pools that is not excluded (network, broadcast, gateway, reserved and
/// taken addresses go in `exclude`).
pub fn pick(pools: &[(Ipv4Addr, Ipv4Addr)], exclude: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    pools
        .iter()
        .flat_map(|(s, e)| (u32::from(*s)..=u32::from(*e)).map(Ipv4Addr::from))
        .find(|ip| !exclude.contains(ip))
}

/// Check a requested fixed address: inside the subnet and not an infrastructure address.
pub fn check_fixed(
    field: &str,
    cidr: &Cidr,
    ip: Ipv4Addr,
    infra: &HashSet<Ipv4Addr>,
) -> Result<(), Error> {
    if !cidr.contains(ip) {
        return Err(Error::invalid(
            field,
            format!("{ip} is not inside {}/{}", cidr.network(), cidr.prefix),
        ));
    }
    if ip == cidr.network() || ip == cidr.broadcast() || infra.contains(&ip) {
        return Err(Error::invalid(
            field,
            format!("{ip} is the network, broadcast, gateway or a reserved address"),
        ));
    }
    Ok(())
}

/// A locally administered MAC in QEMU's 52:54:00 range derived from random bytes.
pub fn random_mac() -> String {
    let b: [u8; 3] = rand::random();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let c = Cidr::parse("cidr", "198.18.0.0/24").unwrap();
        assert_eq!(c.broadcast(), Ipv4Addr::new(198, 18, 0, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(
            Cidr::parse("cidr", "198.18.0.1/24")
                .unwrap_err()
                .to_string()
                .contains("host bits")
        );
        assert!(Cidr::parse("cidr", "nope").is_err());
        assert!(Cidr::parse("cidr", "10.0.0.0/31").is_err());
    }

    #[test]
    fn allocates_lowest_free_and_exhausts() {
        let c = Cidr::parse("cidr", "198.18.0.0/29").unwrap();
        let gw = c.first_host();
        let mut used = HashSet::new();
        let mut got = vec![];
        while let Some(ip) = next_free(&c, gw, &used, 2) {
            used.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            [
                "198.18.0.2",
                "198.18.0.3",
                "198.18.0.4",
                "198.18.0.5",
                "198.18.0.6"
            ]
        );
    }

    #[test]
    fn pools_pick_and_fixed_checks() {
        let c = Cidr::parse("cidr", "198.18.1.0/24").unwrap();
        let pools = parse_pools(
            "allocation_pools",
            &c,
            &[kumo_types::IpRange {
                start: "198.18.1.100".into(),
                end: "198.18.1.101".into(),
            }],
        )
        .unwrap();
        let mut ex = HashSet::new();
        assert_eq!(pick(&pools, &ex), Some(Ipv4Addr::new(198, 18, 1, 100)));
        ex.insert(Ipv4Addr::new(198, 18, 1, 100));
        assert_eq!(pick(&pools, &ex), Some(Ipv4Addr::new(198, 18, 1, 101)));
        ex.insert(Ipv4Addr::new(198, 18, 1, 101));
        assert_eq!(pick(&pools, &ex), None);
        let bad = [kumo_types::IpRange {
            start: "198.18.2.1".into(),
            end: "198.18.2.5".into(),
        }];
        assert_eq!(
            parse_pools("allocation_pools", &c, &bad)
                .unwrap_err()
                .field(),
            Some("allocation_pools[0]")
        );
        let infra: HashSet<_> = [Ipv4Addr::new(198, 18, 1, 1)].into();
        assert!(check_fixed("ipv4", &c, Ipv4Addr::new(198, 18, 1, 1), &infra).is_err());
        assert!(check_fixed("ipv4", &c, Ipv4Addr::new(198, 18, 1, 255), &infra).is_err());
        assert!(check_fixed("ipv4", &c, Ipv4Addr::new(198, 18, 9, 9), &infra).is_err());
        assert!(check_fixed("ipv4", &c, Ipv4Addr::new(198, 18, 1, 7), &infra).is_ok());
    }

    #[test]
    fn macs_are_local_qemu_range() {
        let m = random_mac();
        assert!(m.starts_with("52:54:00:") && m.len() == 17, "{m}");
    }
}
