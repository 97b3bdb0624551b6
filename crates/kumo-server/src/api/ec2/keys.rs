//! Key pairs: `CreateKeyPair` (kumo generates an ed25519 key and returns its private half once,
//! in OpenSSH format; it keeps only the public key), `ImportKeyPair`, `DescribeKeyPairs`,
//! `DeleteKeyPair` — through `app::key_pair`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kumo_ec2::{Ec2Error, Params, ResourceKind};
use kumo_types::{ImportKeyPairRequest, KeyPair, ids as kumo_ids};

use super::filter::{Filters, Paging};
use super::render::{parse_time, tag_set};
use super::tags::tag_specifications;
use super::{Ec2Ctx, Ec2Result, error};
use crate::app::attrs::Extra;
use crate::app::{key_pair, tags};

/// `ed25519` or `rsa` from an OpenSSH public key line.
fn key_type(kp: &KeyPair) -> &'static str {
    match kp.public_key.split_whitespace().next() {
        Some("ssh-ed25519") | Some("sk-ssh-ed25519@openssh.com") => "ed25519",
        Some(t) if t.starts_with("ecdsa") => "ecdsa",
        _ => "rsa",
    }
}

fn key_name(params: &Params) -> Ec2Result<String> {
    params.root().str("KeyName")
}

/// The new key pair's ID and the op writing its tags, for its creation transaction.
fn extra_with_tags(ctx: &Ec2Ctx, params: &Params) -> Ec2Result<(Extra, tags::Tags)> {
    let specs = tag_specifications(params, &["key-pair"])?;
    let list = specs.get("key-pair").cloned().unwrap_or_default();
    let mut extra = Extra::none(kumo_ids::KEY_PAIR);
    if let Some(op) =
        tags::create_op(&ctx.scope.project, &extra.id, &list).map_err(error::from_app)?
    {
        extra.ops.push(op);
    }
    let shown = tags::merged(&tags::Tags::new(), &list).map_err(error::from_app)?;
    Ok((extra, shown))
}

/// An ed25519 key pair: (OpenSSH private key file, public key line).
pub fn generate_ed25519(comment: &str) -> Ec2Result<(String, String)> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map_err(|_| Ec2Error::internal_error())?;
    let public = kp.public_key_raw().to_vec();
    let der = kp.serialize_der();
    // ring's PKCS#8 for Ed25519 holds the 32-byte seed as `04 20 <seed>` inside `04 22`.
    let seed = der
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x04, 0x20])
        .and_then(|at| der.get(at + 4..at + 36))
        .ok_or_else(Ec2Error::internal_error)?
        .to_vec();
    Ok(openssh_ed25519(&seed, &public, comment, rand::random()))
}

