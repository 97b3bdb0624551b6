//! Tags: key → value labels on any project resource, by its ID (what EC2's `CreateTags`,
//! `DescribeTags`, `TagSpecification` and `tag:` filters read and write).
//!
//! Layout: `/tags/<resource id>` → [`TagRecord`] `{project, tags}`; absent = no tags. The record
//! carries the project of the resource it tags, so reads are scoped like the resource itself
//! ([`Scope::sees`] by ID, [`Scope::lists`] in lists).
//!
//! Invariants:
//! - Front ends resolve the resource with its own app function (and the caller's [`Scope`])
//!   before tagging it, and pass the project that resolution found: tags never make a resource
//!   visible that was not.
//! - Changes are compare-and-swap on the one record; at most [`MAX_TAGS`] tags per resource, keys
//!   1–128 characters, values at most 256, no key starting with `aws:` (reserved, as on AWS).
//! - The transaction that deletes a resource deletes its tags, whichever API deleted it: the app
//!   layer's deletes include [`super::attrs::cleanup_ops`] (or [`delete_op`] directly), so
//!   `DescribeTags` never lists a resource `/v1` deleted.

use std::collections::{BTreeMap, HashMap};

use kumo_store::{Compare, Op};
use kumo_types::{Error, Result};
use serde::{Deserialize, Serialize};

use super::App;
use super::quota;
use super::scope::Scope;
use crate::storeutil::{commit, encode, get_json, list_json, store_err};

/// Key → value.
pub type Tags = BTreeMap<String, String>;

const PREFIX: &str = "/tags/";
/// Most tags on one resource (AWS's limit).
pub const MAX_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;
/// Below this many IDs [`for_ids`] reads records one by one; above, it reads them all at once.
const POINT_READS: usize = 32;

