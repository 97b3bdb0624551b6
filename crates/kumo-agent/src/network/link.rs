//! Bridges and taps, through iproute2.
//!
//! Each `ensure_*` reads the link with `ip -j -d link show` / `ip -j addr show`, asks a pure planner
//! (`plan_bridge`, `plan_tap`) for the `ip` commands still needed, and runs them. The planners refuse
//! to touch a link of the wrong kind (a name clash with something kumo did not create).
//!
//! A kumo bridge carries the network's gateway address (handed to guests as router by DHCP) and
//! `169.254.169.254/32`, where the agent's metadata service listens. Taps are persistent
//! (`ip tuntap add`), so they exist before QEMU opens them (`ifname=…,script=no`) and outlive it;
//! the agent deletes them when the instance is torn down.

use std::net::Ipv4Addr;

use kumo_types::{Error, Result};
use serde_json::Value;

use super::{Ipv4Cidr, METADATA_ADDR, run};

/// Maximum length of a Linux interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// What a bridge should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    pub name: String,
    /// The bridge's own addresses with their prefixes: each subnet's gateway, e.g. `198.18.0.1/24`
    /// (and, on external networks, floating IPs as /32). May be empty (an L2-only network).
    pub addresses: Vec<String>,
    pub mtu: u32,
}

/// One link as read from `ip -j -d link show` and `ip -j addr show`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkState {
    pub name: String,
    /// `linkinfo.info_kind` (`bridge`, `tun`, `veth`, …); `None` for plain devices.
    pub kind: Option<String>,
    pub mtu: u32,
    /// Administratively up (the `UP` flag).
    pub up: bool,
    pub master: Option<String>,
    pub ipv4: Vec<Ipv4Cidr>,
    /// The lower device (`link` in iproute2's JSON), e.g. the uplink of a VLAN link.
    pub parent: Option<String>,
    /// `linkinfo.info_data.id` of a `vlan` link.
    pub vlan_id: Option<u16>,
    /// The tunnel parameters of a `vxlan` link.
    pub vxlan: Option<VxlanInfo>,
}

/// What iproute2 reports about a VXLAN link (the parameters kumo sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub learning: bool,
}

/// The tap name for NIC `nic_index` of an instance: `kt` + 10 hex digits + the index, at most
/// 15 characters. The hex digits come from the ID's hex part when it has one (so an operator can
/// map a tap to its instance by eye), otherwise from a SHA-256 of the whole ID.
pub fn tap_name(instance_id: &str, nic_index: u8) -> String {
    let tail = instance_id.rsplit('-').next().unwrap_or(instance_id);
    let hex: String = if tail.len() >= 10 && tail.bytes().all(|b| b.is_ascii_hexdigit()) {
        tail[..10].to_ascii_lowercase()
    } else {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(instance_id.as_bytes());
        digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
    };
    format!("kt{hex}{nic_index}")
}

pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "interface",
            format!("`{name}`: 1–{IFNAME_MAX} characters of [A-Za-z0-9._-]"),
        ))
    }
}

pub(crate) fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn wrong_kind(name: &str, want: &str, have: &Option<String>) -> Error {
    Error::conflict(format!(
        "interface `{name}` exists but is a {} link, not a {want}",
        have.as_deref().unwrap_or("plain")
    ))
}

/// The `ip` argv lists that turn `current` into the bridge described by `spec`.
pub fn plan_bridge(spec: &BridgeSpec, current: Option<&LinkState>) -> Result<Vec<Vec<String>>> {
    check_ifname(&spec.name)?;
    let mut want_addrs = spec
        .addresses
        .iter()
        .map(|a| Ipv4Cidr::parse(a))
        .collect::<Result<Vec<_>>>()?;
    let name = spec.name.as_str();
    let mtu = spec.mtu.to_string();
    let mut out = Vec::new();
    let empty = LinkState::default();
    let cur = match current {
        None => {
            out.push(cmd(&[
                "link", "add", "name", name, "mtu", &mtu, "type", "bridge",
            ]));
            &empty
        }
        Some(c) if c.kind.as_deref() != Some("bridge") => {
            return Err(wrong_kind(name, "bridge", &c.kind));
        }
        Some(c) => c,
    };
    if current.is_some() && cur.mtu != spec.mtu {
        out.push(cmd(&["link", "set", "dev", name, "mtu", &mtu]));
    }
    let meta = Ipv4Cidr {
        addr: METADATA_ADDR,
        prefix: 32,
    };
    want_addrs.push(meta);
    for want in want_addrs {
        if !cur.ipv4.contains(&want) {
            out.push(cmd(&["addr", "replace", &want.to_string(), "dev", name]));
        }
    }
    if !cur.up {
        out.push(cmd(&["link", "set", "dev", name, "up"]));
    }
    Ok(out)
}

