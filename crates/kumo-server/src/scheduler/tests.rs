//! Table tests of single decisions, and a seeded simulation of thousands of placements that checks
//! the invariants after every one (never over capacity, hard spread never shares a host, hard
//! affinity sticks, GPUs never double-allocated, refusals only when truly nothing fits).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use kumo_types::{
    GpuRequest, HostAllocation, HostState, PlacementEnforcement as Enf, PlacementPolicy,
    PlacementStrategy as Strat,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const OC: Overcommit = Overcommit {
    cpu: 4.0,
    memory: 1.0,
    disk: 2.0,
};

fn host(id: &str, cpus: u32, mem: u64, alloc_mem: u64) -> Candidate {
    Candidate {
        id: id.into(),
        name: id.into(),
        state: HostState::Ready,
        alive: true,
        cpus,
        memory_mib: mem,
        disk_gib: 100,
        labels: BTreeMap::new(),
        gpus: vec![],
        allocated: HostAllocation {
            memory_mib: alloc_mem,
            ..Default::default()
        },
    }
}

fn req(vcpus: u32, mem: u64, disk: u64) -> Request {
    Request {
        vcpus,
        memory_mib: mem,
        disk_gib: disk,
        ..Default::default()
    }
}

fn group(name: &str, s: Strat, e: Enf, members: &[(&str, u32)]) -> Group {
    Group {
        name: name.into(),
        strategy: s,
        enforcement: e,
        members: members.iter().map(|(h, n)| (h.to_string(), *n)).collect(),
    }
}

/// Apply a decision to the inputs, as the app's transaction does.
fn apply(hosts: &mut [Candidate], r: &Request, d: &Decision) {
    let h = hosts.iter_mut().find(|h| h.id == d.host).unwrap();
    h.allocated.vcpus += u64::from(r.vcpus);
    h.allocated.memory_mib += r.memory_mib;
    h.allocated.disk_gib += r.disk_gib;
    h.allocated.instances += 1;
    h.allocated
        .gpu_devices
        .extend(d.gpu_devices.iter().cloned());
}

#[test]
fn spread_policy_picks_most_free_memory_and_pack_the_least() {
    let hosts = vec![
        host("a", 2, 4096, 3000),
        host("b", 2, 4096, 1000),
        host("c", 2, 4096, 3800),
    ];
    let d = place(&hosts, &req(1, 512, 1), &OC).unwrap();
    assert_eq!(d.host, "b");
    assert_eq!(d.eligible, 2, "c has only 296 MiB free");
    assert!(
        d.reason.starts_with(
            "spread policy: most free memory (2.5 GiB left after placing); 1 other host eligible. \
             1 host filtered out: 1 lacks memory (c: 296 MiB free; 512 MiB requested)"
        ),
        "{}",
        d.reason
    );
    let mut pack = req(1, 512, 1);
    pack.policy = PlacementPolicy::Pack;
    let d = place(&hosts, &pack, &OC).unwrap();
    assert_eq!(d.host, "a");
    assert!(
        d.reason
            .starts_with("pack policy: least free memory that fits (584 MiB left after placing)"),
        "{}",
        d.reason
    );
}

#[test]
fn ties_go_to_the_lower_host_id_whatever_the_input_order() {
    let mut hosts = vec![
        host("h3", 2, 4096, 0),
        host("h1", 2, 4096, 0),
        host("h2", 2, 4096, 0),
    ];
    for _ in 0..3 {
        assert_eq!(place(&hosts, &req(1, 256, 1), &OC).unwrap().host, "h1");
        hosts.rotate_left(1);
    }
}

#[test]
fn names_memory_vcpus_and_disk_when_they_run_out() {
    let hosts = vec![host("a", 2, 4096, 0)];
    let e = place(&hosts, &req(1, 8192, 1), &OC).unwrap_err();
    assert_eq!(e.resource, "memory");
    assert_eq!(
        e.message,
        "1 host considered: 1 lacks memory (a: 4096 MiB free; 8192 MiB requested)"
    );
    let e = place(&hosts, &req(9, 1, 1), &OC).unwrap_err();
    assert_eq!(e.resource, "vcpus");
    assert_eq!(
        e.message,
        "1 host considered: 1 lacks vCPUs (a: 8 free; 9 requested at cpu overcommit 4:1)"
    );
    let e = place(&hosts, &req(1, 1, 201), &OC).unwrap_err();
    assert_eq!(e.resource, "disk");
    assert!(
        e.message.contains("a: 200 GiB free; 201 GiB requested"),
        "{}",
        e.message
    );
}

