//! `kumo volume …`: parsing, the request bodies built, and the volume tables.

use kumo_types::{Volume, VolumeAttachment, VolumeState, VolumeView};

use super::*;
use crate::cmd::volume::{self, VolumeCmd};
use crate::render::storage;

const GIB: u64 = 1024 * 1024 * 1024;

fn err(args: &[&str]) -> String {
    match parse(args) {
        Ok(c) => panic!("{args:?} parsed: {:?}", c.cmd),
        Err(e) => e.to_string(),
    }
}

fn cmd(args: &[&str]) -> VolumeCmd {
    match parse(args).expect("parses").cmd {
        Command::Volume(c) => c,
        other => panic!("wrong command: {other:?}"),
    }
}

fn volume_view(state: VolumeState, attachment: Option<VolumeAttachment>) -> VolumeView {
    VolumeView {
        volume: Volume {
            id: "vol-0abc".into(),
            name: "data".into(),
            project: "default".into(),
            size_gib: 10,
            pool: "local".into(),
            volume_type: "default".into(),
            image_id: Some("ami-9".into()),
            snapshot_id: None,
            host: "host-a".into(),
            attachment,
            deleting: false,
            created_at: "2026-11-21T00:00:00.000Z".into(),
        },
        state,
        status_message: None,
        size_bytes: 10 * GIB,
        plugged_into: None,
    }
}

fn attachment() -> VolumeAttachment {
    VolumeAttachment {
        instance_id: "i-0123".into(),
        delete_on_termination: true,
        slot: 2,
        boot: false,
    }
}

fn contains_all(t: &str, want: &[&str]) {
    for s in want {
        assert!(t.contains(s), "missing {s:?} in\n{t}");
    }
}

#[test]
fn create_with_every_option() {
    let cli = parse(&[
        "volume", "create", "--name", "data", "--size", "20", "--image", "debian", "--pool",
        "local", "--host", "host-a", "--json",
    ])
    .expect("parses");
    assert!(cli.global.json);
    let Command::Volume(VolumeCmd::Create(a)) = cli.cmd else {
        panic!("wrong command: {:?}", cli.cmd)
    };
    let req = volume::create_request(&a);
    assert_eq!(req.name, "data");
    assert_eq!(req.size_gib, Some(20));
    assert_eq!(req.image.as_deref(), Some("debian"));
    assert_eq!(req.pool.as_deref(), Some("local"));
    assert_eq!(req.host.as_deref(), Some("host-a"));
    let body = serde_json::to_value(&req).expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "name": "data", "size_gib": 20, "image": "debian", "pool": "local", "host": "host-a",
            "snapshot": null, "volume_type": null
        })
    );
}

#[test]
fn create_leaves_defaults_to_the_server() {
    let VolumeCmd::Create(a) = cmd(&["volume", "create", "--name", "scratch"]) else {
        panic!("wrong command")
    };
    let body = serde_json::to_value(volume::create_request(&a)).expect("json");
    assert_eq!(body["name"], "scratch");
    for field in ["size_gib", "image", "pool", "host"] {
        assert_eq!(body[field], serde_json::Value::Null, "{field} in {body}");
    }
}

#[test]
fn create_rejects_bad_values() {
    let e = err(&["volume", "create", "--size", "5"]);
    assert!(e.contains("--name"), "{e}");
    let e = err(&["volume", "create", "--name", "d", "--size", "big"]);
    assert!(e.contains("--size") && e.contains("big"), "{e}");
    let e = err(&["volume", "create", "--name", "d", "--size", "-1"]);
    assert!(e.contains("'-1'"), "sizes are unsigned: {e}");
}

#[test]
fn list_show_detach_delete() {
    assert!(matches!(cmd(&["volume", "list"]), VolumeCmd::List));
    let VolumeCmd::Show { name } = cmd(&["volume", "show", "data"]) else {
        panic!("wrong command")
    };
    assert_eq!(name, "data");
    let VolumeCmd::Detach { name } = cmd(&["volume", "detach", "vol-0abc"]) else {
        panic!("wrong command")
    };
    assert_eq!(name, "vol-0abc");
    let VolumeCmd::Delete { name } = cmd(&["volume", "delete", "data"]) else {
        panic!("wrong command")
    };
    assert_eq!(name, "data");
    for sub in ["show", "detach", "delete"] {
        let e = err(&["volume", sub]);
        assert!(e.contains("<NAME>"), "{sub}: {e}");
    }
    let e = err(&["volume", "list", "extra"]);
    assert!(e.contains("extra"), "{e}");
}

