//! Scheduler benchmark: decisions per second and latency per decision of kumo's scheduler
//! (`kumo_server::scheduler::place`) on a synthetic cluster of 5,000 hosts with 150,000 instances
//! already placed, against a naive first-fit in the same run, single-threaded.
//!
//! The cluster (seeded, so every run builds the same one): hosts of 16–64 CPUs and 64–384 GiB,
//! 3 % not ready and 0.5 % with a dead agent, labels `rack` (100 racks), `zone` (3) and `ssd` (30 %),
//! 5 % with 4 or 8 GPUs of two models; 1,000 placement groups (hard/soft spread and affinity); the
//! instances are a mix of the built-in types, 10 % in a group, 2 % with a GPU, placed at random
//! where they fit (respecting their groups).
//!
//! Then the same stream of `--decisions` requests (10 % with a host selector, 10 % in a group, 3 %
//! with GPUs) goes through:
//! - **kumo**: `place` with every filter, the ranking and the explanation. Its inputs are what the
//!   app layer gives it: per-host allocations (kept up to date after each placement, as the
//!   `/host-alloc/` records are) and, for a grouped request, the group's host → members map (kept
//!   per group, as the group record is). Building the request is outside the timed region; applying
//!   the decision too.
//! - **naive first-fit**: the first ready, live host in host order with room for vCPUs, memory
//!   and disk, on the same precomputed allocations (it ignores labels, groups and GPUs: a lower
//!   bound on the cost of any decision).
//! - **naive first-fit, rescanning**: the same, but summing the allocations from the list of all
//!   instances at every decision — the cost the precomputed allocations avoid (`--scan-decisions`,
//!   default 100, as each takes milliseconds).
//!
//! Usage: `cargo run --release -p kumo-bench --bin scheduler -- [--hosts 5000] [--instances 150000]
//! [--decisions 20000] [--scan-decisions 100] [--seed 42] [--policy spread|pack]`. No root, no
//! server: it calls the pure function.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kumo_bench::{percentile, table};
use kumo_server::scheduler::{self, Candidate, Gpu, Group, Overcommit, PlacementPolicy, Request};
use kumo_types::{
    GpuRequest, HostAllocation, HostState, PlacementEnforcement as Enf, PlacementStrategy as Strat,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Args {
    hosts: usize,
    instances: usize,
    decisions: usize,
    scan_decisions: usize,
    seed: u64,
    policy: PlacementPolicy,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        hosts: 5000,
        instances: 150_000,
        decisions: 20_000,
        scan_decisions: 100,
        seed: 42,
        policy: PlacementPolicy::Spread,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--hosts" => a.hosts = val()?.parse()?,
            "--instances" => a.instances = val()?.parse()?,
            "--decisions" => a.decisions = val()?.parse()?,
            "--scan-decisions" => a.scan_decisions = val()?.parse()?,
            "--seed" => a.seed = val()?.parse()?,
            "--policy" => {
                a.policy = match val()?.as_str() {
                    "spread" => PlacementPolicy::Spread,
                    "pack" => PlacementPolicy::Pack,
                    p => bail!("--policy {p}: expected spread or pack"),
                }
            }
            other => bail!(
                "unknown argument {other} (expected --hosts, --instances, --decisions, \
                 --scan-decisions, --seed, --policy)"
            ),
        }
    }
    Ok(a)
}

const OC: Overcommit = Overcommit {
    cpu: 4.0,
    memory: 1.0,
    disk: 2.0,
};
const MODELS: [&str; 2] = ["10de:20b0", "10de:2330"];
/// The built-in instance types (vCPUs, MiB, GiB) and how often each is asked for (‰).
const TYPES: [(u32, u64, u64, u32); 7] = [
    (1, 256, 1, 100),
    (1, 512, 2, 200),
    (1, 1024, 4, 250),
    (2, 2048, 8, 200),
    (2, 4096, 16, 150),
    (4, 8192, 32, 70),
    (8, 16384, 64, 30),
];

#[derive(Clone)]
struct GroupDef {
    name: String,
    strategy: Strat,
    enforcement: Enf,
}