fn ssh_string(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// The OpenSSH private key file and public key line of an ed25519 key (pure but for `check`,
/// the random check integer the format repeats).
pub fn openssh_ed25519(seed: &[u8], public: &[u8], comment: &str, check: u32) -> (String, String) {
    let mut pub_blob = Vec::new();
    ssh_string(&mut pub_blob, b"ssh-ed25519");
    ssh_string(&mut pub_blob, public);
    let mut private = Vec::new();
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    ssh_string(&mut private, b"ssh-ed25519");
    ssh_string(&mut private, public);
    let mut secret = seed.to_vec();
    secret.extend_from_slice(public);
    ssh_string(&mut private, &secret);
    ssh_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while !private.len().is_multiple_of(8) {
        private.push(pad);
        pad += 1;
    }
    let mut file = b"openssh-key-v1\0".to_vec();
    ssh_string(&mut file, b"none");
    ssh_string(&mut file, b"none");
    ssh_string(&mut file, b"");
    file.extend_from_slice(&1u32.to_be_bytes());
    ssh_string(&mut file, &pub_blob);
    ssh_string(&mut file, &private);
    let b64 = B64.encode(&file);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(70) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    let line = format!("ssh-ed25519 {} {comment}", B64.encode(&pub_blob));
    (pem, line)
}

pub async fn create(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let name = key_name(params)?;
    if params.root().opt_enum("KeyType", &["rsa", "ed25519"])? == Some("rsa") {
        return Err(Ec2Error::unsupported(
            "kumo generates ed25519 key pairs only: pass KeyType=ed25519, or make an RSA key \
             yourself and ImportKeyPair its public key",
        ));
    }
    if params.root().opt_enum("KeyFormat", &["pem", "ppk"])? == Some("ppk") {
        return Err(Ec2Error::unsupported(
            "kumo returns private keys in OpenSSH format only (KeyFormat=pem)",
        ));
    }
    let (extra, shown) = extra_with_tags(ctx, params)?;
    ctx.ready(params)?;
    let (private, public) = generate_ed25519(&name)?;
    let kp = key_pair::import_with(
        &ctx.app,
        &ctx.scope,
        ImportKeyPairRequest {
            name,
            public_key: public,
        },
        extra,
    )
    .await
    .map_err(error::from_app)?;
    ctx.target(&kp.id);
    ctx.respond(|w| {
        w.text("keyName", &kp.name)
            .text("keyFingerprint", &kp.fingerprint)
            .text("keyMaterial", &private)
            .text("keyPairId", &kp.id);
        tag_set(w, &shown);
    })
}

pub async fn import(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let name = key_name(params)?;
    let material = params
        .root()
        .opt_blob("PublicKeyMaterial")?
        .ok_or_else(|| Ec2Error::missing_parameter("PublicKeyMaterial"))?;
    let public_key = String::from_utf8(material).map_err(|_| {
        Ec2Error::invalid_parameter_value_message(
            "Value for parameter PublicKeyMaterial is invalid: an OpenSSH public key line is text",
        )
    })?;
    let (extra, shown) = extra_with_tags(ctx, params)?;
    key_pair::fingerprint(public_key.trim()).map_err(|e| {
        Ec2Error::new(
            "InvalidKey.Format",
            format!("Key is not in valid OpenSSH public key format: {e}"),
            400,
        )
    })?;
    ctx.ready(params)?;
    let kp = key_pair::import_with(
        &ctx.app,
        &ctx.scope,
        ImportKeyPairRequest { name, public_key },
        extra,
    )
    .await
    .map_err(error::from_app)?;
    ctx.target(&kp.id);
    ctx.respond(|w| {
        w.text("keyFingerprint", &kp.fingerprint)
            .text("keyName", &kp.name)
            .text("keyPairId", &kp.id);
        tag_set(w, &shown);
    })
}

pub async fn describe(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let names = params.id_list("KeyName")?;
    let key_ids = params.id_list("KeyPairId")?;
    let include_public = params.root().opt_bool("IncludePublicKey")?.unwrap_or(false);
    let filters = Filters::read(
        params,
        &[
            "key-pair-id",
            "key-name",
            "fingerprint",
            "key-type",
            "tag:*",
        ],
    )?;
    // Not paginated by EC2; accepted for symmetry with the other Describe actions.
    let paging = Paging::default();
    ctx.ready(params)?;
    let all = key_pair::list(&ctx.app, &ctx.scope)
        .await
        .map_err(error::from_app)?
        .items;
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !all.iter().any(|k| &k.name == *n))
        .chain(key_ids.iter().filter(|i| !all.iter().any(|k| &k.id == *i)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Ec2Error::not_found_ids(ResourceKind::KeyPair, &missing));
    }
    let ids: Vec<&str> = all.iter().map(|k| k.id.as_str()).collect();
    let mut tags = tags::for_ids(&ctx.app, &ctx.scope, &ids)
        .await
        .map_err(error::from_app)?;
    let mut rows: Vec<(KeyPair, tags::Tags)> = all
        .into_iter()
        .filter(|k| names.is_empty() || names.contains(&k.name))
        .filter(|k| key_ids.is_empty() || key_ids.contains(&k.id))
        .map(|k| {
            let t = tags.remove(&k.id).unwrap_or_default();
            (k, t)
        })
        .collect();
    rows.retain(|(k, t)| {
        filters.matches(
            |f| match f {
                "key-pair-id" => vec![k.id.clone()],
                "key-name" => vec![k.name.clone()],
                "fingerprint" => vec![k.fingerprint.clone()],
                "key-type" => vec![key_type(k).into()],
                _ => vec![],
            },
            t,
        )
    });
    let page = paging.page(rows, |(k, _)| k.name.clone());
    ctx.respond(|w| {
        w.set("keySet", &page.items, |w, (k, t)| {
            w.text("keyPairId", &k.id)
                .text("keyFingerprint", &k.fingerprint)
                .text("keyName", &k.name)
                .text("keyType", key_type(k));
            tag_set(w, t);
            if include_public {
                w.text("publicKey", &k.public_key);
            }
            w.timestamp("createTime", &parse_time(&k.created_at));
        });
    })
}