/// The `ip` argv lists that turn `current` into a persistent tap enslaved to `bridge`, up.
pub fn plan_tap(
    name: &str,
    bridge: &str,
    mtu: u32,
    current: Option<&LinkState>,
) -> Result<Vec<Vec<String>>> {
    check_ifname(name)?;
    check_ifname(bridge)?;
    let mtu_s = mtu.to_string();
    let mut out = Vec::new();
    let empty = LinkState::default();
    let cur = match current {
        None => {
            out.push(cmd(&["tuntap", "add", "dev", name, "mode", "tap"]));
            &empty
        }
        Some(c) if c.kind.as_deref() != Some("tun") => {
            return Err(wrong_kind(name, "tap", &c.kind));
        }
        Some(c) => c,
    };
    if current.is_none() || cur.mtu != mtu {
        out.push(cmd(&["link", "set", "dev", name, "mtu", &mtu_s]));
    }
    if cur.master.as_deref() != Some(bridge) {
        out.push(cmd(&["link", "set", "dev", name, "master", bridge]));
    }
    if !cur.up {
        out.push(cmd(&["link", "set", "dev", name, "up"]));
    }
    Ok(out)
}

/// Parse `ip -j -d link show` output (and, when given, `ip -j addr show` output) into link states.
pub fn parse_links(link_json: &str, addr_json: Option<&str>) -> Result<Vec<LinkState>> {
    let links: Value = serde_json::from_str(link_json)
        .map_err(|e| Error::internal_with("parsing `ip -j link show` output", e))?;
    let addrs: Value = match addr_json {
        Some(a) => serde_json::from_str(a)
            .map_err(|e| Error::internal_with("parsing `ip -j addr show` output", e))?,
        None => Value::Array(Vec::new()),
    };
    let mut out = Vec::new();
    for l in links.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(name) = l.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        let flags = l
            .get("flags")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ipv4 = addrs
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.get("ifname").and_then(Value::as_str) == Some(name))
            .flat_map(|a| {
                a.get("addr_info")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|i| i.get("family").and_then(Value::as_str) == Some("inet"))
            .filter_map(|i| {
                let addr: Ipv4Addr = i.get("local")?.as_str()?.parse().ok()?;
                let prefix = u8::try_from(i.get("prefixlen")?.as_u64()?).ok()?;
                Some(Ipv4Cidr { addr, prefix })
            })
            .collect();
        let kind = l
            .pointer("/linkinfo/info_kind")
            .and_then(Value::as_str)
            .map(str::to_string);
        let info = l.pointer("/linkinfo/info_data");
        out.push(LinkState {
            name: name.to_string(),
            kind: kind.clone(),
            mtu: l
                .get("mtu")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0),
            up: flags.iter().any(|f| f.as_str() == Some("UP")),
            master: l.get("master").and_then(Value::as_str).map(str::to_string),
            ipv4,
            parent: l.get("link").and_then(Value::as_str).map(str::to_string),
            vlan_id: (kind.as_deref() == Some("vlan"))
                .then(|| info.and_then(|i| i.get("id")?.as_u64()))
                .flatten()
                .and_then(|v| u16::try_from(v).ok()),
            vxlan: (kind.as_deref() == Some("vxlan"))
                .then(|| info.map(parse_vxlan_info))
                .flatten(),
        });
    }
    Ok(out)
}

fn parse_vxlan_info(d: &Value) -> VxlanInfo {
    VxlanInfo {
        vni: d
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        local: d
            .get("local")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok()),
        port: d
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0),
        learning: d.get("learning").and_then(Value::as_bool).unwrap_or(true),
    }
}

/// Every link in the current network namespace (no addresses).
pub fn links() -> Result<Vec<LinkState>> {
    parse_links(&run("ip", &["-j", "-d", "link", "show"])?, None)
}

/// One link with its IPv4 addresses, or `None` if it does not exist.
pub fn link(name: &str) -> Result<Option<LinkState>> {
    check_ifname(name)?;
    // `ip addr show` carries the link fields too; reading every link avoids parsing "does not exist".
    let all = run("ip", &["-j", "-d", "addr", "show"])?;
    Ok(parse_links(&all, Some(&all))?
        .into_iter()
        .find(|l| l.name == name))
}

/// True if a link with this name exists.
pub fn link_exists(name: &str) -> Result<bool> {
    Ok(links()?.iter().any(|l| l.name == name))
}

/// Names of all links starting with `prefix`, sorted.
pub fn list_links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = links()?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

pub(crate) fn apply(plan: Vec<Vec<String>>) -> Result<()> {
    for argv in plan {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        run("ip", &args)?;
    }
    Ok(())
}

/// Create or repair the bridge: kind, MTU, gateway address, `169.254.169.254/32`, up. Also enables
/// IPv4 forwarding in the current network namespace. Idempotent.
pub fn ensure_bridge(spec: &BridgeSpec) -> Result<()> {
    apply(plan_bridge(spec, link(&spec.name)?.as_ref())?)?;
    enable_ip_forward()
}

/// Delete a bridge (its ports are released, not deleted). Ok if absent.
pub fn delete_bridge(name: &str) -> Result<()> {
    delete_link(name, "bridge")
}

/// Create or repair a persistent tap `name` enslaved to `bridge` with `mtu`, up. Idempotent.
pub fn ensure_tap(name: &str, bridge: &str, mtu: u32) -> Result<()> {
    apply(plan_tap(name, bridge, mtu, link(name)?.as_ref())?)
}

