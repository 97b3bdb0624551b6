//! The audit log: every mutating `/v1` call and every authentication or authorization failure, as
//! records in a tamper-evident hash chain ([`chain`]).
//!
//! Invariants:
//! - Record `n` lives at `/audit/<n, 20 digits>`; `/audit-head` holds the last `{seq, hash}`. An
//!   append reads the head and writes the record and the new head in one transaction that compares
//!   the head's revision (or its absence), so servers sharing a store never fork the chain: a loser
//!   re-reads the head and tries again.
//! - The REST front end records through [`layer`] (a middleware around the handlers, so the result
//!   is known); other front ends (EC2) call [`record`] themselves.
//! - Records are tamper-*evident*, not tamper-proof: whoever can write the store can rewrite the
//!   whole chain from a point on. `GET /v1/audit/verify` finds any change that was not followed by
//!   rewriting every later record and the head; keeping exported copies or the head hash elsewhere
//!   (`kumo audit verify --json` in a cron job) catches the rest.
//! - Retention is the operator's: [`prune`] removes the oldest records (export them first) and
//!   keeps the last removed record's `{seq, hash}` at `/audit-anchor`, from which [`verify`] checks
//!   the rest. A prune verifies what it removes (it refuses to remove a broken stretch) and is
//!   itself an audited call, so the log says who pruned what.

pub mod chain;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use kumo_store::{Compare, Op};
use kumo_types::{AuditPruned, AuditRecord, AuditVerification, Error, Page, Result, now_rfc3339};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::identity::{Caller, Role};
use crate::storeutil::{commit, decode, encode, get_json, keys, store_err};
use chain::{GENESIS, Head, Verifier};

/// How often an append retries after losing the head to another writer.
const APPEND_TRIES: u32 = 64;
const PAGE: usize = 500;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// What happened, as a front end reports it; [`record`] adds the sequence number, time and hashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub user: Option<String>,
    pub project: Option<String>,
    pub credential: Option<String>,
    pub source: Option<String>,
    /// `rest` or `ec2`.
    pub api: String,
    pub method: String,
    pub path: String,
    pub action: String,
    pub target: Vec<String>,
    pub status: u16,
    pub error_code: Option<String>,
}

impl AuditEntry {
    /// An entry for an authenticated caller (user, project, credential and source from it).
    pub fn for_caller(caller: &Caller, api: &str, method: &str, path: &str, action: &str) -> Self {
        AuditEntry {
            user: Some(caller.user.clone()),
            project: Some(caller.project.clone()),
            credential: caller.credential.clone(),
            source: caller.source.map(|s| s.to_string()),
            api: api.into(),
            method: method.into(),
            path: path.into(),
            action: action.into(),
            ..Default::default()
        }
    }
}

