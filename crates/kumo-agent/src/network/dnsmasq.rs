//! Per network, two dnsmasq processes, as OpenStack Neutron and Incus run dnsmasq: a DHCP server for
//! all of the network's DHCP subnets, and a DNS server that answers instance names.
//!
//! Why two: the DHCP server must be bound to its bridge (`--interface` + `--bind-interfaces`, so
//! dnsmasq uses `SO_BINDTODEVICE` and one process per network can share port 67); DNS must listen on
//! the gateway addresses only — with `--interface` dnsmasq also binds `169.254.169.254:53`, which
//! every kumo bridge carries and only one process on the host can bind; and any `--listen-address`
//! turns `SO_BINDTODEVICE` off for DHCP (so a second network's dnsmasq would steal unicast renewals
//! through `SO_REUSEPORT`).
//!
//! State lives in the network's directory (`paths::net_dir`): DHCP `dnsmasq.pid`, `hosts` (lines
//! `MAC,IP,hostname`), `leases`, `dnsmasq.log`, `dnsmasq.stderr`; DNS `dns.pid`, `dns-hosts` (lines
//! `IP name name.<network>.kumo.internal`), `dns.log`, `dns.stderr`.
//!
//! Invariants:
//! - DHCP ranges are `static`: only hosts kumo wrote to the hosts file get a lease, always the
//!   address kumo's IPAM chose. Each DHCP subnet has its own range, tagged with its sanitized ID, so
//!   router (the gateway), DNS servers (default: the gateway), classless static routes (option 121,
//!   with the default route added as RFC 3442 requires) differ per subnet; MTU and the domain
//!   `<network>.kumo.internal` are network-wide.
//! - DNS listens on port 53 of every gateway address, never on 127.0.0.1 or the metadata address;
//!   it answers the names in `dns-hosts` (bare and qualified), is authoritative for the network's
//!   domain (`--local`), and has no upstream (`--no-resolv`): nothing leaves the host.
//! - A network with no DHCP subnet gets no dnsmasq at all ([`DnsmasqConfig::for_network`] is `None`).
//! - Each process is found through its pidfile and adopted only if `/proc/<pid>/cmdline` is exactly
//!   the argv planned ([`argv`], [`dns_argv`]) for the current configuration; one with our pidfile but
//!   another argv is stopped and restarted. So an agent restart never starts a second one.
//! - Names files are replaced atomically (write + rename) and the process that reads a file gets
//!   SIGHUP only when its content changed, plus once when an agent adopts it (a crash between rename
//!   and SIGHUP must not leave it with a stale view).
//! - dnsmasq answers only the DHCP options a client asks for: guests must request `mtu` (udhcpc
//!   `-O mtu`; dhclient and cloud-init's networkd do by default) to learn the network MTU.
//! - [`Dnsmasq::release`] leaves no lease line behind: `dhcp_release` (Debian `dnsmasq-utils`) first;
//!   if the line survives, DHCP dnsmasq is stopped, the line dropped from the lease file, dnsmasq
//!   started. Remove the host from the hosts file *before* releasing so the guest cannot take it again.
//! - dnsmasq runs as root (`--user=root`): it re-reads the names files on SIGHUP, and the data
//!   directory may not be readable by `nobody`. Dropping privileges needs a data layout readable by a
//!   dedicated user; that is future work.
//! - Names come from this host's instances only. On a VXLAN network spanning hosts, instances on other
//!   hosts resolve once the control plane hands their names down (then they go into `dns-hosts` too).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kumo_types::{Error, Network, Result, Subnet};

use super::Ipv4Cidr;
use super::proc_util::{alive, cmdline, io_err, read_or_empty, signal, wait_until, write_atomic};

/// Default DHCP lease time: 12 hours.
pub const DEFAULT_LEASE_SECS: u32 = 12 * 3600;

/// The DNS domain of every network: instances are `<name>.<network>.kumo.internal`.
pub const DOMAIN_SUFFIX: &str = "kumo.internal";

/// One subnet as dnsmasq serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSubnet {
    /// The subnet ID (its sanitized form tags the subnet's DHCP options).
    pub id: String,
    /// e.g. `198.18.0.0/24`.
    pub cidr: String,
    /// Handed to guests as router; on the bridge, and where DNS listens.
    pub gateway: Option<Ipv4Addr>,
    /// Served by DHCP. Requires a gateway (dnsmasq needs an address of the subnet on the bridge).
    pub dhcp: bool,
    /// Handed out as DNS servers; empty: the gateway (where the network's DNS listens).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Extra routes `(destination CIDR, next hop)` handed out as option 121.
    pub routes: Vec<(String, Ipv4Addr)>,
}