#[test]
fn memory_overcommit_is_a_ratio_like_cpu() {
    let hosts = vec![host("a", 2, 4096, 4096)];
    assert_eq!(
        place(&hosts, &req(1, 512, 1), &OC).unwrap_err().resource,
        "memory"
    );
    let oc = Overcommit { memory: 1.5, ..OC };
    assert_eq!(place(&hosts, &req(1, 512, 1), &oc).unwrap().host, "a");
    let e = place(&hosts, &req(1, 4096, 1), &oc).unwrap_err();
    assert!(
        e.message.contains("at memory overcommit 1.5:1"),
        "{}",
        e.message
    );
}

#[test]
fn skips_hosts_that_are_not_ready_or_dead() {
    let mut a = host("a", 2, 4096, 0);
    a.state = HostState::Maintenance;
    let mut b = host("b", 2, 4096, 0);
    b.alive = false;
    let e = place(&[a, b], &req(1, 1, 1), &OC).unwrap_err();
    assert_eq!(e.resource, "hosts");
    assert_eq!(
        e.message,
        "2 hosts considered: 2 not ready (a: maintenance, b: agent not alive)"
    );
    assert_eq!(
        place(&[], &req(1, 1, 1), &OC).unwrap_err().resource,
        "hosts"
    );
}

#[test]
fn an_unplaceable_request_counts_what_each_filter_eliminated() {
    let mut h3 = host("h3", 4, 4096, 0);
    h3.state = HostState::Maintenance;
    let hosts = vec![host("h1", 4, 4096, 0), host("h2", 4, 1536, 1024), h3];
    let mut r = req(1, 1024, 1);
    r.group = Some(group("web", Strat::Spread, Enf::Hard, &[("h1", 1)]));
    let e = place(&hosts, &r, &OC).unwrap_err();
    assert_eq!(
        e.message,
        "3 hosts considered: 1 not ready (h3: maintenance); 1 already holds a member of hard spread \
         group `web` (h1); 1 lacks memory (h2: 512 MiB free; 1024 MiB requested)"
    );
    assert_eq!(
        e.resource, "memory",
        "the last filter that eliminated a host"
    );
}

#[test]
fn hard_spread_group_of_three_lands_on_three_hosts_and_refuses_a_fourth() {
    let mut hosts: Vec<Candidate> = (1..=3)
        .map(|i| host(&format!("h{i}"), 8, 16384, 0))
        .collect();
    let mut g = group("web", Strat::Spread, Enf::Hard, &[]);
    let mut placed = vec![];
    for _ in 0..3 {
        let mut r = req(1, 512, 1);
        r.group = Some(g.clone());
        let d = place(&hosts, &r, &OC).unwrap();
        assert!(
            d.reason
                .contains("hard spread group `web`: no other member on this host"),
            "{}",
            d.reason
        );
        apply(&mut hosts, &r, &d);
        *g.members.entry(d.host.clone()).or_default() += 1;
        placed.push(d.host);
    }
    placed.sort();
    assert_eq!(placed, ["h1", "h2", "h3"]);
    let mut r = req(1, 512, 1);
    r.group = Some(g.clone());
    let e = place(&hosts, &r, &OC).unwrap_err();
    assert_eq!(e.resource, "placement_group");
    assert_eq!(
        e.message,
        "3 hosts considered: 3 already hold a member of hard spread group `web` (h1, h2, h3)"
    );
    // Soft: the fourth goes through, where the policy says (all hosts hold one member).
    g.enforcement = Enf::Soft;
    r.group = Some(g);
    let d = place(&hosts, &r, &OC).unwrap();
    assert!(
        d.reason.contains(
            "soft spread group `web`: 1 other member on this host, and at least as many on every \
             other eligible host"
        ),
        "{}",
        d.reason
    );
}

#[test]
fn soft_spread_prefers_hosts_without_members_over_the_policy() {
    let hosts = vec![host("h1", 8, 16384, 0), host("h2", 8, 16384, 8192)];
    let mut r = req(1, 512, 1);
    r.group = Some(group("web", Strat::Spread, Enf::Soft, &[("h1", 2)]));
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(d.host, "h2");
    assert!(
        d.reason.starts_with(
            "spread policy: 7.5 GiB left after placing (another host would leave 15.5 GiB, but the \
             placement group's preference comes first)"
        ),
        "{}",
        d.reason
    );
}