/// The tags of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The project of the tagged resource.
    pub project: String,
    pub tags: Tags,
    /// The tagged resource's ID (kept in the record so lists need not parse keys).
    #[serde(default)]
    pub id: String,
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// Check tags to be set: key length and prefix, value length (pure). Errors name the field `tags`.
pub fn validate(tags: &[(String, String)]) -> Result<()> {
    for (k, v) in tags {
        let n = k.chars().count();
        if n == 0 || n > MAX_KEY {
            return Err(Error::invalid(
                "tags",
                format!("tag key {k:?}: a key is 1 to {MAX_KEY} characters"),
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::invalid(
                "tags",
                format!("tag key {k:?}: keys starting with `aws:` are reserved"),
            ));
        }
        if v.chars().count() > MAX_VALUE {
            return Err(Error::invalid(
                "tags",
                format!("the value of tag {k:?} is longer than {MAX_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

/// `current` with `add` set (pure): refuses more than [`MAX_TAGS`] in all.
pub fn merged(current: &Tags, add: &[(String, String)]) -> Result<Tags> {
    validate(add)?;
    let mut next = current.clone();
    for (k, v) in add {
        next.insert(k.clone(), v.clone());
    }
    if next.len() > MAX_TAGS {
        return Err(Error::invalid(
            "tags",
            format!(
                "a resource has at most {MAX_TAGS} tags; this would make {}",
                next.len()
            ),
        ));
    }
    Ok(next)
}

/// The op that writes the first tags of a new resource `id` of `project`, for its create
/// transaction (with [`merged`]'s checks).
pub fn create_op(project: &str, id: &str, tags: &[(String, String)]) -> Result<Option<Op>> {
    if tags.is_empty() {
        return Ok(None);
    }
    let rec = TagRecord {
        project: project.to_string(),
        tags: merged(&Tags::new(), tags)?,
        id: id.to_string(),
    };
    Ok(Some(Op::put(key(id), encode(&rec)?)))
}

/// Set `tags` on resource `id` of `project` (adding to or overwriting its others); the resulting
/// tags. `Forbidden` if `scope` does not see `project`.
pub async fn set(
    app: &App,
    scope: &Scope,
    project: &str,
    id: &str,
    tags: &[(String, String)],
) -> Result<Tags> {
    change(app, scope, project, id, |t| merged(t, tags)).await
}

/// Remove tags from resource `id`: each `(key, None)` whatever its value, each `(key,
/// Some(value))` only with that value; the resulting tags.
pub async fn remove(
    app: &App,
    scope: &Scope,
    project: &str,
    id: &str,
    keys: &[(String, Option<String>)],
) -> Result<Tags> {
    change(app, scope, project, id, |t| {
        let mut next = t.clone();
        for (k, v) in keys {
            if v.as_ref().is_none_or(|v| next.get(k) == Some(v)) {
                next.remove(k);
            }
        }
        Ok(next)
    })
    .await
}

async fn change(
    app: &App,
    scope: &Scope,
    project: &str,
    id: &str,
    f: impl Fn(&Tags) -> Result<Tags>,
) -> Result<Tags> {
    if !scope.sees(project) {
        return Err(Error::Forbidden {
            message: format!("resource `{id}` belongs to another project"),
        });
    }
    let k = key(id);
    for attempt in 0..quota::ATTEMPTS {
        let (current, compare) = match get_json::<TagRecord>(app.kv(), &k).await? {
            Some((r, rev)) => (r.tags, Compare::mod_revision(&k, rev)),
            None => (Tags::new(), Compare::absent(&k)),
        };
        let next = f(&current)?;
        let op = if next.is_empty() {
            Op::delete(&k)
        } else {
            let rec = TagRecord {
                project: project.to_string(),
                tags: next.clone(),
                id: id.to_string(),
            };
            Op::put(&k, encode(&rec)?)
        };
        if commit(app.kv(), vec![compare], vec![op]).await? {
            return Ok(next);
        }
        quota::backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention changing the tags; retry",
    ))
}

/// The tags of resource `id` as `scope` sees them (none if it has none or is not visible).
pub async fn get(app: &App, scope: &Scope, id: &str) -> Result<Tags> {
    Ok(match get_json::<TagRecord>(app.kv(), &key(id)).await? {
        Some((r, _)) if scope.sees(&r.project) => r.tags,
        _ => Tags::new(),
    })
}

/// The tags of each of `ids` that has any and that `scope` sees.
pub async fn for_ids(app: &App, scope: &Scope, ids: &[&str]) -> Result<HashMap<String, Tags>> {
    let mut out = HashMap::new();
    if ids.len() <= POINT_READS {
        for id in ids {
            let t = get(app, scope, id).await?;
            if !t.is_empty() {
                out.insert(id.to_string(), t);
            }
        }
        return Ok(out);
    }
    let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
    for r in list_json::<TagRecord>(app.kv(), PREFIX).await? {
        if wanted.contains(r.id.as_str()) && scope.sees(&r.project) {
            out.insert(r.id, r.tags);
        }
    }
    Ok(out)
}

/// Every tag record `scope` lists (its project's; every project's for `all`), by resource ID.
pub async fn list(app: &App, scope: &Scope) -> Result<Vec<TagRecord>> {
    let mut all: Vec<TagRecord> = list_json::<TagRecord>(app.kv(), PREFIX)
        .await?
        .into_iter()
        .filter(|r| scope.lists(&r.project))
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(all)
}

/// The op that removes resource `id`'s tags, for its deleting transaction.
pub fn delete_op(id: &str) -> Op {
    Op::delete(key(id))
}

/// Remove every tag of resource `id` (after the resource is gone).
pub async fn delete_all(app: &App, id: &str) -> Result<()> {
    app.kv().delete(&key(id)).await.map_err(store_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn merging_overwrites_and_checks_limits() {
        let cur: Tags = [("Name".to_string(), "a".to_string())].into();
        let next = merged(&cur, &t(&[("Name", "b"), ("env", "")])).expect("ok");
        assert_eq!(next.get("Name").map(String::as_str), Some("b"));
        assert_eq!(next.get("env").map(String::as_str), Some(""));
        let long_key = "k".repeat(129);
        for bad in [
            t(&[("", "x")]),
            t(&[("aws:cloudformation", "x")]),
            t(&[("AWS:x", "x")]),
            vec![(long_key, String::new())],
            vec![("k".into(), "v".repeat(257))],
        ] {
            let e = merged(&cur, &bad).expect_err("refused");
            assert_eq!(e.field(), Some("tags"), "{bad:?}");
        }
        let many: Vec<(String, String)> =
            (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(merged(&Tags::new(), &many).is_ok());
        let e = merged(&cur, &many).expect_err("51 tags");
        assert!(e.to_string().contains("at most 50"), "{e}");
        assert!(create_op("p", "i-1", &[]).expect("none").is_none());
        assert!(
            create_op("p", "i-1", &t(&[("a", "b")]))
                .expect("op")
                .is_some()
        );
    }
}
