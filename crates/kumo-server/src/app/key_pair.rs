//! Key pairs: imported OpenSSH public keys, served to guests by the metadata service.

use kumo_store::{Compare, Op, Txn};
use kumo_types::{Error, ImportKeyPairRequest, KeyPair, Page, Result, ids, now_rfc3339, validate};
use sha2::{Digest, Sha256};

use super::App;
use super::attrs::Extra;
use super::scope::{self, Kind, Scope};
use crate::storeutil::{encode, keys, store_err};

const KIND: &str = "key-pairs";

/// Parse an OpenSSH public key line and return its `SHA256:` fingerprint (as `ssh-keygen -l`).
pub fn fingerprint(line: &str) -> Result<String> {
    let bad = |m: &str| {
        Error::invalid(
            "public_key",
            format!("{m}; expected an OpenSSH public key line like `ssh-ed25519 AAAA… comment`"),
        )
    };
    let mut parts = line.split_whitespace();
    let algo = parts.next().ok_or_else(|| bad("empty"))?;
    const ALGOS: [&str; 6] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    if !ALGOS.contains(&algo) {
        return Err(bad(&format!("unsupported key type {algo:?}")));
    }
    let b64 = parts.next().ok_or_else(|| bad("missing key data"))?;
    let blob = base64_decode(b64).ok_or_else(|| bad("key data is not base64"))?;
    // The blob starts with the algorithm name as an SSH string.
    let name_len = blob
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if name_len.and_then(|n| blob.get(4..4 + n)) != Some(algo.as_bytes()) {
        return Err(bad("key data does not match its type"));
    }
    let digest = Sha256::digest(&blob);
    Ok(format!("SHA256:{}", base64_encode_nopad(&digest)))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn base64_encode_nopad(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &x)| a | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

const KEY_PAIRS: Kind = Kind {
    prefix: ids::KEY_PAIR,
    names: KIND,
    key: keys::key_pair,
    what: "key pair",
};

pub async fn import(app: &App, scope: &Scope, req: ImportKeyPairRequest) -> Result<KeyPair> {
    import_with(app, scope, req, Extra::none(ids::KEY_PAIR)).await
}

/// [`import`] with the ID and the front end's own writes of `extra` (tags), in one transaction.
pub async fn import_with(
    app: &App,
    scope: &Scope,
    req: ImportKeyPairRequest,
    extra: Extra,
) -> Result<KeyPair> {
    validate::name("name", &req.name)?;
    let line = req.public_key.trim().to_string();
    if line.len() > 16 * 1024 {
        return Err(Error::invalid("public_key", "longer than 16 KiB"));
    }
    let fp = fingerprint(&line)?;
    let kp = KeyPair {
        id: extra.id.clone(),
        name: req.name,
        project: scope.project.clone(),
        public_key: line,
        fingerprint: fp,
        created_at: now_rfc3339(),
    };
    let name_key = keys::name(KIND, &kp.project, &kp.name);
    let mut compare = vec![Compare::absent(&name_key)];
    compare.extend(extra.compare);
    let mut success = vec![
        Op::put(&name_key, kp.id.clone()),
        Op::put(keys::key_pair(&kp.id), encode(&kp)?),
    ];
    success.extend(extra.ops);
    let txn = Txn {
        compare,
        success,
        failure: vec![],
    };
    if !app.kv().txn(txn).await.map_err(store_err)?.succeeded {
        return Err(Error::conflict_field(
            "name",
            format!("key pair `{}` already exists", kp.name),
        ));
    }
    Ok(kp)
}

pub async fn list(app: &App, scope: &Scope) -> Result<Page<KeyPair>> {
    let mut all: Vec<KeyPair> = scope::list(app, scope, keys::KEY_PAIRS).await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page {
        items: all,
        next_token: None,
    })
}

/// Find by ID or name (an instance's `key_name` resolves with `Scope::within` its project).
pub async fn get(app: &App, scope: &Scope, id_or_name: &str) -> Result<KeyPair> {
    Ok(scope::find(app, scope, &KEY_PAIRS, id_or_name).await?.0)
}

pub async fn delete(app: &App, scope: &Scope, id_or_name: &str) -> Result<()> {
    let (kp, rev): (KeyPair, _) = scope::find(app, scope, &KEY_PAIRS, id_or_name).await?;
    let key = keys::key_pair(&kp.id);
    let txn = Txn {
        compare: vec![Compare::mod_revision(&key, rev)],
        success: vec![
            Op::delete(&key),
            Op::delete(keys::name(KIND, &kp.project, &kp.name)),
            super::tags::delete_op(&kp.id),
        ],
        failure: vec![],
    };
    app.kv().txn(txn).await.map_err(store_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // `ssh-keygen -lf` of this key printed SHA256:Uq7oFbsgDS8ftSVivhWPLJIK8ohEPrAkMe0FpjWjoRQ
        let k =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH38yLgzi2IeYHvMfF2FnnkBKRgeAhod6sUwDtsd3oD3 test";
        assert_eq!(
            fingerprint(k).unwrap(),
            "SHA256:Uq7oFbsgDS8ftSVivhWPLJIK8ohEPrAkMe0FpjWjoRQ"
        );
        assert_eq!(
            fingerprint("ssh-foo AAAA").unwrap_err().field(),
            Some("public_key")
        );
        assert!(fingerprint("ssh-ed25519 !!!").is_err());
        assert!(
            fingerprint(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            )
            .is_err()
        );
    }

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"abcd"] {
            let enc = base64_encode_nopad(s);
            assert_eq!(base64_decode(&enc).unwrap(), s);
        }
    }
}
