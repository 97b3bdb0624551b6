//! Projects and quotas through the app layer, on a real (SQLite) store with one registered host and
//! no agent: instances are created stopped and deletions are finalized by hand, so only records are
//! involved. Covers: another project's resources are invisible (404, never 403), references resolve
//! inside the project, names are unique per project, public images, and quotas that concurrent
//! creates never overshoot, with counters that always equal a recount.

#![allow(clippy::unwrap_used)]

mod support;

use kumo_server::app::scope::Scope;
use kumo_server::app::{
    App, event, floating_ip, image, instance, key_pair, network, port, quota, security_group,
    snapshot, volume,
};
use kumo_server::identity::{Caller, Role};
use kumo_server::storeutil::{encode, keys};
use kumo_types::{
    CreateNetworkRequest, CreateProjectRequest, CreateSecurityGroupRequest, CreateSnapshotRequest,
    CreateSubnetRequest, CreateVolumeRequest, Error, ImportKeyPairRequest, QuotaUsage,
    RunInstanceRequest, UpdateImageRequest, UpdateQuotasRequest, UpdateVolumeRequest, Visibility,
};
use serde_json::json;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH38yLgzi2IeYHvMfF2FnnkBKRgeAhod6sUwDtsd3oD3 test";

struct Env {
    app: App,
    _dir: tempfile::TempDir,
}

fn member(project: &str) -> Scope {
    Scope::of(&Caller {
        user: format!("{project}-user"),
        project: project.into(),
        role: Role::Member,
        credential: None,
        source: None,
    })
}

