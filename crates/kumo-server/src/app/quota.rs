//! Quotas per project: limits at `/quotas/<project>` (absent: the defaults) and usage counters at
//! `/usage/<project>`.
//!
//! Race-free by construction: a create that consumes quota adds [`charge`]'s compare (the usage
//! record's mod revision, and the limits record's) and its put of the incremented usage to the
//! create's own transaction; concurrent creates in one project therefore serialize on the usage
//! record, and a loser decides again (with [`backoff`]) against the new usage. The transaction that
//! finally removes a resource adds [`credit`]'s. A missing usage record (a project's first create, or
//! a store from before quotas) is rebuilt from the records by [`recount`] within the same compare
//! (`absent`), so the counters always equal what a recount finds.

use std::time::Duration;

use kumo_store::{Compare, Op};
use kumo_types::{
    DEFAULT_PROJECT, Error, FloatingIp, Instance, Network, ProjectQuotas, QuotaLimits,
    QuotaResource, QuotaUsage, Result, SecurityGroup, Snapshot, UpdateQuotasRequest, Volume,
    validate,
};

use super::App;
use super::scope::Scope;
use crate::storeutil::{commit, encode, get_json, keys, list_json};

/// How often a create that consumes quota decides again after losing a race (on the usage record,
/// which every create and final delete in the project changes) before giving up.
pub const ATTEMPTS: usize = 100;

/// Compares and ops that go into another transaction.
pub type TxnPart = (Vec<Compare>, Vec<Op>);

/// Amounts of quota a create consumes (or a final delete gives back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta(Vec<(QuotaResource, u64)>);

impl Delta {
    pub fn of(r: QuotaResource, n: u64) -> Delta {
        Delta(vec![(r, n)])
    }

    pub fn and(mut self, r: QuotaResource, n: u64) -> Delta {
        if n > 0 {
            self.0.push((r, n));
        }
        self
    }

    /// One instance of `vcpus` and `memory_mib`.
    pub fn instance(i: &Instance) -> Delta {
        Delta::of(QuotaResource::Instances, 1)
            .and(QuotaResource::Vcpus, u64::from(i.vcpus))
            .and(QuotaResource::MemoryMib, i.memory_mib)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, n)| *n == 0)
    }
}

/// The limits of a project that has none of its own: unlimited for `default`, else the built-in
/// defaults.
pub fn default_limits(project: &str) -> QuotaLimits {
    if project == DEFAULT_PROJECT {
        QuotaLimits::unlimited()
    } else {
        QuotaLimits::generous()
    }
}

/// `usage + delta`, or `QuotaExceeded` naming the first resource that would pass its limit (pure).
/// Usage already above a lowered limit refuses any further amount but not a zero one.
pub fn check(
    project: &str,
    limits: &QuotaLimits,
    usage: &QuotaUsage,
    delta: &Delta,
) -> Result<QuotaUsage> {
    let mut next = usage.clone();
    for (r, n) in &delta.0 {
        let used = next.get(*r);
        let want = used.saturating_add(*n);
        if let Some(limit) = limits.get(*r)
            && *n > 0
            && want > limit
        {
            return Err(Error::QuotaExceeded {
                project: project.to_string(),
                resource: r.as_str().to_string(),
                limit,
                used,
                requested: *n,
            });
        }
        next.set(*r, want);
    }
    Ok(next)
}

/// `usage - delta`, never below zero (pure).
pub fn subtract(usage: &QuotaUsage, delta: &Delta) -> QuotaUsage {
    let mut next = usage.clone();
    for (r, n) in &delta.0 {
        next.set(*r, next.get(*r).saturating_sub(*n));
    }
    next
}

/// A project's limits, whether they are the defaults, and the compare that pins them.
async fn limits_of(app: &App, project: &str) -> Result<(QuotaLimits, bool, Compare)> {
    let key = keys::quota(project);
    Ok(match get_json::<QuotaLimits>(app.kv(), &key).await? {
        Some((l, rev)) => (l, false, Compare::mod_revision(&key, rev)),
        None => (default_limits(project), true, Compare::absent(&key)),
    })
}

/// A project's usage and the compare that pins it; a missing record is recounted from the records.
async fn usage_of(app: &App, project: &str) -> Result<(QuotaUsage, Compare)> {
    let key = keys::usage(project);
    Ok(match get_json::<QuotaUsage>(app.kv(), &key).await? {
        Some((u, rev)) => (u, Compare::mod_revision(&key, rev)),
        None => (recount(app, project).await?, Compare::absent(&key)),
    })
}

