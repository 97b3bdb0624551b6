//! Operator certificates (`kumo server --tls-cert FILE --tls-key FILE`): a certificate the operator
//! gives (from the company CA, ACME, …) for the names users type, served on the TLS listeners next
//! to the cluster CA's server certificate.
//!
//! Which one a connection gets is decided by the TLS SNI name ([`choose`], pure): a name the
//! operator certificate covers gets the operator certificate; anything else — an IP address (no
//! SNI), or another name — gets the cluster certificate. Joined agents pin and trust only the
//! cluster CA, so they must reach the servers by an address or a name the operator certificate does
//! not cover (docs/identity.md#tls).

use std::path::Path;
use std::sync::Arc;

use kumo_types::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// The operator's certificate chain and key, with the DNS names it covers.
#[derive(Debug, Clone)]
pub struct OperatorCert {
    /// Lowercase DNS names of the leaf's subject alternative names (`*.example.com` allowed).
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

/// Load and check `cert` (PEM chain, leaf first) and `key` (PEM private key).
pub fn load(cert: &Path, key: &Path) -> Result<OperatorCert> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| Error::invalid("tls", format!("cannot read {}: {e}", p.display())))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid("tls-cert", format!("{}: {e:?}", cert.display())))?;
    let leaf = chain.first().ok_or_else(|| {
        Error::invalid(
            "tls-cert",
            format!("{} holds no certificate", cert.display()),
        )
    })?;
    let names = dns_names(leaf);
    if names.is_empty() {
        return Err(Error::invalid(
            "tls-cert",
            format!(
                "{}: the certificate names no DNS name (subjectAltName)",
                cert.display()
            ),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| Error::invalid("tls-key", format!("{}: {e:?}", key.display())))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| {
        Error::invalid(
            "tls-key",
            format!("{} does not fit {}: {e}", key.display(), cert.display()),
        )
    })?;
    Ok(OperatorCert {
        names,
        key: Arc::new(ck),
    })
}

/// The DNS subject alternative names of a DER certificate, lowercased.
pub fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Does the SNI `name` fall under the certificate's `names` (pure)? Exact, or `*.` matching
/// exactly one leftmost label.
pub fn covers(names: &[String], name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => *n == name,
    })
}

/// Which certificate a connection gets (pure): `true` for the operator's.
pub fn choose(names: &[String], sni: Option<&str>) -> bool {
    sni.is_some_and(|s| covers(names, s))
}

/// Serves the operator certificate to the names it covers, the cluster certificate to the rest.
#[derive(Debug)]
pub struct Resolver {
    pub operator: OperatorCert,
    pub cluster: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if choose(&self.operator.names, hello.server_name()) {
            Some(self.operator.key.clone())
        } else {
            Some(self.cluster.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_names_pick_the_operator_certificate() {
        let names = vec![
            "kumo.example.com".to_string(),
            "*.cloud.example.com".to_string(),
        ];
        assert!(choose(&names, Some("kumo.example.com")));
        assert!(choose(&names, Some("KUMO.example.com.")));
        assert!(choose(&names, Some("api.cloud.example.com")));
        assert!(
            !choose(&names, Some("a.b.cloud.example.com")),
            "one label only"
        );
        assert!(!choose(&names, Some("cloud.example.com")));
        assert!(
            !choose(&names, Some("server-1")),
            "other names: the cluster certificate"
        );
        assert!(
            !choose(&names, None),
            "IP addresses send no SNI: the cluster certificate"
        );
    }

    #[test]
    fn loads_a_chain_and_its_key_and_refuses_a_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec![name.to_string()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            (cert.pem(), key.serialize_pem())
        };
        let (cert, key) = make("kumo.example.com");
        let (_, other_key) = make("x.example.com");
        let (c, k, o) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("o.pem"),
        );
        std::fs::write(&c, cert).expect("write");
        std::fs::write(&k, key).expect("write");
        std::fs::write(&o, other_key).expect("write");
        let op = load(&c, &k).expect("loads");
        assert_eq!(op.names, vec!["kumo.example.com".to_string()]);
        let e = load(&c, &o).expect_err("key of another certificate");
        assert_eq!(e.field(), Some("tls-key"));
        assert!(load(&dir.path().join("missing.pem"), &k).is_err());
    }
}
