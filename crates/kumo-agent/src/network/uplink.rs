//! How a kumo bridge reaches beyond its host: a VLAN link on a host uplink (`vlan` networks) or a
//! VXLAN device (`vxlan` networks), plus the VXLAN flood list.
//!
//! Same shape as [`super::link`]: pure planners (`plan_vlan`, `plan_vxlan`, `plan_fdb`) return the
//! `ip` / `bridge` argv lists still needed; `ensure_*` read the host and run them.
//!
//! Invariants:
//! - A VLAN link is `<uplink>.<vid>` when that fits in 15 characters, otherwise `kv<vid>-<hash>`
//!   ([`vlan_link_name`]); a VXLAN device is `kx<vni>`. Both are enslaved to the network's bridge and
//!   carry the network MTU (what guests see).
//! - A link with the right name but wrong parameters (another uplink, VLAN id, VNI, local address,
//!   port, learning on) is deleted and recreated; a link of another kind is refused (conflict).
//! - The host uplink itself is the operator's: kumo never changes its state or MTU. It must be up
//!   and its MTU at least the network MTU (VLAN) — the kernel refuses a larger child MTU.
//! - VXLAN encapsulation costs [`VXLAN_OVERHEAD`] bytes: the underlay must carry `mtu + 50`
//!   ([`underlay_mtu`]). A network's `mtu` is already the guest-visible value.
//! - VXLAN runs with `nolearning` and head-end replication: one all-zero FDB entry per remote tunnel
//!   endpoint ([`sync_vxlan_peers`]); entries for endpoints no longer wanted are removed. Unicast
//!   destinations are learned by the bridge, not by the VXLAN device.
//! - A kernel may lack 802.1Q (`CONFIG_VLAN_8021Q`; the development VMs' kernel does): then
//!   [`ensure_vlan_uplink`] refuses with an `unavailable` error naming it ([`vlan_supported`]), the
//!   agent reports it as an event on the network, and the network stays local to the host.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use kumo_types::{Error, Result};
use serde_json::Value;