/// The compares and ops that charge `delta` to `project` in the caller's transaction, or
/// `QuotaExceeded`. When that transaction fails, the caller decides again.
pub async fn charge(app: &App, project: &str, delta: &Delta) -> Result<TxnPart> {
    charge_with(app, project, delta, true).await
}

/// Like [`charge`] but never refused: for what a project must have whatever its limits (its
/// `default` security group).
pub async fn charge_unchecked(app: &App, project: &str, delta: &Delta) -> Result<TxnPart> {
    charge_with(app, project, delta, false).await
}

async fn charge_with(app: &App, project: &str, delta: &Delta, enforce: bool) -> Result<TxnPart> {
    let (limits, _, limits_cmp) = limits_of(app, project).await?;
    let (usage, usage_cmp) = usage_of(app, project).await?;
    let limits = if enforce {
        limits
    } else {
        QuotaLimits::unlimited()
    };
    let next = check(project, &limits, &usage, delta)?;
    Ok((
        vec![limits_cmp, usage_cmp],
        vec![Op::put(keys::usage(project), encode(&next)?)],
    ))
}

/// The compares and ops that give `delta` back to `project`, for the transaction that finally
/// removes a resource.
pub async fn credit(app: &App, project: &str, delta: &Delta) -> Result<TxnPart> {
    let (usage, usage_cmp) = usage_of(app, project).await?;
    let next = subtract(&usage, delta);
    Ok((
        vec![usage_cmp],
        vec![Op::put(keys::usage(project), encode(&next)?)],
    ))
}