fn admin() -> Scope {
    Scope::system()
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let app = support::app(dir.path());
    app.bootstrap().await.unwrap();
    kumo_server::identity::project::ensure_default(&app)
        .await
        .unwrap();
    for p in ["p1", "p2"] {
        kumo_server::identity::project::create(
            &app,
            &Caller::system(),
            CreateProjectRequest {
                name: p.into(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    }
    // A public image of the default project, and a private one of p2 (no files: nothing boots).
    for (id, name, project, visibility) in [
        ("ami-00000000000000001", "tiny", "default", "public"),
        ("ami-00000000000000002", "secret", "p2", "private"),
    ] {
        let img: kumo_types::Image = serde_json::from_value(json!({
            "id": id, "name": name, "project": project, "kind": "kernel_initrd",
            "size_bytes": 1, "virtual_size_bytes": 0, "sha256": "x", "pool": "local",
            "visibility": visibility, "created_at": "t"
        }))
        .unwrap();
        app.kv()
            .put(&keys::image(id), encode(&img).unwrap())
            .await
            .unwrap();
        app.kv()
            .put(&keys::name("images", project, name), id.as_bytes().to_vec())
            .await
            .unwrap();
    }
    crate::support::register_host(&app).await;
    Env { app, _dir: dir }
}

/// A network with one subnet in the project of `scope`.
async fn net(app: &App, scope: &Scope, name: &str, cidr: &str) -> kumo_types::Network {
    let n = network::create(
        app,
        scope,
        CreateNetworkRequest {
            name: name.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    network::create_subnet(
        app,
        scope,
        CreateSubnetRequest {
            name: name.into(),
            network: n.id.clone(),
            cidr: cidr.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    n
}

fn run_req(name: &str, network: &str) -> RunInstanceRequest {
    serde_json::from_value(json!({
        "name": name, "image": "tiny", "instance_type": "nano", "start": false,
        "network": network
    }))
    .unwrap()
}

fn sg(name: &str) -> CreateSecurityGroupRequest {
    CreateSecurityGroupRequest {
        name: name.into(),
        description: String::new(),
        allow_all_egress: None,
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
}

/// The stored counters equal a recount from the records.
async fn counters_match(app: &App, project: &str) -> QuotaUsage {
    let counted = quota::usage(app, project).await.unwrap();
    let recounted = quota::recount(app, project).await.unwrap();
    assert_eq!(counted, recounted, "usage of {project}");
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_projects_resources_are_invisible_and_names_are_per_project() {
    let Env { app, _dir } = env().await;
    let (p1, p2) = (member("p1"), member("p2"));
    let g1 = security_group::create(&app, &p1, sg("web")).await.unwrap();
    // The same name in another project is another group.
    let g2 = security_group::create(&app, &p2, sg("web")).await.unwrap();
    assert_ne!(g1.id, g2.id);
    assert_eq!(g1.project, "p1");
    // By ID or by name, read, changed or deleted: the same 404 as a missing one.
    not_found(security_group::get(&app, &p2, &g1.id).await);
    assert_eq!(
        security_group::get(&app, &p2, "web").await.unwrap().id,
        g2.id
    );
    not_found(security_group::delete(&app, &p2, &g1.id).await);
    not_found(security_group::remove_rule(&app, &p2, &g1.id, "sgr-x").await);
    let listed: Vec<String> = security_group::list(&app, &p1)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(listed, vec![g1.id.clone()]);
    // A cloud admin reaches it by ID and lists every project on request.
    assert_eq!(
        security_group::get(&app, &admin(), &g1.id)
            .await
            .unwrap()
            .id,
        g1.id
    );
    let caller = Caller {
        user: "u".into(),
        project: "p1".into(),
        role: Role::Member,
        credential: None,
        source: None,
    };
    assert!(matches!(
        Scope::listing(&caller, true),
        Err(Error::Forbidden { .. })
    ));
    let all = security_group::list(&app, &admin()).await.unwrap().items;
    assert!(all.iter().any(|g| g.id == g1.id) && all.iter().any(|g| g.id == g2.id));

    let k1 = key_pair::import(
        &app,
        &p1,
        ImportKeyPairRequest {
            name: "k".into(),
            public_key: KEY.into(),
        },
    )
    .await
    .unwrap();
    not_found(key_pair::get(&app, &p2, &k1.id).await);
    not_found(key_pair::get(&app, &p2, "k").await);
    not_found(key_pair::delete(&app, &p2, &k1.id).await);

    // Instances: only the project's own network, key pair and groups can be named.
    let n1 = net(&app, &p1, "n1", "10.91.0.0/24").await;
    let n2 = net(&app, &p2, "n2", "10.92.0.0/24").await;
    not_found(network::get(&app, &p2, &n1.id).await);
    let e = instance::run(&app, &p2, run_req("x", &n1.id))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("nics[0].network"), "{e:?}");
    let mut req = run_req("x", &n2.id);
    req.key_name = Some("k".into());
    let e = instance::run(&app, &p2, req).await.unwrap_err();
    assert_eq!(e.field(), Some("key_name"), "{e:?}");
    let mut req = run_req("x", &n2.id);
    req.security_groups = Some(vec![g1.id.clone()]);
    let e = instance::run(&app, &p2, req).await.unwrap_err();
    assert_eq!(e.field(), Some("security_groups[0]"), "{e:?}");
    // Without a network, a project other than `default` is told to name one.
    let e = instance::run(
        &app,
        &p1,
        serde_json::from_value(
            json!({"name": "y", "image": "tiny", "instance_type": "nano", "start": false}),
        )
        .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("in project `p1`"), "{e}");

    let mut req = run_req("web-1", "n1");
    req.key_name = Some("k".into());
    let i1 = instance::run(&app, &p1, req).await.unwrap();
    assert_eq!(i1.project, "p1");
    not_found(instance::get_in(&app, &p2, &i1.id).await);
    not_found(instance::get_in(&app, &p2, "web-1").await);
    not_found(instance::stop_in(&app, &p2, &i1.id, Default::default()).await);
    not_found(instance::delete(&app, &p2, &i1.id).await);
    assert!(
        instance::list(&app, &p2, None, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Its NIC's port is p1's too, in p1's default group, made on first use.
    let port_id = i1.nics[0].port_id.clone();
    let p = port::get(&app, &p1, &port_id).await.unwrap();
    assert_eq!(p.project, "p1");
    let default_sg = security_group::get(&app, &p1, "default").await.unwrap();
    assert_eq!(p.security_groups, vec![default_sg.id]);
    not_found(port::get(&app, &p2, &port_id).await);

    // Events: a project sees its own.
    let evs = event::list(&app, &p2, Some(&i1.id), None, None)
        .await
        .unwrap();
    assert!(evs.items.is_empty());
    let evs = event::list(&app, &p1, Some(&i1.id), None, None)
        .await
        .unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.kind == "instance.created" && e.project.as_deref() == Some("p1"))
    );

    // Images: the project's own and the public ones.
    assert_eq!(
        image::get(&app, &p1, "tiny").await.unwrap().project,
        "default"
    );
    not_found(image::get(&app, &p1, "secret").await);
    not_found(image::get(&app, &p1, "ami-00000000000000002").await);
    let names: Vec<String> = image::list(&app, &p1)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["tiny".to_string()]);
    // Only a cloud admin makes an image public; nobody else changes another project's image.
    let publish = UpdateImageRequest {
        visibility: Some(Visibility::Public),
    };
    let e = image::update(&app, &p2, "secret", publish.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");
    let e = image::delete(&app, &p1, "tiny").await.unwrap_err();
    assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");
    image::update(&app, &admin(), "ami-00000000000000002", publish)
        .await
        .unwrap();
    assert_eq!(image::get(&app, &p1, "secret").await.unwrap().project, "p2");

    // Volumes: attach resolves the instance in the volume's project.
    let v2 = volume::create(
        &app,
        &p2,
        CreateVolumeRequest {
            name: "data".into(),
            size_gib: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = volume::attach(
        &app,
        &p2,
        &v2.volume.id,
        serde_json::from_value(json!({"instance": i1.id})).unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field(), Some("instance"), "{e:?}");
    not_found(volume::get(&app, &p1, &v2.volume.id).await);
    let e = snapshot::create(
        &app,
        &p1,
        CreateSnapshotRequest {
            name: "s".into(),
            volume: v2.volume.id.clone(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.field(), Some("volume"), "{e:?}");

    for p in ["p1", "p2", "default"] {
        counters_match(&app, p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_creates_never_overshoot_a_quota() {
    let Env { app, _dir } = env().await;
    let limit = 7;
    quota::set(
        &app,
        &admin(),
        "p1",
        UpdateQuotasRequest {
            security_groups: Some(limit),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                security_group::create(&app, &member("p1"), sg(&format!("g{i}"))).await
            })
        })
        .collect();
    let (mut made, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => made += 1,
            Err(Error::QuotaExceeded {
                resource,
                limit: l,
                used,
                requested,
                ..
            }) => {
                assert_eq!(
                    (resource.as_str(), l, used, requested),
                    ("security_groups", 7, 7, 1)
                );
                refused += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((made, refused), (7, 93));
    let used = counters_match(&app, "p1").await;
    assert_eq!(used.security_groups, 7);
    let shown = quota::show(&app, &member("p1"), None).await.unwrap();
    assert_eq!(shown.limits.security_groups, Some(7));
    assert!(!shown.defaults);
    // A member sees its own project's quotas only and changes none.
    assert!(matches!(
        quota::show(&app, &member("p1"), Some("p2")).await,
        Err(Error::Forbidden { .. })
    ));
    let e = quota::set(&app, &member("p1"), "p1", UpdateQuotasRequest::default()).await;
    assert!(matches!(e, Err(Error::Forbidden { .. })), "{e:?}");
    // Another project is not limited by p1's quota (its defaults apply).
    security_group::create(&app, &member("p2"), sg("g0"))
        .await
        .unwrap();
    assert!(
        quota::show(&app, &member("p2"), None)
            .await
            .unwrap()
            .defaults
    );
    // Unlimited, a hundred racing creates all get through (they serialize on the usage record).
    quota::set(
        &app,
        &admin(),
        "p2",
        UpdateQuotasRequest {
            security_groups: Some(-1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (1..=100)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                security_group::create(&app, &member("p2"), sg(&format!("g{i}"))).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(counters_match(&app, "p2").await.security_groups, 101);

    // Concurrent deletes give it all back.
    let groups = security_group::list(&app, &member("p1"))
        .await
        .unwrap()
        .items;
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let app = app.clone();
            tokio::spawn(async move { security_group::delete(&app, &member("p1"), &g.id).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(counters_match(&app, "p1").await, QuotaUsage::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_volumes_and_floating_ips_count_until_finally_deleted() {
    let Env { app, _dir } = env().await;
    let p1 = member("p1");
    net(&app, &p1, "n1", "10.93.0.0/24").await;
    quota::set(
        &app,
        &admin(),
        "p1",
        UpdateQuotasRequest {
            instances: Some(3),
            volume_gib: Some(10),
            floating_ips: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Ten stopped instances race for three.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                instance::run(&app, &member("p1"), run_req(&format!("vm-{i}"), "n1")).await
            })
        })
        .collect();
    let mut made = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => made.push(v),
            Err(Error::QuotaExceeded { resource, .. }) => assert_eq!(resource, "instances"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(made.len(), 3);
    let used = counters_match(&app, "p1").await;
    let nano = kumo_types::builtin_instance_types()
        .into_iter()
        .find(|t| t.name == "nano")
        .unwrap();
    assert_eq!(
        (used.instances, used.vcpus, used.memory_mib, used.networks),
        (3, 3 * u64::from(nano.vcpus), 3 * nano.memory_mib, 1)
    );

    // Volumes: size and growth count against volume_gib.
    let v = volume::create(
        &app,
        &p1,
        CreateVolumeRequest {
            name: "data".into(),
            size_gib: Some(6),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = volume::create(
        &app,
        &p1,
        CreateVolumeRequest {
            name: "more".into(),
            size_gib: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("may hold 10 volume_gib; 6 in use, 5 more requested"),
        "{e}"
    );
    let grow = |size| UpdateVolumeRequest {
        size_gib: Some(size),
    };
    volume::resize(&app, &p1, "data", grow(9)).await.unwrap();
    let e = volume::resize(&app, &p1, "data", grow(11))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::QuotaExceeded { .. }), "{e:?}");
    assert_eq!(counters_match(&app, "p1").await.volume_gib, 9);

    // Floating IPs come from the admin's external network.
    let ext = network::create(
        &app,
        &admin(),
        CreateNetworkRequest {
            name: "public".into(),
            external: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    network::create_subnet(
        &app,
        &admin(),
        CreateSubnetRequest {
            name: "public".into(),
            network: ext.id.clone(),
            cidr: "198.19.0.0/24".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let alloc = || kumo_types::AllocateFloatingIpRequest {
        network: "public".into(),
    };
    let f = floating_ip::allocate(&app, &p1, alloc()).await.unwrap();
    assert_eq!(f.project, "p1");
    let e = floating_ip::allocate(&app, &p1, alloc()).await.unwrap_err();
    assert!(matches!(e, Error::QuotaExceeded { .. }), "{e:?}");
    not_found(floating_ip::get(&app, &member("p2"), &f.address).await);
    floating_ip::associate(
        &app,
        &p1,
        &f.address,
        serde_json::from_value(json!({"instance": made[0].id})).unwrap(),
    )
    .await
    .unwrap();
    floating_ip::disassociate(&app, &p1, &f.id).await.unwrap();
    floating_ip::release(&app, &p1, &f.id).await.unwrap();
    counters_match(&app, "p1").await;

    // Deleting: an instance counts until its record is finally removed.
    for v in &made {
        instance::delete(&app, &p1, &v.id).await.unwrap();
    }
    assert_eq!(counters_match(&app, "p1").await.instances, 3);
    for v in &made {
        instance::finalize_delete(&app, &v.id).await.unwrap();
    }
    volume::delete(&app, &p1, &v.volume.id).await.unwrap();
    assert_eq!(counters_match(&app, "p1").await.volume_gib, 9);
    volume::finalize_delete(&app, &v.volume.id).await.unwrap();
    let used = counters_match(&app, "p1").await;
    assert_eq!(
        used,
        QuotaUsage {
            networks: 1,
            security_groups: 1, // the project's default group, made with the first port
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn a_missing_usage_record_is_rebuilt_from_the_records() {
    let Env { app, _dir } = env().await;
    let p1 = member("p1");
    security_group::create(&app, &p1, sg("a")).await.unwrap();
    security_group::create(&app, &p1, sg("b")).await.unwrap();
    // As a store from before quotas would be: resources, no counters.
    app.kv().delete(&keys::usage("p1")).await.unwrap();
    assert_eq!(quota::usage(&app, "p1").await.unwrap().security_groups, 2);
    security_group::create(&app, &p1, sg("c")).await.unwrap();
    assert_eq!(counters_match(&app, "p1").await.security_groups, 3);
    // The default project is unlimited unless set; the others get the defaults.
    let d = quota::show(&app, &admin(), None).await.unwrap();
    assert!(d.defaults && d.limits == kumo_types::QuotaLimits::unlimited());
    assert_eq!(d.usage.networks, 1, "the default network");
    let e = quota::set(&app, &admin(), "nope", UpdateQuotasRequest::default()).await;
    assert!(matches!(e, Err(Error::NotFound { .. })), "{e:?}");
}
