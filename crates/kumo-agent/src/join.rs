//! Joining a cluster, and the credentials `kumo agent` talks to the control plane with.
//!
//! - `http://` server (loopback, or an isolated test network): the bearer token from `--token-file`,
//!   as in single-host and split mode.
//! - `https://` server: the host's certificate (mTLS), kept in `<data-dir>/tls/` — `host.key` (0600,
//!   never leaves the host), `host.pem`, `ca.pem`, and `host-name` (the name the certificate is for).
//!   On first start there is none: with `--join-token` and `--ca-fingerprint` the agent makes a key and
//!   a certificate signing request, and joins (`POST /internal/v1/join`) over a connection on which it
//!   trusts the server only if the server's chain holds a CA certificate whose SHA-256 is the pinned
//!   fingerprint ([`PinnedCa`]); the answer's CA must have that fingerprint too. Afterwards, and on
//!   every restart, it trusts only that CA and presents its certificate.
//!
//! Deciding is pure ([`plan`], [`resolve_host_name`]); the rest reads and writes those files.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use kumo_types::{ErrorBody, JoinRequest, JoinResponse, format_fingerprint, parse_fingerprint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::control::http::Credentials;

/// The agent's TLS files in `<data-dir>/tls/`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn new(data_dir: &Path) -> Self {
        TlsFiles {
            dir: data_dir.join("tls"),
        }
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("host.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("host.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn host_name(&self) -> PathBuf {
        self.dir.join("host-name")
    }
    /// The host has joined: its key, certificate and CA are all there.
    pub fn joined(&self) -> bool {
        self.key().is_file() && self.cert().is_file() && self.ca().is_file()
    }
}

/// How the agent will authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Bearer token from `--token-file` (plain HTTP).
    Token,
    /// The host certificate it already has.
    Certificate,
    /// Join first with the token, pinning this CA fingerprint.
    Join {
        token: String,
        fingerprint: [u8; 32],
    },
}

/// Decide how to authenticate (pure). A join token on a host that has already joined is ignored (a
/// restart with the same command line must not fail); joining needs the TLS listener and a pin.
pub fn plan(
    server_url: &str,
    joined: bool,
    join_token: Option<&str>,
    ca_fingerprint: Option<&str>,
) -> Result<Plan, String> {
    let token = join_token.map(str::trim).filter(|t| !t.is_empty());
    if !server_url.starts_with("https://") {
        if token.is_some() {
            return Err(format!(
                "--join-token needs the server's TLS listener: use --server https://HOST:PORT (its \
                 --tls-listen address), not {server_url}"
            ));
        }
        return Ok(Plan::Token);
    }
    if joined {
        return Ok(Plan::Certificate);
    }
    let Some(token) = token else {
        return Err(
            "this host has not joined the cluster yet: pass --join-token and --ca-fingerprint \
             (both printed by `kumo cluster join-token create`)"
                .into(),
        );
    };
    let Some(fp) = ca_fingerprint.map(str::trim).filter(|f| !f.is_empty()) else {
        return Err(
            "--join-token needs --ca-fingerprint sha256:… (printed by `kumo cluster join-token \
             create`): the agent trusts the server only if it presents that CA"
                .into(),
        );
    };
    Ok(Plan::Join {
        token: token.to_string(),
        fingerprint: parse_fingerprint(fp)?,
    })
}

/// The name this host registers (and its certificate is) for (pure): `--host-name`, else the name
/// it joined as, else the system hostname. A `--host-name` that differs from the joined name is an
/// error: the certificate is only good for the name it was issued to.
pub fn resolve_host_name(
    flag: Option<&str>,
    joined_as: Option<&str>,
    system: Option<&str>,
    tls_dir: &Path,
) -> Result<String, String> {
    let clean = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match (clean(flag), clean(joined_as), clean(system)) {
        (Some(f), Some(j), _) if f != j => Err(format!(
            "this host joined the cluster as {j:?} and its certificate is for that name only, not \
             {f:?}: drop --host-name, or remove {} and join again with a new token",
            tls_dir.display()
        )),
        (Some(f), _, _) | (None, Some(f), _) | (None, None, Some(f)) => Ok(f),
        (None, None, None) => Err("cannot tell this host's name: pass --host-name".into()),
    }
}

fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
}

/// What [`prepare`] needs from the command line.
#[derive(Debug, Clone)]
pub struct AuthArgs<'a> {
    pub server: &'a str,
    pub data_dir: &'a Path,
    pub token_file: &'a Path,
    pub join_token: Option<&'a str>,
    pub ca_fingerprint: Option<&'a str>,
    pub host_name: Option<&'a str>,
}

/// The credentials to talk to the control plane with, joining first if needed, and the host name
/// to register under (`None`: the agent's default).
pub async fn prepare(a: &AuthArgs<'_>) -> anyhow::Result<(Credentials, Option<String>)> {
    let files = TlsFiles::new(a.data_dir);
    let plan = plan(a.server, files.joined(), a.join_token, a.ca_fingerprint)
        .map_err(anyhow::Error::msg)?;
    if plan == Plan::Token {
        let token = std::fs::read_to_string(a.token_file)
            .with_context(|| format!("reading {}", a.token_file.display()))?;
        return Ok((
            Credentials::Bearer(token.trim().to_string()),
            a.host_name.map(str::to_string),
        ));
    }
    let joined_as = std::fs::read_to_string(files.host_name()).ok();
    let name = resolve_host_name(
        a.host_name,
        joined_as.as_deref(),
        system_hostname().as_deref(),
        &files.dir,
    )
    .map_err(anyhow::Error::msg)?;
    if let Plan::Join { token, fingerprint } = plan {
        join(a.server, &token, fingerprint, &name, &files).await?;
    } else if a.join_token.is_some() {
        tracing::info!(dir = %files.dir.display(), "this host has already joined; --join-token is ignored");
    }
    Ok((credentials(&files)?, Some(name)))
}

/// The credentials in `files` (after a join or a renewal).
pub fn credentials(files: &TlsFiles) -> anyhow::Result<Credentials> {
    Ok(Credentials::Certificate {
        identity_pem: [
            std::fs::read(files.cert())
                .with_context(|| format!("reading {}", files.cert().display()))?,
            std::fs::read(files.key())
                .with_context(|| format!("reading {}", files.key().display()))?,
        ]
        .concat(),
        ca_pem: std::fs::read(files.ca())
            .with_context(|| format!("reading {}", files.ca().display()))?,
    })
}