/// Wait a little before deciding again after a lost race: random, growing with `attempt` (at most
/// ~64 ms), so that many concurrent creates in one project spread out.
pub async fn backoff(attempt: usize) {
    let cap = 1u64 << attempt.min(6);
    let ms = rand::random_range(0..=cap);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// What `project` holds, counted from the records (pure).
pub fn count(
    project: &str,
    instances: &[Instance],
    volumes: &[Volume],
    snapshots: &[Snapshot],
    floating_ips: &[FloatingIp],
    networks: &[Network],
    security_groups: &[SecurityGroup],
) -> QuotaUsage {
    let mine = |p: &str| p == project;
    let insts: Vec<&Instance> = instances.iter().filter(|i| mine(&i.project)).collect();
    QuotaUsage {
        instances: insts.len() as u64,
        vcpus: insts.iter().map(|i| u64::from(i.vcpus)).sum(),
        memory_mib: insts.iter().map(|i| i.memory_mib).sum(),
        volume_gib: volumes
            .iter()
            .filter(|v| mine(&v.project))
            .map(|v| v.size_gib)
            .sum(),
        snapshots: snapshots.iter().filter(|s| mine(&s.project)).count() as u64,
        floating_ips: floating_ips.iter().filter(|f| mine(&f.project)).count() as u64,
        networks: networks.iter().filter(|n| mine(&n.project)).count() as u64,
        security_groups: security_groups.iter().filter(|g| mine(&g.project)).count() as u64,
    }
}

/// Rebuild `project`'s usage from the records (read only; what the counters must equal).
pub async fn recount(app: &App, project: &str) -> Result<QuotaUsage> {
    let kv = app.kv();
    Ok(count(
        project,
        &list_json::<Instance>(kv, keys::INSTANCES).await?,
        &list_json::<Volume>(kv, keys::VOLUMES).await?,
        &list_json::<Snapshot>(kv, keys::SNAPSHOTS).await?,
        &list_json::<FloatingIp>(kv, keys::FLOATING_IPS).await?,
        &list_json::<Network>(kv, keys::NETWORKS).await?,
        &list_json::<SecurityGroup>(kv, keys::SECURITY_GROUPS).await?,
    ))
}

/// The counters as stored (a recount when the project has none yet).
pub async fn usage(app: &App, project: &str) -> Result<QuotaUsage> {
    Ok(usage_of(app, project).await?.0)
}

/// `project`'s limits and usage, for `scope` (its own project; any project for a cloud admin).
pub async fn show(app: &App, scope: &Scope, project: Option<&str>) -> Result<ProjectQuotas> {
    let project = project.unwrap_or(&scope.project);
    if project != scope.project && !scope.admin {
        return Err(Error::Forbidden {
            message: "only a cloud admin may see another project's quotas".into(),
        });
    }
    let (limits, defaults, _) = limits_of(app, project).await?;
    Ok(ProjectQuotas {
        project: project.to_string(),
        limits,
        usage: usage(app, project).await?,
        defaults,
    })
}

/// The limits after applying `req` to `current` (pure): `-1` is unlimited, absent keeps.
pub fn apply(current: &QuotaLimits, req: &UpdateQuotasRequest) -> Result<QuotaLimits> {
    let mut next = current.clone();
    for r in QuotaResource::ALL {
        match req.get(r) {
            None => {}
            Some(-1) => next.set(r, None),
            Some(n) if n >= 0 => next.set(r, Some(n as u64)),
            Some(n) => {
                return Err(Error::invalid(
                    r.as_str(),
                    format!("{n}: a limit is 0 or more, or -1 for unlimited"),
                ));
            }
        }
    }
    Ok(next)
}

/// Change `project`'s limits (cloud admins only). Lowering a limit below usage removes nothing; it
/// refuses further creates.
pub async fn set(
    app: &App,
    scope: &Scope,
    project: &str,
    req: UpdateQuotasRequest,
) -> Result<ProjectQuotas> {
    if !scope.admin {
        return Err(Error::Forbidden {
            message: "only a cloud admin may change quotas".into(),
        });
    }
    validate::name("project", project)?;
    if !crate::identity::project::exists(app, project).await? {
        return Err(Error::not_found("project", project));
    }
    for attempt in 0..20 {
        let (current, _, cmp) = limits_of(app, project).await?;
        let next = apply(&current, &req)?;
        let op = Op::put(keys::quota(project), encode(&next)?);
        if commit(app.kv(), vec![cmp], vec![op]).await? {
            super::event::record_in(
                app,
                Some(project),
                project,
                "quota.updated",
                &describe(&next),
            )
            .await?;
            return show(app, scope, Some(project)).await;
        }
        backoff(attempt).await;
    }
    Err(Error::unavailable(
        "too much contention changing the quotas; retry",
    ))
}

/// `instances=10 vcpus=unlimited …` (pure).
pub fn describe(l: &QuotaLimits) -> String {
    QuotaResource::ALL
        .iter()
        .map(|r| match l.get(*r) {
            Some(n) => format!("{r}={n}"),
            None => format!("{r}=unlimited"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_the_first_resource_over_its_limit_and_says_by_how_much() {
        let limits = QuotaLimits {
            instances: Some(2),
            vcpus: Some(4),
            ..QuotaLimits::unlimited()
        };
        let used = QuotaUsage {
            instances: 1,
            vcpus: 3,
            memory_mib: 1 << 40,
            ..Default::default()
        };
        let one = Delta::of(QuotaResource::Instances, 1)
            .and(QuotaResource::Vcpus, 2)
            .and(QuotaResource::MemoryMib, 512);
        match check("p1", &limits, &used, &one).unwrap_err() {
            Error::QuotaExceeded {
                project,
                resource,
                limit,
                used,
                requested,
            } => {
                assert_eq!(
                    (project.as_str(), resource.as_str(), limit, used, requested),
                    ("p1", "vcpus", 4, 3, 2)
                );
            }
            e => panic!("{e:?}"),
        }
        let small = Delta::of(QuotaResource::Instances, 1).and(QuotaResource::Vcpus, 1);
        let next = check("p1", &limits, &used, &small).unwrap();
        assert_eq!((next.instances, next.vcpus), (2, 4));
        // Exactly at the limit: nothing more, but a zero amount passes.
        assert!(check("p1", &limits, &next, &small).is_err());
        assert!(check("p1", &limits, &next, &Delta::default()).is_ok());
        // Unlimited resources only count.
        assert_eq!(
            check(
                "p1",
                &limits,
                &used,
                &Delta::of(QuotaResource::MemoryMib, 1)
            )
            .unwrap()
            .memory_mib,
            (1 << 40) + 1
        );
        // Giving back never goes below zero.
        let back = subtract(&next, &Delta::of(QuotaResource::Instances, 5));
        assert_eq!(back.instances, 0);
        assert_eq!(back.vcpus, 4);
    }

    #[test]
    fn apply_sets_keeps_and_unlimits() {
        let cur = QuotaLimits::generous();
        let req = UpdateQuotasRequest {
            instances: Some(3),
            vcpus: Some(-1),
            ..Default::default()
        };
        let next = apply(&cur, &req).unwrap();
        assert_eq!(next.instances, Some(3));
        assert_eq!(next.vcpus, None);
        assert_eq!(next.networks, cur.networks);
        let bad = UpdateQuotasRequest {
            snapshots: Some(-2),
            ..Default::default()
        };
        assert_eq!(apply(&cur, &bad).unwrap_err().field(), Some("snapshots"));
        assert!(describe(&next).starts_with("instances=3 vcpus=unlimited"));
        assert_eq!(default_limits(DEFAULT_PROJECT), QuotaLimits::unlimited());
        assert_eq!(default_limits("p1"), QuotaLimits::generous());
    }
}