pub async fn delete(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let name = params.root().opt_str("KeyName");
    let id = params.root().opt_str("KeyPairId");
    let Some(which) = id.clone().or(name) else {
        return Err(Ec2Error::missing_parameter("KeyName"));
    };
    ctx.ready(params)?;
    // Deleting a key pair that does not exist succeeds, as on EC2.
    let found = match key_pair::get(&ctx.app, &ctx.scope, &which).await {
        Ok(k) => Some(k),
        Err(kumo_types::Error::NotFound { .. }) => None,
        Err(e) => return Err(error::from_app(e)),
    };
    if let Some(k) = &found {
        ctx.target(&k.id);
        key_pair::delete(&ctx.app, &ctx.scope, &k.id)
            .await
            .map_err(error::from_app)?;
    }
    ctx.respond(|w| {
        w.bool("return", true);
        w.opt_text("keyPairId", found.as_ref().map(|k| k.id.as_str()));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_openssh_ed25519_that_kumo_accepts() {
        let (private, public) = generate_ed25519("deployer").expect("key");
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(private.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        assert!(public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"));
        assert!(public.ends_with(" deployer"));
        key_pair::fingerprint(&public).expect("a valid public key line");
        let body: String = private
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let raw = B64.decode(body).expect("base64");
        assert!(raw.starts_with(b"openssh-key-v1\0"));
    }

    fn read_string<'a>(raw: &'a [u8], at: &mut usize) -> &'a [u8] {
        let n = u32::from_be_bytes(raw[*at..*at + 4].try_into().expect("len")) as usize;
        let s = &raw[*at + 4..*at + 4 + n];
        *at += 4 + n;
        s
    }

    #[test]
    fn the_file_follows_the_openssh_layout() {
        let (pem, line) = openssh_ed25519(&[1; 32], &[2; 32], "c", 7);
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let raw = B64.decode(body).expect("base64");
        let mut at = b"openssh-key-v1\0".len();
        assert_eq!(read_string(&raw, &mut at), b"none");
        assert_eq!(read_string(&raw, &mut at), b"none");
        assert_eq!(read_string(&raw, &mut at), b"");
        assert_eq!(&raw[at..at + 4], &1u32.to_be_bytes());
        at += 4;
        let pub_blob = read_string(&raw, &mut at).to_vec();
        let private = read_string(&raw, &mut at).to_vec();
        assert_eq!(at, raw.len());
        assert_eq!(private.len() % 8, 0);
        assert_eq!(&private[0..4], &7u32.to_be_bytes());
        assert_eq!(&private[4..8], &7u32.to_be_bytes());
        let mut p = 8;
        assert_eq!(read_string(&private, &mut p), b"ssh-ed25519");
        assert_eq!(read_string(&private, &mut p), &[2u8; 32]);
        let secret = read_string(&private, &mut p);
        assert_eq!(&secret[..32], &[1u8; 32]);
        assert_eq!(&secret[32..], &[2u8; 32]);
        assert_eq!(read_string(&private, &mut p), b"c");
        assert!(
            private[p..]
                .iter()
                .enumerate()
                .all(|(i, b)| usize::from(*b) == i + 1)
        );
        let blob = B64
            .decode(line.split_whitespace().nth(1).expect("blob"))
            .expect("b64");
        assert_eq!(blob, pub_blob);
    }
}