#[test]
fn attach_builds_its_body() {
    let VolumeCmd::Attach(a) = cmd(&[
        "volume",
        "attach",
        "data",
        "--instance",
        "web",
        "--delete-on-termination",
    ]) else {
        panic!("wrong command")
    };
    assert_eq!(a.name, "data");
    let req = volume::attach_request(&a);
    assert_eq!(req.instance, "web");
    assert!(req.delete_on_termination);
    assert_eq!(
        serde_json::to_value(&req).expect("json"),
        serde_json::json!({"instance": "web", "delete_on_termination": true})
    );

    let VolumeCmd::Attach(a) = cmd(&["volume", "attach", "data", "--instance", "i-0123"]) else {
        panic!("wrong command")
    };
    let req = volume::attach_request(&a);
    assert_eq!(req.instance, "i-0123");
    assert!(!req.delete_on_termination, "kept on termination by default");
}

#[test]
fn attach_needs_an_instance_and_a_volume() {
    let e = err(&["volume", "attach", "data"]);
    assert!(e.contains("--instance"), "{e}");
    let e = err(&["volume", "attach", "--instance", "web"]);
    assert!(e.contains("<NAME>"), "{e}");
    let e = err(&["volume", "attach", "data", "--instance"]);
    assert!(e.contains("--instance"), "{e}");
}

#[test]
fn resize_builds_its_body() {
    let VolumeCmd::Resize(a) = cmd(&["volume", "resize", "data", "--size", "50"]) else {
        panic!("wrong command")
    };
    assert_eq!(a.name, "data");
    let req = volume::resize_request(&a);
    assert_eq!(req.size_gib, Some(50));
    assert_eq!(
        serde_json::to_value(&req).expect("json"),
        serde_json::json!({"size_gib": 50})
    );
}

#[test]
fn resize_needs_a_size() {
    let e = err(&["volume", "resize", "data"]);
    assert!(e.contains("--size"), "{e}");
    let e = err(&["volume", "resize", "data", "--size", "1.5"]);
    assert!(e.contains("--size") && e.contains("1.5"), "{e}");
    let e = err(&["volume", "resize", "--size", "50"]);
    assert!(e.contains("<NAME>"), "{e}");
}

#[test]
fn unknown_volume_subcommand_is_refused() {
    let e = err(&["volume", "snapshot", "data"]);
    assert!(e.contains("snapshot"), "{e}");
    let e = err(&["volume"]);
    assert!(e.contains("create") && e.contains("resize"), "{e}");
}

#[test]
fn volumes_table_shows_the_important_columns() {
    let mut free = volume_view(VolumeState::Available, None);
    free.volume.name = "spare".into();
    free.volume.id = "vol-0def".into();
    free.volume.size_gib = 3;
    free.volume.host = "host-b".into();
    let t = storage::volumes_table(&[volume_view(VolumeState::InUse, Some(attachment())), free])
        .to_string();
    contains_all(
        &t,
        &[
            "NAME",
            "ID",
            "SIZE (GiB)",
            "STATE",
            "ATTACHED TO",
            "HOST",
            "data",
            "vol-0abc",
            "10",
            "in_use",
            "i-0123",
            "host-a",
            "spare",
            "vol-0def",
            "available",
            "host-b",
        ],
    );
    let spare = t.lines().find(|l| l.contains("spare")).expect("spare row");
    assert!(spare.contains(" - "), "no attachment shows `-`: {spare}");
    assert!(spare.contains(" 3 "), "{spare}");
}