/// Delete a tap. Ok if absent; refuses to delete a link of another kind.
pub fn delete_tap(name: &str) -> Result<()> {
    delete_link(name, "tun")
}

fn delete_link(name: &str, kind: &str) -> Result<()> {
    check_ifname(name)?;
    match links()?.into_iter().find(|l| l.name == name) {
        None => Ok(()),
        Some(l) if l.kind.as_deref() != Some(kind) => Err(wrong_kind(name, kind, &l.kind)),
        Some(_) => run("ip", &["link", "del", "dev", name]).map(|_| ()),
    }
}

fn enable_ip_forward() -> Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let cur = std::fs::read_to_string(PATH)
        .map_err(|e| Error::internal_with(format!("reading {PATH}"), e))?;
    if cur.trim() != "1" {
        std::fs::write(PATH, "1")
            .map_err(|e| Error::internal_with(format!("writing {PATH}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> BridgeSpec {
        BridgeSpec {
            name: "kbr0".into(),
            addresses: vec!["198.18.0.1/24".into()],
            mtu: 1500,
        }
    }

    #[test]
    fn tap_names_fit_and_are_stable() {
        assert_eq!(tap_name("i-0123456789abcdef0", 0), "kt01234567890");
        assert_eq!(tap_name("i-0123456789abcdef0", 255), "kt0123456789255");
        let odd = tap_name("not an id", 7);
        assert_eq!(odd.len(), 13);
        assert_eq!(odd, tap_name("not an id", 7));
        assert!(tap_name("i-0123456789abcdef0", 255).len() <= IFNAME_MAX);
    }

    #[test]
    fn fresh_bridge_plan() {
        let plan = plan_bridge(&spec(), None).unwrap();
        let text: Vec<String> = plan.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            text,
            [
                "link add name kbr0 mtu 1500 type bridge",
                "addr replace 198.18.0.1/24 dev kbr0",
                "addr replace 169.254.169.254/32 dev kbr0",
                "link set dev kbr0 up",
            ]
        );
    }

    #[test]
    fn converged_bridge_needs_nothing_and_partial_is_repaired() {
        let mut cur = LinkState {
            name: "kbr0".into(),
            kind: Some("bridge".into()),
            mtu: 1500,
            up: true,
            master: None,
            ipv4: vec![
                Ipv4Cidr::parse("198.18.0.1/24").unwrap(),
                Ipv4Cidr::parse("169.254.169.254/32").unwrap(),
            ],
            ..LinkState::default()
        };
        assert!(plan_bridge(&spec(), Some(&cur)).unwrap().is_empty());
        cur.ipv4.pop();
        cur.mtu = 9000;
        let text: Vec<String> = plan_bridge(&spec(), Some(&cur))
            .unwrap()
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            text,
            [
                "link set dev kbr0 mtu 1500",
                "addr replace 169.254.169.254/32 dev kbr0"
            ]
        );
        cur.kind = Some("veth".into());
        assert!(matches!(
            plan_bridge(&spec(), Some(&cur)),
            Err(Error::Conflict { .. })
        ));
    }

    #[test]
    fn tap_plans() {
        let text: Vec<String> = plan_tap("kt1", "kbr0", 1450, None)
            .unwrap()
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            text,
            [
                "tuntap add dev kt1 mode tap",
                "link set dev kt1 mtu 1450",
                "link set dev kt1 master kbr0",
                "link set dev kt1 up",
            ]
        );
        let cur = LinkState {
            name: "kt1".into(),
            kind: Some("tun".into()),
            mtu: 1450,
            up: true,
            master: Some("kbr0".into()),
            ipv4: vec![],
            ..LinkState::default()
        };
        assert!(
            plan_tap("kt1", "kbr0", 1450, Some(&cur))
                .unwrap()
                .is_empty()
        );
        assert!(plan_tap("this-name-is-too-long", "kbr0", 1450, None).is_err());
        assert!(plan_tap("kt1", "kbr0", 1450, Some(&LinkState { kind: None, ..cur })).is_err());
    }

    #[test]
    fn parses_ip_json() {
        let links = r#"[{"ifindex":3,"ifname":"kbr0","flags":["BROADCAST","MULTICAST","UP"],"mtu":1500,
            "linkinfo":{"info_kind":"bridge"}},{"ifindex":4,"ifname":"kt1","flags":["BROADCAST"],"mtu":1450,
            "master":"kbr0","linkinfo":{"info_kind":"tun"}}]"#;
        let addrs = r#"[{"ifname":"kbr0","addr_info":[{"family":"inet","local":"198.18.0.1","prefixlen":24},
            {"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let got = parse_links(links, Some(addrs)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind.as_deref(), Some("bridge"));
        assert!(got[0].up);
        assert_eq!(got[0].ipv4, vec![Ipv4Cidr::parse("198.18.0.1/24").unwrap()]);
        assert_eq!(got[1].master.as_deref(), Some("kbr0"));
        assert!(!got[1].up);
        assert!(got[1].ipv4.is_empty());
    }
}