use super::link::{self, IFNAME_MAX, LinkState, apply, check_ifname, cmd, wrong_kind};
use super::run;

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN over IPv4 adds to every frame (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The all-zero MAC: an FDB entry with it floods broadcast/unknown traffic to its `dst`.
const FLOOD_MAC: &str = "00:00:00:00:00:00";

/// The MTU the underlay (the interface carrying `local_ip`) needs for a VXLAN network of `mtu`.
pub fn underlay_mtu(mtu: u32) -> u32 {
    mtu + VXLAN_OVERHEAD
}

/// The VLAN link name: `<uplink>.<vid>` if it fits in 15 characters, else `kv<vid>-<hash>` with
/// enough hex digits of SHA-256(uplink) to fill 15 characters.
pub fn vlan_link_name(uplink: &str, vlan_id: u16) -> String {
    let natural = format!("{uplink}.{vlan_id}");
    if natural.len() <= IFNAME_MAX {
        return natural;
    }
    use sha2::{Digest, Sha256};
    let head = format!("kv{vlan_id}-");
    let digest = Sha256::digest(uplink.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{head}{}", &hex[..IFNAME_MAX - head.len()])
}

/// The VXLAN device name for a VNI: `kx<vni>`.
pub fn vxlan_link_name(vni: u32) -> String {
    format!("kx{vni}")
}

/// A VLAN link `name` on `uplink` with `vlan_id`, enslaved to `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanSpec {
    pub bridge: String,
    pub uplink: String,
    pub vlan_id: u16,
    pub mtu: u32,
}

/// The `ip` argv lists that turn `current` into the VLAN link for `spec`.
pub fn plan_vlan(spec: &VlanSpec, current: Option<&LinkState>) -> Result<Vec<Vec<String>>> {
    check_ifname(&spec.uplink)?;
    check_ifname(&spec.bridge)?;
    if !(1..=4094).contains(&spec.vlan_id) {
        return Err(Error::invalid(
            "vlan_id",
            format!("{} is not in 1–4094", spec.vlan_id),
        ));
    }
    let name = vlan_link_name(&spec.uplink, spec.vlan_id);
    let mut out = Vec::new();
    let recreate = match current {
        None => true,
        Some(c) if c.kind.as_deref() != Some("vlan") => {
            return Err(wrong_kind(&name, "vlan", &c.kind));
        }
        Some(c) => {
            c.parent.as_deref() != Some(spec.uplink.as_str()) || c.vlan_id != Some(spec.vlan_id)
        }
    };
    if recreate && current.is_some() {
        out.push(cmd(&["link", "del", "dev", &name]));
    }
    let mtu = spec.mtu.to_string();
    let vid = spec.vlan_id.to_string();
    if recreate {
        out.push(cmd(&[
            "link",
            "add",
            "link",
            &spec.uplink,
            "name",
            &name,
            "mtu",
            &mtu,
            "type",
            "vlan",
            "id",
            &vid,
        ]));
    }
    out.extend(plan_port(&name, &spec.bridge, spec.mtu, current, recreate));
    Ok(out)
}

/// MTU, master and up for a link that now exists (`fresh`: just created with the right MTU).
fn plan_port(
    name: &str,
    bridge: &str,
    mtu: u32,
    current: Option<&LinkState>,
    fresh: bool,
) -> Vec<Vec<String>> {
    let empty = LinkState::default();
    let cur = if fresh {
        &empty
    } else {
        current.unwrap_or(&empty)
    };
    let mut out = Vec::new();
    if !fresh && cur.mtu != mtu {
        out.push(cmd(&["link", "set", "dev", name, "mtu", &mtu.to_string()]));
    }
    if cur.master.as_deref() != Some(bridge) {
        out.push(cmd(&["link", "set", "dev", name, "master", bridge]));
    }
    if !cur.up {
        out.push(cmd(&["link", "set", "dev", name, "up"]));
    }
    out
}

/// Create or repair the VLAN link of `uplink` with `vlan_id`, enslaved to `bridge` (which must
/// exist), with `mtu`, up. Returns the link's name. Idempotent.
pub fn ensure_vlan_uplink(bridge: &str, uplink: &str, vlan_id: u16, mtu: u32) -> Result<String> {
    let spec = VlanSpec {
        bridge: bridge.to_string(),
        uplink: uplink.to_string(),
        vlan_id,
        mtu,
    };
    let all = link::links()?;
    if !all.iter().any(|l| l.name == uplink) {
        return Err(Error::invalid(
            "uplink",
            format!("host interface `{uplink}` does not exist"),
        ));
    }
    let name = vlan_link_name(uplink, vlan_id);
    let steps = plan_vlan(&spec, all.iter().find(|l| l.name == name))?;
    if !steps.is_empty() && !vlan_supported() {
        return Err(Error::unavailable(format!(
            "VLAN {vlan_id} on `{uplink}`: this host's kernel cannot tag frames (802.1Q: \
             CONFIG_VLAN_8021Q / module 8021q is missing); the network stays local to this host"
        )));
    }
    apply(steps)?;
    Ok(name)
}

/// Whether the kernel can create 802.1Q VLAN links: the `8021q` module is loaded (or built in), or
/// loads on request.
pub fn vlan_supported() -> bool {
    let loaded = || std::path::Path::new("/proc/net/vlan/config").exists();
    if loaded() {
        return true;
    }
    let _ = std::process::Command::new("modprobe")
        .arg("8021q")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    loaded()
}

/// A VXLAN device for `vni` enslaved to `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub bridge: String,
    pub vni: u32,
    /// This host's tunnel endpoint.
    pub local: Ipv4Addr,
    pub port: u16,
    /// The network MTU (guest-visible).
    pub mtu: u32,
}

/// The `ip` argv lists that turn `current` into the VXLAN device for `spec`.
pub fn plan_vxlan(spec: &VxlanSpec, current: Option<&LinkState>) -> Result<Vec<Vec<String>>> {
    check_ifname(&spec.bridge)?;
    if spec.vni == 0 || spec.vni > 0x00ff_ffff {
        return Err(Error::invalid(
            "vni",
            format!("{} is not in 1–16777215", spec.vni),
        ));
    }
    let name = vxlan_link_name(spec.vni);
    let want = link::VxlanInfo {
        vni: spec.vni,
        local: Some(spec.local),
        port: spec.port,
        learning: false,
    };
    let recreate = match current {
        None => true,
        Some(c) if c.kind.as_deref() != Some("vxlan") => {
            return Err(wrong_kind(&name, "vxlan", &c.kind));
        }
        Some(c) => c.vxlan.as_ref() != Some(&want),
    };
    let mut out = Vec::new();
    if recreate && current.is_some() {
        out.push(cmd(&["link", "del", "dev", &name]));
    }
    if recreate {
        out.push(cmd(&[
            "link",
            "add",
            "name",
            &name,
            "mtu",
            &spec.mtu.to_string(),
            "type",
            "vxlan",
            "id",
            &spec.vni.to_string(),
            "local",
            &spec.local.to_string(),
            "dstport",
            &spec.port.to_string(),
            "nolearning",
        ]));
    }
    out.extend(plan_port(&name, &spec.bridge, spec.mtu, current, recreate));
    Ok(out)
}

