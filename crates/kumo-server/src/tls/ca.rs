//! The cluster CA as data: generate it, load it from PEM, and issue the two kinds of certificates
//! kumo uses — a server certificate per server (serverAuth, its listen addresses and names as SANs)
//! and a host certificate per joined agent (clientAuth, `kumo:host:<name>`). No I/O here: time and
//! serial numbers come in as arguments so the unit tests can pin them.
//!
//! Keys are ECDSA P-256 (what rustls, webpki, curl and OpenSSL all accept).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kumo_types::{Error, Result, format_fingerprint, host_uri};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// The CA certificate is valid this long.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Host (client) certificates are valid this long.
pub const HOST_CERT_VALIDITY_DAYS: i64 = 365;
/// Server certificates are reissued on every start and are valid this long.
pub const SERVER_CERT_VALIDITY_DAYS: i64 = 365;
/// Certificates start this long before "now", so a clock slightly behind still accepts them.
const BACKDATE_SECS: i64 = 3600;
const DAY: i64 = 86_400;

fn tls_err(what: &str, e: rcgen::Error) -> Error {
    Error::internal_with(what.to_string(), e)
}

fn at(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| Error::internal_with("certificate time", e))
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String> {
    rcgen::string::Ia5String::try_from(s.to_string())
        .map_err(|e| Error::internal_with(format!("certificate name {s:?}"), e))
}

/// `sha256:<hex>` of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    format_fingerprint(&Sha256::digest(der).into())
}

/// A fresh positive serial number: 16 random bytes with the top bit clear.
pub fn new_serial() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A subject alternative name of a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    fn parse(s: &str) -> San {
        match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.to_ascii_lowercase()),
        }
    }
}

/// The names a server certificate must carry, in order and without duplicates: every TLS listen
/// address (an unspecified one, `0.0.0.0` or `::`, stands for `local_ips`, the host's addresses),
/// every `--tls-san` (an IP or a DNS name), the host name, and loopback (`127.0.0.1`, `::1`,
/// `localhost`) so that clients on the server itself can use the TLS listener too.
pub fn server_sans(
    listen: &[SocketAddr],
    extra: &[String],
    hostname: Option<&str>,
    local_ips: &[IpAddr],
) -> Vec<San> {
    let mut out: Vec<San> = Vec::new();
    let mut push = |s: San| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for a in listen {
        if a.ip().is_unspecified() {
            local_ips
                .iter()
                .filter(|ip| ip.is_ipv4() == a.is_ipv4() || a.ip() == Ipv6Addr::UNSPECIFIED)
                .for_each(|ip| push(San::Ip(*ip)));
        } else {
            push(San::Ip(a.ip()));
        }
    }
    for e in extra.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        push(San::parse(e));
    }
    if let Some(h) = hostname.map(str::trim).filter(|h| !h.is_empty()) {
        push(San::Dns(h.to_ascii_lowercase()));
    }
    push(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    push(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    push(San::Dns("localhost".into()));
    out
}

/// Refuse `--tls-san` values that cannot be a DNS name or an IP address (before any certificate is
/// made, so the operator sees which one).
pub fn validate_san(s: &str) -> Result<()> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let wildcard_free = s.strip_prefix("*.").unwrap_or(s);
    kumo_types::validate_host_name("tls_san", wildcard_free)
}