#[test]
fn hard_affinity_sticks_to_the_members_host_and_names_it_when_full() {
    let hosts = vec![
        host("h1", 8, 16384, 0),
        host("h2", 8, 2048, 0),
        host("h3", 8, 16384, 0),
    ];
    let mut r = req(1, 1024, 1);
    r.group = Some(group("db", Strat::Affinity, Enf::Hard, &[]));
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(d.host, "h1", "first member: the policy decides");
    assert!(
        d.reason
            .contains("hard affinity group `db`: its first member"),
        "{}",
        d.reason
    );
    r.group = Some(group("db", Strat::Affinity, Enf::Hard, &[("h2", 1)]));
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(
        d.host, "h2",
        "with its member, though h1 and h3 have more room"
    );
    assert!(
        d.reason
            .contains("hard affinity group `db`: with 1 other member"),
        "{}",
        d.reason
    );
    r.memory_mib = 4096;
    let e = place(&hosts, &r, &OC).unwrap_err();
    assert_eq!(
        e.message,
        "3 hosts considered: 2 do not hold the members of hard affinity group `db` (they run on \
         h2); 1 lacks memory (h2: 2048 MiB free; 4096 MiB requested)"
    );
    // Soft: it goes elsewhere and says why.
    r.group = Some(group("db", Strat::Affinity, Enf::Soft, &[("h2", 1)]));
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(d.host, "h1");
    assert!(
        d.reason
            .contains("soft affinity group `db`: no host of its other members could take it"),
        "{}",
        d.reason
    );
}

#[test]
fn host_selector_requires_every_label() {
    let mut h1 = host("h1", 8, 8192, 0);
    h1.labels.insert("rack".into(), "b".into());
    let h2 = host("h2", 8, 8192, 0);
    let mut h3 = host("h3", 8, 4096, 0);
    h3.labels.insert("rack".into(), "a".into());
    h3.labels.insert("ssd".into(), "yes".into());
    let mut r = req(1, 512, 1);
    r.host_selector.insert("rack".into(), "a".into());
    let d = place(&[h1.clone(), h2.clone(), h3.clone()], &r, &OC).unwrap();
    assert_eq!(d.host, "h3");
    assert!(
        d.reason.contains("the only eligible host; has rack=a. 2 hosts filtered out: 2 lack label rack=a (h1: rack=b, h2: no rack)"),
        "{}",
        d.reason
    );
    let e = place(&[h1, h2], &r, &OC).unwrap_err();
    assert_eq!(e.resource, "host_selector");
    assert_eq!(
        e.message,
        "2 hosts considered: 2 lack label rack=a (h1: rack=b, h2: no rack)"
    );
    r.host_selector.insert("zone".into(), "1".into());
    let e = place(&[h3], &r, &OC).unwrap_err();
    assert_eq!(
        e.message,
        "1 host considered: 1 lacks labels rack=a,zone=1 (h3: no zone)"
    );
}

fn gpu(addr: &str, model: &str, iommu: bool) -> Gpu {
    Gpu {
        address: addr.into(),
        model: model.into(),
        iommu,
    }
}

#[test]
fn gpus_are_allocated_by_address_and_never_twice() {
    const A100: &str = "10de:20b0";
    let mut h1 = host("h1", 16, 65536, 0);
    h1.gpus = vec![
        gpu("0000:66:00.0", A100, true),
        gpu("0000:65:00.0", A100, true),
        gpu("0000:67:00.0", "10de:2236", true),
        gpu("0000:68:00.0", A100, false),
    ];
    let h2 = host("h2", 16, 131072, 0);
    let mut hosts = vec![h1, h2];
    let mut r = req(2, 4096, 10);
    r.gpus = Some(GpuRequest {
        model: A100.into(),
        count: 1,
    });
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(d.host, "h1", "h2 has more memory but no GPU");
    assert_eq!(d.gpu_devices, ["0000:65:00.0"]);
    assert!(
        d.reason.contains("GPUs 0000:65:00.0 (10de:20b0)"),
        "{}",
        d.reason
    );
    apply(&mut hosts, &r, &d);
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(d.gpu_devices, ["0000:66:00.0"]);
    apply(&mut hosts, &r, &d);
    let e = place(&hosts, &r, &OC).unwrap_err();
    assert_eq!(e.resource, "gpus");
    assert_eq!(
        e.message,
        "2 hosts considered: 2 lack 1 free GPU of model 10de:20b0 (h1: 0 of 3 free, 1 without an \
         IOMMU group, h2: none)"
    );
    // A request without GPUs leaves them alone.
    let d = place(&hosts, &req(1, 512, 1), &OC).unwrap();
    assert!(d.gpu_devices.is_empty());
}