impl DhcpSubnet {
    fn tag(&self) -> String {
        let t = sanitize_hostname(&self.id);
        if t.is_empty() { "subnet".into() } else { t }
    }
}

/// Everything that decides how a network's two dnsmasq processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqConfig {
    /// The bridge the DHCP server serves (and only that one).
    pub bridge: String,
    /// `<network>.kumo.internal`: handed out by DHCP, answered by DNS.
    pub domain: String,
    /// Every subnet of the network, sorted by ID; at least one with `dhcp`.
    pub subnets: Vec<DhcpSubnet>,
    pub mtu: u32,
    /// At least 120 (dnsmasq's minimum).
    pub lease_secs: u32,
    /// The network's state directory (created if missing).
    pub state_dir: PathBuf,
}

fn parse_ip(field: &str, s: &str) -> Result<Ipv4Addr> {
    s.parse()
        .map_err(|_| Error::invalid(field, format!("`{s}` is not an IPv4 address")))
}

/// The DNS domain of a network: `<sanitized name>.kumo.internal` (the ID if the name has nothing
/// usable).
pub fn network_domain(net: &Network) -> String {
    let label = sanitize_hostname(&net.name);
    let label = if label.is_empty() {
        sanitize_hostname(&net.id)
    } else {
        label
    };
    format!("{label}.{DOMAIN_SUFFIX}")
}

impl DnsmasqConfig {
    /// The configuration for a kumo network and its subnets (those of other networks are ignored),
    /// with state in `state_dir` (`paths::net_dir`). `Ok(None)`: no subnet is served by DHCP, so the
    /// network gets no dnsmasq. A DHCP subnet without a gateway cannot be served (no address of it
    /// on the bridge): it is logged and served statically only.
    pub fn for_network(
        net: &Network,
        subnets: &[Subnet],
        state_dir: impl Into<PathBuf>,
    ) -> Result<Option<Self>> {
        let mut out = Vec::new();
        for s in subnets.iter().filter(|s| s.network_id == net.id) {
            let gateway = s
                .gateway
                .as_deref()
                .map(|g| parse_ip("gateway", g))
                .transpose()?;
            if s.dhcp && gateway.is_none() {
                tracing::warn!(subnet = %s.id, network = %net.id, "DHCP is on but the subnet has no gateway: not served by DHCP");
            }
            out.push(DhcpSubnet {
                id: s.id.clone(),
                cidr: s.cidr.clone(),
                gateway,
                dhcp: s.dhcp && gateway.is_some(),
                dns_servers: s
                    .dns_servers
                    .iter()
                    .map(|d| parse_ip("dns_servers", d))
                    .collect::<Result<_>>()?,
                routes: s
                    .routes
                    .iter()
                    .map(|r| Ok((r.destination.clone(), parse_ip("nexthop", &r.nexthop)?)))
                    .collect::<Result<_>>()?,
            });
        }
        if !out.iter().any(|s| s.dhcp) {
            return Ok(None);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Some(DnsmasqConfig {
            bridge: net.bridge.clone(),
            domain: network_domain(net),
            subnets: out,
            mtu: net.mtu,
            lease_secs: DEFAULT_LEASE_SECS,
            state_dir: state_dir.into(),
        }))
    }
    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join("dnsmasq.pid")
    }
    pub fn hosts_file(&self) -> PathBuf {
        self.state_dir.join("hosts")
    }
    pub fn lease_file(&self) -> PathBuf {
        self.state_dir.join("leases")
    }
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("dnsmasq.log")
    }
    /// The DNS server's pidfile.
    pub fn dns_pid_file(&self) -> PathBuf {
        self.state_dir.join("dns.pid")
    }
    /// The DNS server's names: lines `IP name name.domain`.
    pub fn dns_hosts_file(&self) -> PathBuf {
        self.state_dir.join("dns-hosts")
    }
    pub fn dns_log_file(&self) -> PathBuf {
        self.state_dir.join("dns.log")
    }
    /// Where DNS listens: every subnet's gateway.
    pub fn dns_addresses(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self.subnets.iter().filter_map(|s| s.gateway).collect();
        v.sort();
        v.dedup();
        v
    }
    fn files(&self, role: Role) -> ProcFiles {
        match role {
            Role::Dhcp => ProcFiles {
                pid: self.pid_file(),
                stderr: self.state_dir.join("dnsmasq.stderr"),
            },
            Role::Dns => ProcFiles {
                pid: self.dns_pid_file(),
                stderr: self.state_dir.join("dns.stderr"),
            },
        }
    }
}

