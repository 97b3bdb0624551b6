//! Placement through the app layer, on a real (SQLite) store with several registered hosts and no
//! agents: instances are created stopped, so nothing but records is involved. Covers what the
//! single-host end-to-end test cannot: hard groups across hosts, GPU allocation, labels, and
//! concurrent placements racing on the same hosts, GPUs and groups.

#![allow(clippy::unwrap_used)]

mod support;
use std::collections::{BTreeMap, HashSet};

use kumo_server::app::scope::Scope;
use kumo_server::app::{App, event, host, instance, placement, placement_group};
use kumo_server::storeutil::{encode, get_json, keys};
use kumo_types::{
    CreateInstanceTypeRequest, CreatePlacementGroupRequest, Error, HostAllocation, HostInventory,
    InstanceView, PciDevice, PlacementEnforcement, PlacementStrategy, RunInstanceRequest,
    UpdateHostRequest,
};
use serde_json::json;

const A100: &str = "10de:20b0";

struct Env {
    app: App,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let app = support::app(dir.path());
    app.bootstrap().await.unwrap();
    // An image record (no files: nothing here boots).
    let img: kumo_types::Image = serde_json::from_value(json!({
        "id": "ami-00000000000000001", "name": "tiny", "project": "default", "kind": "kernel_initrd",
        "size_bytes": 1, "virtual_size_bytes": 0, "sha256": "x", "pool": "local", "created_at": "t"
    }))
    .unwrap();
    app.kv()
        .put(&keys::image(&img.id), encode(&img).unwrap())
        .await
        .unwrap();
    app.kv()
        .put(
            &keys::name("images", "default", "tiny"),
            img.id.clone().into_bytes(),
        )
        .await
        .unwrap();
    Env { app, _dir: dir }
}

async fn add_host(app: &App, name: &str, mem_mib: u64, gpus: &[&str]) -> String {
    let inv = HostInventory {
        hostname: name.into(),
        cpus: 8,
        memory_mib: mem_mib,
        disk_free_bytes: 100 << 30,
        disk_total_bytes: 100 << 30,
        pci_devices: gpus
            .iter()
            .map(|a| PciDevice {
                address: a.to_string(),
                model: A100.into(),
                class: "0x030200".into(),
                iommu_group: Some(1),
                driver: Some("vfio-pci".into()),
                gpu: true,
            })
            .collect(),
        ..Default::default()
    };
    host::register(app, inv).await.unwrap().id
}