#[test]
fn volume_detail_shows_every_field() {
    let mut v = volume_view(VolumeState::InUse, Some(attachment()));
    v.plugged_into = Some("i-0123".into());
    v.status_message = Some("growing to 10 GiB".into());
    v.size_bytes = 5 * GIB;
    let d = storage::volume_detail(&v).to_string();
    contains_all(
        &d,
        &[
            "name",
            "data",
            "vol-0abc",
            "in_use",
            "status message",
            "growing to 10 GiB",
            "10 GiB",
            "5368709120 bytes",
            "pool",
            "local",
            "image",
            "ami-9",
            "host-a",
            "attached to",
            "i-0123",
            "slot 2",
            "delete on termination: yes",
            "plugged into",
            "2026-11-21T00:00:00.000Z",
        ],
    );
}

#[test]
fn volume_detail_of_a_fresh_unattached_volume() {
    let mut v = volume_view(VolumeState::Creating, None);
    v.volume.image_id = None;
    v.size_bytes = 0;
    let d = storage::volume_detail(&v).to_string();
    contains_all(&d, &["creating", "not reported yet"]);
    for row in ["status message", "image", "attached to", "plugged into"] {
        let line = d.lines().find(|l| l.contains(row)).expect(row);
        assert!(line.contains(" - "), "{row} should be `-`: {line}");
    }
    assert!(!d.contains("slot"), "{d}");

    let mut v = volume_view(VolumeState::Deleting, Some(attachment()));
    v.volume
        .attachment
        .as_mut()
        .expect("attached")
        .delete_on_termination = false;
    let d = storage::volume_detail(&v).to_string();
    contains_all(&d, &["deleting", "delete on termination: no"]);
}

