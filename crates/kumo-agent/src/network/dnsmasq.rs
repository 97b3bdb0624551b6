//! One DHCP-only dnsmasq per network, as OpenStack Neutron and Incus run it.
//!
//! State lives in the network's directory (`paths::net_dir`): `dnsmasq.pid`, `hosts` (lines
//! `MAC,IP,hostname`), `leases`, `dnsmasq.log`, `dnsmasq.stderr`.
//!
//! Invariants:
//! - DNS is off (`--port=0`) and the range is `static`: only hosts kumo wrote to the hosts file get a
//!   lease, always the address kumo's IPAM chose.
//! - The process is found through its pidfile and adopted only if `/proc/<pid>/cmdline` is exactly the
//!   argv [`argv`] plans for the current configuration; a dnsmasq with our pidfile but another argv
//!   (changed MTU, lease time…) is stopped and restarted. So an agent restart never starts a second one.
//! - The hosts file is replaced atomically (write + rename) and dnsmasq gets SIGHUP only when its
//!   content changed, plus once when an agent adopts a running dnsmasq (a crash between rename and
//!   SIGHUP must not leave it with a stale view).
//! - dnsmasq answers only the options a client asks for: guests must request `mtu` (udhcpc `-O mtu`;
//!   dhclient and cloud-init's networkd do by default) to learn the network MTU.
//! - [`Dnsmasq::release`] leaves no lease line behind: `dhcp_release` (Debian `dnsmasq-utils`) first;
//!   if the line survives, dnsmasq is stopped, the line dropped from the lease file, dnsmasq started.
//!   Remove the host from the hosts file *before* releasing so the guest cannot take it again.
//! - dnsmasq runs as root (`--user=root`): it re-reads the hosts file on SIGHUP, and the data directory
//!   may not be readable by `nobody`. Dropping privileges needs a data layout readable by a dedicated
//!   user; that is future work.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kumo_types::{Error, Network, Result, Subnet};

use super::Ipv4Cidr;

/// Default DHCP lease time: 12 hours.
pub const DEFAULT_LEASE_SECS: u32 = 12 * 3600;

/// Everything that decides how a network's dnsmasq runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqConfig {
    /// The bridge dnsmasq serves (and only that one).
    pub bridge: String,
    /// The network, e.g. `198.18.0.0/24`.
    pub cidr: String,
    /// Handed to guests as router (the bridge's own address).
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// At least 120 (dnsmasq's minimum).
    pub lease_secs: u32,
    /// The network's state directory (created if missing).
    pub state_dir: PathBuf,
}