/// One placed instance, as the naive rescanning scheduler reads them.
#[derive(Clone)]
struct Placed {
    host: usize,
    vcpus: u32,
    memory_mib: u64,
    disk_gib: u64,
}

#[derive(Clone)]
struct World {
    hosts: Vec<Candidate>,
    index: HashMap<String, usize>,
    groups: Vec<GroupDef>,
    /// Group index → host ID → members there (what `app::placement` reads from the group record).
    members: Vec<HashMap<String, u32>>,
    instances: Vec<Placed>,
}

/// A request of the stream, before it meets the world.
#[derive(Clone)]
struct Ask {
    vcpus: u32,
    memory_mib: u64,
    disk_gib: u64,
    gpus: Option<GpuRequest>,
    selector: Option<(String, String)>,
    group: Option<usize>,
}

fn pick_type(rng: &mut StdRng) -> (u32, u64, u64) {
    let mut r = rng.random_range(0..1000);
    for (c, m, d, w) in TYPES {
        if r < w {
            return (c, m, d);
        }
        r -= w;
    }
    (1, 512, 2)
}

fn build(a: &Args, rng: &mut StdRng) -> World {
    let mut hosts: Vec<Candidate> = (0..a.hosts)
        .map(|i| {
            let mut labels = std::collections::BTreeMap::new();
            labels.insert(
                "rack".to_string(),
                format!("r{:02}", i * 100 / a.hosts.max(1)),
            );
            labels.insert("zone".to_string(), format!("z{}", i % 3));
            if rng.random_range(0..10) < 3 {
                labels.insert("ssd".to_string(), "yes".to_string());
            }
            let gpus = if rng.random_range(0..100) < 5 {
                let model = MODELS[rng.random_range(0..MODELS.len())];
                (0..[4, 8][rng.random_range(0..2)])
                    .map(|g| Gpu {
                        address: format!("0000:{:02x}:00.0", 0x40 + g),
                        model: model.to_string(),
                        iommu: true,
                    })
                    .collect()
            } else {
                vec![]
            };
            Candidate {
                id: format!("host-{i:05}"),
                name: format!("h{i}"),
                state: match rng.random_range(0..100) {
                    0 | 1 => HostState::Maintenance,
                    2 => HostState::Draining,
                    _ => HostState::Ready,
                },
                alive: rng.random_range(0..200) != 0,
                cpus: [16, 24, 32, 48, 64][rng.random_range(0..5)],
                memory_mib: [64, 128, 192, 256, 384][rng.random_range(0..5)] * 1024,
                disk_gib: rng.random_range(2000..8000),
                labels,
                gpus,
                allocated: HostAllocation::default(),
            }
        })
        .collect();
    hosts.sort_by(|x, y| x.id.cmp(&y.id));
    let index = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.id.clone(), i))
        .collect();
    let groups: Vec<GroupDef> = (0..1000)
        .map(|i| GroupDef {
            name: format!("g{i}"),
            strategy: if i % 5 < 3 {
                Strat::Spread
            } else {
                Strat::Affinity
            },
            enforcement: if i % 5 == 0 || i % 5 == 3 {
                Enf::Soft
            } else {
                Enf::Hard
            },
        })
        .collect();
    let mut w = World {
        members: vec![HashMap::new(); groups.len()],
        hosts,
        index,
        groups,
        instances: Vec::with_capacity(a.instances),
    };
    // Place the existing instances at random where they fit, respecting hard groups and GPUs (a GPU
    // instance tries GPU hosts, a member of an affinity group its group's host); one that finds no
    // such host in 64 tries is placed without its group or GPU, so that all of them are placed.
    let n = w.hosts.len();
    let gpu_hosts: Vec<usize> = (0..n).filter(|&i| !w.hosts[i].gpus.is_empty()).collect();
    for _ in 0..a.instances {
        let (vcpus, memory_mib, disk_gib) = pick_type(rng);
        let mut group = (rng.random_range(0..10) == 0).then(|| rng.random_range(0..w.groups.len()));
        let mut gpu = (rng.random_range(0..50) == 0).then(|| MODELS[rng.random_range(0..2)]);
        let mut tries = 0;
        loop {
            tries += 1;
            if tries == 64 {
                (group, gpu) = (None, None);
            }
            if tries > 10_000 {
                break;
            }
            let h = match (gpu, group) {
                (Some(_), _) => gpu_hosts[rng.random_range(0..gpu_hosts.len())],
                (None, Some(g))
                    if w.groups[g].strategy == Strat::Affinity && !w.members[g].is_empty() =>
                {
                    let mut ids: Vec<&String> = w.members[g].keys().collect();
                    ids.sort(); // the same world on every run
                    w.index[ids[rng.random_range(0..ids.len())]]
                }
                _ => rng.random_range(0..n),
            };
            let c = &w.hosts[h];
            let f = scheduler::free(c, &OC);
            let fits = c.state == HostState::Ready
                && f.vcpus >= u64::from(vcpus)
                && f.memory_mib >= memory_mib
                && f.disk_gib >= disk_gib;
            let group_ok = group.is_none_or(|g| {
                let d = &w.groups[g];
                let m = &w.members[g];
                d.enforcement == Enf::Soft
                    || match d.strategy {
                        Strat::Spread => !m.contains_key(&c.id),
                        Strat::Affinity => m.is_empty() || m.contains_key(&c.id),
                    }
            });
            let gpu_addr = match gpu {
                Some(model) => {
                    let Some(g) = c.gpus.iter().find(|g| {
                        g.model == model && !c.allocated.gpu_devices.contains(&g.address)
                    }) else {
                        continue;
                    };
                    Some(g.address.clone())
                }
                None => None,
            };
            if !(fits && group_ok) {
                continue;
            }
            let id = c.id.clone();
            let alloc = &mut w.hosts[h].allocated;
            alloc.vcpus += u64::from(vcpus);
            alloc.memory_mib += memory_mib;
            alloc.disk_gib += disk_gib;
            alloc.instances += 1;
            alloc.gpu_devices.extend(gpu_addr);
            if let Some(g) = group {
                *w.members[g].entry(id).or_default() += 1;
            }
            w.instances.push(Placed {
                host: h,
                vcpus,
                memory_mib,
                disk_gib,
            });
            break;
        }
    }
    w
}