/// Append one record to the chain (see the module invariants) and return it.
pub async fn record(app: &App, entry: &AuditEntry) -> Result<AuditRecord> {
    for attempt in 0..APPEND_TRIES {
        let head = get_json::<Head>(app.kv(), keys::AUDIT_HEAD).await?;
        let (seq, prev) = head.as_ref().map_or((1, GENESIS.to_string()), |(h, _)| {
            (h.seq + 1, h.hash.clone())
        });
        let rec = chain::seal(seq, now_rfc3339(), entry, &prev);
        let head_cmp = match &head {
            Some((_, rev)) => Compare::mod_revision(keys::AUDIT_HEAD, *rev),
            None => Compare::absent(keys::AUDIT_HEAD),
        };
        let new_head = Head {
            seq,
            hash: rec.hash.clone(),
        };
        if commit(
            app.kv(),
            vec![head_cmp, Compare::absent(keys::audit(seq))],
            vec![
                Op::put(keys::audit(seq), encode(&rec)?),
                Op::put(keys::AUDIT_HEAD, encode(&new_head)?),
            ],
        )
        .await?
        {
            return Ok(rec);
        }
        // Lost the head to another writer: back off a little (randomized) and read it again.
        let ms = rand::random::<u64>() % (2 + u64::from(attempt.min(20)) * 2);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Err(Error::CasFailed {
        key: keys::AUDIT_HEAD.into(),
    })
}

/// `instances.create`, `instances.stop`, `security-groups.rules.delete`, … from a method and a
/// `/v1` path (pure); and the IDs or names the path names.
pub fn action_of(method: &Method, path: &str) -> (String, Vec<String>) {
    let seg = crate::identity::authz::segments(path);
    let resource = seg.first().copied().unwrap_or("root");
    // `POST /v1/<resource>/<action>` (`audit/prune`, `cluster/join-tokens`): the second segment
    // is what is done, not an ID.
    if method == Method::POST && seg.len() == 2 {
        return (format!("{resource}.{}", seg[1]), vec![]);
    }
    let target: Vec<String> = seg
        .iter()
        .skip(1)
        .step_by(2)
        .map(|s| s.to_string())
        .collect();
    let sub = if seg.len() >= 3 { Some(seg[2]) } else { None };
    let verb = match (method.as_str(), seg.len(), sub) {
        ("POST", 1, _) => "create".to_string(),
        ("GET" | "HEAD", 1, _) => "list".to_string(),
        ("GET" | "HEAD", 2, _) => "read".to_string(),
        ("PUT" | "PATCH", 2, _) => "update".to_string(),
        ("DELETE", 2, _) => "delete".to_string(),
        ("POST", 3, Some(s)) => s.to_string(),
        ("GET" | "HEAD", _, Some(s)) => format!("{s}.read"),
        ("PUT" | "PATCH", _, Some(s)) => format!("{s}.set"),
        ("DELETE", _, Some(s)) => format!("{s}.delete"),
        ("POST", _, Some(s)) => format!("{s}.create"),
        (m, _, _) => m.to_ascii_lowercase(),
    };
    (format!("{resource}.{verb}"), target)
}

/// Set by handlers that authenticate by themselves (login): who tried.
#[derive(Debug, Clone)]
pub struct AuditUser(pub String);

/// Middleware on `/v1` (outside authentication): records every mutating call and every 401/403.
pub async fn layer(State(app): State<App>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.0.path().to_string());
    let source = crate::auth::source_of(&req);
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !mutating && status != 401 && status != 403 {
        return resp;
    }
    let (action, target) = action_of(&method, &path);
    let caller = resp.extensions().get::<Caller>();
    let mut entry = AuditEntry {
        user: caller
            .map(|c| c.user.clone())
            .or_else(|| resp.extensions().get::<AuditUser>().map(|u| u.0.clone())),
        project: caller.map(|c| c.project.clone()),
        credential: caller.and_then(|c| c.credential.clone()).or_else(|| {
            resp.extensions()
                .get::<crate::auth::FailedCredential>()
                .map(|f| f.0.clone())
        }),
        source: source.map(|s| s.to_string()),
        api: "rest".into(),
        method: method.to_string(),
        path,
        action,
        target,
        status,
        error_code: resp
            .extensions()
            .get::<crate::error::ErrorCode>()
            .map(|c| c.0.to_string()),
    };
    if entry.error_code.is_none() && status >= 400 {
        entry.error_code = Some(format!("http_{status}"));
    }
    if let Err(e) = record(&app, &entry).await {
        tracing::error!(error = %e, ?entry, "AUDIT RECORD LOST: could not append to the audit log");
    }
    resp
}

/// Which records a query wants.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339: records at or after this time.
    pub since: Option<String>,
    /// RFC 3339: records before this time.
    pub until: Option<String>,
    pub user: Option<String>,
    pub project: Option<String>,
    pub limit: Option<usize>,
    /// The last `seq` of the previous page.
    pub next_token: Option<String>,
}

/// A query checked against the caller: a project admin sees its own project only.
#[derive(Debug, Clone)]
pub struct Filter {
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
    until: Option<chrono::DateTime<chrono::FixedOffset>>,
    user: Option<String>,
    project: Option<String>,
    after: Option<u64>,
}

