//! The pure renderer: [`Ruleset`] → one `nft -f` batch replacing `bridge kumo` and `inet kumo`.
//! Every name that reaches the text is re-validated here, so a hand-built `Ruleset` cannot inject
//! syntax either.

use std::fmt::Write as _;

use kumo_types::{Error, Protocol, Result};

use super::{Allow, PortFilter, Remote, Ruleset, TABLE};
use crate::network::Ipv4Cidr;

/// Prefix of every tap kumo creates (see `link::tap_name`); unknown ones are blocked.
const TAP_PREFIX: &str = "kt";

pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= crate::network::link::IFNAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "interface",
            format!("`{name}` is not a valid interface name"),
        ))
    }
}

fn q(name: &str) -> Result<String> {
    check_ifname(name)?;
    Ok(format!("\"{name}\""))
}

fn ident(id: &str) -> Result<String> {
    super::plan::ident(id)
        .ok_or_else(|| Error::invalid("id", format!("`{id}` cannot name an nft chain or set")))
}

fn mac(m: &str) -> Result<&str> {
    let ok = m.len() == 17
        && m.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    if ok {
        Ok(m)
    } else {
        Err(Error::invalid("mac", format!("`{m}` is not a MAC address")))
    }
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("\t\telements = {{ {} }}\n", items.join(", "))
    }
}

/// The complete `nft -f` batch that atomically replaces both kumo tables with `rs`.
pub fn render(rs: &Ruleset) -> Result<String> {
    let mut t = String::new();
    render_bridge(rs, &mut t)?;
    render_inet(rs, &mut t)?;
    Ok(t)
}

/// Names of VXLAN devices (see `uplink::vxlan_link_name`).
const VXLAN_PREFIX: &str = "kx";

fn render_bridge(rs: &Ruleset, t: &mut String) -> Result<()> {
    let mut from = Vec::new();
    let mut to = Vec::new();
    for p in &rs.ports {
        let (tap, id) = (q(&p.tap)?, ident(&p.port_id)?);
        from.push(format!("{tap} : jump from_{id}"));
        to.push(format!("{tap} : jump to_{id}"));
    }
    let _ = write!(
        t,
        "table bridge {TABLE}\ndelete table bridge {TABLE}\ntable bridge {TABLE} {{\n"
    );
    let _ = write!(
        t,
        "\tmap from_port {{\n\t\ttype ifname : verdict\n{}\t}}\n",
        elements(&from)
    );
    let _ = write!(
        t,
        "\tmap to_port {{\n\t\ttype ifname : verdict\n{}\t}}\n",
        elements(&to)
    );
    t.push_str(
        "\tchain prerouting {\n\t\ttype filter hook prerouting priority -200; policy accept;\n",
    );
    t.push_str("\t\tiifname vmap @from_port\n");
    for b in &rs.blocked_taps {
        let _ = writeln!(t, "\t\tiifname {} drop", q(b)?);
    }
    let _ = writeln!(t, "\t\tiifname \"{TAP_PREFIX}*\" drop\n\t}}");
    t.push_str("\tchain forward {\n\t\ttype filter hook forward priority -200; policy accept;\n");
    t.push_str("\t\toifname vmap @to_port\n");
    for b in &rs.blocked_taps {
        let _ = writeln!(t, "\t\toifname {} drop", q(b)?);
    }
    let _ = writeln!(t, "\t\toifname \"{TAP_PREFIX}*\" drop\n\t}}");
    // Every host is the gateway, DHCP and DNS server and metadata service of its own guests on a
    // VXLAN network (the same addresses on every host): the host neither answers guests of other
    // hosts nor talks into the overlay, so a guest always reaches its own host's services.
    let _ = writeln!(
        t,
        "\tchain input {{\n\t\ttype filter hook input priority -200; policy accept;\n\t\tiifname \"{VXLAN_PREFIX}*\" drop\n\t}}"
    );
    let _ = writeln!(
        t,
        "\tchain output {{\n\t\ttype filter hook output priority -200; policy accept;\n\t\toifname \"{VXLAN_PREFIX}*\" drop\n\t}}"
    );
    for p in &rs.ports {
        anti_spoof_chains(p, t)?;
    }
    t.push_str("}\n");
    Ok(())
}

fn anti_spoof_chains(p: &PortFilter, t: &mut String) -> Result<()> {
    let (id, m, ip) = (ident(&p.port_id)?, mac(&p.mac)?, p.ipv4);
    let _ = write!(
        t,
        "\tchain from_{id} {{\n\
         \t\tether saddr != {m} drop\n\
         \t\tether type arp arp saddr ether != {m} drop\n\
         \t\tether type arp arp saddr ip != {{ {ip}, 0.0.0.0 }} drop\n\
         \t\tether type arp accept\n\
         \t\tip saddr {ip} accept\n\
         \t\tip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n\
         \t\tdrop\n\
         \t}}\n"
    );
    let _ = write!(
        t,
        "\tchain to_{id} {{\n\
         \t\tether type arp accept\n\
         \t\tip daddr {ip} accept\n\
         \t\tip protocol udp udp sport 67 udp dport 68 accept\n\
         \t\tdrop\n\
         \t}}\n"
    );
    Ok(())
}

