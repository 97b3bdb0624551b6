//! kumo's nftables ruleset: the table `inet kumo`, planned as text by [`render`] and applied with one
//! `nft -f -` transaction by [`apply`].
//!
//! Format decision: nft's own text syntax, not `nft -j` JSON. It is what operators read in
//! `nft list table inet kumo`, it diffs well in golden tests, and the batch below is atomic either way.
//! Names and CIDRs are validated before they reach the text, so nothing can inject syntax.
//!
//! Invariants:
//! - kumo owns exactly the table `inet kumo` and never touches other tables (Docker's, the distro's).
//! - Every apply replaces the whole table in one transaction (`table` + `delete table` + definition):
//!   the kernel sees the old ruleset or the new one, never a mix, and a crash mid-apply changes nothing.
//! - The base chains have policy `accept`: another table (a host firewall) stays in charge of what it
//!   drops. Later work (security groups, floating IPs) adds per-port chains jumped to from `forward`,
//!   and a `prerouting` DNAT chain; they slot into [`render`] without changing its callers.

use kumo_types::{Error, Result};

use super::{Ipv4Cidr, run, run_with_stdin};

/// The table kumo owns.
pub const TABLE: &str = "kumo";

/// One kumo network as the ruleset sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNetwork {
    pub bridge: String,
    /// The network, e.g. `198.18.0.0/24` (host bits are cleared when rendered).
    pub cidr: String,
    /// Masquerade traffic from `cidr` leaving through any interface other than `bridge`.
    pub nat: bool,
}

/// Everything in `inet kumo` on this host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub networks: Vec<NatNetwork>,
}

fn quoted_ifname(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= super::link::IFNAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return Err(Error::invalid(
            "bridge",
            format!("`{name}` is not a valid interface name"),
        ));
    }
    Ok(format!("\"{name}\""))
}

/// The complete `nft -f` batch that atomically replaces table `inet kumo` with `rs`.
pub fn render(rs: &Ruleset) -> Result<String> {
    let mut nets = Vec::with_capacity(rs.networks.len());
    for n in &rs.networks {
        let c = Ipv4Cidr::parse(&n.cidr)?;
        nets.push((
            quoted_ifname(&n.bridge)?,
            Ipv4Cidr {
                addr: c.network(),
                prefix: c.prefix,
            },
            n.nat,
        ));
    }
    nets.sort_by(|a, b| a.0.cmp(&b.0));
    let mut t = String::new();
    t.push_str(&format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n"
    ));
    t.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
    t.push_str("\t\tct state established,related accept\n");
    for (br, cidr, _) in &nets {
        t.push_str(&format!("\t\tiifname {br} ip saddr {cidr} accept\n"));
    }
    t.push_str("\t}\n");
    t.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    for (br, cidr, _) in nets.iter().filter(|n| n.2) {
        t.push_str(&format!("\t\tip saddr {cidr} oifname != {br} masquerade\n"));
    }
    t.push_str("\t}\n}\n");
    Ok(t)
}

/// Replace table `inet kumo` with `rs` in one transaction.
pub fn apply(rs: &Ruleset) -> Result<()> {
    run_with_stdin("nft", &["-f", "-"], Some(&render(rs)?)).map(|_| ())
}

/// Remove table `inet kumo` (ok if absent).
pub fn remove() -> Result<()> {
    let batch = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    run_with_stdin("nft", &["-f", "-"], Some(&batch)).map(|_| ())
}

/// `nft list table inet kumo`, or `None` if the table does not exist.
pub fn list() -> Result<Option<String>> {
    let tables = run("nft", &["list", "tables"])?;
    if !tables
        .lines()
        .any(|l| l.trim() == format!("table inet {TABLE}"))
    {
        return Ok(None);
    }
    run("nft", &["list", "table", "inet", TABLE]).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn golden_ruleset() {
        let rs = Ruleset {
            networks: vec![
                NatNetwork {
                    bridge: "kbr1".into(),
                    cidr: "198.19.0.0/24".into(),
                    nat: false,
                },
                NatNetwork {
                    bridge: "kbr0".into(),
                    cidr: "198.18.0.1/24".into(),
                    nat: true,
                },
            ],
        };
        insta::assert_snapshot!(render(&rs).unwrap());
    }

    #[test]
    fn empty_ruleset_still_defines_the_table() {
        insta::assert_snapshot!(render(&Ruleset::default()).unwrap());
    }

    #[test]
    fn refuses_injection() {
        let rs = Ruleset {
            networks: vec![NatNetwork {
                bridge: "x\" accept;".into(),
                cidr: "198.18.0.0/24".into(),
                nat: true,
            }],
        };
        assert!(render(&rs).is_err());
        let rs = Ruleset {
            networks: vec![NatNetwork {
                bridge: "kbr0".into(),
                cidr: "198.18.0.0/24; drop".into(),
                nat: true,
            }],
        };
        assert!(render(&rs).is_err());
    }
}
