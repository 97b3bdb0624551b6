//! Pure helpers shared by the backends: key ranges for prefixes and compare evaluation.

use std::cmp::Ordering;

use crate::{Compare, CompareOp, CompareTarget, KeyValue};

/// The smallest byte string greater than every key that starts with `prefix`, or `None` when no such
/// bound exists (empty prefix, or a prefix of only 0xff bytes): the range is then unbounded above.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether `c` holds against the current state of its key (`None` = absent).
///
/// As in etcd: an absent key has create/mod revision and version 0; a `Value` compare against an
/// absent key is always false (there is no value to compare, whatever the operator).
pub fn compare_holds(c: &Compare, kv: Option<&KeyValue>) -> bool {
    let ord = match (&c.target, kv) {
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::ModRevision(r), kv) => kv.map_or(0, |k| k.mod_revision).cmp(r),
        (CompareTarget::CreateRevision(r), kv) => kv.map_or(0, |k| k.create_revision).cmp(r),
        (CompareTarget::Version(v), kv) => kv.map_or(0, |k| k.version).cmp(v),
    };
    match c.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Less => ord == Ordering::Less,
        CompareOp::Greater => ord == Ordering::Greater,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kv(value: &[u8], create: i64, modr: i64, version: i64) -> KeyValue {
        KeyValue {
            key: "k".into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modr,
            version,
            lease: 0,
        }
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn absent_key_compares_as_zero() {
        assert!(compare_holds(&Compare::absent("k"), None));
        assert!(compare_holds(&Compare::mod_revision("k", 0), None));
        assert!(!compare_holds(
            &Compare::absent("k"),
            Some(&kv(b"v", 3, 4, 2))
        ));
        let c = Compare {
            key: "k".into(),
            op: CompareOp::Less,
            target: CompareTarget::Version(1),
        };
        assert!(compare_holds(&c, None));
    }

    #[test]
    fn value_compare_on_absent_key_is_false_for_every_op() {
        for op in [
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Less,
            CompareOp::Greater,
        ] {
            let c = Compare {
                key: "k".into(),
                op,
                target: CompareTarget::Value(vec![]),
            };
            assert!(!compare_holds(&c, None), "{op:?}");
        }
    }

    #[test]
    fn ops_order_values_bytewise_and_revisions_numerically() {
        let cur = kv(b"b", 3, 7, 2);
        let t = |op, target| {
            compare_holds(
                &Compare {
                    key: "k".into(),
                    op,
                    target,
                },
                Some(&cur),
            )
        };
        assert!(t(CompareOp::Greater, CompareTarget::Value(b"a".to_vec())));
        assert!(t(CompareOp::Less, CompareTarget::Value(b"c".to_vec())));
        assert!(t(CompareOp::NotEqual, CompareTarget::Value(b"a".to_vec())));
        assert!(t(CompareOp::Equal, CompareTarget::ModRevision(7)));
        assert!(t(CompareOp::Greater, CompareTarget::ModRevision(6)));
        assert!(!t(CompareOp::Less, CompareTarget::CreateRevision(3)));
        assert!(t(CompareOp::Equal, CompareTarget::Version(2)));
    }
}
