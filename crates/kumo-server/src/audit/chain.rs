//! The audit hash chain, as pure functions: sealing a record and verifying a sequence of them.
//!
//! `hash = hex(SHA-256(prev_hash ‖ canonical))` where `prev_hash` is the previous record's hash as
//! 64 lowercase hex characters ([`GENESIS`], 64 zeros, for the first record) and `canonical` is the
//! record's JSON without `hash`, fields in a fixed order, absent values as `null`, no whitespace.

use kumo_types::{AuditRecord, AuditVerification};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditEntry;

/// The `prev_hash` of record 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain's head (`/audit-head`): the last record's sequence number and hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// Every field but `hash`, in a fixed order (serde serializes struct fields in declaration order).
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    time: &'a str,
    user: &'a Option<String>,
    project: &'a Option<String>,
    credential: &'a Option<String>,
    source: &'a Option<String>,
    api: &'a str,
    method: &'a str,
    path: &'a str,
    action: &'a str,
    target: &'a [String],
    status: u16,
    error_code: &'a Option<String>,
    prev_hash: &'a str,
}

/// The canonical bytes of a record (without its hash).
pub fn canonical(r: &AuditRecord) -> Vec<u8> {
    serde_json::to_vec(&Canonical {
        seq: r.seq,
        time: &r.time,
        user: &r.user,
        project: &r.project,
        credential: &r.credential,
        source: &r.source,
        api: &r.api,
        method: &r.method,
        path: &r.path,
        action: &r.action,
        target: &r.target,
        status: r.status,
        error_code: &r.error_code,
        prev_hash: &r.prev_hash,
    })
    .unwrap_or_default()
}

/// The hash a record must carry.
pub fn hash_of(r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(r.prev_hash.as_bytes());
    h.update(canonical(r));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The record `seq` for `entry`, linked to `prev_hash` and sealed with its hash.
pub fn seal(seq: u64, time: String, e: &AuditEntry, prev_hash: &str) -> AuditRecord {
    let mut r = AuditRecord {
        seq,
        time,
        user: e.user.clone(),
        project: e.project.clone(),
        credential: e.credential.clone(),
        source: e.source.clone(),
        api: e.api.clone(),
        method: e.method.clone(),
        path: e.path.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        status: e.status,
        error_code: e.error_code.clone(),
        prev_hash: prev_hash.to_string(),
        hash: String::new(),
    };
    r.hash = hash_of(&r);
    r
}

/// Checks records in key order, one at a time (so a long chain is verified page by page).
#[derive(Debug)]
pub struct Verifier {
    expected: u64,
    prev: String,
    broken: Option<(u64, String)>,
    /// The last pruned record (0 when none was).
    anchor_seq: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::from_anchor(None)
    }
}

impl Verifier {
    /// A verifier that starts after the last pruned record (`anchor`: its sequence number and
    /// hash), or at record 1 with [`GENESIS`].
    pub fn from_anchor(anchor: Option<&Head>) -> Verifier {
        let (seq, hash) = anchor.map_or((0, GENESIS.to_string()), |a| (a.seq, a.hash.clone()));
        Verifier {
            expected: seq + 1,
            prev: hash,
            broken: None,
            anchor_seq: seq,
        }
    }

    /// Whether a break was found (later records need not be read).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// The next stored record: its key's sequence number and the record, or why it did not decode.
    pub fn push(&mut self, key_seq: u64, rec: Result<AuditRecord, String>) {
        if self.broken.is_some() {
            return;
        }
        let seq = self.expected;
        let fail = |why: String| Some((seq, why));
        self.broken = match rec {
            _ if key_seq != seq => fail(format!(
                "record {seq} is missing (the next stored record is {key_seq})"
            )),
            Err(why) => fail(format!("record {seq} cannot be read: {why}")),
            Ok(r) if r.seq != seq => fail(format!("record {seq} claims to be record {}", r.seq)),
            Ok(r) if r.prev_hash != self.prev => fail(format!(
                "record {seq} does not link to record {}'s hash",
                seq - 1
            )),
            Ok(r) if hash_of(&r) != r.hash => fail(format!(
                "record {seq} was changed: its hash does not match its contents"
            )),
            Ok(r) => {
                self.prev = r.hash;
                self.expected += 1;
                None
            }
        };
    }

