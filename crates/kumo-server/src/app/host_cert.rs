//! Host certificates after the join: which certificate of a host is accepted (checked on every
//! mTLS request of the agents' API), renewal (a host trades a new key's CSR for a new certificate
//! over mTLS), and revocation (removing a host revokes its certificates).
//!
//! The record is `/host-certs/<host name>` ([`HostCertRecord`]). Accepted: its current serial, and
//! the serial a renewal replaced until that certificate expires; nothing once `revoked_at` is set.

use kumo_store::{Compare, Op};
use kumo_types::{Error, JoinResponse, Result, now_rfc3339, validate_host_name};

use super::App;
use super::join_token::{HOST_CERTS, HostCertRecord, rfc3339, unix_now};
use crate::storeutil::{commit, encode, get_json};

fn key(host_name: &str) -> String {
    format!("{HOST_CERTS}{host_name}")
}

/// Hex serials compare as numbers (DER drops leading zero bytes).
fn same_serial(a: &str, b: &str) -> bool {
    a.trim_start_matches('0')
        .eq_ignore_ascii_case(b.trim_start_matches('0'))
}

/// Why a presented certificate is not accepted, or `None` if it is (pure).
pub fn refusal(rec: Option<&HostCertRecord>, serial: &str, now_rfc: &str) -> Option<String> {
    let Some(r) = rec else {
        return Some("no certificate is on record for this host: join it again".into());
    };
    if let Some(at) = &r.revoked_at {
        return Some(format!(
            "this host's certificates were revoked at {at} (the host was removed); join it again \
             with a new token"
        ));
    }
    if same_serial(&r.serial, serial) {
        return None;
    }
    let previous_valid = r
        .previous_serial
        .as_deref()
        .is_some_and(|p| same_serial(p, serial))
        && r.previous_not_after.as_deref().is_some_and(|t| t > now_rfc);
    if previous_valid {
        return None;
    }
    Some(format!(
        "certificate serial {serial} is not this host's current one ({}): it was replaced",
        r.serial
    ))
}

/// Check the certificate (serial) a host presented.
pub async fn check(app: &App, host_name: &str, serial: &str) -> Result<()> {
    let rec = get_json::<HostCertRecord>(app.kv(), &key(host_name))
        .await?
        .map(|(r, _)| r);
    match refusal(rec.as_ref(), serial, &now_rfc3339()) {
        None => Ok(()),
        Some(message) => Err(Error::Unauthenticated { message }),
    }
}

/// Sign a new certificate for `host_name` (which authenticated with its current one).
pub async fn renew(app: &App, host_name: &str, csr: &str) -> Result<JoinResponse> {
    validate_host_name("host_name", host_name)?;
    let k = key(host_name);
    let (rec, rev) = get_json::<HostCertRecord>(app.kv(), &k)
        .await?
        .ok_or_else(|| Error::not_found("host certificate", host_name))?;
    if rec.revoked_at.is_some() {
        return Err(Error::Forbidden {
            message: format!("host {host_name} was removed; its certificates are revoked"),
        });
    }
    let ca = crate::tls::ensure_ca(app, None).await?;
    let now = unix_now();
    let cert = ca.sign_host_csr(csr, host_name, crate::tls::ca::new_serial(), now)?;
    let next = HostCertRecord {
        host_name: host_name.to_string(),
        serial: cert.serial.clone(),
        issued_at: now_rfc3339(),
        not_after: rfc3339(cert.not_after),
        join_token: rec.join_token.clone(),
        previous_serial: Some(rec.serial.clone()),
        previous_not_after: Some(rec.not_after.clone()),
        revoked_at: None,
    };
    if !commit(
        app.kv(),
        vec![Compare::mod_revision(&k, rev)],
        vec![Op::put(&k, encode(&next)?)],
    )
    .await?
    {
        return Err(Error::conflict(
            "the host's certificate changed meanwhile (another renewal?); retry",
        ));
    }
    super::event::record(
        app,
        host_name,
        "host.certificate_renewed",
        &format!(
            "serial {} valid until {} replaces {} (accepted until {})",
            next.serial, next.not_after, rec.serial, rec.not_after
        ),
    )
    .await?;
    Ok(JoinResponse {
        host_name: host_name.to_string(),
        certificate: cert.cert_pem,
        ca_certificate: ca.cert_pem.clone(),
        serial: cert.serial,
        not_after: next.not_after,
    })
}

/// The ops that revoke `host_name`'s certificates (none if it never joined).
pub async fn revoke_ops(app: &App, host_name: &str) -> Result<(Vec<Compare>, Vec<Op>)> {
    let k = key(host_name);
    let Some((mut rec, rev)) = get_json::<HostCertRecord>(app.kv(), &k).await? else {
        return Ok((vec![], vec![]));
    };
    rec.revoked_at = Some(now_rfc3339());
    Ok((
        vec![Compare::mod_revision(&k, rev)],
        vec![Op::put(&k, encode(&rec)?)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> HostCertRecord {
        HostCertRecord {
            host_name: "h1".into(),
            serial: "0a".into(),
            issued_at: "2026-11-25T00:00:00Z".into(),
            not_after: "2027-11-25T00:00:00Z".into(),
            join_token: "jt-1".into(),
            previous_serial: Some("09".into()),
            previous_not_after: Some("2026-12-01T00:00:00Z".into()),
            revoked_at: None,
        }
    }

    #[test]
    fn current_and_unexpired_previous_serials_are_accepted() {
        let now = "2026-11-26T00:00:00Z";
        assert_eq!(refusal(Some(&rec()), "0A", now), None);
        assert_eq!(refusal(Some(&rec()), "000a", now), None);
        assert_eq!(refusal(Some(&rec()), "09", now), None);
        let later = "2026-12-02T00:00:00Z";
        assert!(
            refusal(Some(&rec()), "09", later)
                .unwrap_or_default()
                .contains("replaced")
        );
        assert!(refusal(Some(&rec()), "08", now).is_some());
    }

    #[test]
    fn revoked_or_unknown_hosts_are_refused() {
        let mut r = rec();
        r.revoked_at = Some("2026-11-25T12:00:00Z".into());
        let why = refusal(Some(&r), "0a", "2026-11-26T00:00:00Z").unwrap_or_default();
        assert!(why.contains("revoked"), "{why}");
        assert!(refusal(None, "0a", "2026-11-26T00:00:00Z").is_some());
    }
}
