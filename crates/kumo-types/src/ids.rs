//! Typed IDs: a short prefix, a dash and 17 lowercase hex digits, like AWS's (`i-0123456789abcdef0`).

use rand::Rng;

pub const INSTANCE: &str = "i";
pub const IMAGE: &str = "ami";
pub const KEY_PAIR: &str = "key";
pub const HOST: &str = "host";
pub const NETWORK: &str = "net";
pub const SUBNET: &str = "subnet";
pub const PORT: &str = "eni";
pub const ROUTER: &str = "rtr";
pub const SECURITY_GROUP: &str = "sg";
pub const SG_RULE: &str = "sgr";
pub const FLOATING_IP: &str = "eipalloc";
pub const EVENT: &str = "ev";
pub const VOLUME: &str = "vol";
pub const SNAPSHOT: &str = "snap";
pub const JOIN_TOKEN: &str = "jt";
pub const MIGRATION: &str = "mig";

/// A fresh random ID with the given prefix.
pub fn new_id(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}-{:017x}", n & ((1u128 << 68) - 1))
}

/// True if `s` looks like an ID with `prefix` (so lookups can tell IDs from names).
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 17 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ids_round_trip() {
        let id = new_id(INSTANCE);
        assert!(is_id(INSTANCE, &id), "{id}");
        assert!(!is_id(IMAGE, &id));
        assert!(!is_id(INSTANCE, "i-xyz"));
    }
}