/// Seconds since the epoch at which the first certificate of `pem` expires.
pub fn not_after(pem: &[u8]) -> anyhow::Result<i64> {
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .context("no certificate in the file")?
        .map_err(|e| anyhow::anyhow!("reading the certificate: {e:?}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("parsing the certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Renew the host certificate if it expires within `within`: a new key and CSR, signed by the
/// control plane (over mTLS with the current certificate); the files are replaced and the client
/// switches to the new certificate. Returns the new serial when it renewed.
pub async fn renew_if_due(
    cp: &crate::control::http::HttpControlPlane,
    files: &TlsFiles,
    host_name: &str,
    within: Duration,
) -> anyhow::Result<Option<String>> {
    let cert = std::fs::read(files.cert())
        .with_context(|| format!("reading {}", files.cert().display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let left = not_after(&cert)? - now;
    if left > within.as_secs() as i64 {
        return Ok(None);
    }
    let (key, csr) = key_and_csr(host_name)?;
    let ans = cp
        .renew_certificate(host_name, &csr)
        .await
        .map_err(|e| anyhow::anyhow!("renewing the host certificate: {e}"))?;
    // Key first, then the certificate: a crash in between leaves a key that does not match the
    // certificate, which the next start reports; the old pair stays valid until it expires, so keep
    // copies until the new pair is in place.
    let old_key = files.dir.join("host.key.old");
    let old_cert = files.dir.join("host.pem.old");
    std::fs::copy(files.key(), &old_key).context("keeping the old key")?;
    std::fs::copy(files.cert(), &old_cert).context("keeping the old certificate")?;
    write_file(&files.key(), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&files.cert(), ans.certificate.as_bytes(), 0o644)?;
    let _ = std::fs::remove_file(&old_key);
    let _ = std::fs::remove_file(&old_cert);
    cp.set_credentials(credentials(files)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(host = host_name, serial = %ans.serial, not_after = %ans.not_after, "host certificate renewed");
    Ok(Some(ans.serial))
}

/// Check every `every` whether the certificate needs renewing (see [`renew_if_due`]).
pub async fn renewal_loop(
    cp: crate::control::http::HttpControlPlane,
    files: TlsFiles,
    host_name: String,
    within: Duration,
    every: Duration,
) {
    loop {
        if let Err(e) = renew_if_due(&cp, &files, &host_name, within).await {
            tracing::warn!(error = %format!("{e:#}"), "host certificate renewal failed; retrying later");
        }
        tokio::time::sleep(every).await;
    }
}

/// A new host key and a CSR for it.
fn key_and_csr(host_name: &str) -> anyhow::Result<(rcgen::KeyPair, String)> {
    let key = rcgen::KeyPair::generate().context("generating the host key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host_name);
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("making the certificate signing request")?;
    Ok((key, csr))
}

/// Trusts a server only if its chain contains the CA with the pinned fingerprint, and the server's
/// certificate is valid for the name dialled and signed by that CA. Used for the join only.
#[derive(Debug)]
pub struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Why the last verification failed (reqwest's error does not carry it intact).
    pub failure: Arc<Mutex<Option<String>>>,
}

impl PinnedCa {
    pub fn new(pin: [u8; 32]) -> Self {
        PinnedCa {
            pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            failure: Arc::default(),
        }
    }

    fn fail(&self, msg: String) -> rustls::Error {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
        rustls::Error::General(msg)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = format_fingerprint(&self.pin);
        let Some(ca) = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pin)
        else {
            let seen: Vec<String> = intermediates
                .iter()
                .map(|c| format_fingerprint(&Sha256::digest(c.as_ref()).into()))
                .collect();
            return Err(self.fail(format!(
                "CA fingerprint mismatch: the server presented CA {}, not the pinned {pinned} \
                 (--ca-fingerprint); refusing to join",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            )));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| self.fail(format!("the pinned CA certificate is unusable: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| self.fail(format!("building the verifier: {e}")))?;
        verifier
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
            .map_err(|e| {
                self.fail(format!(
                    "the server's certificate is not valid for {server_name:?} under the pinned CA {pinned}: {e}"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Join: make a key and a CSR, trade them and the token for a certificate, save everything.
pub async fn join(
    server: &str,
    token: &str,
    pin: [u8; 32],
    host_name: &str,
    files: &TlsFiles,
) -> anyhow::Result<()> {
    kumo_types::validate_host_name("host_name", host_name)?;
    let (key, csr) = key_and_csr(host_name)?;
    let verifier = Arc::new(PinnedCa::new(pin));
    let failure = verifier.failure.clone();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let url = format!("{}/internal/v1/join", server.trim_end_matches('/'));
    let body = JoinRequest {
        token: token.to_string(),
        host_name: host_name.to_string(),
        csr,
    };
    tracing::info!(server, host = host_name, pinned = %format_fingerprint(&pin), "joining the cluster");
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        match client.post(&url).json(&body).send().await {
            Ok(r) => break r,
            Err(e) => {
                if let Some(why) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    bail!("{why}");
                }
                if attempt >= 30 {
                    bail!("cannot reach {url}: {e:#}");
                }
                tracing::warn!(error = %e, "cannot reach the server yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let status = resp.status();
    let bytes = resp.bytes().await.context("reading the join answer")?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        bail!("the server refused the join ({status}): {msg}");
    }
    let ans: JoinResponse = serde_json::from_slice(&bytes).context("decoding the join answer")?;
    let ca_der = first_cert_der(&ans.ca_certificate)?;
    if Sha256::digest(&ca_der).as_slice() != pin {
        bail!(
            "CA fingerprint mismatch: the join answer's CA is {}, not the pinned {}",
            format_fingerprint(&Sha256::digest(&ca_der).into()),
            format_fingerprint(&pin)
        );
    }
    std::fs::create_dir_all(&files.dir)
        .with_context(|| format!("creating {}", files.dir.display()))?;
    write_file(&files.key(), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&files.ca(), ans.ca_certificate.as_bytes(), 0o644)?;
    write_file(&files.host_name(), host_name.as_bytes(), 0o644)?;
    // Last: its presence (with the two above) is what "joined" means.
    write_file(&files.cert(), ans.certificate.as_bytes(), 0o644)?;
    tracing::info!(host = host_name, serial = %ans.serial, not_after = %ans.not_after, "joined the cluster");
    Ok(())
}

fn first_cert_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("the join answer holds no CA certificate")?
        .map_err(|e| anyhow::anyhow!("reading the CA certificate: {e:?}"))?;
    Ok(der.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn plain_http_uses_the_token_file_and_refuses_join_tokens() {
        assert_eq!(
            plan("http://127.0.0.1:8470", false, None, None),
            Ok(Plan::Token)
        );
        let e = plan("http://10.0.0.1:8470", false, Some("jt-x.y"), Some(FP)).expect_err("http");
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn https_joins_once_then_uses_the_certificate() {
        let Ok(Plan::Join { token, fingerprint }) =
            plan("https://h:8471", false, Some(" jt-x.y "), Some(FP))
        else {
            panic!("expected a join");
        };
        assert_eq!(token, "jt-x.y");
        assert_eq!(fingerprint[31], 1);
        // Restarted with the same flags after joining: the certificate wins.
        assert_eq!(
            plan("https://h:8471", true, Some("jt-x.y"), Some(FP)),
            Ok(Plan::Certificate)
        );
        assert_eq!(
            plan("https://h:8471", true, None, None),
            Ok(Plan::Certificate)
        );
    }

    #[test]
    fn joining_needs_a_token_and_a_pin() {
        let e = plan("https://h:8471", false, None, None).expect_err("no token");
        assert!(e.contains("--join-token"), "{e}");
        let e = plan("https://h:8471", false, Some("jt-x.y"), None).expect_err("no pin");
        assert!(e.contains("--ca-fingerprint"), "{e}");
        let e = plan("https://h:8471", false, Some("jt-x.y"), Some("md5:00")).expect_err("bad pin");
        assert!(e.contains("not a SHA-256 fingerprint"), "{e}");
    }

    #[test]
    fn host_name_comes_from_the_flag_the_join_or_the_system() {
        let d = Path::new("/d/tls");
        assert_eq!(
            resolve_host_name(Some("h1"), None, Some("sys"), d),
            Ok("h1".into())
        );
        assert_eq!(
            resolve_host_name(None, Some("h1\n"), Some("sys"), d),
            Ok("h1".into())
        );
        assert_eq!(
            resolve_host_name(Some("h1"), Some("h1"), None, d),
            Ok("h1".into())
        );
        assert_eq!(
            resolve_host_name(None, None, Some("sys"), d),
            Ok("sys".into())
        );
        let e = resolve_host_name(Some("h2"), Some("h1"), None, d).expect_err("renamed");
        assert!(e.contains("\"h1\"") && e.contains("/d/tls"), "{e}");
        assert!(resolve_host_name(None, None, None, d).is_err());
    }
}