/// Create or repair `kx<vni>` (local endpoint `local_ip`, UDP `port`, no learning, `mtu`),
/// enslaved to `bridge` (which must exist), up. Returns the device name. Idempotent. Peers are
/// programmed separately by [`sync_vxlan_peers`].
pub fn ensure_vxlan(
    bridge: &str,
    vni: u32,
    local_ip: Ipv4Addr,
    port: u16,
    mtu: u32,
) -> Result<String> {
    let spec = VxlanSpec {
        bridge: bridge.to_string(),
        vni,
        local: local_ip,
        port,
        mtu,
    };
    let name = vxlan_link_name(vni);
    let text = run("ip", &["-j", "-d", "addr", "show"])?;
    let all = link::parse_links(&text, Some(&text))?;
    if let Some(why) = underlay_problem(&all, local_ip, mtu) {
        tracing::warn!(vxlan = %name, "{why}");
    }
    apply(plan_vxlan(&spec, all.iter().find(|l| l.name == name))?)?;
    Ok(name)
}

/// Why the underlay cannot carry a VXLAN network of `mtu` from `local` (pure): the address is on no
/// interface, or that interface's MTU is below `mtu + 50` (large frames would be dropped).
pub fn underlay_problem(links: &[LinkState], local: Ipv4Addr, mtu: u32) -> Option<String> {
    let Some(l) = links
        .iter()
        .find(|l| l.ipv4.iter().any(|c| c.addr == local))
    else {
        return Some(format!(
            "tunnel address {local} is on no interface of this host"
        ));
    };
    (l.mtu < underlay_mtu(mtu)).then(|| {
        format!(
            "underlay {} has MTU {} but a VXLAN network of MTU {mtu} needs {}",
            l.name,
            l.mtu,
            underlay_mtu(mtu)
        )
    })
}