/// The two processes of a network: DHCP (bound to the bridge with `SO_BINDTODEVICE`, which dnsmasq
/// only does when it has no `--listen-address`) and DNS (bound to the gateway addresses only, never to
/// `169.254.169.254`, which every kumo bridge carries and only one process could bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Dhcp,
    Dns,
}

struct ProcFiles {
    pid: PathBuf,
    stderr: PathBuf,
}

/// One fixed DHCP assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    /// `aa:bb:cc:dd:ee:ff` (any case; written lowercase).
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Sanitized to a DNS label when written; dropped if nothing valid remains.
    pub hostname: String,
}

fn check_common(cfg: &DnsmasqConfig) -> Result<Vec<Ipv4Cidr>> {
    if cfg.lease_secs < 120 {
        return Err(Error::invalid("lease_secs", "at least 120 seconds"));
    }
    if !cfg.subnets.iter().any(|s| s.dhcp) {
        return Err(Error::invalid("subnets", "no subnet is served by DHCP"));
    }
    let mut nets = Vec::new();
    for s in &cfg.subnets {
        let net = Ipv4Cidr::parse(&s.cidr)?;
        match s.gateway {
            Some(gw) if !net.contains(gw) => {
                return Err(Error::invalid(
                    "gateway",
                    format!("{gw} is outside {}", s.cidr),
                ));
            }
            None if s.dhcp => {
                return Err(Error::invalid(
                    "gateway",
                    format!("DHCP subnet {} has no gateway", s.id),
                ));
            }
            _ => {}
        }
        for (dst, _) in &s.routes {
            Ipv4Cidr::parse(dst)?;
        }
        nets.push(net);
    }
    Ok(nets)
}

/// The DHCP dnsmasq's arguments (without the program name) for `cfg`.
pub fn argv(cfg: &DnsmasqConfig) -> Result<Vec<String>> {
    let nets = check_common(cfg)?;
    let p = |path: PathBuf| path.display().to_string();
    let mut a: Vec<String> = vec![
        "--conf-file=/dev/null".into(),
        "--port=0".into(),
        "--bind-interfaces".into(),
        format!("--interface={}", cfg.bridge),
        "--except-interface=lo".into(),
    ];
    for (s, net) in cfg.subnets.iter().zip(&nets).filter(|(s, _)| s.dhcp) {
        let tag = s.tag();
        a.push(format!(
            "--dhcp-range=set:{tag},{},static,{},{}",
            net.network(),
            net.mask(),
            cfg.lease_secs
        ));
        let gw = s.gateway.map(|g| g.to_string());
        match &gw {
            Some(g) => a.push(format!("--dhcp-option=tag:{tag},option:router,{g}")),
            None => a.push(format!("--dhcp-option=tag:{tag},option:router")),
        }
        let dns: Vec<String> = if s.dns_servers.is_empty() {
            gw.iter().cloned().collect()
        } else {
            s.dns_servers.iter().map(Ipv4Addr::to_string).collect()
        };
        if !dns.is_empty() {
            a.push(format!(
                "--dhcp-option=tag:{tag},option:dns-server,{}",
                dns.join(",")
            ));
        }
        if !s.routes.is_empty() {
            // RFC 3442: a client that gets option 121 ignores option 3, so the default route
            // goes into 121 as well.
            let mut r: Vec<String> = s.routes.iter().map(|(d, n)| format!("{d},{n}")).collect();
            if let Some(g) = &gw {
                r.push(format!("0.0.0.0/0,{g}"));
            }
            a.push(format!(
                "--dhcp-option=tag:{tag},option:classless-static-route,{}",
                r.join(",")
            ));
        }
    }
    a.extend([
        format!("--dhcp-option=option:mtu,{}", cfg.mtu),
        format!("--domain={}", cfg.domain),
        format!("--dhcp-hostsfile={}", p(cfg.hosts_file())),
        format!("--dhcp-leasefile={}", p(cfg.lease_file())),
        format!("--pid-file={}", p(cfg.pid_file())),
        "--dhcp-authoritative".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
        format!("--log-facility={}", p(cfg.log_file())),
    ]);
    Ok(a)
}