fn time(field: &str, v: &Option<String>) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
    v.as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| Error::invalid(field, format!("{s:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
}

impl Filter {
    pub fn new(caller: &Caller, q: &AuditQuery) -> Result<Filter> {
        let project = match (caller.role, &q.project) {
            (Role::CloudAdmin, p) => p.clone(),
            (_, Some(p)) if *p != caller.project => {
                return Err(Error::Forbidden {
                    message: format!(
                        "a project admin reads the audit log of its own project `{}` only",
                        caller.project
                    ),
                });
            }
            _ => Some(caller.project.clone()),
        };
        let after = q
            .next_token
            .as_deref()
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|_| Error::invalid("next_token", "not a token from a previous page"))
            })
            .transpose()?;
        Ok(Filter {
            since: time("since", &q.since)?,
            until: time("until", &q.until)?,
            user: q.user.clone(),
            project,
            after,
        })
    }

    /// Whether a record matches (pure).
    pub fn matches(&self, r: &AuditRecord) -> bool {
        if self
            .user
            .as_ref()
            .is_some_and(|u| r.user.as_ref() != Some(u))
        {
            return false;
        }
        if self
            .project
            .as_ref()
            .is_some_and(|p| r.project.as_ref() != Some(p))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = chrono::DateTime::parse_from_rfc3339(&r.time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// One page of stored records after `after` (raw order = chain order).
async fn page(app: &App, after: Option<u64>) -> Result<(Vec<AuditRecord>, bool)> {
    let start = after.map(keys::audit);
    let p = app
        .kv()
        .list(keys::AUDIT, start.as_deref(), PAGE)
        .await
        .map_err(store_err)?;
    let more = p.more && !p.kvs.is_empty();
    let recs = p
        .kvs
        .iter()
        .map(decode::<AuditRecord>)
        .collect::<Result<Vec<_>>>()?;
    Ok((recs, more))
}

/// Records matching the filter, in chain order, a page at a time.
pub async fn list(app: &App, caller: &Caller, q: &AuditQuery) -> Result<Page<AuditRecord>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let f = Filter::new(caller, q)?;
    let mut after = f.after;
    let mut items = Vec::new();
    loop {
        let (recs, more) = page(app, after).await?;
        for r in recs {
            after = Some(r.seq);
            if f.matches(&r) {
                items.push(r);
                if items.len() == limit {
                    return Ok(Page {
                        next_token: after.map(|s| s.to_string()),
                        items,
                    });
                }
            }
        }
        if !more {
            return Ok(Page {
                items,
                next_token: None,
            });
        }
    }
}

/// Every matching record as JSON lines, streamed a store page at a time.
pub fn export(
    app: App,
    f: Filter,
) -> impl futures::Stream<Item = std::result::Result<Vec<u8>, Error>> + Send {
    futures::stream::unfold(Some(f.after), move |state| {
        let (app, f) = (app.clone(), f.clone());
        async move {
            let after = state?;
            match page(&app, after).await {
                Err(e) => Some((Err(e), None)),
                Ok((recs, more)) => {
                    let next = recs.last().map(|r| r.seq).or(after);
                    let mut buf = Vec::new();
                    for r in recs.iter().filter(|r| f.matches(r)) {
                        if let Ok(line) = serde_json::to_vec(r) {
                            buf.extend_from_slice(&line);
                            buf.push(b'\n');
                        }
                    }
                    Some((Ok(buf), more.then_some(next)))
                }
            }
        }
    })
}

/// Most records removed in one transaction (etcd allows 128 operations by default).
const PRUNE_BATCH: usize = 100;

/// Remove the oldest records: an unbroken run from the oldest remaining one, each at or below
/// `through_seq` and older than `before` (whichever are given). Records are checked as they go — a
/// record that does not verify stops the prune with a conflict, so pruning cannot hide tampering —
/// and each batch's deletions commit with the new anchor (the last removed record's seq and hash),
/// from which [`verify`] checks what remains. Export the records first to keep them: the export's
/// last hash is the anchor.
pub async fn prune(app: &App, req: &kumo_types::AuditPruneRequest) -> Result<AuditPruned> {
    let before = match &req.before {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| Error::invalid("before", format!("{t:?} is not RFC 3339: {e}")))?
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        None => None,
    };
    if req.through_seq.is_none() && before.is_none() {
        return Err(Error::invalid(
            "through_seq",
            "give `through_seq`, `before` (RFC 3339) or both",
        ));
    }
    let wanted = |r: &AuditRecord| {
        req.through_seq.is_none_or(|s| r.seq <= s)
            && before.as_deref().is_none_or(|b| r.time.as_str() < b)
    };
    let mut pruned = 0u64;
    let mut attempts = 0u32;
    loop {
        let anchor = get_json::<Head>(app.kv(), keys::AUDIT_ANCHOR).await?;
        let mut check = Verifier::from_anchor(anchor.as_ref().map(|(a, _)| a));
        let after = anchor.as_ref().map(|(a, _)| a.seq);
        let (recs, _) = page(app, after).await?;
        let mut batch: Vec<&AuditRecord> = Vec::new();
        for r in recs.iter().take_while(|r| wanted(r)).take(PRUNE_BATCH) {
            check.push(r.seq, Ok(r.clone()));
            if check.is_broken() {
                let v = check.finish(None);
                return Err(Error::conflict(format!(
                    "not pruning: {}; run `kumo audit verify`",
                    v.message.unwrap_or_default()
                )));
            }
            batch.push(r);
        }
        let Some(last) = batch.last() else { break };
        let new_anchor = Head {
            seq: last.seq,
            hash: last.hash.clone(),
        };
        // The anchor's compare-and-swap orders concurrent prunes (the records go with it).
        let compare = vec![match &anchor {
            Some((_, rev)) => Compare::mod_revision(keys::AUDIT_ANCHOR, *rev),
            None => Compare::absent(keys::AUDIT_ANCHOR),
        }];
        let mut ops: Vec<Op> = batch
            .iter()
            .map(|r| Op::delete(keys::audit(r.seq)))
            .collect();
        ops.push(Op::put(keys::AUDIT_ANCHOR, encode(&new_anchor)?));
        if commit(app.kv(), compare, ops).await? {
            pruned += batch.len() as u64;
            continue;
        }
        attempts += 1;
        if attempts >= APPEND_TRIES {
            return Err(Error::CasFailed {
                key: keys::AUDIT_ANCHOR.into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let anchor = get_json::<Head>(app.kv(), keys::AUDIT_ANCHOR)
        .await?
        .map(|(a, _)| a);
    Ok(AuditPruned {
        pruned,
        pruned_through: anchor.as_ref().map_or(0, |a| a.seq),
        anchor_hash: anchor.map_or_else(|| GENESIS.to_string(), |a| a.hash),
    })
}

/// Recompute the chain (from the prune anchor, if any) and compare it with the head.
pub async fn verify(app: &App) -> Result<AuditVerification> {
    let anchor = get_json::<Head>(app.kv(), keys::AUDIT_ANCHOR)
        .await?
        .map(|(a, _)| a);
    let mut v = Verifier::from_anchor(anchor.as_ref());
    let mut after: Option<String> = None;
    loop {
        let p = app
            .kv()
            .list(keys::AUDIT, after.as_deref(), PAGE)
            .await
            .map_err(store_err)?;
        for kv in &p.kvs {
            let key_seq = kv
                .key
                .strip_prefix(keys::AUDIT)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            v.push(
                key_seq,
                serde_json::from_slice::<AuditRecord>(&kv.value).map_err(|e| e.to_string()),
            );
        }
        if v.is_broken() || !p.more || p.kvs.is_empty() {
            break;
        }
        after = p.kvs.last().map(|k| k.key.clone());
    }
    let head = get_json::<Head>(app.kv(), keys::AUDIT_HEAD)
        .await?
        .map(|(h, _)| h);
    Ok(v.finish(head.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_targets_from_paths() {
        let a = |m: Method, p: &str| action_of(&m, p);
        assert_eq!(
            a(Method::POST, "/v1/instances"),
            ("instances.create".into(), vec![])
        );
        assert_eq!(
            a(Method::POST, "/v1/instances/i-1/stop"),
            ("instances.stop".into(), vec!["i-1".to_string()])
        );
        assert_eq!(
            a(Method::DELETE, "/v1/security-groups/sg-1/rules/sgr-2"),
            (
                "security-groups.rules.delete".into(),
                vec!["sg-1".to_string(), "sgr-2".to_string()]
            )
        );
        assert_eq!(a(Method::PATCH, "/v1/volumes/v").0, "volumes.update");
        assert_eq!(
            a(Method::PUT, "/v1/users/bob/roles/p1").0,
            "users.roles.set"
        );
        assert_eq!(a(Method::GET, "/v1/instances").0, "instances.list");
        assert_eq!(
            a(Method::POST, "/v1/audit/prune"),
            ("audit.prune".into(), vec![])
        );
        assert_eq!(
            a(Method::POST, "/v1/cluster/join-tokens").0,
            "cluster.join-tokens"
        );
    }

    fn caller(role: Role) -> Caller {
        Caller {
            user: "a".into(),
            project: "p".into(),
            role,
            credential: None,
            source: None,
        }
    }

    #[test]
    fn project_admins_see_their_project_only() {
        let q = AuditQuery::default();
        let f = Filter::new(&caller(Role::Admin), &q).expect("filter");
        let mut r = chain::seal(1, now_rfc3339(), &AuditEntry::default(), GENESIS);
        r.project = Some("p".into());
        assert!(f.matches(&r));
        r.project = Some("other".into());
        assert!(!f.matches(&r));
        let all = Filter::new(&caller(Role::CloudAdmin), &q).expect("filter");
        assert!(all.matches(&r));
        let q = AuditQuery {
            project: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(
            Filter::new(&caller(Role::Admin), &q)
                .expect_err("other project")
                .code(),
            "forbidden"
        );
    }

    #[test]
    fn time_windows() {
        let q = AuditQuery {
            since: Some("2026-01-01T00:00:00Z".into()),
            until: Some("2026-01-02T00:00:00Z".into()),
            ..Default::default()
        };
        let f = Filter::new(&caller(Role::CloudAdmin), &q).expect("filter");
        let mut r = chain::seal(
            1,
            "2026-01-01T10:00:00.000Z".into(),
            &AuditEntry::default(),
            GENESIS,
        );
        assert!(f.matches(&r));
        r.time = "2026-01-02T00:00:00.000Z".into();
        assert!(!f.matches(&r), "until is exclusive");
        let bad = AuditQuery {
            since: Some("yesterday".into()),
            ..Default::default()
        };
        assert_eq!(
            Filter::new(&caller(Role::CloudAdmin), &bad)
                .expect_err("bad time")
                .field(),
            Some("since")
        );
    }
}
