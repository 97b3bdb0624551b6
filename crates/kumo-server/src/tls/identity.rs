//! Who a client certificate names (pure: DER in, identity out). The TLS handshake has already
//! checked that the certificate chains to the cluster CA and is valid now; this only reads it.

use kumo_types::HOST_URI_PREFIX;
use x509_parser::extensions::GeneralName;

/// The identity a verified client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A joined host: URI SAN `kumo:host:<name>`.
    Host(String),
    /// Signed by the cluster CA but not a host certificate (its subject CN, or `?`).
    Other(String),
}

/// The serial number of a verified client certificate (hex), as a request extension: the agents'
/// API accepts only a host's current certificates (see `app::host_cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSerial(pub String);

/// The serial number of a DER certificate, lowercase hex.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(
        cert.raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// The identity of a DER certificate; `None` if it cannot be parsed.
pub fn identity_of(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let uri_host = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::URI(u) => u.strip_prefix(HOST_URI_PREFIX).map(str::to_string),
                _ => None,
            })
        })
        .filter(|name| kumo_types::validate_host_name("host", name).is_ok());
    if let Some(name) = uri_host {
        return Some(PeerIdentity::Host(name));
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("?")
        .to_string();
    Some(PeerIdentity::Other(cn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(cn: &str, uris: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(u.to_string().try_into().expect("ia5")))
            .collect();
        p.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn host_identity_comes_from_the_uri_san() {
        assert_eq!(
            identity_of(&cert("whatever", &["spiffe://x/y", "kumo:host:h1"])),
            Some(PeerIdentity::Host("h1".into()))
        );
    }

    #[test]
    fn a_certificate_without_a_host_uri_is_not_a_host() {
        assert_eq!(
            identity_of(&cert("h1", &[])),
            Some(PeerIdentity::Other("h1".into()))
        );
        // A malformed host name in the URI does not count either.
        assert_eq!(
            identity_of(&cert("x", &["kumo:host:a/b"])),
            Some(PeerIdentity::Other("x".into()))
        );
        assert_eq!(identity_of(b"not a certificate"), None);
    }
}