fn stream(a: &Args, rng: &mut StdRng, groups: usize) -> Vec<Ask> {
    (0..a.decisions)
        .map(|_| {
            let (vcpus, memory_mib, disk_gib) = pick_type(rng);
            let selector = (rng.random_range(0..10) == 0).then(|| match rng.random_range(0..3) {
                0 => (
                    "rack".to_string(),
                    format!("r{:02}", rng.random_range(0..100)),
                ),
                1 => ("zone".to_string(), format!("z{}", rng.random_range(0..3))),
                _ => ("ssd".to_string(), "yes".to_string()),
            });
            Ask {
                vcpus,
                memory_mib,
                disk_gib,
                gpus: (rng.random_range(0..100) < 3).then(|| GpuRequest {
                    model: MODELS[rng.random_range(0..2)].to_string(),
                    count: rng.random_range(1..=2),
                }),
                selector,
                group: (rng.random_range(0..10) == 0).then(|| rng.random_range(0..groups)),
            }
        })
        .collect()
}

impl Ask {
    /// What the request asks beyond capacity (the first that applies).
    fn kind(&self) -> &'static str {
        if self.gpus.is_some() {
            "GPUs"
        } else if self.group.is_some() {
            "placement group"
        } else if self.selector.is_some() {
            "host selector"
        } else {
            "plain"
        }
    }
}

impl World {
    fn request(&self, ask: &Ask, policy: PlacementPolicy) -> Request {
        Request {
            vcpus: ask.vcpus,
            memory_mib: ask.memory_mib,
            disk_gib: ask.disk_gib,
            gpus: ask.gpus.clone(),
            host_selector: ask.selector.iter().cloned().collect(),
            group: ask.group.map(|g| Group {
                name: self.groups[g].name.clone(),
                strategy: self.groups[g].strategy,
                enforcement: self.groups[g].enforcement,
                members: self.members[g].clone(),
            }),
            required_host: None,
            policy,
        }
    }