#[test]
fn volume_json_is_printed_verbatim() {
    // `--json` prints the body as the API sent it; the typed view must still decode it (flattened).
    let raw = r#"{"id":"vol-0abc","name":"data","project":"default","size_gib":10,"pool":"local","host":"host-a","attachment":{"instance_id":"i-0123","delete_on_termination":true,"slot":2},"deleting":false,"created_at":"2026-11-21T00:00:00.000Z","state":"in_use","size_bytes":10737418240,"plugged_into":"i-0123"}"#;
    let v: VolumeView = serde_json::from_str(raw).expect("decodes");
    assert_eq!(v.state, VolumeState::InUse);
    assert_eq!(v.volume.attachment, Some(attachment()));
    assert_eq!(v.plugged_into.as_deref(), Some("i-0123"));
    let l = client::List {
        items: vec![v],
        raw_items: vec![serde_json::value::RawValue::from_string(raw.into()).expect("raw")],
    };
    assert_eq!(l.raw(), format!(r#"{{"items":[{raw}]}}"#));
}

#[test]
fn snapshot_commands_and_clone_parse() {
    use crate::cmd::snapshot::{self, SnapshotCmd};
    let cli = parse(&["snapshot", "create", "--name", "s1", "--volume", "data"]).expect("parses");
    let Command::Snapshot(SnapshotCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let body = serde_json::to_value(snapshot::create_request(&a)).expect("json");
    assert_eq!(body, serde_json::json!({"name": "s1", "volume": "data"}));
    assert!(parse(&["snapshot", "create", "--name", "s1"]).is_err());
    for cmd in [
        &["snapshot", "list"][..],
        &["snapshot", "show", "s1"],
        &["snapshot", "delete", "s1"],
    ] {
        parse(cmd).expect("parses");
    }
    let cli = parse(&["volume", "create", "--name", "c", "--snapshot", "s1"]).expect("parses");
    let Command::Volume(crate::cmd::volume::VolumeCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let body = crate::cmd::volume::create_request(&a);
    assert_eq!(body.snapshot.as_deref(), Some("s1"));
    assert!(
        parse(&[
            "volume",
            "create",
            "--name",
            "c",
            "--snapshot",
            "s1",
            "--image",
            "i"
        ])
        .is_err(),
        "image and snapshot conflict"
    );
}

#[test]
fn pools_render_capacity_and_usage() {
    let p: kumo_types::PoolView = serde_json::from_value(serde_json::json!({
        "name": "local", "driver": "dir", "builtin": true, "volumes": 2, "allocated_gib": 11,
        "capacity_bytes": 107374182400u64, "free_bytes": 53687091200u64,
        "hosts": [{"host": "host-a", "capacity_bytes": 107374182400u64,
            "free_bytes": 53687091200u64, "volumes": 2, "allocated_gib": 11}]
    }))
    .expect("pool json");
    let t = storage::pools_table(std::slice::from_ref(&p)).to_string();
    assert!(
        t.contains("local") && t.contains("dir") && t.contains("100.0") && t.contains("50.0"),
        "{t}"
    );
    let d = storage::pool_detail(&p).to_string();
    assert!(
        d.contains("host-a: 2 volume(s), 11 GiB allocated, 50.0 of 100.0 GiB free"),
        "{d}"
    );
    assert!(parse(&["pool", "show", "local"]).is_ok());
    assert!(parse(&["pool", "list"]).is_ok());
}

#[test]
fn pool_create_parses_per_driver_and_renders_host_errors() {
    use crate::cmd::pool::{self, PoolCmd};
    let cli = parse(&[
        "pool",
        "create",
        "ceph-ssd",
        "--driver",
        "rbd",
        "--rbd-pool",
        "ssd",
        "--ceph-conf",
        "/etc/ceph/ceph.conf",
    ])
    .expect("parse");
    let crate::Command::Pool(PoolCmd::Create(a)) = cli.cmd else {
        panic!("not pool create");
    };
    let req = pool::create_request(&a);
    assert_eq!(req.driver, kumo_types::PoolDriver::Rbd);
    assert_eq!(
        (
            req.rbd_pool.as_deref(),
            req.ceph_conf.as_deref(),
            req.ceph_user
        ),
        (Some("ssd"), Some("/etc/ceph/ceph.conf"), None)
    );
    assert!(
        parse(&[
            "pool",
            "create",
            "nfs",
            "--driver",
            "shared-dir",
            "--path",
            "/mnt/nfs"
        ])
        .is_ok()
    );
    assert!(parse(&["pool", "create", "x", "--driver", "zfs"]).is_err());
    assert!(parse(&["pool", "delete", "nfs"]).is_ok());
    let p: kumo_types::PoolView = serde_json::from_value(serde_json::json!({
        "name": "ceph-ssd", "driver": "rbd", "rbd_pool": "ssd", "ceph_conf": "/etc/ceph/ceph.conf",
        "ceph_user": "admin", "builtin": false, "volumes": 0, "allocated_gib": 0,
        "capacity_bytes": 0, "free_bytes": 0,
        "hosts": [{"host": "host-a", "capacity_bytes": 0, "free_bytes": 0, "volumes": 0,
            "allocated_gib": 0, "error": "ceph df failed: timed out"}]
    }))
    .expect("pool json");
    let t = storage::pools_table(std::slice::from_ref(&p)).to_string();
    assert!(t.contains("ssd (/etc/ceph/ceph.conf, client.admin)"), "{t}");
    let d = storage::pool_detail(&p).to_string();
    assert!(d.contains("unusable: ceph df failed: timed out"), "{d}");
}

#[test]
fn volume_types_parse_and_render() {
    use crate::cmd::volume_type::{self, VolumeTypeCmd};
    let cli = parse(&[
        "volume-type",
        "create",
        "--name",
        "ssd",
        "--pool",
        "local",
        "--tier",
        "ssd",
    ])
    .expect("parses");
    let Command::VolumeType(VolumeTypeCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    let body = serde_json::to_value(volume_type::create_request(&a)).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"name": "ssd", "pool": "local", "tier": "ssd", "description": null})
    );
    assert!(
        parse(&["volume-type", "create", "--name", "x"]).is_err(),
        "--pool is required"
    );
    let cli = parse(&[
        "volume", "create", "--name", "v", "--size", "1", "--type", "ssd",
    ])
    .expect("parses");
    let Command::Volume(VolumeCmd::Create(a)) = cli.cmd else {
        panic!("wrong command")
    };
    assert_eq!(
        volume::create_request(&a).volume_type.as_deref(),
        Some("ssd")
    );
    let t: kumo_types::VolumeType =
        serde_json::from_value(serde_json::json!({"name": "ssd", "pool": "local", "tier": "ssd"}))
            .expect("type json");
    let table = storage::volume_types_table(std::slice::from_ref(&t)).to_string();
    assert!(table.contains("ssd") && table.contains("local"), "{table}");
}