impl DnsmasqConfig {
    /// The configuration for a subnet of a kumo network with state in `state_dir` (`paths::net_dir`).
    pub fn for_subnet(
        net: &Network,
        subnet: &Subnet,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Self> {
        let gw = subnet.gateway.as_deref().unwrap_or_default();
        let gateway = gw.parse().map_err(|_| {
            Error::invalid(
                "gateway",
                format!("subnet {} has no usable gateway (`{gw}`)", subnet.id),
            )
        })?;
        Ok(DnsmasqConfig {
            bridge: net.bridge.clone(),
            cidr: subnet.cidr.clone(),
            gateway,
            mtu: net.mtu,
            lease_secs: DEFAULT_LEASE_SECS,
            state_dir: state_dir.into(),
        })
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
    fn stderr_file(&self) -> PathBuf {
        self.state_dir.join("dnsmasq.stderr")
    }
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

/// The dnsmasq arguments (without the program name) for `cfg`.
pub fn argv(cfg: &DnsmasqConfig) -> Result<Vec<String>> {
    let net = Ipv4Cidr::parse(&cfg.cidr)?;
    if !net.contains(cfg.gateway) {
        return Err(Error::invalid(
            "gateway",
            format!("{} is outside {}", cfg.gateway, cfg.cidr),
        ));
    }
    if cfg.lease_secs < 120 {
        return Err(Error::invalid("lease_secs", "at least 120 seconds"));
    }
    let p = |path: PathBuf| path.display().to_string();
    Ok(vec![
        "--conf-file=/dev/null".into(),
        "--port=0".into(),
        "--bind-interfaces".into(),
        format!("--interface={}", cfg.bridge),
        "--except-interface=lo".into(),
        format!(
            "--dhcp-range={},static,{},{}",
            net.network(),
            net.mask(),
            cfg.lease_secs
        ),
        format!("--dhcp-hostsfile={}", p(cfg.hosts_file())),
        format!("--dhcp-leasefile={}", p(cfg.lease_file())),
        format!("--pid-file={}", p(cfg.pid_file())),
        format!("--dhcp-option=option:router,{}", cfg.gateway),
        format!("--dhcp-option=option:mtu,{}", cfg.mtu),
        "--dhcp-authoritative".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
        format!("--log-facility={}", p(cfg.log_file())),
    ])
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

/// The hosts file content: one `MAC,IP[,hostname]` line per host, sorted by IP. Refuses addresses
/// outside the network and duplicate MACs or IPs (an IPAM bug must not become a DHCP race).
pub fn render_hosts(cidr: &str, hosts: &[DhcpHost]) -> Result<String> {
    let net = Ipv4Cidr::parse(cidr)?;
    let mut rows = Vec::with_capacity(hosts.len());
    let (mut macs, mut ips) = (HashSet::new(), HashSet::new());
    for h in hosts {
        let mac = normalize_mac(&h.mac)?;
        if !net.contains(h.ip) {
            return Err(Error::invalid("ip", format!("{} is outside {cidr}", h.ip)));
        }
        if !macs.insert(mac.clone()) || !ips.insert(h.ip) {
            return Err(Error::conflict(format!(
                "duplicate DHCP host {mac} / {}",
                h.ip
            )));
        }
        rows.push((h.ip, mac, sanitize_hostname(&h.hostname)));
    }
    rows.sort();
    Ok(rows
        .into_iter()
        .map(|(ip, mac, name)| {
            if name.is_empty() {
                format!("{mac},{ip}\n")
            } else {
                format!("{mac},{ip},{name}\n")
            }
        })
        .collect())
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

/// A running dnsmasq for one network, started or adopted by [`Dnsmasq::ensure`].
#[derive(Debug)]
pub struct Dnsmasq {
    cfg: DnsmasqConfig,
    argv: Vec<String>,
    pid: i32,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::internal_with(what, e)
}

fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::internal_with(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

/// Write a file atomically: `<path>.tmp`, fsync, rename.
fn write_atomic(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    f.write_all(content.as_bytes())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

/// True if the PID is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

fn signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions; the PID was verified to be our dnsmasq.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        return Err(Error::internal_with(
            format!("kill({pid}, {sig})"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the pidfile points at.
enum Found {
    None,
    /// Our dnsmasq with exactly the planned argv.
    Current(i32),
    /// Our dnsmasq (our pidfile on its command line) with another argv.
    Stale(i32),
}

fn find(cfg: &DnsmasqConfig, argv: &[String]) -> Result<Found> {
    let text = read_or_empty(&cfg.pid_file())?;
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(Found::None);
    };
    if pid <= 1 || !alive(pid) {
        return Ok(Found::None);
    }
    let Some(cl) = cmdline(pid) else {
        return Ok(Found::None);
    };
    let pidfile_arg = format!("--pid-file={}", cfg.pid_file().display());
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

impl Dnsmasq {
    /// Start the network's dnsmasq, or adopt the one already running with this configuration. The
    /// bridge must exist and carry its gateway address.
    pub fn ensure(cfg: DnsmasqConfig) -> Result<Self> {
        let argv = argv(&cfg)?;
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(io_err(format!("creating {}", cfg.state_dir.display())))?;
        if !cfg.hosts_file().exists() {
            write_atomic(&cfg.hosts_file(), "")?;
        }
        match find(&cfg, &argv)? {
            Found::Current(pid) => {
                // An agent that crashed between writing the hosts file and SIGHUP left dnsmasq with
                // an old view; one reload on adoption closes that gap.
                signal(pid, libc::SIGHUP)?;
                return Ok(Dnsmasq { cfg, argv, pid });
            }
            Found::Stale(pid) => terminate(pid, &cfg.pid_file())?,
            Found::None => {}
        }
        let pid = start(&cfg, &argv)?;
        Ok(Dnsmasq { cfg, argv, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn config(&self) -> &DnsmasqConfig {
        &self.cfg
    }

    /// Replace the fixed assignments. Returns true if the file changed (and dnsmasq was told).
    pub fn set_hosts(&self, hosts: &[DhcpHost]) -> Result<bool> {
        let content = render_hosts(&self.cfg.cidr, hosts)?;
        let path = self.cfg.hosts_file();
        if read_or_empty(&path)? == content && path.exists() {
            return Ok(false);
        }
        write_atomic(&path, &content)?;
        signal(self.pid, libc::SIGHUP)?;
        Ok(true)
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
        terminate(self.pid, &self.cfg.pid_file())?;
        let leases = self.leases()?;
        write_atomic(&self.cfg.lease_file(), &leases_without(&leases, &mac, ip))?;
        self.pid = start(&self.cfg, &self.argv)?;
        Ok(())
    }

    /// Stop dnsmasq (SIGTERM, then SIGKILL after 5 s) and remove its pidfile. The hosts and lease files
    /// stay, so a later [`Dnsmasq::ensure`] resumes with the same leases.
    pub fn stop(self) -> Result<()> {
        if alive(self.pid) && cmdline(self.pid).is_some_and(|c| c.get(1..) == Some(&self.argv[..]))
        {
            terminate(self.pid, &self.cfg.pid_file())
        } else {
            Ok(())
        }
    }
}

fn start(cfg: &DnsmasqConfig, argv: &[String]) -> Result<i32> {
    let pid_file = cfg.pid_file();
    let _ = std::fs::remove_file(&pid_file);
    let stderr_path = cfg.stderr_file();
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(io_err(format!("creating {}", stderr_path.display())))?;
    // dnsmasq forks; the parent exits once the daemon is ready (or reports why it is not).
    let status = std::process::Command::new("dnsmasq")
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .status()
        .map_err(io_err("cannot run `dnsmasq` (Debian package dnsmasq-base)"))?;
    if !status.success() {
        let why = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        return Err(Error::internal(format!(
            "dnsmasq for {} failed to start ({status}): {}",
            cfg.bridge,
            why.trim()
        )));
    }
    let mut pid = None;
    wait_until(Duration::from_secs(5), || {
        pid = read_or_empty(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|&p| alive(p));
        pid.is_some()
    });
    pid.ok_or_else(|| Error::internal(format!("dnsmasq for {} wrote no pidfile", cfg.bridge)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg() -> DnsmasqConfig {
        DnsmasqConfig {
            bridge: "kbr0".into(),
            cidr: "198.18.0.0/24".into(),
            gateway: Ipv4Addr::new(198, 18, 0, 1),
            mtu: 1450,
            lease_secs: DEFAULT_LEASE_SECS,
            state_dir: "/var/lib/kumo/net/net-1".into(),
        }
    }

    #[test]
    fn argv_is_dhcp_only_and_static() {
        insta::assert_snapshot!(argv(&cfg()).unwrap().join("\n"), @r"
        --conf-file=/dev/null
        --port=0
        --bind-interfaces
        --interface=kbr0
        --except-interface=lo
        --dhcp-range=198.18.0.0,static,255.255.255.0,43200
        --dhcp-hostsfile=/var/lib/kumo/net/net-1/hosts
        --dhcp-leasefile=/var/lib/kumo/net/net-1/leases
        --pid-file=/var/lib/kumo/net/net-1/dnsmasq.pid
        --dhcp-option=option:router,198.18.0.1
        --dhcp-option=option:mtu,1450
        --dhcp-authoritative
        --no-resolv
        --no-hosts
        --user=root
        --log-facility=/var/lib/kumo/net/net-1/dnsmasq.log
        ");
        let mut bad = cfg();
        bad.gateway = Ipv4Addr::new(10, 0, 0, 1);
        assert!(argv(&bad).is_err());
        bad = cfg();
        bad.lease_secs = 60;
        assert!(argv(&bad).is_err());
    }

    fn host(mac: &str, ip: [u8; 4], name: &str) -> DhcpHost {
        DhcpHost {
            mac: mac.into(),
            ip: Ipv4Addr::from(ip),
            hostname: name.into(),
        }
    }

    #[test]
    fn hosts_file_is_sorted_sanitized_and_checked() {
        let text = render_hosts(
            "198.18.0.0/24",
            &[
                host("52:54:00:AA:00:02", [198, 18, 0, 20], "Web_Server.1"),
                host("52:54:00:aa:00:01", [198, 18, 0, 10], "__"),
            ],
        )
        .unwrap();
        assert_eq!(
            text,
            "52:54:00:aa:00:01,198.18.0.10\n52:54:00:aa:00:02,198.18.0.20,web-server-1\n"
        );
        assert_eq!(render_hosts("198.18.0.0/24", &[]).unwrap(), "");
        let outside = render_hosts(
            "198.18.0.0/24",
            &[host("52:54:00:aa:00:01", [198, 18, 1, 10], "a")],
        );
        assert!(outside.is_err());
        let dup_ip = [
            host("52:54:00:aa:00:01", [198, 18, 0, 10], "a"),
            host("52:54:00:aa:00:02", [198, 18, 0, 10], "b"),
        ];
        assert!(matches!(
            render_hosts("198.18.0.0/24", &dup_ip),
            Err(Error::Conflict { .. })
        ));
        assert!(
            render_hosts(
                "198.18.0.0/24",
                &[host("52:54:00:aa:00", [198, 18, 0, 10], "a")]
            )
            .is_err()
        );
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