/// The DNS dnsmasq's arguments (without the program name) for `cfg`: port 53 on the gateways only,
/// names from the DNS hosts file under the network's domain, authoritative for that domain, no
/// upstream (nothing leaves the host).
pub fn dns_argv(cfg: &DnsmasqConfig) -> Result<Vec<String>> {
    check_common(cfg)?;
    let p = |path: PathBuf| path.display().to_string();
    let mut a: Vec<String> = vec![
        "--conf-file=/dev/null".into(),
        "--port=53".into(),
        "--bind-interfaces".into(),
    ];
    a.extend(
        cfg.dns_addresses()
            .iter()
            .map(|g| format!("--listen-address={g}")),
    );
    a.extend([
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--addn-hosts={}", p(cfg.dns_hosts_file())),
        format!("--domain={}", cfg.domain),
        format!("--local=/{}/", cfg.domain),
        "--expand-hosts".into(),
        format!("--pid-file={}", p(cfg.dns_pid_file())),
        "--user=root".into(),
        format!("--log-facility={}", p(cfg.dns_log_file())),
    ]);
    Ok(a)
}

fn role_argv(cfg: &DnsmasqConfig, role: Role) -> Result<Vec<String>> {
    match role {
        Role::Dhcp => argv(cfg),
        Role::Dns => dns_argv(cfg),
    }
}

/// Normalize a MAC to lowercase `aa:bb:cc:dd:ee:ff`.
pub fn normalize_mac(mac: &str) -> Result<String> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(Error::invalid(
            "mac",
            format!("`{mac}` is not aa:bb:cc:dd:ee:ff"),
        ));
    }
    Ok(mac.to_ascii_lowercase())
}

/// A DNS label from any name: lowercase letters, digits and `-`, at most 63, no leading/trailing `-`.
pub fn sanitize_hostname(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped.trim_matches('-').to_string()
}

/// The two names files: the DHCP hosts file (one `MAC,IP[,hostname]` line per host on a DHCP
/// subnet, sorted by IP) and the DNS hosts file (`IP name name.<domain>` per named host, sorted by
/// IP). Refuses addresses outside every subnet and duplicate MACs or IPs (an IPAM bug must not
/// become a DHCP race).
pub fn render_hosts(cfg: &DnsmasqConfig, hosts: &[DhcpHost]) -> Result<(String, String)> {
    let nets = cfg
        .subnets
        .iter()
        .map(|s| Ok((Ipv4Cidr::parse(&s.cidr)?, s.dhcp)))
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(hosts.len());
    let (mut macs, mut ips) = (HashSet::new(), HashSet::new());
    for h in hosts {
        let mac = normalize_mac(&h.mac)?;
        let Some((_, dhcp)) = nets.iter().find(|(n, _)| n.contains(h.ip)) else {
            return Err(Error::invalid(
                "ip",
                format!("{} is outside every subnet of {}", h.ip, cfg.bridge),
            ));
        };
        if !macs.insert(mac.clone()) || !ips.insert(h.ip) {
            return Err(Error::conflict(format!(
                "duplicate DHCP host {mac} / {}",
                h.ip
            )));
        }
        rows.push((h.ip, mac, sanitize_hostname(&h.hostname), *dhcp));
    }
    rows.sort();
    let mut dhcp = String::new();
    let mut dns = String::new();
    for (ip, mac, name, on_dhcp) in rows {
        if on_dhcp {
            if name.is_empty() {
                dhcp.push_str(&format!("{mac},{ip}\n"));
            } else {
                dhcp.push_str(&format!("{mac},{ip},{name}\n"));
            }
        }
        if !name.is_empty() {
            dns.push_str(&format!("{ip} {name} {name}.{}\n", cfg.domain));
        }
    }
    Ok((dhcp, dns))
}

fn lease_matches(line: &str, mac: &str, ip: Ipv4Addr) -> bool {
    // `<expiry> <mac> <ip> <hostname> <client-id>`
    let mut f = line.split_whitespace().skip(1);
    let (m, i) = (f.next(), f.next());
    m.is_some_and(|m| m.eq_ignore_ascii_case(mac)) || i.is_some_and(|i| i.parse() == Ok(ip))
}

/// True if the lease file text holds a lease for this MAC or this IP.
pub fn lease_present(leases: &str, mac: &str, ip: Ipv4Addr) -> bool {
    leases.lines().any(|l| lease_matches(l, mac, ip))
}