fn run_req(name: &str, itype: &str, extra: serde_json::Value) -> RunInstanceRequest {
    let mut v = json!({"name": name, "image": "tiny", "instance_type": itype, "start": false});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

async fn group(app: &App, name: &str, s: PlacementStrategy, e: PlacementEnforcement) {
    placement_group::create(
        app,
        CreatePlacementGroupRequest {
            name: name.into(),
            strategy: s,
            enforcement: Some(e),
            description: None,
        },
    )
    .await
    .unwrap();
}

fn capacity(e: Error) -> (String, String) {
    match e {
        Error::InsufficientCapacity { resource, message } => (resource, message),
        e => panic!("expected insufficient capacity, got {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_spread_group_of_three_lands_on_three_hosts_and_a_fourth_is_refused() {
    let Env { app, _dir } = env().await;
    for h in ["h1", "h2", "h3"] {
        add_host(&app, h, 8192, &[]).await;
    }
    group(
        &app,
        "web",
        PlacementStrategy::Spread,
        PlacementEnforcement::Hard,
    )
    .await;
    // Five members race for three hosts.
    let tasks: Vec<_> = (1..=5)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                instance::run(
                    &app,
                    &Scope::system(),
                    run_req(
                        &format!("web-{i}"),
                        "micro",
                        json!({"placement_group": "web"}),
                    ),
                )
                .await
            })
        })
        .collect();
    let mut placed: Vec<InstanceView> = vec![];
    let mut refused = vec![];
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => placed.push(v),
            Err(e) => refused.push(capacity(e)),
        }
    }
    let hosts: HashSet<_> = placed.iter().map(|v| v.host.clone().unwrap()).collect();
    assert_eq!((placed.len(), hosts.len()), (3, 3), "{placed:#?}");
    assert_eq!(refused.len(), 2);
    for (resource, message) in &refused {
        assert_eq!(resource, "placement_group");
        assert_eq!(
            message,
            "3 hosts considered: 3 already hold a member of hard spread group `web` (h1, h2, h3)"
        );
    }
    let g = placement_group::get(&app, "web").await.unwrap();
    assert_eq!(g.members.len(), 3);
    // Each member explains itself, in `show` and in the event log.
    let v = instance::get(&app, &placed[0].name).await.unwrap();
    assert_eq!(v.placement_group.as_deref(), Some("web"));
    let p = v.placement.clone().unwrap();
    assert!(
        p.reason
            .contains("hard spread group `web`: no other member on this host"),
        "{}",
        p.reason
    );
    assert_eq!(p.considered, 3);
    let evs = event::list(&app, &Scope::system(), Some(&v.id), None, None)
        .await
        .unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.kind == "instance.placed" && e.message.contains("hard spread group `web`")),
        "{evs:?}"
    );
    // A group with members cannot go; once they are gone, it can.
    let e = placement_group::delete(&app, "web").await.unwrap_err();
    assert!(
        matches!(&e, Error::Conflict { message, .. } if message.contains("has 3 member(s)")),
        "{e:?}"
    );
    for v in &placed {
        instance::delete(&app, &Scope::system(), &v.name)
            .await
            .unwrap();
        instance::finalize_delete(&app, &v.id).await.unwrap();
        assert!(placement::get(&app, &v.id).await.unwrap().is_none());
    }
    assert!(
        placement_group::get(&app, "web")
            .await
            .unwrap()
            .members
            .is_empty()
    );
    placement_group::delete(&app, "web").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_affinity_members_share_a_host_even_when_racing() {
    let Env { app, _dir } = env().await;
    for h in ["h1", "h2", "h3"] {
        add_host(&app, h, 8192, &[]).await;
    }
    group(
        &app,
        "db",
        PlacementStrategy::Affinity,
        PlacementEnforcement::Hard,
    )
    .await;
    let tasks: Vec<_> = (1..=4)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                instance::run(
                    &app,
                    &Scope::system(),
                    run_req(
                        &format!("db-{i}"),
                        "micro",
                        json!({"placement_group": "db"}),
                    ),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut hosts = HashSet::new();
    for t in tasks {
        hosts.insert(t.await.unwrap().host.unwrap());
    }
    assert_eq!(hosts.len(), 1, "{hosts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gpus_are_given_once_and_freed_with_their_instance() {
    let Env { app, _dir } = env().await;
    let g1 = add_host(&app, "g1", 65536, &["0000:66:00.0", "0000:65:00.0"]).await;
    add_host(&app, "plain", 131072, &[]).await;
    let req: CreateInstanceTypeRequest = serde_json::from_value(json!({
        "name": "gpu1", "vcpus": 1, "memory_mib": 1024, "root_disk_gib": 1,
        "gpus": {"model": A100, "count": 1}
    }))
    .unwrap();
    kumo_server::app::instance_type::create(&app, req)
        .await
        .unwrap();
    let tasks: Vec<_> = (1..=3)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                instance::run(
                    &app,
                    &Scope::system(),
                    run_req(&format!("ml-{i}"), "gpu1", json!({})),
                )
                .await
            })
        })
        .collect();
    let mut placed = vec![];
    let mut refused = vec![];
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => placed.push(v),
            Err(e) => refused.push(capacity(e)),
        }
    }
    assert_eq!(placed.len(), 2);
    let mut devs: Vec<String> = placed.iter().flat_map(|v| v.gpu_devices.clone()).collect();
    devs.sort();
    assert_eq!(devs, ["0000:65:00.0", "0000:66:00.0"]);
    assert!(
        placed
            .iter()
            .all(|v| v.host.as_deref() == Some(g1.as_str()))
    );
    let (resource, message) = &refused[0];
    assert_eq!(resource, "gpus");
    assert_eq!(
        message,
        "2 hosts considered: 2 lack 1 free GPU of model 10de:20b0 (g1: 0 of 2 free, plain: none)"
    );
    let (alloc, _) = get_json::<HostAllocation>(app.kv(), &keys::host_alloc(&g1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alloc.gpu_devices, ["0000:65:00.0", "0000:66:00.0"]);
    // Deleting one frees its GPU for the next.
    let gone = &placed[0];
    instance::delete(&app, &Scope::system(), &gone.name)
        .await
        .unwrap();
    instance::finalize_delete(&app, &gone.id).await.unwrap();
    let v = instance::run(&app, &Scope::system(), run_req("ml-4", "gpu1", json!({})))
        .await
        .unwrap();
    assert_eq!(v.gpu_devices, gone.gpu_devices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_labels_steer_placement_and_are_validated() {
    let Env { app, _dir } = env().await;
    add_host(&app, "h1", 16384, &[]).await;
    add_host(&app, "h2", 4096, &[]).await;
    let sel = |k: &str, v: &str| json!({"host_selector": {k: v}});
    let e = instance::run(
        &app,
        &Scope::system(),
        run_req("a", "micro", sel("rack", "a")),
    )
    .await
    .unwrap_err();
    let (resource, message) = capacity(e);
    assert_eq!(resource, "host_selector");
    assert_eq!(
        message,
        "2 hosts considered: 2 lack label rack=a (h1: no rack, h2: no rack)"
    );
    let labels = |pairs: &[(&str, Option<&str>)]| UpdateHostRequest {
        labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect::<BTreeMap<_, _>>(),
        ),
    };
    let h = host::update(
        &app,
        "h2",
        labels(&[("rack", Some("a")), ("ssd", Some("yes"))]),
    )
    .await
    .unwrap();
    assert_eq!(h.labels.len(), 2);
    let v = instance::run(
        &app,
        &Scope::system(),
        run_req("a", "micro", sel("rack", "a")),
    )
    .await
    .unwrap();
    assert_eq!(
        v.host.as_deref(),
        Some(h.id.as_str()),
        "h1 has more memory but no label"
    );
    assert_eq!(v.host_selector.get("rack").map(String::as_str), Some("a"));
    let h = host::update(&app, "h2", labels(&[("ssd", None)]))
        .await
        .unwrap();
    assert_eq!(h.labels.keys().collect::<Vec<_>>(), ["rack"]);
    for (k, v, field) in [
        ("bad key", Some("x"), "labels"),
        ("rack", Some("no spaces"), "labels.rack"),
    ] {
        let e = host::update(&app, "h2", labels(&[(k, v)]))
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some(field), "{e:?}");
    }
    let e = instance::run(
        &app,
        &Scope::system(),
        run_req("b", "micro", sel("rack", "-a")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field(), Some("host_selector.rack"), "{e:?}");
    let e = instance::run(
        &app,
        &Scope::system(),
        run_req("b", "micro", json!({"placement_group": "nope"})),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field(), Some("placement_group"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_member_keeps_its_group_rules_and_its_membership() {
    let Env { app, _dir } = env().await;
    for h in ["h1", "h2", "h3"] {
        add_host(&app, h, 8192, &[]).await;
    }
    group(
        &app,
        "web",
        PlacementStrategy::Spread,
        PlacementEnforcement::Hard,
    )
    .await;
    let mut hosts = vec![];
    for n in ["web-1", "web-2"] {
        let v = instance::run(
            &app,
            &Scope::system(),
            run_req(n, "micro", json!({"placement_group": "web"})),
        )
        .await
        .unwrap();
        hosts.push(v.host.unwrap());
    }
    // web-1 must move (its host failed, or is drained): not onto web-2's host.
    let (inst, _) = instance::find(&app, "web-1").await.unwrap();
    let want = placement::want_for(&app, &inst).await.unwrap();
    assert_eq!(want.group.as_deref(), Some("web"));
    let plan = placement::decide_for(&app, &want, Some(&inst.id))
        .await
        .unwrap();
    assert_ne!(plan.decision.host, hosts[1]);
    let mut moved = inst.clone();
    moved.host = Some(plan.decision.host.clone());
    let rec = plan.record(&want);
    assert_eq!(rec.placement_group.as_deref(), Some("web"));
    let (compare, ops) = plan.ops(&moved, &rec).unwrap();
    assert!(
        kumo_server::storeutil::commit(app.kv(), compare, ops)
            .await
            .unwrap()
    );
    let g = placement_group::get(&app, "web").await.unwrap();
    assert_eq!(
        g.members.len(),
        2,
        "still one membership each: {:?}",
        g.members
    );
}