fn render_inet(rs: &Ruleset, t: &mut String) -> Result<()> {
    let bridges = rs.bridges();
    let qb = bridges.iter().map(|b| q(b)).collect::<Result<Vec<_>>>()?;
    let l2: Vec<String> = qb.iter().map(|b| format!("{b} . {b}")).collect();
    let routed: Vec<String> = rs
        .routed
        .iter()
        .map(|(a, b)| format!("{a} . {b}"))
        .collect();
    let gws: Vec<String> = rs.gateways.iter().map(|g| g.to_string()).collect();
    let _ = write!(
        t,
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n"
    );
    let set = |t: &mut String, name: &str, ty: &str, flags: &str, el: &[String]| {
        let _ = write!(
            t,
            "\tset {name} {{\n\t\ttype {ty}\n{flags}{}\t}}\n",
            elements(el)
        );
    };
    set(t, "bridges", "ifname", "", &qb);
    set(t, "l2", "ifname . ifname", "", &l2);
    set(
        t,
        "routed",
        "ipv4_addr . ipv4_addr",
        "\t\tflags interval\n",
        &routed,
    );
    set(t, "gateways", "ipv4_addr", "", &gws);
    for g in &rs.groups {
        let members: Vec<String> = g.members.iter().map(|a| a.to_string()).collect();
        set(t, &ident(&g.name)?, "ipv4_addr", "", &members);
    }
    let mut eg = Vec::new();
    let mut ing = Vec::new();
    for p in &rs.ports {
        let (b, id) = (q(&p.bridge)?, ident(&p.port_id)?);
        eg.push(format!("{b} . {} : jump eg_{id}", p.ipv4));
        ing.push(format!("{b} . {} : jump in_{id}", p.ipv4));
    }
    for (name, el) in [("egress", &eg), ("ingress", &ing)] {
        let _ = write!(
            t,
            "\tmap {name} {{\n\t\ttype ifname . ipv4_addr : verdict\n{}\t}}\n",
            elements(el)
        );
    }
    t.push_str(
        "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname != @bridges accept\n\
         \t\tct state established,related accept\n\
         \t\tct state invalid drop\n\
         \t\tudp dport 67 accept\n\
         \t\tip daddr 169.254.169.254 tcp dport 80 accept\n\
         \t\tip daddr @gateways udp dport 53 accept\n\
         \t\tip daddr @gateways tcp dport 53 accept\n\
         \t\tdrop\n\t}\n",
    );
    t.push_str(
        "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\tiifname != @bridges oifname != @bridges accept\n\
         \t\tct state invalid drop\n\
         \t\tmeta nfproto ipv6 drop\n\
         \t\tiifname @bridges oifname @bridges jump isolate\n\
         \t\tiifname . ip saddr vmap @egress\n\
         \t\toifname . ip daddr vmap @ingress\n\t}\n",
    );
    t.push_str(
        "\tchain isolate {\n\
         \t\tiifname . oifname @l2 return\n\
         \t\tip saddr . ip daddr @routed return\n\
         \t\tct status dnat return\n",
    );
    for s in &rs.snat {
        let _ = writeln!(t, "\t\toifname {} ip saddr {} return", q(&s.oif)?, s.source);
    }
    t.push_str("\t\tdrop\n\t}\n");
    for p in &rs.ports {
        let id = ident(&p.port_id)?;
        let _ = writeln!(t, "\tchain eg_{id} {{");
        for a in &p.egress {
            let _ = writeln!(t, "\t\t{}return", match_allow(a, "daddr")?);
        }
        let _ = writeln!(t, "\t\tdrop\n\t}}\n\tchain in_{id} {{");
        for a in &p.ingress {
            let _ = writeln!(t, "\t\t{}accept", match_allow(a, "saddr")?);
        }
        t.push_str("\t\tdrop\n\t}\n");
    }
    render_nat(rs, t)?;
    t.push_str("}\n");
    Ok(())
}

/// The match part of an allow rule (ends with a space, or is empty for "anything").
fn match_allow(a: &Allow, peer: &str) -> Result<String> {
    let mut m = match &a.remote {
        Remote::Any => String::new(),
        Remote::Cidr(a, len) => format!("ip {peer} {a}/{len} "),
        Remote::Group(g) => format!("ip {peer} @{} ", ident(g)?),
    };
    let l4 = match a.protocol {
        Protocol::Any => None,
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp => Some("icmp"),
    };
    match (l4, a.ports) {
        (Some(p), Some((lo, hi))) if matches!(a.protocol, Protocol::Tcp | Protocol::Udp) => {
            if lo == hi {
                let _ = write!(m, "{p} dport {lo} ");
            } else {
                let _ = write!(m, "{p} dport {lo}-{hi} ");
            }
        }
        (Some(p), _) => {
            let _ = write!(m, "meta l4proto {p} ");
        }
        (None, _) => {}
    }
    Ok(m)
}

fn render_nat(rs: &Ruleset, t: &mut String) -> Result<()> {
    let mut dnat = String::new();
    for d in &rs.dnat {
        let _ = writeln!(dnat, "\t\tip daddr {} dnat ip to {}", d.address, d.fixed);
    }
    let _ = write!(
        t,
        "\tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{dnat}\t}}\n"
    );
    let _ = write!(
        t,
        "\tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{dnat}\t}}\n"
    );
    t.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    for s in &rs.snat {
        let _ = writeln!(
            t,
            "\t\toifname {} ip saddr {} snat ip to {}",
            q(&s.oif)?,
            s.source,
            s.to
        );
    }
    let mut nets = Vec::new();
    for n in rs.networks.iter().filter(|n| n.nat) {
        let c = Ipv4Cidr::parse(&n.cidr)?;
        nets.push(Ipv4Cidr {
            addr: c.network(),
            prefix: c.prefix,
        });
    }
    nets.sort_by_key(|c| (u32::from(c.addr), c.prefix));
    nets.dedup();
    for c in nets {
        let _ = writeln!(t, "\t\tip saddr {c} oifname != @bridges masquerade");
    }
    t.push_str("\t}\n");
    Ok(())
}