#[test]
fn a_required_host_is_the_only_candidate() {
    let hosts = vec![host("h1", 8, 8192, 0), host("h2", 8, 2048, 0)];
    let mut r = req(1, 1024, 1);
    r.required_host = Some(RequiredHost {
        host: "h2".into(),
        why: "local volume `data` lives there".into(),
    });
    let d = place(&hosts, &r, &OC).unwrap();
    assert_eq!(d.host, "h2");
    assert!(
        d.reason
            .contains("required host: local volume `data` lives there"),
        "{}",
        d.reason
    );
    r.memory_mib = 4096;
    let e = place(&hosts, &r, &OC).unwrap_err();
    assert_eq!(
        e.message,
        "2 hosts considered: 1 is not the required host h2 (local volume `data` lives there); 1 \
         lacks memory (h2: 2048 MiB free; 4096 MiB requested)"
    );
    assert_eq!(e.resource, "memory");
}

#[test]
fn capacity_examples_are_the_hosts_closest_to_fitting() {
    let hosts: Vec<Candidate> = (0..10)
        .map(|i| host(&format!("h{i}"), 8, 1000 + i * 10, 0))
        .collect();
    let e = place(&hosts, &req(1, 4096, 1), &OC).unwrap_err();
    assert_eq!(
        e.message,
        "10 hosts considered: 10 lack memory (h9: 1090 MiB free, h8: 1080 MiB free, h7: 1070 MiB \
         free and 7 more; 4096 MiB requested)"
    );
}

// ------------------------------------------------------------------ simulation

const MODELS: [&str; 2] = ["10de:20b0", "10de:2236"];

fn random_cluster(rng: &mut StdRng, n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let mut h = host(
                &format!("host-{i:03}"),
                rng.random_range(2..=32),
                rng.random_range(1..=64) * 1024,
                0,
            );
            h.disk_gib = rng.random_range(20..=500);
            h.state = match rng.random_range(0..20) {
                0 => HostState::Maintenance,
                1 => HostState::Draining,
                _ => HostState::Ready,
            };
            h.alive = rng.random_range(0..25) != 0;
            if rng.random_bool(0.5) {
                h.labels.insert(
                    "rack".into(),
                    ["a", "b", "c"][rng.random_range(0..3)].into(),
                );
            }
            if rng.random_bool(0.2) {
                let model = MODELS[rng.random_range(0..2)];
                for g in 0..rng.random_range(1..=4) {
                    h.gpus.push(gpu(
                        &format!("0000:{:02x}:00.0", 0x60 + g),
                        model,
                        rng.random_range(0..10) != 0,
                    ));
                }
            }
            h
        })
        .collect()
}

/// Brute force: does any host satisfy every hard constraint?
fn fits_somewhere(hosts: &[Candidate], r: &Request) -> bool {
    hosts.iter().any(|h| {
        let f = free(h, &OC);
        h.state == HostState::Ready
            && h.alive
            && r.required_host.as_ref().is_none_or(|x| x.host == h.id)
            && r.host_selector
                .iter()
                .all(|(k, v)| h.labels.get(k) == Some(v))
            && r.group.as_ref().is_none_or(|g| {
                g.enforcement == Enf::Soft
                    || match g.strategy {
                        Strat::Spread => !g.members.contains_key(&h.id),
                        Strat::Affinity => g.members.is_empty() || g.members.contains_key(&h.id),
                    }
            })
            && r.gpus.as_ref().is_none_or(|w| {
                h.gpus
                    .iter()
                    .filter(|g| {
                        g.model == w.model
                            && g.iommu
                            && !h.allocated.gpu_devices.contains(&g.address)
                    })
                    .count()
                    >= w.count as usize
            })
            && f.memory_mib >= r.memory_mib
            && f.vcpus >= u64::from(r.vcpus)
            && f.disk_gib >= r.disk_gib
    })
}