/// A certificate and its private key, PEM and DER.
pub struct KeyedCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl KeyedCert {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A certificate issued to a host.
#[derive(Debug, Clone)]
pub struct HostCert {
    pub cert_pem: String,
    /// Hex serial number.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The cluster CA: its certificate and the key that signs with it.
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new CA (ECDSA P-256, valid [`CA_VALIDITY_DAYS`] from `now`, unix seconds).
    pub fn generate(now: i64) -> Result<ClusterCa> {
        let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kumo");
        dn.push(DnType::CommonName, "kumo cluster CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = at(now - BACKDATE_SECS)?;
        params.not_after = at(now + CA_VALIDITY_DAYS * DAY)?;
        params.serial_number = Some(SerialNumber::from_slice(&new_serial()));
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_err("self-signing the CA", e))?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Load a CA from its certificate and PKCS#8 key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| tls_err("reading the CA key", e))?;
        let cert_der = first_cert_der(cert_pem)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| tls_err("reading the CA certificate", e))?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    /// `sha256:<hex>` of the CA certificate: what joining agents pin.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// A fresh key and a server certificate for `sans` (serverAuth), valid from `now`.
    pub fn issue_server_cert(
        &self,
        sans: &[San],
        common_name: &str,
        now: i64,
    ) -> Result<KeyedCert> {
        let key = KeyPair::generate().map_err(|e| tls_err("generating the server key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kumo");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s {
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                San::Dns(d) => ia5(d).map(SanType::DnsName),
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = at(now - BACKDATE_SECS)?;
        params.not_after = at(now + SERVER_CERT_VALIDITY_DAYS * DAY)?;
        params.serial_number = Some(SerialNumber::from_slice(&new_serial()));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| tls_err("signing the server certificate", e))?;
        Ok(KeyedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// Sign a host's certificate signing request. Only the request's public key is used (its
    /// signature proves the host holds the key); every field of the certificate is decided here:
    /// subject CN and URI SAN `kumo:host:<host_name>`, clientAuth, [`HOST_CERT_VALIDITY_DAYS`].
    /// A request that cannot be parsed or whose signature does not verify is `Invalid` on `csr`.
    pub fn sign_host_csr(
        &self,
        csr_pem: &str,
        host_name: &str,
        serial: [u8; 16],
        now: i64,
    ) -> Result<HostCert> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            Error::invalid(
                "csr",
                format!("not a valid PEM certificate signing request (PKCS#10): {e}"),
            )
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kumo hosts");
        dn.push(DnType::CommonName, host_name);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(ia5(&host_uri(host_name))?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = at(now - BACKDATE_SECS)?;
        let not_after = now + HOST_CERT_VALIDITY_DAYS * DAY;
        params.not_after = at(not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|e| tls_err("signing the host certificate", e))?;
        Ok(HostCert {
            cert_pem: signed.pem(),
            serial: hex(&serial),
            not_after,
        })
    }
}

/// The first certificate of a PEM bundle, as DER.
pub fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| Error::internal("no certificate in PEM"))?
        .map_err(|e| Error::internal(format!("reading a PEM certificate: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01

    #[test]
    fn sans_cover_listen_addresses_extra_names_hostname_and_loopback() {
        let listen: Vec<SocketAddr> = vec![
            "198.19.0.1:8471".parse().expect("addr"),
            "198.19.0.1:9000".parse().expect("addr"),
        ];
        let sans = server_sans(
            &listen,
            &[
                "kumo.example.org".into(),
                "10.1.2.3".into(),
                "KUMO.example.org".into(),
            ],
            Some("node1"),
            &[],
        );
        assert_eq!(
            sans,
            vec![
                San::Ip("198.19.0.1".parse().expect("ip")),
                San::Dns("kumo.example.org".into()),
                San::Ip("10.1.2.3".parse().expect("ip")),
                San::Dns("node1".into()),
                San::Ip("127.0.0.1".parse().expect("ip")),
                San::Ip("::1".parse().expect("ip")),
                San::Dns("localhost".into()),
            ]
        );
    }

    #[test]
    fn unspecified_listen_address_stands_for_the_hosts_addresses() {
        let local: Vec<IpAddr> = vec![
            "192.0.2.7".parse().expect("ip"),
            "2001:db8::7".parse().expect("ip"),
        ];
        let v4 = server_sans(&["0.0.0.0:8471".parse().expect("a")], &[], None, &local);
        assert_eq!(v4[0], San::Ip(local[0]));
        assert!(!v4.contains(&San::Ip(local[1])), "0.0.0.0 is IPv4 only");
        let v6 = server_sans(&["[::]:8471".parse().expect("a")], &[], None, &local);
        assert!(v6.contains(&San::Ip(local[0])) && v6.contains(&San::Ip(local[1])));
    }

    #[test]
    fn tls_san_values_are_checked() {
        assert!(validate_san("10.0.0.1").is_ok());
        assert!(validate_san("kumo.example.org").is_ok());
        assert!(validate_san("*.example.org").is_ok());
        assert_eq!(
            validate_san("bad name").expect_err("space").field(),
            Some("tls_san")
        );
    }

    #[test]
    fn ca_round_trips_through_pem_and_keeps_its_fingerprint() {
        let ca = ClusterCa::generate(NOW).expect("ca");
        let again = ClusterCa::from_pem(&ca.cert_pem, &ca.key_pem).expect("reload");
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert!(ca.fingerprint().starts_with("sha256:"));
        let (_, x) = x509_parser::parse_x509_certificate(&ca.cert_der).expect("parse");
        assert!(x.is_ca());
        let days = (x.validity().not_after.timestamp() - NOW) / DAY;
        assert_eq!(days, CA_VALIDITY_DAYS);
    }

    #[test]
    fn host_certificate_takes_only_the_public_key_from_the_request() {
        use rcgen::PublicKeyData;
        let ca = ClusterCa::generate(NOW).expect("ca");
        let key = KeyPair::generate().expect("key");
        // The request asks for a CA certificate for another name: both are ignored.
        let mut asked = CertificateParams::new(vec!["evil.example.org".to_string()]).expect("p");
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let cert = ca.sign_host_csr(&csr, "h1", [1; 16], NOW).expect("sign");
        assert_eq!(cert.serial, "01".repeat(16));
        let der = first_cert_der(&cert.cert_pem).expect("der");
        let (_, x) = x509_parser::parse_x509_certificate(&der).expect("parse");
        assert!(!x.is_ca());
        assert_eq!(
            crate::tls::identity::identity_of(&der),
            Some(crate::tls::identity::PeerIdentity::Host("h1".into()))
        );
        assert_eq!(x.public_key().raw, key.subject_public_key_info().as_slice());
        let eku = x.extended_key_usage().expect("eku").expect("present").value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn bad_requests_are_invalid_on_csr() {
        let ca = ClusterCa::generate(NOW).expect("ca");
        let e = ca
            .sign_host_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "h1",
                [1; 16],
                NOW,
            )
            .expect_err("garbage");
        assert_eq!(e.field(), Some("csr"));
        assert_eq!(
            ca.sign_host_csr("hello", "h1", [1; 16], NOW)
                .expect_err("no pem")
                .field(),
            Some("csr")
        );
    }

    #[test]
    fn server_certificate_chains_to_the_ca_for_its_names() {
        let ca = ClusterCa::generate(NOW).expect("ca");
        let sans = server_sans(
            &["198.19.0.1:8471".parse().expect("a")],
            &[],
            Some("n1"),
            &[],
        );
        let c = ca
            .issue_server_cert(&sans, "kumo server n1", NOW)
            .expect("server cert");
        let (_, x) = x509_parser::parse_x509_certificate(&c.cert_der).expect("parse");
        assert_eq!(
            x.issuer(),
            x509_parser::parse_x509_certificate(&ca.cert_der)
                .expect("ca")
                .1
                .subject()
        );
        let eku = x.extended_key_usage().expect("eku").expect("present").value;
        assert!(eku.server_auth);
    }
}
