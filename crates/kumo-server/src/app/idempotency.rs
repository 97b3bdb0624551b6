//! Client tokens (EC2's `ClientToken`): a create retried with the same token and the same
//! arguments answers with what the first one created instead of creating again; the same token
//! with other arguments is refused.
//!
//! Layout: `/ec2-client-tokens/<project>/<sha256 of the token>` → [`TokenRecord`] `{action,
//! digest, ids}`, written under a store lease of [`TTL_SECS`] (AWS keeps tokens "at least 24
//! hours"), so records expire by themselves.
//!
//! Protocol: [`claim`] before creating — it writes the record with the IDs the create *will* use
//! (front ends choose them up front) in one compare-on-absence, so of two concurrent requests with
//! one token exactly one creates; the other gets [`Claim::Replay`] with the same IDs. A create that
//! fails [`release`]s the token so that a retry may try again; one that made fewer resources than
//! claimed records what it made with [`settle`].

use kumo_store::{Compare, Op, Txn};
use kumo_types::{Error, Result, now_rfc3339};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::App;
use super::scope::Scope;
use crate::storeutil::{decode, encode, get_json, store_err};

const PREFIX: &str = "/ec2-client-tokens/";
/// How long a token is remembered.
pub const TTL_SECS: i64 = 24 * 3600;

/// What a token was used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The action, e.g. `RunInstances`.
    pub action: String,
    /// [`digest`] of the request's arguments (the token itself excluded).
    pub digest: String,
    /// The IDs of what the request created.
    pub ids: Vec<String>,
    pub created_at: String,
    /// The store lease the record lives under (0: none).
    #[serde(default)]
    pub lease: i64,
}

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The token is new and now ours: create, with the IDs claimed.
    Fresh,
    /// The same request was made before: answer with what it created.
    Replay(Vec<String>),
    /// The token was used with other arguments or for another action
    /// (`IdempotentParameterMismatch`).
    Mismatch,
}

fn key(project: &str, token: &str) -> String {
    let h: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{PREFIX}{project}/{h}")
}

/// A stable digest of a request's arguments (any `Debug` rendering of them: the parsed input).
pub fn digest(args: &impl std::fmt::Debug) -> String {
    Sha256::digest(format!("{args:?}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a stored record says about a new request (pure).
pub fn judge(rec: &TokenRecord, action: &str, digest: &str) -> Claim {
    if rec.action == action && rec.digest == digest {
        Claim::Replay(rec.ids.clone())
    } else {
        Claim::Mismatch
    }
}

/// Claim `token` in `scope.project` for `action` with arguments `digest`, promising `ids`.
pub async fn claim(
    app: &App,
    scope: &Scope,
    token: &str,
    action: &str,
    digest: &str,
    ids: &[String],
) -> Result<Claim> {
    let k = key(&scope.project, token);
    if let Some((rec, _)) = get_json::<TokenRecord>(app.kv(), &k).await? {
        return Ok(judge(&rec, action, digest));
    }
    let lease = app.kv().lease_grant(TTL_SECS).await.map_err(store_err)?;
    let rec = TokenRecord {
        action: action.to_string(),
        digest: digest.to_string(),
        ids: ids.to_vec(),
        created_at: now_rfc3339(),
        lease,
    };
    let r = app
        .kv()
        .txn(Txn {
            compare: vec![Compare::absent(&k)],
            success: vec![Op::Put {
                key: k.clone(),
                value: encode(&rec)?,
                lease,
            }],
            failure: vec![Op::get(&k)],
        })
        .await
        .map_err(store_err)?;
    if r.succeeded {
        return Ok(Claim::Fresh);
    }
    let _ = app.kv().lease_revoke(lease).await;
    match r.results.first() {
        Some(kumo_store::OpResult::Get { kv: Some(kv) }) => {
            Ok(judge(&decode::<TokenRecord>(kv)?, action, digest))
        }
        _ => Err(Error::unavailable(
            "the client token changed concurrently; retry",
        )),
    }
}

/// Forget `token` (its create failed: a retry with it may create).
pub async fn release(app: &App, scope: &Scope, token: &str) -> Result<()> {
    let k = key(&scope.project, token);
    if let Some((rec, _)) = get_json::<TokenRecord>(app.kv(), &k).await? {
        app.kv().delete(&k).await.map_err(store_err)?;
        if rec.lease != 0 {
            let _ = app.kv().lease_revoke(rec.lease).await;
        }
    }
    Ok(())
}

/// Record that the request of `token` created `ids` only (fewer than it claimed).
pub async fn settle(app: &App, scope: &Scope, token: &str, ids: &[String]) -> Result<()> {
    let k = key(&scope.project, token);
    if let Some((mut rec, rev)) = get_json::<TokenRecord>(app.kv(), &k).await? {
        rec.ids = ids.to_vec();
        crate::storeutil::commit(
            app.kv(),
            vec![Compare::mod_revision(&k, rev)],
            vec![Op::Put {
                key: k,
                value: encode(&rec)?,
                lease: rec.lease,
            }],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_action_and_arguments_replay_anything_else_mismatches() {
        let rec = TokenRecord {
            action: "RunInstances".into(),
            digest: digest(&("ami-1", 2)),
            ids: vec!["i-1".into(), "i-2".into()],
            created_at: String::new(),
            lease: 0,
        };
        assert_eq!(
            judge(&rec, "RunInstances", &digest(&("ami-1", 2))),
            Claim::Replay(vec!["i-1".into(), "i-2".into()])
        );
        assert_eq!(
            judge(&rec, "RunInstances", &digest(&("ami-1", 3))),
            Claim::Mismatch
        );
        assert_eq!(
            judge(&rec, "CreateVolume", &digest(&("ami-1", 2))),
            Claim::Mismatch
        );
        assert_ne!(key("p1", "t"), key("p2", "t"));
        assert!(key("p1", "a/b").starts_with("/ec2-client-tokens/p1/"));
        assert!(!key("p1", "a/b").contains("a/b"));
    }
}
