//! The agent's host networking: Linux bridges and taps ([`link`]), VLAN and VXLAN uplinks of bridges
//! ([`uplink`]), per network a DHCP dnsmasq for all its subnets and a DNS dnsmasq for instance names
//! ([`dnsmasq`]), the nftables ruleset ([`nft`]), and NoCloud seed images ([`seed`]).
//!
//! Shape: every choice is made by a pure planner (`plan_*`, `render_*`, `argv`) that is unit-tested;
//! the executors read the host state, call the planner and run what it returned. Host state is read and
//! changed with iproute2 (`ip -j` for JSON), dnsmasq and nft processes — see
//! `docs/decisions/0003-iproute2-for-links.md`.
//!
//! Invariants:
//! - Every `ensure_*` is idempotent and converges from any partial state (a crash between two steps is
//!   repaired by the next call). `delete_*` succeed when the thing is already gone.
//! - Everything acts on the network namespace of the calling thread; tests run in a private one.
//! - Only kumo's own objects are touched: links named by kumo, dnsmasq processes found through kumo's
//!   pidfiles (and verified through `/proc/<pid>/cmdline`), and the nftables table `inet kumo`.
//!
//! Later work keeps these shapes: security groups and floating IPs become more chains in the ruleset
//! built by [`nft`]; VXLAN peers handed down by the control plane feed [`uplink::sync_vxlan_peers`].

pub mod dnsmasq;
pub mod link;
pub mod nft;
mod proc_util;
pub mod seed;
pub mod uplink;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use kumo_types::{Error, Result};

pub use dnsmasq::{DhcpHost, DhcpSubnet, Dnsmasq, DnsmasqConfig};
pub use link::{
    BridgeSpec, delete_bridge, delete_tap, ensure_bridge, ensure_tap, link_exists,
    list_links_with_prefix, tap_name,
};
pub use nft::{NatNetwork, Ruleset};
pub use seed::{SeedSpec, build_seed};
pub use uplink::{
    VXLAN_PORT, delete_uplink, ensure_vlan_uplink, ensure_vxlan, sync_vxlan_peers, underlay_mtu,
    vlan_link_name, vlan_supported, vxlan_link_name,
};

/// The link-local address of the metadata service, present on every kumo bridge.
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// An IPv4 network with a prefix length, e.g. `198.18.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address as written (for a gateway CIDR this is the host address).
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parse `a.b.c.d/n` (0 ≤ n ≤ 32).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: &str| Error::invalid("cidr", format!("`{s}`: {m}"));
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("bad IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
        if prefix > 32 {
            return Err(bad("prefix length above 32"));
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
    /// The netmask, e.g. `255.255.255.0` for /24.
    pub fn mask(&self) -> Ipv4Addr {
        let bits = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        Ipv4Addr::from(bits)
    }
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.mask()))
    }
    /// True if `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask()) == u32::from(self.network())
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Run a command to completion; stdout on success, an error naming the command and its stderr
/// otherwise.
pub(crate) fn run(cmd: &str, args: &[&str]) -> Result<String> {
    run_with_stdin(cmd, args, None)
}

/// Like [`run`], feeding `stdin` to the command.
pub(crate) fn run_with_stdin(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut c = Command::new(cmd);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c
        .spawn()
        .map_err(|e| Error::internal_with(format!("cannot run `{cmd}`"), e))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| Error::internal_with(format!("writing stdin of `{cmd}`"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::internal_with(format!("waiting for `{cmd}`"), e))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let c = Ipv4Cidr::parse("198.18.0.1/24").unwrap();
        assert_eq!(c.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(198, 18, 0, 0));
        assert!(c.contains(Ipv4Addr::new(198, 18, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(c.to_string(), "198.18.0.1/24");
        assert_eq!(
            Ipv4Cidr::parse("0.0.0.0/0").unwrap().mask(),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            Ipv4Cidr::parse("10.0.0.1/32").unwrap().mask(),
            Ipv4Addr::BROADCAST
        );
        for bad in ["198.18.0.0", "198.18.0.0/33", "x/24", "1.2.3.4/x"] {
            assert!(Ipv4Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