/// The remote endpoints of the all-zero (flood) FDB entries in `bridge -j fdb show dev …` output.
pub fn parse_fdb_peers(json: &str) -> Result<Vec<Ipv4Addr>> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| Error::internal_with("parsing `bridge -j fdb show` output", e))?;
    let mut out: Vec<Ipv4Addr> = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e.get("mac").and_then(Value::as_str) == Some(FLOOD_MAC))
        .filter_map(|e| e.get("dst")?.as_str()?.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The `bridge` argv lists that make the flood entries of `dev` exactly `wanted` (minus `local`):
/// appends for missing peers, then deletes for stale ones.
pub fn plan_fdb(
    dev: &str,
    local: Ipv4Addr,
    current: &[Ipv4Addr],
    wanted: &[Ipv4Addr],
) -> Vec<Vec<String>> {
    let cur: BTreeSet<Ipv4Addr> = current.iter().copied().collect();
    let want: BTreeSet<Ipv4Addr> = wanted.iter().copied().filter(|p| *p != local).collect();
    let entry = |verb: &str, p: &Ipv4Addr| {
        cmd(&["fdb", verb, FLOOD_MAC, "dev", dev, "dst", &p.to_string()])
    };
    let mut out: Vec<Vec<String>> = want.difference(&cur).map(|p| entry("append", p)).collect();
    out.extend(cur.difference(&want).map(|p| entry("del", p)));
    out
}

/// Make the flood list of VXLAN device `dev` exactly `peers` (this host's `local` endpoint is
/// ignored if listed). This is the hook the control plane's peer list feeds: today the agent's
/// static `--vxlan-peer` list, later the tunnel addresses of the hosts sharing the network.
pub fn sync_vxlan_peers(dev: &str, local: Ipv4Addr, peers: &[Ipv4Addr]) -> Result<()> {
    check_ifname(dev)?;
    let current = parse_fdb_peers(&run("bridge", &["-j", "fdb", "show", "dev", dev])?)?;
    for argv in plan_fdb(dev, local, &current, peers) {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        run("bridge", &args)?;
    }
    Ok(())
}

/// Delete a VLAN or VXLAN link kumo created. Ok if absent; refuses other kinds.
pub fn delete_uplink(name: &str) -> Result<()> {
    check_ifname(name)?;
    match link::links()?.into_iter().find(|l| l.name == name) {
        None => Ok(()),
        Some(l) if !matches!(l.kind.as_deref(), Some("vlan" | "vxlan")) => {
            Err(wrong_kind(name, "vlan or vxlan", &l.kind))
        }
        Some(_) => run("ip", &["link", "del", "dev", name]).map(|_| ()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(plan: Vec<Vec<String>>) -> Vec<String> {
        plan.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn vlan_names_fit() {
        assert_eq!(vlan_link_name("eth0", 10), "eth0.10");
        assert_eq!(vlan_link_name("enp3s0f1", 4094), "enp3s0f1.4094");
        let long = vlan_link_name("enp129s0f1np1", 4094);
        assert_eq!(long.len(), IFNAME_MAX);
        assert!(long.starts_with("kv4094-"), "{long}");
        assert_eq!(long, vlan_link_name("enp129s0f1np1", 4094));
        assert_ne!(long, vlan_link_name("enp129s0f0np0", 4094));
        assert_eq!(vlan_link_name("enp129s0f1np1", 1).len(), IFNAME_MAX);
        assert_eq!(vxlan_link_name(16_777_215), "kx16777215");
        assert_eq!(underlay_mtu(1450), 1500);
    }

    fn vlan_spec() -> VlanSpec {
        VlanSpec {
            bridge: "kbr1".into(),
            uplink: "eth1".into(),
            vlan_id: 20,
            mtu: 1500,
        }
    }

    #[test]
    fn vlan_plans() {
        assert_eq!(
            text(plan_vlan(&vlan_spec(), None).unwrap()),
            [
                "link add link eth1 name eth1.20 mtu 1500 type vlan id 20",
                "link set dev eth1.20 master kbr1",
                "link set dev eth1.20 up",
            ]
        );
        let mut cur = LinkState {
            name: "eth1.20".into(),
            kind: Some("vlan".into()),
            mtu: 1500,
            up: true,
            master: Some("kbr1".into()),
            parent: Some("eth1".into()),
            vlan_id: Some(20),
            ..LinkState::default()
        };
        assert!(plan_vlan(&vlan_spec(), Some(&cur)).unwrap().is_empty());
        cur.master = None;
        cur.mtu = 9000;
        assert_eq!(
            text(plan_vlan(&vlan_spec(), Some(&cur)).unwrap()),
            [
                "link set dev eth1.20 mtu 1500",
                "link set dev eth1.20 master kbr1"
            ]
        );
        cur.vlan_id = Some(21);
        assert_eq!(
            text(plan_vlan(&vlan_spec(), Some(&cur)).unwrap())[..2],
            [
                "link del dev eth1.20",
                "link add link eth1 name eth1.20 mtu 1500 type vlan id 20"
            ]
        );
        cur.kind = Some("bridge".into());
        assert!(matches!(
            plan_vlan(&vlan_spec(), Some(&cur)),
            Err(Error::Conflict { .. })
        ));
        let bad = VlanSpec {
            vlan_id: 4095,
            ..vlan_spec()
        };
        assert!(plan_vlan(&bad, None).is_err());
    }

    fn vxlan_spec() -> VxlanSpec {
        VxlanSpec {
            bridge: "kbr2".into(),
            vni: 100,
            local: Ipv4Addr::new(198, 19, 0, 1),
            port: VXLAN_PORT,
            mtu: 1450,
        }
    }

    #[test]
    fn vxlan_plans() {
        assert_eq!(
            text(plan_vxlan(&vxlan_spec(), None).unwrap()),
            [
                "link add name kx100 mtu 1450 type vxlan id 100 local 198.19.0.1 dstport 4789 nolearning",
                "link set dev kx100 master kbr2",
                "link set dev kx100 up",
            ]
        );
        let mut cur = LinkState {
            name: "kx100".into(),
            kind: Some("vxlan".into()),
            mtu: 1450,
            up: true,
            master: Some("kbr2".into()),
            vxlan: Some(link::VxlanInfo {
                vni: 100,
                local: Some(Ipv4Addr::new(198, 19, 0, 1)),
                port: 4789,
                learning: false,
            }),
            ..LinkState::default()
        };
        assert!(plan_vxlan(&vxlan_spec(), Some(&cur)).unwrap().is_empty());
        cur.up = false;
        assert_eq!(
            text(plan_vxlan(&vxlan_spec(), Some(&cur)).unwrap()),
            ["link set dev kx100 up"]
        );
        if let Some(v) = cur.vxlan.as_mut() {
            v.learning = true;
        }
        assert_eq!(
            text(plan_vxlan(&vxlan_spec(), Some(&cur)).unwrap())[0],
            "link del dev kx100"
        );
        cur.kind = Some("tun".into());
        assert!(plan_vxlan(&vxlan_spec(), Some(&cur)).is_err());
        assert!(
            plan_vxlan(
                &VxlanSpec {
                    vni: 1 << 24,
                    ..vxlan_spec()
                },
                None
            )
            .is_err()
        );
    }

    #[test]
    fn underlay_checks() {
        let local = Ipv4Addr::new(198, 19, 0, 1);
        let mut eth = LinkState {
            name: "eth0".into(),
            mtu: 1500,
            ipv4: vec![super::super::Ipv4Cidr {
                addr: local,
                prefix: 24,
            }],
            ..LinkState::default()
        };
        assert_eq!(
            underlay_problem(std::slice::from_ref(&eth), local, 1450),
            None
        );
        assert!(
            underlay_problem(std::slice::from_ref(&eth), local, 1500)
                .unwrap()
                .contains("needs 1550")
        );
        eth.ipv4.clear();
        assert!(underlay_problem(&[eth], local, 1450).is_some());
    }

    #[test]
    fn fdb_parse_and_plan() {
        let json = r#"[{"mac":"86:71:27:9b:a4:e1","flags":[],"master":"kb","state":"permanent"},
            {"mac":"00:00:00:00:00:00","dst":"198.19.0.3","flags":["self"],"state":"permanent"},
            {"mac":"00:00:00:00:00:00","dst":"198.19.0.2","flags":["self"],"state":"permanent"},
            {"mac":"52:54:00:00:00:01","dst":"198.19.0.2","flags":["self"]}]"#;
        let cur = parse_fdb_peers(json).unwrap();
        let ip = |d: u8| Ipv4Addr::new(198, 19, 0, d);
        assert_eq!(cur, [ip(2), ip(3)]);
        let local = ip(1);
        assert!(plan_fdb("kx100", local, &cur, &[ip(3), ip(2), ip(1)]).is_empty());
        assert_eq!(
            text(plan_fdb("kx100", local, &cur, &[ip(4), ip(2)])),
            [
                "fdb append 00:00:00:00:00:00 dev kx100 dst 198.19.0.4",
                "fdb del 00:00:00:00:00:00 dev kx100 dst 198.19.0.3",
            ]
        );
        assert_eq!(plan_fdb("kx100", local, &cur, &[]).len(), 2);
    }

    #[test]
    fn parses_vlan_and_vxlan_details() {
        let links = r#"[{"ifname":"eth1.20","link":"eth1","flags":["UP"],"mtu":1500,
            "linkinfo":{"info_kind":"vlan","info_data":{"protocol":"802.1Q","id":20}}},
            {"ifname":"kx100","flags":[],"mtu":1450,"master":"kbr2","linkinfo":{"info_kind":"vxlan",
            "info_data":{"id":100,"local":"198.19.0.1","port":4789,"learning":false}}}]"#;
        let got = link::parse_links(links, None).unwrap();
        assert_eq!(got[0].parent.as_deref(), Some("eth1"));
        assert_eq!(got[0].vlan_id, Some(20));
        assert_eq!(got[0].vxlan, None);
        assert_eq!(got[1].vlan_id, None);
        assert_eq!(
            got[1].vxlan,
            Some(link::VxlanInfo {
                vni: 100,
                local: Some(Ipv4Addr::new(198, 19, 0, 1)),
                port: 4789,
                learning: false
            })
        );
    }
}