    /// Record a placement, as the app's transaction does.
    fn apply(&mut self, host: usize, ask: &Ask, gpus: &[String]) {
        let id = self.hosts[host].id.clone();
        let alloc = &mut self.hosts[host].allocated;
        alloc.vcpus += u64::from(ask.vcpus);
        alloc.memory_mib += ask.memory_mib;
        alloc.disk_gib += ask.disk_gib;
        alloc.instances += 1;
        alloc.gpu_devices.extend(gpus.iter().cloned());
        if let Some(g) = ask.group {
            *self.members[g].entry(id).or_default() += 1;
        }
        self.instances.push(Placed {
            host,
            vcpus: ask.vcpus,
            memory_mib: ask.memory_mib,
            disk_gib: ask.disk_gib,
        });
    }
}

/// The naive reference: the first ready, live host with room for vCPUs, memory and disk.
fn first_fit(hosts: &[Candidate], ask: &Ask) -> Option<usize> {
    hosts.iter().position(|h| {
        let f = scheduler::free(h, &OC);
        h.state == HostState::Ready
            && h.alive
            && f.vcpus >= u64::from(ask.vcpus)
            && f.memory_mib >= ask.memory_mib
            && f.disk_gib >= ask.disk_gib
    })
}

/// First-fit that first sums every host's allocation from the instance list.
fn first_fit_rescanning(w: &World, ask: &Ask) -> Option<usize> {
    let mut used = vec![(0u64, 0u64, 0u64); w.hosts.len()];
    for i in &w.instances {
        let u = &mut used[i.host];
        u.0 += u64::from(i.vcpus);
        u.1 += i.memory_mib;
        u.2 += i.disk_gib;
    }
    w.hosts.iter().zip(&used).position(|(h, u)| {
        let cpu = (f64::from(h.cpus) * OC.cpu) as u64;
        let mem = (h.memory_mib as f64 * OC.memory) as u64;
        let disk = (h.disk_gib as f64 * OC.disk) as u64;
        h.state == HostState::Ready
            && h.alive
            && cpu.saturating_sub(u.0) >= u64::from(ask.vcpus)
            && mem.saturating_sub(u.1) >= ask.memory_mib
            && disk.saturating_sub(u.2) >= ask.disk_gib
    })
}

