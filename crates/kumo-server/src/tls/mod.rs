//! TLS: the cluster CA, each server's certificate, and the TLS listener (`--tls-listen`).
//!
//! Invariants:
//! - One CA per cluster, in the store at [`CA_KEY`] (certificate and private key, PEM). The first
//!   server to start writes it with `Compare::absent`; every other server (several servers on one
//!   etcd) loads the winner. The store is the source of truth; `<data-dir>/tls/ca.pem` and `ca.key`
//!   (0600) are copies for the operator and the CLI, rewritten from the store on every start. Anyone
//!   who can read the store can therefore sign host certificates: the store (etcd) must be protected
//!   like the CA key it holds (the trade-off k3s makes with its bootstrap data; see decision 0009).
//! - Every server makes itself a fresh key and certificate on every start (serverAuth; SANs from
//!   [`ca::server_sans`]), kept in `<data-dir>/tls/server.pem` and `server.key`. It presents the chain
//!   `[server, CA]`, so a joining agent can find the CA it pinned by fingerprint in the handshake.
//! - Client certificates are optional in the handshake and, when sent, must chain to the CA. What
//!   they may do is decided per route in [`crate::auth`], from the [`crate::auth::TlsPeer`]
//!   extension [`listener`] attaches to every request.

pub mod ca;
pub mod identity;
pub mod listener;
pub mod operator;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kumo_store::{Compare, Op};
use kumo_types::{Error, Result, now_rfc3339};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::storeutil::{commit, encode, get_json};

pub use ca::ClusterCa;

/// The cluster CA's record in the store.
pub const CA_KEY: &str = "/cluster/ca";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaRecord {
    cert_pem: String,
    key_pem: String,
    fingerprint: String,
    created_at: String,
}

/// `<data-dir>/tls`.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The cluster CA: loaded from the store, or made on the cluster's first start. A CA already in
/// `<data-dir>/tls` (a data directory whose store was reset) is adopted rather than replaced, so the
/// hosts that joined with it keep working.
pub async fn ensure_ca(app: &App, data_dir: Option<&Path>) -> Result<ClusterCa> {
    if let Some((rec, _)) = get_json::<CaRecord>(app.kv(), CA_KEY).await? {
        return ClusterCa::from_pem(&rec.cert_pem, &rec.key_pem);
    }
    let local = data_dir.and_then(|d| {
        let dir = tls_dir(d);
        let cert = std::fs::read_to_string(dir.join("ca.pem")).ok()?;
        let key = std::fs::read_to_string(dir.join("ca.key")).ok()?;
        match ClusterCa::from_pem(&cert, &key) {
            Ok(ca) => Some(ca),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "ignoring an unreadable CA in the data directory");
                None
            }
        }
    });
    let ca = match local {
        Some(ca) => ca,
        None => ClusterCa::generate(unix_now())?,
    };
    let rec = CaRecord {
        cert_pem: ca.cert_pem.clone(),
        key_pem: ca.key_pem.clone(),
        fingerprint: ca.fingerprint(),
        created_at: now_rfc3339(),
    };
    if commit(
        app.kv(),
        vec![Compare::absent(CA_KEY)],
        vec![Op::put(CA_KEY, encode(&rec)?)],
    )
    .await?
    {
        tracing::info!(fingerprint = %rec.fingerprint, "cluster CA created");
        return Ok(ca);
    }
    // Another server won the race: use its CA.
    let (rec, _) = get_json::<CaRecord>(app.kv(), CA_KEY)
        .await?
        .ok_or_else(|| Error::internal("the cluster CA vanished from the store"))?;
    ClusterCa::from_pem(&rec.cert_pem, &rec.key_pem)
}

/// Write `contents` to `path` atomically with `mode`.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Copy the CA to `<data-dir>/tls/ca.pem` (0644) and `ca.key` (0600).
pub fn write_ca_files(data_dir: &Path, ca: &ClusterCa) -> Result<()> {
    let dir = tls_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    write_file(&dir.join("ca.key"), &ca.key_pem, 0o600)?;
    write_file(&dir.join("ca.pem"), &ca.cert_pem, 0o644)?;
    Ok(())
}

/// What the TLS listeners serve with.
pub struct ServerTls {
    pub config: std::sync::Arc<rustls::ServerConfig>,
    pub fingerprint: String,
}

/// Issue this server's certificate for its TLS listen addresses and `extra_sans`, keep it in
/// `<data-dir>/tls/server.{pem,key}`, and build the rustls configuration (with the operator's
/// certificate, if given, for the names it covers: [`operator`]).
pub fn server_tls(
    data_dir: &Path,
    ca: &ClusterCa,
    listen: &[SocketAddr],
    extra_sans: &[String],
    operator: Option<&operator::OperatorCert>,
) -> Result<ServerTls> {
    for s in extra_sans {
        ca::validate_san(s)?;
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let hostname = hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| kumo_types::validate_host_name("hostname", h).is_ok());
    let local = if listen.iter().any(|a| a.ip().is_unspecified()) {
        local_ips()
    } else {
        Vec::new()
    };
    let sans = ca::server_sans(listen, extra_sans, hostname, &local);
    let cn = format!("kumo server {}", hostname.unwrap_or("?"));
    let cert = ca.issue_server_cert(&sans, &cn, unix_now())?;
    let dir = tls_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    write_file(&dir.join("server.key"), &cert.key_pem, 0o600)?;
    write_file(
        &dir.join("server.pem"),
        &format!("{}{}", cert.cert_pem, ca.cert_pem),
        0o644,
    )?;
    tracing::info!(sans = ?sans, "server certificate issued by the cluster CA");
    Ok(ServerTls {
        config: listener::server_config_with(ca, &cert, operator)?,
        fingerprint: ca.fingerprint(),
    })
}

/// The addresses of this host's interfaces (for a listener on `0.0.0.0` or `::`); link-local IPv6
/// addresses are left out (a certificate cannot name their zone).
pub fn local_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family says its real type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = if family == libc::AF_INET {
            // SAFETY: AF_INET addresses are sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
        } else if family == libc::AF_INET6 {
            // SAFETY: AF_INET6 addresses are sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            IpAddr::from(sin6.sin6_addr.s6_addr)
        } else {
            continue;
        };
        let link_local = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        if !link_local && !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}