#[test]
fn thousands_of_random_placements_keep_every_invariant() {
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut hosts = random_cluster(&mut rng, 40);
        let groups: Vec<(String, Strat, Enf)> = (0..8)
            .map(|i| {
                (
                    format!("g{i}"),
                    if i % 2 == 0 {
                        Strat::Spread
                    } else {
                        Strat::Affinity
                    },
                    if i < 4 { Enf::Hard } else { Enf::Soft },
                )
            })
            .collect();
        // group name → host → members
        let mut members: HashMap<String, HashMap<String, u32>> = HashMap::new();
        let (mut placed, mut refused) = (0, 0);
        for _ in 0..1500 {
            let mut r = req(
                rng.random_range(1..=8),
                rng.random_range(1..=16) * 256,
                rng.random_range(1..=40),
            );
            r.policy = if rng.random_bool(0.5) {
                PlacementPolicy::Spread
            } else {
                PlacementPolicy::Pack
            };
            if rng.random_bool(0.2) {
                r.host_selector.insert(
                    "rack".into(),
                    ["a", "b", "c"][rng.random_range(0..3)].into(),
                );
            }
            if rng.random_bool(0.1) {
                r.gpus = Some(GpuRequest {
                    model: MODELS[rng.random_range(0..2)].into(),
                    count: rng.random_range(1..=2),
                });
            }
            if rng.random_bool(0.05) {
                r.required_host = Some(RequiredHost {
                    host: format!("host-{:03}", rng.random_range(0..45)),
                    why: "test".into(),
                });
            }
            let gi = rng.random_range(0..groups.len() * 2);
            if let Some((name, s, e)) = groups.get(gi) {
                r.group = Some(Group {
                    name: name.clone(),
                    strategy: *s,
                    enforcement: *e,
                    members: members.get(name).cloned().unwrap_or_default(),
                });
            }
            let expect_fit = fits_somewhere(&hosts, &r);
            match place(&hosts, &r, &OC) {
                Ok(d) => {
                    assert!(expect_fit, "placed what brute force says cannot fit: {r:?}");
                    // Determinism: the input order does not matter.
                    let mut shuffled = hosts.clone();
                    shuffled.reverse();
                    assert_eq!(place(&shuffled, &r, &OC).unwrap().host, d.host);
                    let h = hosts.iter().find(|h| h.id == d.host).unwrap();
                    assert!(h.state == HostState::Ready && h.alive);
                    assert!(
                        r.host_selector
                            .iter()
                            .all(|(k, v)| h.labels.get(k) == Some(v))
                    );
                    if let Some(w) = &r.gpus {
                        assert_eq!(d.gpu_devices.len(), w.count as usize);
                        for a in &d.gpu_devices {
                            let g = h.gpus.iter().find(|g| &g.address == a).unwrap();
                            assert_eq!(g.model, w.model);
                            assert!(g.iommu);
                        }
                    }
                    apply(&mut hosts, &r, &d);
                    if let Some(g) = &r.group {
                        *members
                            .entry(g.name.clone())
                            .or_default()
                            .entry(d.host.clone())
                            .or_default() += 1;
                    }
                    placed += 1;
                }
                Err(e) => {
                    assert!(!expect_fit, "refused what fits ({}): {r:?}", e.message);
                    assert!(!e.message.is_empty());
                    refused += 1;
                }
            }
            // Invariants over the whole cluster.
            for h in &hosts {
                let cap = free(
                    &Candidate {
                        allocated: HostAllocation::default(),
                        ..h.clone()
                    },
                    &OC,
                );
                assert!(
                    h.allocated.memory_mib <= cap.memory_mib,
                    "{} over memory",
                    h.id
                );
                assert!(h.allocated.vcpus <= cap.vcpus, "{} over vCPUs", h.id);
                assert!(h.allocated.disk_gib <= cap.disk_gib, "{} over disk", h.id);
                let mut gpus = h.allocated.gpu_devices.clone();
                gpus.sort();
                gpus.dedup();
                assert_eq!(gpus.len(), h.allocated.gpu_devices.len(), "GPU given twice");
            }
            for (name, s, e) in &groups {
                let Some(m) = members.get(name) else { continue };
                if *e == Enf::Hard {
                    match s {
                        Strat::Spread => assert!(m.values().all(|n| *n == 1), "{name}: {m:?}"),
                        Strat::Affinity => assert_eq!(m.len(), 1, "{name}: {m:?}"),
                    }
                }
            }
        }
        assert!(
            placed > 150 && refused > 50,
            "seed {seed}: {placed} placed, {refused} refused"
        );
    }
}