struct Run {
    name: String,
    micros: Vec<f64>,
    placed: usize,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.micros.len() as f64 / (self.micros.iter().sum::<f64>() / 1e6)
    }
    fn row(&self) -> Vec<String> {
        let p = |q| percentile(&self.micros, q).unwrap_or(0.0);
        vec![
            self.name.clone(),
            self.micros.len().to_string(),
            self.placed.to_string(),
            format!("{:.0}", self.per_sec()),
            format!("{:.1}", p(50.0)),
            format!("{:.1}", p(99.0)),
            format!("{:.1}", p(100.0)),
        ]
    }
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let t = Instant::now();
    let world = build(&a, &mut rng);
    let asks = stream(&a, &mut rng, world.groups.len());
    let ready = world
        .hosts
        .iter()
        .filter(|h| h.state == HostState::Ready && h.alive)
        .count();
    let mem_total: u64 = world.hosts.iter().map(|h| h.memory_mib).sum();
    let mem_used: u64 = world.hosts.iter().map(|h| h.allocated.memory_mib).sum();
    let cpu_total: u64 = world.hosts.iter().map(|h| u64::from(h.cpus) * 4).sum();
    let cpu_used: u64 = world.hosts.iter().map(|h| h.allocated.vcpus).sum();
    println!(
        "cluster: {} hosts ({ready} ready and alive, {} with GPUs), {} instances placed (memory {:.0} %, \
         vCPUs {:.0} % allocated), {} placement groups; built in {:.1} s (seed {})",
        world.hosts.len(),
        world.hosts.iter().filter(|h| !h.gpus.is_empty()).count(),
        world.instances.len(),
        mem_used as f64 * 100.0 / mem_total.max(1) as f64,
        cpu_used as f64 * 100.0 / cpu_total.max(1) as f64,
        world.groups.len(),
        t.elapsed().as_secs_f64(),
        a.seed,
    );

    // kumo's scheduler.
    let mut w = world.clone();
    let mut kumo = Run {
        name: format!("kumo scheduler ({} policy)", a.policy.as_str()),
        micros: Vec::with_capacity(asks.len()),
        placed: 0,
    };
    let (mut example_reason, mut example_refusal) = (None, None);
    for ask in &asks {
        let req = w.request(ask, a.policy);
        let t = Instant::now();
        let d = scheduler::place(&w.hosts, &req, &OC);
        kumo.micros.push(t.elapsed().as_secs_f64() * 1e6);
        match d {
            Ok(d) => {
                let h = w.index[&d.host];
                w.apply(h, ask, &d.gpu_devices);
                kumo.placed += 1;
                if example_reason.is_none() && req.group.is_some() {
                    example_reason = Some(d.reason);
                }
            }
            Err(u) => {
                if example_refusal.is_none() {
                    example_refusal = Some(format!("{}: {}", u.resource, u.message));
                }
            }
        }
    }

    // Naive first-fit on the same precomputed allocations.
    let mut w = world.clone();
    let mut naive = Run {
        name: "naive first-fit (precomputed allocations)".into(),
        micros: Vec::with_capacity(asks.len()),
        placed: 0,
    };
    for ask in &asks {
        let t = Instant::now();
        let d = first_fit(&w.hosts, ask);
        naive.micros.push(t.elapsed().as_secs_f64() * 1e6);
        if let Some(h) = d {
            w.apply(h, ask, &[]);
            naive.placed += 1;
        }
    }

    // Naive first-fit that rescans every instance per decision.
    let mut w = world.clone();
    let mut scan = Run {
        name: format!(
            "naive first-fit, summing {} instances per decision",
            world.instances.len()
        ),
        micros: Vec::with_capacity(a.scan_decisions),
        placed: 0,
    };
    for ask in asks.iter().take(a.scan_decisions) {
        let t = Instant::now();
        let d = first_fit_rescanning(&w, ask);
        scan.micros.push(t.elapsed().as_secs_f64() * 1e6);
        if let Some(h) = d {
            w.apply(h, ask, &[]);
            scan.placed += 1;
        }
    }

    let mut rows = vec![vec![
        "case".to_string(),
        "decisions".into(),
        "placed".into(),
        "per s".into(),
        "p50 µs".into(),
        "p99 µs".into(),
        "max µs".into(),
    ]];
    rows.push(kumo.row());
    rows.push(naive.row());
    if !scan.micros.is_empty() {
        rows.push(scan.row());
    }
    let ratio = |f: &dyn Fn(&Run) -> f64| f(&kumo) / f(&naive);
    let p = |q: f64| move |r: &Run| percentile(&r.micros, q).unwrap_or(0.0);
    rows.push(vec![
        "kumo / naive first-fit".into(),
        String::new(),
        String::new(),
        format!("{:.2}x", ratio(&Run::per_sec)),
        format!("{:.2}x", ratio(&p(50.0))),
        format!("{:.2}x", ratio(&p(99.0))),
        String::new(),
    ]);
    println!("\nscheduler: one decision at a time, single-threaded, same request stream");
    print!("{}", table(&rows));
    println!(
        "\ngoal ≥ 1,000 placements/s per core: {} ({:.0}/s)",
        if kumo.per_sec() >= 1000.0 {
            "met"
        } else {
            "MISSED"
        },
        kumo.per_sec()
    );
    // kumo's latency by kind of request.
    let mut rows = vec![vec![
        "kumo, by request".to_string(),
        "decisions".into(),
        "p50 µs".into(),
        "p99 µs".into(),
    ]];
    for kind in ["plain", "host selector", "placement group", "GPUs"] {
        let m: Vec<f64> = asks
            .iter()
            .zip(&kumo.micros)
            .filter(|(a, _)| a.kind() == kind)
            .map(|(_, m)| *m)
            .collect();
        rows.push(vec![
            kind.to_string(),
            m.len().to_string(),
            format!("{:.1}", percentile(&m, 50.0).unwrap_or(0.0)),
            format!("{:.1}", percentile(&m, 99.0).unwrap_or(0.0)),
        ]);
    }
    print!("\n{}", table(&rows));
    if let Some(r) = example_reason {
        println!("\nexample explanation (grouped request): {r}");
    }
    if let Some(r) = example_refusal {
        println!("example refusal: {r}");
    }
    Ok(())
}
