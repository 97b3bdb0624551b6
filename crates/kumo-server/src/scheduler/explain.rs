//! Explanations: why a host was chosen, or why none could be. Runs once per decision, after the
//! filters: one more pass over the hosts, plus a few examples per filter.

use kumo_types::{HostState, PlacementEnforcement, PlacementPolicy, PlacementStrategy};

use super::filter::{Filter, free, free_gpus};
use super::score::left_after;
use super::{Candidate, Ctx, Overcommit, Request, Unplaceable};

/// Hosts named per filter.
const EXAMPLES: usize = 3;

/// `512 MiB`, `3.2 GiB`.
pub fn mib(n: u64) -> String {
    if n >= 1024 {
        format!("{:.1} GiB", n as f64 / 1024.0)
    } else {
        format!("{n} MiB")
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn verb(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn state_str(s: HostState) -> &'static str {
    match s {
        HostState::Ready => "ready",
        HostState::Draining => "draining",
        HostState::Maintenance => "maintenance",
        HostState::Down => "down",
    }
}

fn selector(req: &Request) -> String {
    req.host_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Per filter, how many hosts it eliminated and a few of them (for capacity: the closest to fitting).
struct Tally {
    count: [usize; Filter::ALL.len()],
    examples: [Vec<usize>; Filter::ALL.len()],
}

fn capacity_free(f: Filter, h: &Candidate, oc: &Overcommit) -> u64 {
    let fr = free(h, oc);
    match f {
        Filter::Memory => fr.memory_mib,
        Filter::Vcpus => fr.vcpus,
        _ => fr.disk_gib,
    }
}

fn tally(hosts: &[Candidate], verdicts: &[Option<Filter>], oc: &Overcommit) -> Tally {
    let mut t = Tally {
        count: [0; Filter::ALL.len()],
        examples: Default::default(),
    };
    for (i, v) in verdicts.iter().enumerate() {
        let Some(f) = *v else { continue };
        t.count[f.index()] += 1;
        let ex = &mut t.examples[f.index()];
        match f {
            // For capacity, the hosts closest to fitting.
            Filter::Memory | Filter::Vcpus | Filter::Disk => {
                let amount = capacity_free(f, &hosts[i], oc);
                let full = ex.len() == EXAMPLES;
                if full
                    && ex
                        .last()
                        .is_some_and(|&j| capacity_free(f, &hosts[j], oc) >= amount)
                {
                    continue;
                }
                let pos = ex
                    .iter()
                    .position(|&j| capacity_free(f, &hosts[j], oc) < amount)
                    .unwrap_or(ex.len());
                ex.insert(pos, i);
                ex.truncate(EXAMPLES);
            }
            // For the others, the first ones.
            _ if ex.len() < EXAMPLES => ex.push(i),
            _ => {}
        }
    }
    t
}

/// `h1, h2, h3 and 4 more`.
fn listed(items: Vec<String>, total: usize) -> String {
    let shown = items.len();
    let mut s = items.join(", ");
    if total > shown {
        s.push_str(&format!(" and {} more", total - shown));
    }
    s
}

/// One filter's share: `1 lacks memory (h2: 512 MiB free; 1024 MiB requested)`.
fn part(ctx: &Ctx<'_>, f: Filter, n: usize, ex: &[usize], hosts: &[Candidate]) -> String {
    let (req, oc) = (ctx.req, ctx.oc);
    let each =
        |d: &dyn Fn(&Candidate) -> String| listed(ex.iter().map(|&i| d(&hosts[i])).collect(), n);
    match f {
        Filter::RequiredHost => {
            let (host, why) = req
                .required_host
                .as_ref()
                .map(|r| (r.host.as_str(), r.why.as_str()))
                .unwrap_or_default();
            let name = hosts
                .iter()
                .find(|h| h.id == host)
                .map_or_else(|| format!("{host} (not registered)"), |h| h.name.clone());
            format!(
                "{n} {} not the required host {name} ({why})",
                verb(n, "is", "are")
            )
        }
        Filter::State => {
            let d = each(&|h| {
                if h.state == HostState::Ready {
                    format!("{}: agent not alive", h.name)
                } else {
                    format!("{}: {}", h.name, state_str(h.state))
                }
            });
            format!("{n} not ready ({d})")
        }
        Filter::Labels => {
            let d = each(&|h| {
                let missing = req
                    .host_selector
                    .iter()
                    .find(|(k, v)| h.labels.get(*k) != Some(v));
                match missing {
                    Some((k, _)) => match h.labels.get(k) {
                        Some(have) => format!("{}: {k}={have}", h.name),
                        None => format!("{}: no {k}", h.name),
                    },
                    None => h.name.clone(),
                }
            });
            format!(
                "{n} {} {} {} ({d})",
                verb(n, "lacks", "lack"),
                if req.host_selector.len() == 1 {
                    "label"
                } else {
                    "labels"
                },
                selector(req)
            )
        }
        Filter::Group => {
            let Some(g) = &req.group else {
                return format!("{n} ruled out by the placement group");
            };
            match g.strategy {
                PlacementStrategy::Spread => format!(
                    "{n} already {} a member of hard spread group `{}` ({})",
                    verb(n, "holds", "hold"),
                    g.name,
                    each(&|h| h.name.clone())
                ),
                PlacementStrategy::Affinity => {
                    let with: Vec<&Candidate> =
                        hosts.iter().filter(|h| ctx.members_on(&h.id) > 0).collect();
                    let mut at: Vec<String> =
                        with.iter().take(EXAMPLES).map(|h| h.name.clone()).collect();
                    let gone = g.members.len().saturating_sub(with.len());
                    if gone > 0 {
                        at.push(format!("{} not registered", count(gone, "host", "hosts")));
                    }
                    format!(
                        "{n} {} not hold the members of hard affinity group `{}` (they run on {})",
                        verb(n, "does", "do"),
                        g.name,
                        listed(at, with.len() + usize::from(gone > 0))
                    )
                }
            }
        }
        Filter::Gpus => {
            let Some(want) = &req.gpus else {
                return format!("{n} lack GPUs");
            };
            let d = each(&|h| {
                let of_model = h.gpus.iter().filter(|g| g.model == want.model);
                let total = of_model.clone().count();
                let no_iommu = of_model.filter(|g| !g.iommu).count();
                let usable = free_gpus(h, &want.model).count();
                match (total, no_iommu) {
                    (0, _) => format!("{}: none", h.name),
                    (_, 0) => format!("{}: {usable} of {total} free", h.name),
                    _ => format!(
                        "{}: {usable} of {total} free, {no_iommu} without an IOMMU group",
                        h.name
                    ),
                }
            });
            format!(
                "{n} {} {} free GPU{} of model {} ({d})",
                verb(n, "lacks", "lack"),
                want.count,
                if want.count == 1 { "" } else { "s" },
                want.model
            )
        }
        Filter::Memory => {
            let d = each(&|h| format!("{}: {} MiB free", h.name, free(h, oc).memory_mib));
            let ratio = if (oc.memory - 1.0).abs() > f64::EPSILON {
                format!(" at memory overcommit {}:1", oc.memory)
            } else {
                String::new()
            };
            format!(
                "{n} {} memory ({d}; {} MiB requested{ratio})",
                verb(n, "lacks", "lack"),
                req.memory_mib
            )
        }
        Filter::Vcpus => {
            let d = each(&|h| format!("{}: {} free", h.name, free(h, oc).vcpus));
            format!(
                "{n} {} vCPUs ({d}; {} requested at cpu overcommit {}:1)",
                verb(n, "lacks", "lack"),
                req.vcpus,
                oc.cpu
            )
        }
        Filter::Disk => {
            let d = each(&|h| format!("{}: {} GiB free", h.name, free(h, oc).disk_gib));
            format!(
                "{n} {} disk ({d}; {} GiB requested at disk overcommit {}:1)",
                verb(n, "lacks", "lack"),
                req.disk_gib,
                oc.disk
            )
        }
    }
}

/// What the filters eliminated, in filter order: (filter, text).
fn eliminated(
    ctx: &Ctx<'_>,
    hosts: &[Candidate],
    verdicts: &[Option<Filter>],
) -> Vec<(Filter, String)> {
    let t = tally(hosts, verdicts, ctx.oc);
    Filter::ALL
        .iter()
        .filter(|f| t.count[f.index()] > 0)
        .map(|&f| {
            let i = f.index();
            (f, part(ctx, f, t.count[i], &t.examples[i], hosts))
        })
        .collect()
}

/// No host is eligible: per filter, what it eliminated. `resource` is the last filter that
/// eliminated hosts: the constraint the most nearly eligible hosts ran into.
pub fn unplaceable(ctx: &Ctx<'_>, hosts: &[Candidate], verdicts: &[Option<Filter>]) -> Unplaceable {
    let parts = eliminated(ctx, hosts, verdicts);
    let resource = parts.last().map_or("hosts", |(f, _)| f.resource());
    let text: Vec<String> = parts.into_iter().map(|(_, t)| t).collect();
    Unplaceable {
        resource,
        message: format!(
            "{} considered: {}",
            count(hosts.len(), "host", "hosts"),
            text.join("; ")
        ),
    }
}

fn group_part(ctx: &Ctx<'_>, host: &Candidate) -> Option<String> {
    let g = ctx.req.group.as_ref()?;
    let enf = g.enforcement.as_str();
    let here = ctx.members_on(&host.id);
    let plural = |n: u32| if n == 1 { "member" } else { "members" };
    Some(match g.strategy {
        PlacementStrategy::Spread if here == 0 => {
            format!(
                "{enf} spread group `{}`: no other member on this host",
                g.name
            )
        }
        PlacementStrategy::Spread => format!(
            "soft spread group `{}`: {here} other {} on this host, and at least as many on every \
             other eligible host",
            g.name,
            plural(here)
        ),
        PlacementStrategy::Affinity if g.members.is_empty() => {
            format!("{enf} affinity group `{}`: its first member", g.name)
        }
        PlacementStrategy::Affinity if here > 0 => format!(
            "{enf} affinity group `{}`: with {here} other {}",
            g.name,
            plural(here)
        ),
        PlacementStrategy::Affinity => {
            debug_assert_eq!(g.enforcement, PlacementEnforcement::Soft);
            format!(
                "soft affinity group `{}`: no host of its other members could take it",
                g.name
            )
        }
    })
}

/// The outcome of a scan that found eligible hosts.
pub struct Scan<'a> {
    pub hosts: &'a [Candidate],
    pub verdicts: &'a [Option<Filter>],
    pub chosen: usize,
    pub eligible: usize,
    /// The best policy score among the eligible hosts.
    pub best_policy: i64,
}

/// Why `scan.hosts[scan.chosen]` won.
pub fn chosen(ctx: &Ctx<'_>, scan: &Scan<'_>, gpu_devices: &[String]) -> String {
    let (req, hosts, eligible) = (ctx.req, scan.hosts, scan.eligible);
    let h = &hosts[scan.chosen];
    let left = left_after(&free(h, ctx.oc), req);
    let best = match req.policy {
        PlacementPolicy::Spread => scan.best_policy.unsigned_abs(),
        PlacementPolicy::Pack => u64::try_from(scan.best_policy).unwrap_or(0),
    };
    let mut parts = vec![match (req.policy, best == left) {
        (PlacementPolicy::Spread, true) => format!(
            "spread policy: most free memory ({} left after placing)",
            mib(left)
        ),
        (PlacementPolicy::Pack, true) => format!(
            "pack policy: least free memory that fits ({} left after placing)",
            mib(left)
        ),
        (p, false) => format!(
            "{} policy: {} left after placing (another host would leave {}, but the placement \
             group's preference comes first)",
            p.as_str(),
            mib(left),
            mib(best)
        ),
    }];
    parts.push(match eligible.saturating_sub(1) {
        0 => "the only eligible host".to_string(),
        n => format!("{} eligible", count(n, "other host", "other hosts")),
    });
    parts.extend(group_part(ctx, h));
    if let Some(w) = &req.gpus
        && !gpu_devices.is_empty()
    {
        parts.push(format!("GPUs {} ({})", gpu_devices.join(", "), w.model));
    }
    if !req.host_selector.is_empty() {
        parts.push(format!("has {}", selector(req)));
    }
    if let Some(r) = &req.required_host {
        parts.push(format!("required host: {}", r.why));
    }
    let mut s = parts.join("; ");
    let out = hosts.len() - eligible;
    if out > 0 {
        let text: Vec<String> = eliminated(ctx, hosts, scan.verdicts)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        s.push_str(&format!(
            ". {} filtered out: {}",
            count(out, "host", "hosts"),
            text.join("; ")
        ));
    }
    s
}