/// The lease file text without the leases for this MAC or this IP.
pub fn leases_without(leases: &str, mac: &str, ip: Ipv4Addr) -> String {
    leases
        .lines()
        .filter(|l| !lease_matches(l, mac, ip))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A network's running dnsmasq pair (DHCP + DNS), started or adopted by [`Dnsmasq::ensure`].
#[derive(Debug)]
pub struct Dnsmasq {
    cfg: DnsmasqConfig,
    dhcp: Proc,
    dns: Proc,
}

#[derive(Debug)]
struct Proc {
    argv: Vec<String>,
    pid: i32,
}

/// What a pidfile points at.
enum Found {
    None,
    /// Our dnsmasq with exactly the planned argv.
    Current(i32),
    /// Our dnsmasq (our pidfile on its command line) with another argv.
    Stale(i32),
}

fn find(files: &ProcFiles, argv: &[String]) -> Result<Found> {
    let text = read_or_empty(&files.pid)?;
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(Found::None);
    };
    if pid <= 1 || !alive(pid) {
        return Ok(Found::None);
    }
    let Some(cl) = cmdline(pid) else {
        return Ok(Found::None);
    };
    let pidfile_arg = format!("--pid-file={}", files.pid.display());
    let is_dnsmasq = cl.first().is_some_and(|p| p.ends_with("dnsmasq"));
    Ok(if is_dnsmasq && cl[1..] == *argv {
        Found::Current(pid)
    } else if is_dnsmasq && cl.contains(&pidfile_arg) {
        Found::Stale(pid)
    } else {
        Found::None
    })
}

