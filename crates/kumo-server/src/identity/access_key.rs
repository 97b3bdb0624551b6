//! Access keys for SigV4 (`/access-keys/<id>`): an ID `AKIA` + 16 characters of the base32
//! alphabet, and a 40-character secret (30 random bytes, base64), like AWS's. SigV4 needs the
//! secret itself (it is an HMAC key), so it cannot be hashed: it is stored encrypted with the server
//! key ([`super::server_key`]) under XChaCha20-Poly1305, with a random 192-bit nonce and the key ID
//! as associated data (a ciphertext moved to another record does not decrypt).
//!
//! An access key belongs to a user and one project; it acts there with the user's role.
//! [`lookup`] is what the EC2 front end calls to verify a signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use kumo_store::{Compare, Op};
use kumo_types::{
    ACCESS_KEY_PREFIX, AccessKey, AccessKeyCreated, CreateAccessKeyRequest, Error, Result,
    now_rfc3339,
};
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::server_key::ServerKey;
use super::user::{self, may_manage};
use crate::app::App;
use crate::storeutil::{commit, encode, get_json, keys, list_json};

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const MAX_DESCRIPTION: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub user: String,
    pub project: String,
    /// base64(nonce ‖ ciphertext ‖ tag).
    pub secret_enc: String,
    /// The check value of the server key that encrypted it.
    pub key_check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

impl AccessKeyRecord {
    pub fn view(&self) -> AccessKey {
        AccessKey {
            access_key_id: self.access_key_id.clone(),
            user: self.user.clone(),
            project: self.project.clone(),
            description: self.description.clone(),
            created_at: self.created_at.clone(),
            created_by: self.created_by.clone(),
        }
    }
}

/// A fresh access key ID: `AKIA` + 16 base32 characters (80 random bits).
pub fn new_id() -> String {
    let mut s = String::from(ACCESS_KEY_PREFIX);
    for _ in 0..16 {
        s.push(BASE32[usize::from(rand::random::<u8>() & 31)] as char);
    }
    s
}

/// True for strings shaped like [`new_id`]'s.
pub fn is_id(s: &str) -> bool {
    s.len() == 20
        && s.starts_with(ACCESS_KEY_PREFIX)
        && s.bytes().skip(4).all(|b| BASE32.contains(&b))
}

/// A fresh secret: 40 characters of base64 (240 random bits).
pub fn new_secret() -> String {
    let bytes: [u8; 30] = rand::random();
    B64.encode(bytes)
}

/// Encrypt a secret for the record of `id` (pure but for the random nonce).
pub fn encrypt(key: &ServerKey, id: &str, secret: &str) -> Result<String> {
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let nonce_bytes: [u8; 24] = rand::random();
    let nonce = XNonce::from(nonce_bytes);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: secret.as_bytes(),
                aad: id.as_bytes(),
            },
        )
        .map_err(|_| Error::internal("encrypting an access key secret"))?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&ct);
    Ok(B64.encode(out))
}

/// Decrypt what [`encrypt`] made for `id`; an error for another key, another ID or any change.
pub fn decrypt(key: &ServerKey, id: &str, enc: &str) -> Result<String> {
    let fail = || Error::internal(format!("access key {id}: the secret cannot be decrypted"));
    let raw = B64.decode(enc).map_err(|_| fail())?;
    if raw.len() < 24 + 16 {
        return Err(fail());
    }
    let (nonce, ct) = raw.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail())?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let pt = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ct,
                aad: id.as_bytes(),
            },
        )
        .map_err(|_| fail())?;
    String::from_utf8(pt).map_err(|_| fail())
}

/// This server's key, if it is the cluster's.
fn server_key(app: &App) -> Result<ServerKey> {
    app.auth_cache.server_key(&app.cfg.data_dir)
}

