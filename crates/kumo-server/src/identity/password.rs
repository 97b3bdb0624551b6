//! Passwords: argon2id (RustCrypto `argon2`, its default parameters: 19 MiB, 2 passes, 1 lane) in
//! PHC string form, so parameters can change later without invalidating stored hashes. Hashing and
//! verifying take tens of milliseconds of CPU: callers run them on the blocking pool.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use kumo_types::{Error, Result};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 1024;

/// Check a new password's length (pure).
pub fn validate(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_LEN || password.len() > MAX_LEN {
        return Err(Error::invalid(
            "password",
            format!("must be {MIN_LEN} to {MAX_LEN} characters long"),
        ));
    }
    Ok(())
}

/// The argon2id PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String> {
    validate(password)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("hashing the password: {e}")))
}

/// Whether `password` matches the stored PHC string (false for an unparsable one).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash to verify against when the user does not exist, so that a wrong user name costs the same
/// time as a wrong password (no user enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("kumo-no-such-user-dummy-password").unwrap_or_default())
}

/// [`hash`] on the blocking pool.
pub async fn hash_blocking(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| Error::internal_with("password hashing task", e))?
}

/// [`verify`] on the blocking pool.
pub async fn verify_blocking(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(p) => verify(&password, &p),
        None => {
            // Same work, always false.
            let _ = verify(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_random_salts() {
        let a = hash("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horsf", &a));
        let b = hash("correct horse").expect("hash");
        assert_ne!(a, b, "every hash has its own salt");
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn short_passwords_are_refused() {
        let e = hash("short").expect_err("too short");
        assert_eq!(e.field(), Some("password"));
        assert!(validate("12345678").is_ok());
    }
}