fn terminate(pid: i32, pid_file: &Path) -> Result<()> {
    signal(pid, libc::SIGTERM)?;
    if !wait_until(Duration::from_secs(5), || !alive(pid)) {
        signal(pid, libc::SIGKILL)?;
        wait_until(Duration::from_secs(2), || !alive(pid));
    }
    match std::fs::remove_file(pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::internal_with(
            format!("removing {}", pid_file.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Start or adopt one process of the pair.
fn ensure_proc(cfg: &DnsmasqConfig, role: Role) -> Result<Proc> {
    let argv = role_argv(cfg, role)?;
    let files = cfg.files(role);
    match find(&files, &argv)? {
        Found::Current(pid) => {
            // An agent that crashed between writing a names file and SIGHUP left dnsmasq with an
            // old view; one reload on adoption closes that gap.
            signal(pid, libc::SIGHUP)?;
            return Ok(Proc { argv, pid });
        }
        Found::Stale(pid) => terminate(pid, &files.pid)?,
        Found::None => {}
    }
    let pid = start(&cfg.bridge, &files, &argv)?;
    Ok(Proc { argv, pid })
}

fn stop_proc(p: &Proc, pid_file: &Path) -> Result<()> {
    if alive(p.pid) && cmdline(p.pid).is_some_and(|c| c.get(1..) == Some(&p.argv[..])) {
        terminate(p.pid, pid_file)
    } else {
        Ok(())
    }
}

/// Write `content` to `path` if it differs; true if written.
fn replace_if_changed(path: &Path, content: &str) -> Result<bool> {
    if path.exists() && read_or_empty(path)? == content {
        return Ok(false);
    }
    write_atomic(path, content)?;
    Ok(true)
}

impl Dnsmasq {
    /// Start the network's DHCP and DNS servers, or adopt those already running with this
    /// configuration. The bridge must exist and carry every gateway address.
    pub fn ensure(cfg: DnsmasqConfig) -> Result<Self> {
        argv(&cfg)?;
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(io_err(format!("creating {}", cfg.state_dir.display())))?;
        for f in [cfg.hosts_file(), cfg.dns_hosts_file()] {
            if !f.exists() {
                write_atomic(&f, "")?;
            }
        }
        let dhcp = ensure_proc(&cfg, Role::Dhcp)?;
        let dns = match ensure_proc(&cfg, Role::Dns) {
            Ok(d) => d,
            Err(e) => {
                let _ = stop_proc(&dhcp, &cfg.pid_file());
                return Err(e);
            }
        };
        Ok(Dnsmasq { cfg, dhcp, dns })
    }

    /// Stop whatever dnsmasq kumo left in `state_dir` (found through its pidfiles), e.g. for a
    /// network that no longer has a DHCP subnet. Ok if none runs.
    pub fn stop_in(state_dir: &Path) -> Result<()> {
        for (pid_file, stderr) in [("dnsmasq.pid", "dnsmasq.stderr"), ("dns.pid", "dns.stderr")] {
            let files = ProcFiles {
                pid: state_dir.join(pid_file),
                stderr: state_dir.join(stderr),
            };
            // An empty argv never matches: anything of ours is Stale.
            if let Found::Stale(pid) | Found::Current(pid) = find(&files, &[])? {
                terminate(pid, &files.pid)?;
            }
        }
        Ok(())
    }

    /// The DHCP server's PID.
    pub fn pid(&self) -> i32 {
        self.dhcp.pid
    }
    /// The DNS server's PID.
    pub fn dns_pid(&self) -> i32 {
        self.dns.pid
    }
    /// True if both processes are still running.
    pub fn is_running(&self) -> bool {
        alive(self.dhcp.pid) && alive(self.dns.pid)
    }
    pub fn config(&self) -> &DnsmasqConfig {
        &self.cfg
    }

    /// Replace the fixed assignments and the names. Returns true if a file changed (and its dnsmasq
    /// was told).
    pub fn set_hosts(&self, hosts: &[DhcpHost]) -> Result<bool> {
        let (dhcp, dns) = render_hosts(&self.cfg, hosts)?;
        let dhcp_changed = replace_if_changed(&self.cfg.hosts_file(), &dhcp)?;
        if dhcp_changed {
            signal(self.dhcp.pid, libc::SIGHUP)?;
        }
        let dns_changed = replace_if_changed(&self.cfg.dns_hosts_file(), &dns)?;
        if dns_changed {
            signal(self.dns.pid, libc::SIGHUP)?;
        }
        Ok(dhcp_changed || dns_changed)
    }

    /// The current lease file text.
    pub fn leases(&self) -> Result<String> {
        read_or_empty(&self.cfg.lease_file())
    }

    /// Make sure no lease for this MAC or IP remains (see the module docs for how).
    pub fn release(&mut self, mac: &str, ip: Ipv4Addr) -> Result<()> {
        let mac = normalize_mac(mac)?;
        let gone = |d: &Dnsmasq| d.leases().map(|l| !lease_present(&l, &mac, ip));
        if gone(self)? {
            return Ok(());
        }
        if super::run("dhcp_release", &[&self.cfg.bridge, &ip.to_string(), &mac]).is_ok() {
            let mut last = Ok(false);
            if wait_until(Duration::from_secs(3), || {
                last = gone(self);
                !matches!(last, Ok(false))
            }) {
                return last.map(|_| ());
            }
        } else {
            tracing::warn!(bridge = %self.cfg.bridge, "dhcp_release unavailable or failed; rewriting the lease file");
        }
        let files = self.cfg.files(Role::Dhcp);
        terminate(self.dhcp.pid, &files.pid)?;
        let leases = self.leases()?;
        write_atomic(&self.cfg.lease_file(), &leases_without(&leases, &mac, ip))?;
        self.dhcp.pid = start(&self.cfg.bridge, &files, &self.dhcp.argv)?;
        Ok(())
    }

    /// Stop both processes (SIGTERM, then SIGKILL after 5 s) and remove their pidfiles. The names and
    /// lease files stay, so a later [`Dnsmasq::ensure`] resumes with the same leases.
    pub fn stop(self) -> Result<()> {
        let r = stop_proc(&self.dhcp, &self.cfg.pid_file());
        stop_proc(&self.dns, &self.cfg.dns_pid_file())?;
        r
    }
}

fn start(bridge: &str, files: &ProcFiles, argv: &[String]) -> Result<i32> {
    let _ = std::fs::remove_file(&files.pid);
    let stderr = std::fs::File::create(&files.stderr)
        .map_err(io_err(format!("creating {}", files.stderr.display())))?;
    // dnsmasq forks; the parent exits once the daemon is ready (or reports why it is not).
    let status = std::process::Command::new("dnsmasq")
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .status()
        .map_err(io_err("cannot run `dnsmasq` (Debian package dnsmasq-base)"))?;
    if !status.success() {
        let why = std::fs::read_to_string(&files.stderr).unwrap_or_default();
        return Err(Error::internal(format!(
            "dnsmasq for {bridge} failed to start ({status}): {}",
            why.trim()
        )));
    }
    let mut pid = None;
    wait_until(Duration::from_secs(5), || {
        pid = read_or_empty(&files.pid)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|&p| alive(p));
        pid.is_some()
    });
    pid.ok_or_else(|| Error::internal(format!("dnsmasq for {bridge} wrote no pidfile")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn subnet(id: &str, third: u8, dhcp: bool) -> DhcpSubnet {
        DhcpSubnet {
            id: id.into(),
            cidr: format!("198.18.{third}.0/24"),
            gateway: Some(Ipv4Addr::new(198, 18, third, 1)),
            dhcp,
            dns_servers: vec![],
            routes: vec![],
        }
    }

    fn cfg() -> DnsmasqConfig {
        let mut second = subnet("subnet-b", 1, true);
        second.dns_servers = vec![Ipv4Addr::new(198, 18, 1, 53), Ipv4Addr::new(198, 18, 1, 54)];
        second.routes = vec![("198.18.99.0/24".into(), Ipv4Addr::new(198, 18, 1, 254))];
        let mut third = subnet("subnet-c", 2, false);
        third.gateway = None;
        DnsmasqConfig {
            bridge: "kbr0".into(),
            domain: "prod.kumo.internal".into(),
            subnets: vec![subnet("subnet-A", 0, true), second, third],
            mtu: 1450,
            lease_secs: DEFAULT_LEASE_SECS,
            state_dir: "/var/lib/kumo/net/net-1".into(),
        }
    }

    #[test]
    fn dhcp_argv_has_one_tagged_range_per_dhcp_subnet() {
        insta::assert_snapshot!(argv(&cfg()).unwrap().join("\n"), @r"
        --conf-file=/dev/null
        --port=0
        --bind-interfaces
        --interface=kbr0
        --except-interface=lo
        --dhcp-range=set:subnet-a,198.18.0.0,static,255.255.255.0,43200
        --dhcp-option=tag:subnet-a,option:router,198.18.0.1
        --dhcp-option=tag:subnet-a,option:dns-server,198.18.0.1
        --dhcp-range=set:subnet-b,198.18.1.0,static,255.255.255.0,43200
        --dhcp-option=tag:subnet-b,option:router,198.18.1.1
        --dhcp-option=tag:subnet-b,option:dns-server,198.18.1.53,198.18.1.54
        --dhcp-option=tag:subnet-b,option:classless-static-route,198.18.99.0/24,198.18.1.254,0.0.0.0/0,198.18.1.1
        --dhcp-option=option:mtu,1450
        --domain=prod.kumo.internal
        --dhcp-hostsfile=/var/lib/kumo/net/net-1/hosts
        --dhcp-leasefile=/var/lib/kumo/net/net-1/leases
        --pid-file=/var/lib/kumo/net/net-1/dnsmasq.pid
        --dhcp-authoritative
        --no-resolv
        --no-hosts
        --user=root
        --log-facility=/var/lib/kumo/net/net-1/dnsmasq.log
        ");
        let mut bad = cfg();
        bad.subnets[0].gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert!(argv(&bad).is_err());
        bad = cfg();
        bad.lease_secs = 60;
        assert!(argv(&bad).is_err());
        bad = cfg();
        bad.subnets[0].gateway = None;
        assert!(argv(&bad).is_err(), "a DHCP subnet needs a gateway");
        bad = cfg();
        for s in &mut bad.subnets {
            s.dhcp = false;
        }
        assert!(argv(&bad).is_err());
    }

    #[test]
    fn dns_argv_listens_on_gateways_only() {
        insta::assert_snapshot!(dns_argv(&cfg()).unwrap().join("\n"), @r"
        --conf-file=/dev/null
        --port=53
        --bind-interfaces
        --listen-address=198.18.0.1
        --listen-address=198.18.1.1
        --no-resolv
        --no-hosts
        --addn-hosts=/var/lib/kumo/net/net-1/dns-hosts
        --domain=prod.kumo.internal
        --local=/prod.kumo.internal/
        --expand-hosts
        --pid-file=/var/lib/kumo/net/net-1/dns.pid
        --user=root
        --log-facility=/var/lib/kumo/net/net-1/dns.log
        ");
    }

    fn net(name: &str) -> Network {
        Network {
            id: "net-0123456789abcdef0".into(),
            name: name.into(),
            project: "p".into(),
            kind: Default::default(),
            vlan_id: None,
            physical_network: None,
            vni: None,
            mtu: 1400,
            external: false,
            nat: false,
            bridge: "kbr1".into(),
            cidr: None,
            created_at: String::new(),
        }
    }

    fn model_subnet(id: &str, net_id: &str, third: u8, gw: bool, dhcp: bool) -> Subnet {
        Subnet {
            id: id.into(),
            name: id.into(),
            project: "p".into(),
            network_id: net_id.into(),
            cidr: format!("198.18.{third}.0/24"),
            gateway: gw.then(|| format!("198.18.{third}.1")),
            allocation_pools: vec![],
            reserved: vec![],
            dhcp,
            dns_servers: vec![],
            routes: vec![kumo_types::Route {
                destination: "198.18.99.0/24".into(),
                nexthop: format!("198.18.{third}.254"),
            }],
            created_at: String::new(),
        }
    }

    #[test]
    fn config_from_the_model() {
        let n = net("Research_Net");
        assert_eq!(network_domain(&n), "research-net.kumo.internal");
        assert_eq!(
            network_domain(&net("__")),
            "net-0123456789abcdef0.kumo.internal"
        );
        let subnets = [
            model_subnet("sub-b", &n.id, 1, true, true),
            model_subnet("sub-a", &n.id, 0, false, true),
            model_subnet("sub-x", "net-other", 5, true, true),
        ];
        let c = DnsmasqConfig::for_network(&n, &subnets, "/d")
            .unwrap()
            .unwrap();
        assert_eq!(c.bridge, "kbr1");
        assert_eq!(c.mtu, 1400);
        let ids: Vec<(&str, bool)> = c.subnets.iter().map(|s| (s.id.as_str(), s.dhcp)).collect();
        assert_eq!(
            ids,
            [("sub-a", false), ("sub-b", true)],
            "sorted, gateway-less not on DHCP"
        );
        assert_eq!(
            c.subnets[1].routes,
            [("198.18.99.0/24".to_string(), Ipv4Addr::new(198, 18, 1, 254))]
        );
        assert_eq!(c.dns_addresses(), [Ipv4Addr::new(198, 18, 1, 1)]);
        let no_dhcp = [model_subnet("sub-b", &n.id, 1, true, false)];
        assert!(
            DnsmasqConfig::for_network(&n, &no_dhcp, "/d")
                .unwrap()
                .is_none()
        );
        let mut bad = model_subnet("sub-b", &n.id, 1, true, true);
        bad.dns_servers = vec!["nope".into()];
        assert!(DnsmasqConfig::for_network(&n, &[bad], "/d").is_err());
    }

    fn host(mac: &str, ip: [u8; 4], name: &str) -> DhcpHost {
        DhcpHost {
            mac: mac.into(),
            ip: Ipv4Addr::from(ip),
            hostname: name.into(),
        }
    }

    #[test]
    fn names_files_are_sorted_sanitized_and_checked() {
        let (dhcp, dns) = render_hosts(
            &cfg(),
            &[
                host("52:54:00:AA:00:02", [198, 18, 1, 20], "Web_Server.1"),
                host("52:54:00:aa:00:01", [198, 18, 0, 10], "__"),
                host("52:54:00:aa:00:03", [198, 18, 2, 10], "static-1"),
            ],
        )
        .unwrap();
        assert_eq!(
            dhcp,
            "52:54:00:aa:00:01,198.18.0.10\n52:54:00:aa:00:02,198.18.1.20,web-server-1\n"
        );
        assert_eq!(
            dns,
            "198.18.1.20 web-server-1 web-server-1.prod.kumo.internal\n\
             198.18.2.10 static-1 static-1.prod.kumo.internal\n"
        );
        assert_eq!(
            render_hosts(&cfg(), &[]).unwrap(),
            (String::new(), String::new())
        );
        let outside = render_hosts(&cfg(), &[host("52:54:00:aa:00:01", [198, 18, 9, 10], "a")]);
        assert!(outside.is_err());
        let dup_ip = [
            host("52:54:00:aa:00:01", [198, 18, 0, 10], "a"),
            host("52:54:00:aa:00:02", [198, 18, 0, 10], "b"),
        ];
        assert!(matches!(
            render_hosts(&cfg(), &dup_ip),
            Err(Error::Conflict { .. })
        ));
        assert!(render_hosts(&cfg(), &[host("52:54:00:aa:00", [198, 18, 0, 10], "a")]).is_err());
    }

    #[test]
    fn lease_lines() {
        let leases = "1700000000 52:54:00:aa:00:01 198.18.0.10 a 01:52:54:00:aa:00:01\n\
                      1700000000 52:54:00:aa:00:02 198.18.0.20 b *\n";
        let ip = Ipv4Addr::new(198, 18, 0, 10);
        assert!(lease_present(leases, "52:54:00:AA:00:01", ip));
        let rest = leases_without(leases, "52:54:00:aa:00:01", ip);
        assert_eq!(rest, "1700000000 52:54:00:aa:00:02 198.18.0.20 b *\n");
        assert!(!lease_present(&rest, "52:54:00:aa:00:01", ip));
        // The IP alone also matches (a lease held by an older MAC for a reused address).
        assert!(lease_present(
            leases,
            "52:54:00:ff:ff:ff",
            Ipv4Addr::new(198, 18, 0, 20)
        ));
    }
}
