//! kumo's packet filter and NAT: anti-spoofing, security groups, host protection, router isolation and
//! SNAT, floating IPs and outbound masquerade, as two nftables tables — `bridge kumo` and `inet kumo`.
//!
//! Shape: [`plan`] (pure) turns the [`NetworkTopology`](kumo_types::NetworkTopology) and this host's
//! [`LocalPort`]s into a typed [`Ruleset`]; [`render`] (pure) turns that into nft text; [`apply`] runs it
//! as ONE `nft -f -` transaction. Format decision: nft's own text syntax, not `nft -j` JSON — it is what
//! operators read in `nft list ruleset`, it diffs well in golden tests, and the batch is atomic either
//! way. Names, MACs and CIDRs are validated by the planner and again by the renderer, so nothing from
//! the topology can inject syntax.
//!
//! # Where each job happens (and why not in the bridge family)
//!
//! Stateful filtering in the *bridge* family needs `nf_conntrack_bridge`; kernels without it (this
//! project's CI kernel has `# CONFIG_NF_CONNTRACK_BRIDGE is not set`) refuse `ct` expressions there with
//! "Protocol error". kumo therefore uses `br_netfilter` instead (as Neutron's hybrid firewall does):
//! [`apply`] sets `nf_call_iptables` on every kumo bridge, so *bridged* IPv4 frames traverse the
//! `inet` hooks with conntrack, exactly like *routed* ones. One set of per-port chains then sees both
//! paths. In the `inet` hooks a bridged packet's `iifname`/`oifname` is the bridge, so a port is
//! identified there by `(bridge, guest IPv4)`; that is sound because the bridge table guarantees it:
//!
//! - `bridge kumo` prerouting, per local tap (`iifname` vmap): **anti-spoofing** — source MAC must be the
//!   port's; IPv4 source must be the port's (DHCP discover `0.0.0.0:68 → 255.255.255.255:67` excepted);
//!   ARP sender MAC/IP must be the port's (sender `0.0.0.0` allowed for RFC 5227 probes); everything
//!   else (IPv6 included — IPv6 is not offered yet, and dropping it stops RA/ND spoofing) is dropped.
//!   Unknown taps (`kt*` not in the plan) are dropped entirely: a tap fails closed.
//! - `bridge kumo` forward, per local tap (`oifname` vmap): a bridged frame reaches a guest only if it is
//!   ARP, IPv4 addressed to the guest's own IP, or a DHCP reply; so "daddr = guest IP" identifies the
//!   destination port in `inet` forward for bridged traffic as it does for routed traffic.
//! - `inet kumo` forward: established/related accepted, invalid dropped; **isolation** between kumo
//!   bridges (same bridge, subnets joined by a router, router/floating-IP paths to the external bridge,
//!   or DNATed floating-IP traffic — nothing else); then the source port's **egress** chain
//!   (`iifname . ip saddr` vmap; `return` on allow, `drop` otherwise) and the destination port's
//!   **ingress** chain (`oifname . ip daddr` vmap; `accept`/`drop`). Remote groups are named sets, so a
//!   membership change is a set-element change.
//! - `inet kumo` input (**host protection**): from kumo bridges only DHCP (udp 67), DNS on a gateway
//!   (53) and metadata (`169.254.169.254:80`) reach the host. These are also the "always allowed"
//!   guest-to-gateway paths: they go to the host, so security groups never apply to them.
//! - `inet kumo` nat: floating-IP DNAT (prerouting and output), floating-IP SNAT before router SNAT
//!   before the networks' masquerade to non-kumo interfaces.
//!
//! Invariants:
//! - kumo owns exactly `bridge kumo` and `inet kumo`; every apply replaces both in one transaction
//!   (`table` + `delete table` + definition): the kernel sees the old rules or the new ones, never a mix.
//! - Base chains have policy `accept` and only judge traffic from/to kumo bridges: other tables (a host
//!   firewall, Docker) stay in charge of everything else.
//! - Stateful: a change affects new connections; established flows live until conntrack forgets them.
//! - Traffic the host itself originates towards guests is not filtered by security groups.

mod plan;
mod render;

use std::net::Ipv4Addr;

use kumo_types::{Error, Protocol, Result};

use super::{Ipv4Cidr, run, run_with_stdin};

pub use plan::{LocalPort, addresses_of, bridge_addresses, plan};
pub use render::render;

/// The name of both tables kumo owns (`bridge kumo`, `inet kumo`).
pub const TABLE: &str = "kumo";

/// One kumo subnet on a bridge as the ruleset sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNetwork {
    pub bridge: String,
    /// The subnet, e.g. `198.18.0.0/24` (host bits are cleared when rendered).
    pub cidr: String,
    /// Masquerade traffic from `cidr` leaving through any non-kumo interface.
    pub nat: bool,
}