pub async fn create(
    app: &App,
    caller: &Caller,
    req: CreateAccessKeyRequest,
) -> Result<AccessKeyCreated> {
    if let Some(d) = &req.description
        && d.chars().count() > MAX_DESCRIPTION
    {
        return Err(Error::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let wanted_project = req.project.clone().or_else(|| Some(caller.project.clone()));
    let (target, project, _) =
        super::token::target_of(app, caller, req.user.as_deref(), wanted_project.as_deref())
            .await?;
    let project = project.unwrap_or_else(|| caller.project.clone());
    let key = server_key(app)?;
    let id = new_id();
    let secret = new_secret();
    let rec = AccessKeyRecord {
        access_key_id: id.clone(),
        user: target.name.clone(),
        project: project.clone(),
        secret_enc: encrypt(&key, &id, &secret)?,
        key_check: key.check(),
        description: req.description,
        created_at: now_rfc3339(),
        created_by: Some(caller.user.clone()),
    };
    let k = keys::access_key(&id);
    if !commit(
        app.kv(),
        vec![Compare::absent(&k)],
        vec![Op::put(&k, encode(&rec)?)],
    )
    .await?
    {
        return Err(Error::internal(
            "a fresh access key ID collided with a stored one",
        ));
    }
    Ok(AccessKeyCreated {
        access_key_id: id,
        secret_access_key: secret,
        user: rec.user,
        project,
        created_at: rec.created_at,
    })
}

async fn may_see(app: &App, caller: &Caller, rec: &AccessKeyRecord) -> Result<bool> {
    if rec.user == caller.user || caller.is_cloud_admin() {
        return Ok(true);
    }
    let Some((target, _)) = user::get_record(app, &rec.user).await? else {
        return Ok(false);
    };
    Ok(may_manage(caller, &target) && rec.project == caller.project)
}

/// The access keys the caller may manage (see [`super::token::list`]); `user` narrows the list.
pub async fn list(app: &App, caller: &Caller, user: Option<&str>) -> Result<Vec<AccessKey>> {
    let mut out = Vec::new();
    for rec in list_json::<AccessKeyRecord>(app.kv(), keys::ACCESS_KEYS).await? {
        if user.is_some_and(|u| rec.user != u) {
            continue;
        }
        if may_see(app, caller, &rec).await? {
            out.push(rec.view());
        }
    }
    Ok(out)
}

pub async fn delete(app: &App, caller: &Caller, id: &str) -> Result<()> {
    let k = keys::access_key(id);
    let Some((rec, rev)) = get_json::<AccessKeyRecord>(app.kv(), &k).await? else {
        return Err(Error::not_found("access key", id));
    };
    if !may_see(app, caller, &rec).await? {
        return Err(Error::not_found("access key", id));
    }
    commit(
        app.kv(),
        vec![Compare::mod_revision(&k, rev)],
        vec![Op::delete(&k)],
    )
    .await?;
    app.auth_cache.access_keys.evict(id);
    Ok(())
}

/// The secret and the caller of an access key, for SigV4 verification by the EC2 front end:
/// `Ok(None)` for an unknown key; `Forbidden` when its user no longer belongs to its project.
/// Decrypted lookups are cached for a few seconds (deleting a key evicts it on this server at once).
/// The caller's `source` is left empty for the front end to fill.
pub async fn lookup(app: &App, access_key_id: &str) -> Result<Option<(String, Caller)>> {
    if !is_id(access_key_id) {
        return Ok(None);
    }
    if let Some(hit) = app.auth_cache.access_keys.get(access_key_id) {
        return Ok(Some(hit));
    }
    let Some((rec, _)) =
        get_json::<AccessKeyRecord>(app.kv(), &keys::access_key(access_key_id)).await?
    else {
        return Ok(None);
    };
    let key = server_key(app)?;
    if rec.key_check != key.check() {
        return Err(super::server_key::mismatch(&app.cfg.data_dir));
    }
    let secret = decrypt(&key, access_key_id, &rec.secret_enc)?;
    let Some((u, _)) = user::get_record(app, &rec.user).await? else {
        return Ok(None);
    };
    let role = u.role_in(&rec.project).ok_or_else(|| Error::Forbidden {
        message: format!(
            "access key {access_key_id}: user `{}` is no longer a member of project `{}`",
            rec.user, rec.project
        ),
    })?;
    let caller = Caller {
        user: rec.user.clone(),
        project: rec.project.clone(),
        role,
        credential: Some(access_key_id.to_string()),
        source: None,
    };
    app.auth_cache
        .access_keys
        .put(access_key_id.to_string(), (secret.clone(), caller.clone()));
    Ok(Some((secret, caller)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_look_like_aws_keys() {
        for _ in 0..50 {
            let id = new_id();
            assert!(is_id(&id), "{id}");
            assert_eq!(id.len(), 20);
            assert!(id.starts_with("AKIA"));
            assert!(
                id[4..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
            );
            let s = new_secret();
            assert_eq!(s.len(), 40, "{s}");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            );
        }
        assert_ne!(new_id(), new_id());
        assert!(!is_id("AKIA123"));
        assert!(!is_id("ASIAAAAAAAAAAAAAAAAA"));
        assert!(!is_id("AKIAaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn secrets_round_trip_and_only_with_the_right_key_and_id() {
        let key = ServerKey::generate();
        let id = new_id();
        let secret = new_secret();
        let enc = encrypt(&key, &id, &secret).expect("encrypt");
        assert!(!enc.contains(&secret));
        assert_eq!(decrypt(&key, &id, &enc).expect("decrypt"), secret);
        assert_ne!(
            enc,
            encrypt(&key, &id, &secret).expect("again"),
            "fresh nonce"
        );
        assert!(
            decrypt(&ServerKey::generate(), &id, &enc).is_err(),
            "wrong key"
        );
        assert!(
            decrypt(&key, &new_id(), &enc).is_err(),
            "moved to another key ID"
        );
        let mut raw = B64.decode(&enc).expect("b64");
        raw[30] ^= 1;
        assert!(decrypt(&key, &id, &B64.encode(raw)).is_err(), "tampered");
        assert!(decrypt(&key, &id, "!!").is_err());
    }
}
