//! The server key: 32 random bytes in `<data-dir>/server.key` (mode 0600), made on first start. It
//! encrypts access-key secrets at rest (XChaCha20-Poly1305, see [`super::access_key`]); the store
//! keeps only ciphertexts and a check value of the key ([`keys::SERVER_KEY_CHECK`]), never the key,
//! so a copy of the store (an etcd snapshot, a backup) does not reveal the secrets.
//!
//! Servers of one cluster need the same file: copy the first server's `server.key` to the others
//! before they start (decision 0010). A server whose key does not match the store's check value
//! still serves, but warns at start-up and refuses access-key operations with a message that says
//! which file to copy.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use kumo_store::{Compare, Op};
use kumo_types::{Error, Result};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::storeutil::{commit, keys, store_err};

pub const FILE: &str = "server.key";

#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.check())
    }
}

impl ServerKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        ServerKey(b)
    }

    pub fn generate() -> Self {
        ServerKey(rand::random())
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public check value: SHA-256 over a label and the key (the key is 256 random bits, so this
    /// reveals nothing usable), hex, 32 digits.
    pub fn check(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"kumo server key check v1\0");
        h.update(self.0);
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Load `<data-dir>/server.key`, or create it (0600) when there is none.
pub fn load_or_create(data_dir: &Path) -> Result<ServerKey> {
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(b) => {
            let arr: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                Error::internal(format!(
                    "{} must hold exactly 32 bytes (it has {})",
                    path.display(),
                    b.len()
                ))
            })?;
            Ok(ServerKey(arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = ServerKey::generate();
            let tmp = data_dir.join("server.key.tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&key.0)?;
            f.sync_all()?;
            // Another process may have made one meanwhile: keep the first (hard link fails if it exists).
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::info!(path = %path.display(), "server key created");
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&tmp);
                    load_or_create(data_dir)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Record this key's check value in the store if there is none; `Ok(false)` when the store names
/// another key (this server's `server.key` differs from the cluster's).
pub async fn ensure_check(app: &App, key: &ServerKey) -> Result<bool> {
    let check = key.check();
    if commit(
        app.kv(),
        vec![Compare::absent(keys::SERVER_KEY_CHECK)],
        vec![Op::put(keys::SERVER_KEY_CHECK, check.clone().into_bytes())],
    )
    .await?
    {
        return Ok(true);
    }
    let stored = app
        .kv()
        .get(keys::SERVER_KEY_CHECK)
        .await
        .map_err(store_err)?
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    Ok(stored.as_deref() == Some(check.as_str()))
}

/// The error for a server whose key is not the cluster's.
pub fn mismatch(data_dir: &Path) -> Error {
    Error::unavailable(format!(
        "this server's {} is not the key the cluster's access-key secrets are encrypted with: \
         copy `server.key` from the cluster's first server (same path, mode 0600) and restart",
        data_dir.join(FILE).display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_with_mode_0600_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path()).expect("create");
        let b = load_or_create(dir.path()).expect("load");
        assert_eq!(a.bytes(), b.bytes());
        let mode = std::fs::metadata(dir.path().join(FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(a.check(), ServerKey::generate().check());
        std::fs::write(dir.path().join(FILE), b"short").expect("write");
        assert!(
            load_or_create(dir.path()).is_err(),
            "a damaged key is not replaced"
        );
    }
}
