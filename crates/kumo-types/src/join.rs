//! Joining hosts (issue 5): one-time join tokens, and the exchange in which a host's agent trades one
//! for a certificate signed by the cluster CA.
//!
//! Invariants:
//! - A join token's secret exists in clear only in the answer to its creation; the store keeps its
//!   SHA-256. A token is `<id>.<secret>`: the ID names it (list, delete, events), the secret proves it.
//! - A token is used at most once: it is marked used in the same compare-and-swap transaction that
//!   records the certificate issued with it.
//! - The CA is named by its fingerprint, `sha256:<64 lowercase hex digits>` of its DER certificate —
//!   what a joining agent pins (`--ca-fingerprint`) before it trusts the server.
//! - A host certificate names its host twice: subject CN and the URI SAN `kumo:host:<name>`; the
//!   servers read the URI.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Error;

/// Where a join token is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinTokenState {
    /// Can be used to join one host until it expires.
    Valid,
    /// Past its expiry; never used.
    Expired,
    /// A host joined with it.
    Used,
}

/// A join token as listed (its secret is shown only once, when it is created).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JoinToken {
    /// `jt-…`: names the token; not secret.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub state: JoinTokenState,
    /// The host that joined with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
}

/// `POST /v1/cluster/join-tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinTokenRequest {
    /// Seconds the token stays valid (default 3600, at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer to a join token's creation: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JoinTokenCreated {
    /// The token to pass to `kumo agent --join-token` (`<id>.<secret>`).
    pub token: String,
    /// The cluster CA's fingerprint, for `kumo agent --ca-fingerprint`.
    pub ca_fingerprint: String,
    pub join_token: JoinToken,
}

/// `POST /internal/v1/join`: a host asks for its certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// The name the host will register under; its certificate is for this name only.
    pub host_name: String,
    /// A PKCS#10 certificate signing request (PEM). Only its public key is used: the server decides
    /// every field of the certificate.
    pub csr: String,
}

/// The answer to a join: the host's certificate and the CA that signed it (both PEM).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JoinResponse {
    pub host_name: String,
    pub certificate: String,
    pub ca_certificate: String,
    /// The certificate's serial number (hex).
    pub serial: String,
    pub not_after: String,
}

/// `GET /internal/v1/ca`: the cluster CA certificate (PEM) and its fingerprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CaCertificate {
    pub certificate: String,
    pub fingerprint: String,
}

/// The URI SAN prefix that names a host in its certificate.
pub const HOST_URI_PREFIX: &str = "kumo:host:";

/// `kumo:host:<name>`.
pub fn host_uri(name: &str) -> String {
    format!("{HOST_URI_PREFIX}{name}")
}

/// A host name as certificates and registration use it: a DNS name (labels of letters, digits and
/// `-`, separated by dots; 1–63 characters per label, at most 253 in all; no leading or trailing
/// `-`), as `hostname` would print it.
pub fn validate_host_name(field: &str, name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::invalid(field, format!("host name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 253 {
        return bad("is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("must be dot-separated labels of 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("may contain only letters, digits, `-` and `.`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label that starts or ends with `-`");
        }
    }
    Ok(())
}

/// `sha256:<hex>` of a certificate's DER bytes, given its digest.
pub fn format_fingerprint(digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Parse a pinned fingerprint as an operator may paste it: `sha256:<hex>`, bare hex, upper or lower
/// case, with or without `:` between bytes (OpenSSL's `AB:CD:…`).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let t = s.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha256="))
        .or_else(|| t.strip_prefix("SHA256="))
        .unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "CA fingerprint {s:?} is not a SHA-256 fingerprint: expected `sha256:` and 64 hex digits \
             (as printed by `kumo cluster join-token create`)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|e| format!("CA fingerprint {s:?}: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in ["h1", "node-7", "rack1.dc2.example.org", "A1"] {
            assert!(validate_host_name("host_name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-h",
            "h-",
            "a..b",
            "h_1",
            "h 1",
            "kumo:host:x",
            &"a".repeat(64),
        ] {
            let e = validate_host_name("host_name", bad).expect_err(bad);
            assert_eq!(e.field(), Some("host_name"), "{bad}");
        }
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(validate_host_name("host_name", &long).is_err());
    }

    #[test]
    fn fingerprints_round_trip_in_every_spelling() {
        let d: [u8; 32] = core::array::from_fn(|i| (i * 7) as u8);
        let f = format_fingerprint(&d);
        assert!(f.starts_with("sha256:") && f.len() == 7 + 64, "{f}");
        assert_eq!(parse_fingerprint(&f), Ok(d));
        assert_eq!(parse_fingerprint(&f[7..]), Ok(d));
        assert_eq!(parse_fingerprint(&f.to_uppercase()), Ok(d));
        let openssl: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_fingerprint(&openssl.join(":")), Ok(d));
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint(&format!("sha256:{}", "g".repeat(64))).is_err());
    }
}
