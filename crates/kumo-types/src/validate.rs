//! Validation helpers shared by every front end.

use crate::Error;

/// Names: 1–63 chars, lowercase letters, digits and `-`, starting with a letter, not ending in `-`
/// (a DNS label, so instance names can become hostnames).
pub fn name(field: &str, v: &str) -> Result<(), Error> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.as_bytes()[0].is_ascii_lowercase()
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{v:?} is not a valid name: use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names() {
        for ok in ["a", "web-1", "x2"] {
            assert!(name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a-", "a_b", &"a".repeat(64), "1a"] {
            let e = name("name", bad).unwrap_err();
            assert_eq!(e.field(), Some("name"), "{bad}");
        }
    }
}