    /// The verdict, given the stored head.
    pub fn finish(self, head: Option<&Head>) -> AuditVerification {
        let last = self.expected - 1;
        let checked = last - self.anchor_seq;
        let (head_seq, head_hash) =
            head.map_or((0, GENESIS.to_string()), |h| (h.seq, h.hash.clone()));
        let broken = self.broken.or_else(|| {
            if head_seq != last {
                Some((
                    last.min(head_seq) + 1,
                    format!("the head names record {head_seq} but the chain ends at record {last}"),
                ))
            } else if head_hash != self.prev {
                Some((
                    head_seq,
                    format!("the head's hash is not record {head_seq}'s"),
                ))
            } else {
                None
            }
        });
        AuditVerification {
            ok: broken.is_none(),
            checked,
            head_seq,
            head_hash,
            first_broken_seq: broken.as_ref().map(|b| b.0),
            message: broken.map(|b| b.1),
            pruned_through: self.anchor_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u16) -> AuditEntry {
        AuditEntry {
            user: Some("alice".into()),
            project: Some("p".into()),
            credential: Some("tok-1".into()),
            source: Some("127.0.0.1".into()),
            api: "rest".into(),
            method: "POST".into(),
            path: "/v1/instances".into(),
            action: "instances.create".into(),
            target: vec![],
            status: 200 + i,
            error_code: None,
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let r = seal(seq, format!("t{seq}"), &entry(seq as u16), &prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn verify(recs: &[AuditRecord], head: Option<&Head>) -> AuditVerification {
        let mut v = Verifier::default();
        for r in recs {
            v.push(r.seq, Ok(r.clone()));
        }
        v.finish(head)
    }

    fn head_of(recs: &[AuditRecord]) -> Head {
        let last = recs.last().expect("records");
        Head {
            seq: last.seq,
            hash: last.hash.clone(),
        }
    }

    #[test]
    fn an_intact_chain_verifies() {
        let recs = chain(5);
        assert_eq!(recs[0].prev_hash, GENESIS);
        assert_eq!(recs[1].prev_hash, recs[0].hash);
        let v = verify(&recs, Some(&head_of(&recs)));
        assert!(v.ok, "{v:?}");
        assert_eq!(v.checked, 5);
        assert!(verify(&[], None).ok, "an empty chain is intact");
    }

    #[test]
    fn a_changed_record_is_found() {
        let mut recs = chain(5);
        let head = head_of(&recs);
        recs[2].status = 201; // someone rewrites history
        let v = verify(&recs, Some(&head));
        assert!(!v.ok);
        assert_eq!(v.first_broken_seq, Some(3), "{v:?}");
        assert!(v.message.unwrap_or_default().contains("changed"));
    }

    #[test]
    fn a_rehashed_record_breaks_the_next_link() {
        let mut recs = chain(5);
        let head = head_of(&recs);
        recs[2].user = Some("mallory".into());
        recs[2].hash = hash_of(&recs[2]);
        let v = verify(&recs, Some(&head));
        assert_eq!(v.first_broken_seq, Some(4), "{v:?}");
    }

    #[test]
    fn missing_records_and_a_wrong_head_are_found() {
        let recs = chain(5);
        let head = head_of(&recs);
        let mut gap = recs.clone();
        gap.remove(1);
        assert_eq!(verify(&gap, Some(&head)).first_broken_seq, Some(2));
        let truncated = &recs[..3];
        let v = verify(truncated, Some(&head));
        assert_eq!(v.first_broken_seq, Some(4), "{v:?}");
        let mut v = Verifier::default();
        v.push(1, Err("bad json".into()));
        assert_eq!(v.finish(None).first_broken_seq, Some(1));
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor() {
        let recs = chain(6);
        let head = head_of(&recs);
        let anchor = head_of(&recs[..2]);
        let mut v = Verifier::from_anchor(Some(&anchor));
        for r in &recs[2..] {
            v.push(r.seq, Ok(r.clone()));
        }
        let out = v.finish(Some(&head));
        assert!(out.ok, "{out:?}");
        assert_eq!((out.checked, out.pruned_through), (4, 2));
        // A record removed beyond the anchor is still found.
        let mut v = Verifier::from_anchor(Some(&anchor));
        for r in &recs[3..] {
            v.push(r.seq, Ok(r.clone()));
        }
        assert_eq!(v.finish(Some(&head)).first_broken_seq, Some(3));
        // An anchor moved forward (hiding record 3) does not match record 4's link.
        let mut moved = head_of(&recs[..3]);
        moved.hash = recs[1].hash.clone();
        let mut v = Verifier::from_anchor(Some(&moved));
        for r in &recs[3..] {
            v.push(r.seq, Ok(r.clone()));
        }
        assert_eq!(v.finish(Some(&head)).first_broken_seq, Some(4));
        // Everything pruned: the anchor is the head.
        let v = Verifier::from_anchor(Some(&head));
        let out = v.finish(Some(&head));
        assert!(
            out.ok && out.checked == 0 && out.pruned_through == 6,
            "{out:?}"
        );
    }

    #[test]
    fn the_canonical_form_is_stable() {
        let r = seal(1, "2026-01-01T00:00:00.000Z".into(), &entry(0), GENESIS);
        let c = String::from_utf8(canonical(&r)).expect("utf8");
        assert!(c.starts_with("{\"seq\":1,\"time\":"), "{c}");
        assert!(!c.contains("\"hash\""), "{c}");
        assert!(
            c.ends_with(&format!("\"prev_hash\":\"{GENESIS}\"}}")),
            "{c}"
        );
        assert_eq!(hash_of(&r), r.hash);
        assert_eq!(r.hash.len(), 64);
    }
}