/// Everything in kumo's two tables on this host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Subnets of the kumo bridges on this host. Every bridge named here counts as a kumo bridge.
    pub networks: Vec<NatNetwork>,
    /// The local ports, each with anti-spoofing and its security-group chains.
    pub ports: Vec<PortFilter>,
    /// Local taps whose port is unknown or invalid: all their traffic is dropped.
    pub blocked_taps: Vec<String>,
    /// Remote-group sets referenced by the ports' rules.
    pub groups: Vec<GroupSet>,
    /// Subnet pairs joined by a router (both directions listed).
    pub routed: Vec<(Ipv4Cidr, Ipv4Cidr)>,
    /// Source NAT to external bridges, in precedence order (floating IPs first, then routers).
    pub snat: Vec<Snat>,
    /// Floating IPs: destination NAT from the floating address to the port's fixed address.
    pub dnat: Vec<Dnat>,
    /// Gateway addresses of the subnets (DNS on the host is reachable there).
    pub gateways: Vec<Ipv4Addr>,
    /// What the planner left out and why (for the agent's log); leaving out always fails closed.
    pub skipped: Vec<String>,
}

/// Anti-spoofing identity and security-group rules of one local port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFilter {
    pub port_id: String,
    pub tap: String,
    pub bridge: String,
    /// Lowercase `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    pub ipv4: Ipv4Addr,
    /// Allowed traffic to the guest (sorted, deduplicated union of its groups' rules).
    pub ingress: Vec<Allow>,
    /// Allowed traffic from the guest.
    pub egress: Vec<Allow>,
}

/// One allow rule, direction given by the list it is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allow {
    pub protocol: Protocol,
    /// Destination port range (tcp/udp only).
    pub ports: Option<(u16, u16)>,
    pub remote: Remote,
}

/// The peer of an allow rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Remote {
    Any,
    /// Network address and prefix length (host bits cleared).
    Cidr(Ipv4Addr, u8),
    /// The named set holding the IPv4 addresses of a group's members.
    Group(String),
}

/// A named set of group member addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSet {
    pub name: String,
    pub members: Vec<Ipv4Addr>,
}

/// Source NAT of traffic from `source` leaving through bridge `oif`, to address `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snat {
    pub oif: String,
    pub source: Ipv4Cidr,
    pub to: Ipv4Addr,
}

/// Destination NAT of a floating address to a fixed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub address: Ipv4Addr,
    pub fixed: Ipv4Addr,
}

impl Ruleset {
    /// The distinct kumo bridges, sorted.
    pub fn bridges(&self) -> Vec<String> {
        let mut b: Vec<String> = self.networks.iter().map(|n| n.bridge.clone()).collect();
        b.sort();
        b.dedup();
        b
    }
}

/// Replace kumo's tables with `rs` in one transaction, after making sure bridged IPv4 traffic on every
/// kumo bridge passes the `inet` hooks (`br_netfilter`, see the module docs).
pub fn apply(rs: &Ruleset) -> Result<()> {
    let text = render(rs)?;
    enable_bridge_netfilter(&rs.bridges())?;
    run_with_stdin("nft", &["-f", "-"], Some(&text)).map(|_| ())
}

/// Set `nf_call_iptables` on each existing bridge (bridges created later get it on the next apply).
/// Fails with a clear message if the kernel has no `br_netfilter`.
pub fn enable_bridge_netfilter(bridges: &[String]) -> Result<()> {
    if bridges.is_empty() {
        return Ok(());
    }
    if !std::path::Path::new("/proc/sys/net/bridge").exists() {
        // Built as a module: try to load it; a kernel without it cannot filter bridged traffic.
        let _ = run("modprobe", &["br_netfilter"]);
        if !std::path::Path::new("/proc/sys/net/bridge").exists() {
            return Err(Error::internal(
                "the kernel has no br_netfilter (CONFIG_BRIDGE_NETFILTER; `modprobe br_netfilter`): \
                 kumo cannot filter bridged traffic",
            ));
        }
    }
    let present = super::link::links()?;
    for b in bridges {
        if present
            .iter()
            .any(|l| &l.name == b && l.kind.as_deref() == Some("bridge"))
        {
            run(
                "ip",
                &[
                    "link",
                    "set",
                    "dev",
                    b,
                    "type",
                    "bridge",
                    "nf_call_iptables",
                    "1",
                ],
            )?;
        }
    }
    Ok(())
}

/// Remove kumo's tables (ok if absent).
pub fn remove() -> Result<()> {
    let batch = format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable bridge {TABLE}\ndelete table bridge {TABLE}\n"
    );
    run_with_stdin("nft", &["-f", "-"], Some(&batch)).map(|_| ())
}

/// `nft list table inet kumo`, or `None` if the table does not exist.
pub fn list() -> Result<Option<String>> {
    list_family("inet")
}

/// `nft list table <family> kumo`, or `None` if it does not exist.
pub fn list_family(family: &str) -> Result<Option<String>> {
    let tables = run("nft", &["list", "tables"])?;
    if !tables
        .lines()
        .any(|l| l.trim() == format!("table {family} {TABLE}"))
    {
        return Ok(None);
    }
    run("nft", &["list", "table", family, TABLE]).map(Some)
}
