//! The command line's small value syntaxes, parsed by pure functions (used as clap value parsers, so a
//! bad value is reported by clap with the option's name and this module's precise message):
//!
//! - `--pool START-END` → [`IpRange`] (both IPv4, `START <= END`)
//! - `--route CIDR=NEXTHOP` → [`Route`] (an IPv4 CIDR with no host bits, an IPv4 next hop)
//! - `--ports MIN-MAX` → `(u16, u16)` (`1 <= MIN <= MAX`)
//! - `--nic network=N[,subnet=S][,ip=A][,sg=G1+G2]` → [`NicRequest`] (each key at most once; without
//!   `network` and `subnet` the server picks the default network, as it does for a bare port)
//! - `--gateway IP|none`
//! - `--gpu MODEL[xCOUNT]` → [`GpuRequest`] (`10de:2236x2`: two GPUs of PCI model `10de:2236`)
//!
//! The server validates everything again; these checks only make mistakes visible before a request.

use std::net::Ipv4Addr;

use kumo_types::{GpuRequest, IpRange, NicRequest, Route};

fn ipv4(what: &str, s: &str) -> Result<Ipv4Addr, String> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| format!("{what} `{s}` is not an IPv4 address"))
}

/// `START-END`, e.g. `198.18.0.100-198.18.0.199`.
pub fn parse_pool(s: &str) -> Result<IpRange, String> {
    let Some((a, b)) = s.split_once('-') else {
        return Err(format!(
            "`{s}`: expected START-END, e.g. 198.18.0.100-198.18.0.199"
        ));
    };
    let (start, end) = (ipv4("start", a.trim())?, ipv4("end", b.trim())?);
    if start > end {
        return Err(format!("start {start} is after end {end}"));
    }
    Ok(IpRange {
        start: start.to_string(),
        end: end.to_string(),
    })
}

/// An IPv4 CIDR `A.B.C.D/N` with no host bits set; returned normalised.
pub fn parse_cidr(s: &str) -> Result<String, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!("`{s}`: expected an IPv4 CIDR such as 10.0.0.0/24"));
    };
    let addr = ipv4("network address", addr.trim())?;
    let len: u8 = len
        .trim()
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("prefix length `{len}` is not a number from 0 to 32"))?;
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    if u32::from(addr) & !mask != 0 {
        let net = Ipv4Addr::from(u32::from(addr) & mask);
        return Err(format!(
            "`{s}` has host bits set (did you mean {net}/{len}?)"
        ));
    }
    Ok(format!("{addr}/{len}"))
}

/// `CIDR=NEXTHOP`, e.g. `10.0.0.0/8=198.18.0.1`.
pub fn parse_route(s: &str) -> Result<Route, String> {
    let Some((dest, hop)) = s.split_once('=') else {
        return Err(format!(
            "`{s}`: expected CIDR=NEXTHOP, e.g. 10.0.0.0/8=198.18.0.1"
        ));
    };
    Ok(Route {
        destination: parse_cidr(dest.trim())?,
        nexthop: ipv4("next hop", hop.trim())?.to_string(),
    })
}

/// `MIN-MAX`, e.g. `8000-8100` (a single port is `--port`).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let Some((a, b)) = s.split_once('-') else {
        return Err(format!("`{s}`: expected MIN-MAX, e.g. 8000-8100"));
    };
    let port = |p: &str| -> Result<u16, String> {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| format!("port `{}` is not a number from 1 to 65535", p.trim()))
    };
    let (min, max) = (port(a)?, port(b)?);
    if min > max {
        return Err(format!("first port {min} is above last port {max}"));
    }
    Ok((min, max))
}

/// `IP` or `none` (no gateway).
pub fn parse_gateway(s: &str) -> Result<String, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok("none".into());
    }
    Ok(ipv4("gateway", s.trim())?.to_string())
}

/// An IPv4 address (for `--ip`, `--dns`, `--reserved`).
pub fn parse_ipv4(s: &str) -> Result<String, String> {
    Ok(ipv4("address", s.trim())?.to_string())
}

/// `network=N[,subnet=S][,ip=A][,sg=G1+G2]`, or `port=P` (an existing, unattached port).
pub fn parse_nic(s: &str) -> Result<NicRequest, String> {
    let mut nic = NicRequest::default();
    for part in s.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "`{part}`: expected KEY=VALUE (keys: network, subnet, ip, sg, port)"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(format!("`{key}=` needs a value"));
        }
        let slot_taken = match key {
            "network" => nic.network.replace(value.to_string()).is_some(),
            "subnet" => nic.subnet.replace(value.to_string()).is_some(),
            "port" => nic.port.replace(value.to_string()).is_some(),
            "ip" => nic.ipv4.replace(parse_ipv4(value)?).is_some(),
            "sg" => {
                let groups: Vec<String> = value.split('+').map(|g| g.trim().to_string()).collect();
                if groups.iter().any(String::is_empty) {
                    return Err(format!(
                        "`sg={value}`: empty group name (separate groups with +)"
                    ));
                }
                nic.security_groups.replace(groups).is_some()
            }
            other => {
                return Err(format!(
                    "unknown key `{other}` (keys: network, subnet, ip, sg, port)"
                ));
            }
        };
        if slot_taken {
            return Err(format!("`{key}` is given twice"));
        }
    }
    Ok(nic)
}

/// The most GPUs an instance can have passed through (the server enforces the same limit).
pub const MAX_GPUS: u32 = 8;

/// `MODEL[xCOUNT]`, e.g. `10de:2236x2`: `COUNT` (1–8, default 1) GPUs of PCI model `vendor:device`
/// (hex, as `lspci -nn` shows it in brackets); returned in lowercase.
pub fn parse_gpu(s: &str) -> Result<GpuRequest, String> {
    let s = s.trim().to_ascii_lowercase();
    let (model, count) = match s.split_once('x') {
        Some((m, c)) => (m, Some(c)),
        None => (s.as_str(), None),
    };
    let hex4 = |p: &str| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !model
        .split_once(':')
        .is_some_and(|(v, d)| hex4(v) && hex4(d))
    {
        return Err(format!(
            "`{model}` is not a GPU model: give the PCI vendor:device ID as 4+4 hex digits, e.g. \
             10de:2236 (`lspci -nn` shows it in brackets), optionally followed by xCOUNT"
        ));
    }
    let count = match count {
        None => 1,
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|c| (1..=MAX_GPUS).contains(c))
            .ok_or_else(|| format!("GPU count `{c}` is not a number from 1 to {MAX_GPUS}"))?,
    };
    Ok(GpuRequest {
        model: model.to_string(),
        count,
    })
}
