//! Volumes on real guests (issue 4): a guest writes a pattern to an attached volume; the volume is
//! detached and attached to a second guest, which reads the pattern; it grows online and the guest sees
//! it; deleting an instance keeps its volume and data (or deletes it with `delete_on_termination`); a
//! volume attached to a stopped instance is there at its next boot. Bad input is refused precisely.

mod common;

use std::time::{Duration, Instant};

use common::Cloud;
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;

fn call(c: &Cloud, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    c.http(method, path, body.map(|b| b.to_string()).as_deref())
}

fn ok(c: &Cloud, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = call(c, method, path, body);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn refused(c: &Cloud, method: &str, path: &str, body: Option<Value>, status: u16, field: &str) {
    let (s, v) = call(c, method, path, body);
    assert_eq!(s, status, "{method} {path}: {v}");
    if !field.is_empty() {
        assert_eq!(v["field"], field, "{v}");
    }
}

/// Poll the volume until `pred` holds.
fn wait_volume(c: &Cloud, name: &str, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, v) = call(c, "GET", &format!("/v1/volumes/{name}"), None);
        if pred(s, &v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "volume {name}: timed out waiting for {what}; last {s}: {v}\n{}",
            common::tail(&c.server_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_guest(c: &Cloud, name: &str) -> String {
    ok(
        c,
        "POST",
        "/v1/instances",
        Some(json!({"name": name, "image": "tiny", "instance_type": "nano"})),
    );
    c.wait_state(name, "running");
    c.wait_console(name, "KUMO-READY");
    c.json(&["instance", "show", name])["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Shell that sets `D` to the guest's block device whose virtio serial is `vol`'s (virtio-blk keeps
/// the first 20 bytes of a serial: `vol-` and 16 of the 17 hex digits), waiting for it.
fn find_dev(vol: &str) -> String {
    let vol = &vol[..vol.len().min(20)];
    format!(
        "D=; for i in $(seq 40); do for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = \"{vol}\" ] && D=${{d##*/}}; done; [ -n \"$D\" ] && break; sleep 0.5; done; echo DEV=$D"
    )
}

#[test]
fn volume_moves_between_guests_grows_online_and_outlives_its_instance() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    let g1 = run_guest(&cloud, "g1");
    let g2 = run_guest(&cloud, "g2");

    // Bad input: each refused precisely, nothing created.
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "x", "size_gib": 0})),
        422,
        "size_gib",
    );
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "x"})),
        422,
        "size_gib",
    );
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "x", "size_gib": 1, "pool": "ceph-ssd"})),
        422,
        "pool",
    );
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "x", "image": "nope"})),
        422,
        "image",
    );
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "x", "image": "tiny"})),
        422,
        "image",
    );
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "Bad Name", "size_gib": 1})),
        422,
        "name",
    );
    let (_, list) = call(&cloud, "GET", "/v1/volumes", None);
    assert_eq!(list["items"].as_array().expect("items").len(), 0, "{list}");

    let v = cloud.json(&["volume", "create", "--name", "data", "--size", "1"]);
    let vol = v["id"].as_str().expect("id").to_string();
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "data", "size_gib": 1})),
        409,
        "name",
    );
    wait_volume(&cloud, "data", "available", |_, v| {
        v["state"] == "available"
    });
    let file = cloud
        .data_dir()
        .join("pool/volumes")
        .join(format!("{vol}.qcow2"));
    assert!(file.exists());

    // Attach to a running guest (through the CLI); the guest writes a pattern.
    cloud.ok(&["volume", "attach", "data", "--instance", "g1"]);
    wait_volume(&cloud, "data", "plugged into g1", |_, v| {
        v["plugged_into"] == g1.as_str()
    });
    refused(
        &cloud,
        "POST",
        "/v1/volumes/data/attach",
        Some(json!({"instance": "g2"})),
        409,
        "",
    );
    refused(&cloud, "DELETE", "/v1/volumes/data", None, 409, "");
    refused(
        &cloud,
        "PATCH",
        "/v1/volumes/data",
        Some(json!({"size_gib": 0})),
        422,
        "size_gib",
    );
    let write = format!(
        "{}; printf KUMO-PATTERN-42 > /tmp/p; dd if=/tmp/p of=/dev/$D bs=512 conv=sync; sync; echo WROTE",
        find_dev(&vol)
    );
    let out = cloud.console_until("g1", &write, "the pattern written", |o| {
        o.contains("\nWROTE") && !o.contains("DEV=\r") && !o.contains("DEV=\n")
    });
    assert!(out.contains("DEV=vd"), "{out}");

    // Detach; attach to the second guest, which reads the pattern.
    cloud.ok(&["volume", "detach", "data"]);
    wait_volume(&cloud, "data", "unplugged", |_, v| {
        v["state"] == "available" && v["plugged_into"].is_null()
    });
    ok(
        &cloud,
        "POST",
        "/v1/volumes/data/attach",
        Some(json!({"instance": "g2"})),
    );
    wait_volume(&cloud, "data", "plugged into g2", |_, v| {
        v["plugged_into"] == g2.as_str()
    });
    let read = format!(
        "{}; dd if=/dev/$D bs=15 count=1 2>/dev/null; echo",
        find_dev(&vol)
    );
    cloud.console_until("g2", &read, "the pattern read on g2", |o| {
        o.contains("\nKUMO-PATTERN-42")
    });

    // Grow online: the guest sees 2 GiB (in 512-byte sectors).
    cloud.ok(&["volume", "resize", "data", "--size", "2"]);
    wait_volume(&cloud, "data", "2 GiB", |_, v| v["size_bytes"] == 2 * GIB);
    let size = format!("{}; cat /sys/block/$D/size", find_dev(&vol));
    cloud.console_until("g2", &size, "the guest to see 2 GiB", |o| {
        o.contains("\n4194304")
    });

    // Deleting the instance keeps the volume (not delete-on-termination) and its data.
    cloud.ok(&["instance", "delete", "g2", "--wait"]);
    let v = wait_volume(&cloud, "data", "detached by the deletion", |_, v| {
        v["state"] == "available" && v["attachment"].is_null()
    });
    assert_eq!(v["size_gib"], 2);
    assert!(file.exists());

    // Attached to a stopped instance, it is there at the next boot.
    cloud.ok(&["instance", "stop", "g1", "--wait"]);
    ok(
        &cloud,
        "POST",
        "/v1/volumes/data/attach",
        Some(json!({"instance": "g1"})),
    );
    wait_volume(&cloud, "data", "in use by stopped g1", |_, v| {
        v["state"] == "in_use"
    });
    cloud.ok(&["instance", "start", "g1", "--wait"]);
    cloud.wait_console("g1", "KUMO-READY");
    cloud.console_until("g1", &read, "the pattern read after a cold boot", |o| {
        o.contains("\nKUMO-PATTERN-42")
    });

    // delete_on_termination: the volume goes with its instance; `data` is detached and stays.
    ok(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "scratch", "size_gib": 1})),
    );
    wait_volume(&cloud, "scratch", "available", |_, v| {
        v["state"] == "available"
    });
    ok(
        &cloud,
        "POST",
        "/v1/volumes/scratch/attach",
        Some(json!({"instance": "g1", "delete_on_termination": true})),
    );
    wait_volume(&cloud, "scratch", "plugged", |_, v| {
        v["plugged_into"] == g1.as_str()
    });
    cloud.ok(&["instance", "delete", "g1", "--wait"]);
    wait_volume(&cloud, "scratch", "deleted with g1", |s, _| s == 404);
    wait_volume(&cloud, "data", "detached", |_, v| {
        v["state"] == "available" && v["attachment"].is_null()
    });

    // Delete: the file goes, then the record.
    let listed = cloud.json(&["volume", "list"]);
    assert_eq!(listed["items"][0]["name"], "data", "{listed}");
    cloud.ok(&["volume", "delete", "data"]);
    wait_volume(&cloud, "data", "deleted", |s, _| s == 404);
    assert!(!file.exists(), "volume file left behind");
}

/// With the agent as its own process, volume status and removal travel over the internal API.
#[test]
fn separate_agent_makes_reports_and_removes_volumes() {
    let cloud = Cloud::start_split();
    let v = ok(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "remote", "size_gib": 1})),
    );
    let id = v["id"].as_str().expect("id").to_string();
    let v = wait_volume(&cloud, "remote", "available", |_, v| {
        v["state"] == "available"
    });
    assert_eq!(v["size_bytes"], GIB);
    let file = cloud
        .data_dir()
        .join("pool/volumes")
        .join(format!("{id}.qcow2"));
    assert!(file.exists());
    // The pool shows it; a pool with volumes cannot be deleted (and `local` never).
    let p = cloud.json(&["pool", "show", "local"]);
    assert_eq!(
        (p["volumes"].as_u64(), p["allocated_gib"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    assert!(p["capacity_bytes"].as_u64().unwrap_or(0) > 0, "{p}");
    let (s, e) = call(&cloud, "DELETE", "/v1/pools/local", None);
    assert_eq!(s, 409, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("1 volume"),
        "{e}"
    );

    // Volume types name a pool and a tier; unknown ones and mismatched pools are refused.
    cloud.ok(&[
        "volume-type",
        "create",
        "--name",
        "ssd",
        "--pool",
        "local",
        "--tier",
        "ssd",
    ]);
    let types = cloud.json(&["volume-type", "list"]);
    let names: Vec<&str> = types["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["default", "ssd"], "{types}");
    refused(
        &cloud,
        "POST",
        "/v1/volume-types",
        Some(json!({"name": "hdd", "pool": "ceph-hdd"})),
        422,
        "pool",
    );
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "t1", "size_gib": 1, "volume_type": "nope"})),
        422,
        "volume_type",
    );
    let fast = cloud.json(&[
        "volume", "create", "--name", "fast", "--size", "1", "--type", "ssd",
    ]);
    assert_eq!(
        (fast["volume_type"].as_str(), fast["pool"].as_str()),
        (Some("ssd"), Some("local"))
    );
    let (s, _) = call(&cloud, "DELETE", "/v1/volume-types/ssd", None);
    assert_eq!(s, 409, "a type in use cannot go");
    let (s, _) = call(&cloud, "DELETE", "/v1/volume-types/default", None);
    assert_eq!(s, 409, "the built-in type cannot go");
    wait_volume(&cloud, "fast", "available", |_, v| {
        v["state"] == "available"
    });
    ok(&cloud, "DELETE", "/v1/volumes/fast", None);
    wait_volume(&cloud, "fast", "deleted", |s, _| s == 404);
    let (s, _) = call(&cloud, "DELETE", "/v1/volume-types/ssd", None);
    assert_eq!(s, 204);
    ok(&cloud, "DELETE", "/v1/volumes/remote", None);
    wait_volume(&cloud, "remote", "deleted", |s, _| s == 404);
    assert!(!file.exists());
    let (s, e) = call(&cloud, "DELETE", "/v1/pools/local", None);
    assert_eq!(s, 409, "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("built in"),
        "{e}"
    );
    assert_eq!(call(&cloud, "GET", "/v1/pools/ceph", None).0, 404);
}

/// Snapshot a volume while its guest runs, write more, clone the snapshot: the clone shows the old
/// data only; the volume cannot go while it has snapshots; the clone outlives the snapshot.
#[test]
fn online_snapshot_then_clone_shows_the_old_data_only() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    run_guest(&cloud, "g");
    let v = cloud.json(&["volume", "create", "--name", "src", "--size", "1"]);
    let src = v["id"].as_str().expect("id").to_string();
    wait_volume(&cloud, "src", "available", |_, v| v["state"] == "available");
    cloud.ok(&["volume", "attach", "src", "--instance", "g"]);
    wait_volume(&cloud, "src", "plugged", |_, v| {
        v["state"] == "in_use" && !v["plugged_into"].is_null()
    });
    let write = |text: &str| {
        format!(
            "{}; printf {text} > /tmp/p; dd if=/tmp/p of=/dev/$D bs=512 conv=sync; sync; echo WROTE",
            find_dev(&src)
        )
    };
    cloud.console_until("g", &write("KUMO-OLD-DATA-1"), "old data", |o| {
        o.contains("\nWROTE")
    });

    cloud.ok(&["snapshot", "create", "--name", "s1", "--volume", "src"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = cloud.json(&["snapshot", "show", "s1"]);
        if s["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "snapshot not completed: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    cloud.console_until("g", &write("KUMO-NEW-DATA-2"), "new data", |o| {
        o.contains("\nWROTE")
    });
    refused(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "c", "snapshot": "s1", "size_gib": 0})),
        422,
        "size_gib",
    );

    let c = cloud.json(&["volume", "create", "--name", "clone", "--snapshot", "s1"]);
    let clone = c["id"].as_str().expect("id").to_string();
    assert_eq!(c["size_gib"], 1);
    wait_volume(&cloud, "clone", "available", |_, v| {
        v["state"] == "available"
    });
    cloud.ok(&["volume", "attach", "clone", "--instance", "g"]);
    wait_volume(&cloud, "clone", "plugged", |_, v| {
        !v["plugged_into"].is_null()
    });
    let read = |vol: &str| {
        format!(
            "{}; dd if=/dev/$D bs=15 count=1 2>/dev/null; echo",
            find_dev(vol)
        )
    };
    cloud.console_until("g", &read(&clone), "old data in the clone", |o| {
        o.contains("\nKUMO-OLD-DATA-1")
    });
    let out = cloud.console_run("g", &read(&src));
    assert!(
        out.contains("\nKUMO-NEW-DATA-2"),
        "the source keeps its new data:\n{out}"
    );

    // The AMI workflow: an image from the snapshot (flattened), and a new volume from that image,
    // holds the snapshot's data; an image from a volume in use works too.
    cloud.ok(&["image", "import", "--name", "golden", "--snapshot", "s1"]);
    let img = cloud.json(&["image", "show", "golden"]);
    assert_eq!(img["kind"], "disk", "{img}");
    let from_img = cloud.json(&["volume", "create", "--name", "fromimg", "--image", "golden"]);
    let from_img = from_img["id"].as_str().expect("id").to_string();
    wait_volume(&cloud, "fromimg", "available", |_, v| {
        v["state"] == "available"
    });
    cloud.ok(&["volume", "attach", "fromimg", "--instance", "g"]);
    wait_volume(&cloud, "fromimg", "plugged", |_, v| {
        !v["plugged_into"].is_null()
    });
    cloud.console_until("g", &read(&from_img), "the image's data", |o| {
        o.contains("\nKUMO-OLD-DATA-1")
    });
    cloud.ok(&["image", "import", "--name", "live", "--volume", "src"]);
    refused(
        &cloud,
        "POST",
        "/v1/images",
        Some(json!({"name": "x", "volume": "src", "snapshot": "s1"})),
        422,
        "snapshot",
    );
    refused(
        &cloud,
        "POST",
        "/v1/images",
        Some(json!({"name": "x", "volume": "nope"})),
        422,
        "volume",
    );

    // A volume with snapshots cannot be deleted; the snapshot can, and the clone is unaffected.
    cloud.ok(&["volume", "detach", "src"]);
    wait_volume(&cloud, "src", "detached", |_, v| v["state"] == "available");
    refused(&cloud, "DELETE", "/v1/volumes/src", None, 409, "");
    cloud.ok(&["snapshot", "delete", "s1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(&cloud, "GET", "/v1/snapshots/s1", None).0 != 404 {
        assert!(Instant::now() < deadline, "snapshot not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(&cloud, "DELETE", "/v1/volumes/src", None);
    wait_volume(&cloud, "src", "deleted", |s, _| s == 404);
    let out = cloud.console_run("g", &read(&clone));
    assert!(
        out.contains("\nKUMO-OLD-DATA-1"),
        "the clone outlives its source:\n{out}"
    );
}

/// Operator-defined directory pools: a `dir` pool elsewhere on the host and a `shared-dir` pool (what
/// an NFS mount would be), each behind a volume type; volumes land in their directories; a share that
/// is not mounted is reported by the host and never written to; bad pool input is refused precisely.
#[test]
fn directory_pools_hold_volumes_where_they_say() {
    let cloud = Cloud::start_split();
    let local_dir = cloud.data_dir().join("extra-disk");
    let share = cloud.data_dir().join("nfs-share");
    std::fs::create_dir_all(&share).expect("share");
    let missing = cloud.data_dir().join("not-mounted");

    for (body, status, field) in [
        (json!({"name": "p", "driver": "dir"}), 422, "path"),
        (
            json!({"name": "p", "driver": "dir", "path": "rel/dir"}),
            422,
            "path",
        ),
        (
            json!({"name": "p", "driver": "shared-dir", "path": "/a,b"}),
            422,
            "path",
        ),
        (
            json!({"name": "p", "driver": "dir", "path": "/srv", "rbd_pool": "x"}),
            422,
            "rbd_pool",
        ),
        (
            json!({"name": "p", "driver": "zfs", "path": "/srv"}),
            422,
            "",
        ),
        (
            json!({"name": "p", "driver": "lvm-thin", "volume_group": "vg", "thin_pool": "t"}),
            422,
            "driver",
        ),
        (
            json!({"name": "local", "driver": "dir", "path": "/srv"}),
            409,
            "name",
        ),
        (
            json!({"name": "Bad Name", "driver": "dir", "path": "/srv"}),
            422,
            "name",
        ),
    ] {
        refused(&cloud, "POST", "/v1/pools", Some(body), status, field);
    }
    assert_eq!(call(&cloud, "GET", "/v1/pools/p", None).0, 404);

    let path = |p: &std::path::Path| p.to_string_lossy().to_string();
    cloud.ok(&[
        "pool",
        "create",
        "disk2",
        "--driver",
        "dir",
        "--path",
        &path(&local_dir),
    ]);
    cloud.ok(&[
        "pool",
        "create",
        "nfs",
        "--driver",
        "shared-dir",
        "--path",
        &path(&share),
    ]);
    cloud.ok(&[
        "pool",
        "create",
        "gone",
        "--driver",
        "shared-dir",
        "--path",
        &path(&missing),
    ]);
    refused(
        &cloud,
        "POST",
        "/v1/pools",
        Some(json!({"name": "nfs", "driver": "dir", "path": "/srv"})),
        409,
        "name",
    );
    // Each host reports what it sees: capacity, or why it cannot use the pool.
    let wait_pool = |name: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let p = ok(&cloud, "GET", &format!("/v1/pools/{name}"), None);
            if pred(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "pool {name}: {p}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let nfs = wait_pool("nfs", &|p| p["capacity_bytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(nfs["driver"], "shared-dir", "{nfs}");
    assert!(nfs["hosts"][0]["error"].is_null(), "{nfs}");
    let gone = wait_pool("gone", &|p| !p["hosts"][0]["error"].is_null());
    assert!(
        gone["hosts"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("mounted"),
        "{gone}"
    );
    wait_pool("disk2", &|p| p["capacity_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(local_dir.is_dir(), "a local dir pool is made by its agent");

    let mut files = Vec::new();
    for (pool, dir) in [("disk2", &local_dir), ("nfs", &share)] {
        cloud.ok(&[
            "volume-type",
            "create",
            "--name",
            &format!("t-{pool}"),
            "--pool",
            pool,
        ]);
        let v = cloud.json(&[
            "volume",
            "create",
            "--name",
            &format!("v-{pool}"),
            "--size",
            "1",
            "--type",
            &format!("t-{pool}"),
        ]);
        assert_eq!(v["pool"], pool, "{v}");
        wait_volume(&cloud, &format!("v-{pool}"), "available", |_, v| {
            v["state"] == "available"
        });
        let id = v["id"].as_str().expect("id");
        let f = dir.join("volumes").join(format!("{id}.qcow2"));
        assert!(f.exists(), "{} missing", f.display());
        files.push(f);
    }
    // A volume in a share that is not mounted fails, naming why, and nothing is written there.
    cloud.ok(&[
        "volume-type",
        "create",
        "--name",
        "t-gone",
        "--pool",
        "gone",
    ]);
    cloud.ok(&[
        "volume", "create", "--name", "v-gone", "--size", "1", "--type", "t-gone",
    ]);
    let v = wait_volume(&cloud, "v-gone", "an error", |_, v| v["state"] == "error");
    assert!(
        v["status_message"]
            .as_str()
            .unwrap_or("")
            .contains("mounted"),
        "{v}"
    );
    assert!(
        !missing.exists(),
        "the agent wrote into an unmounted share's mount point"
    );

    // Pools with volumes or volume types cannot go; empty ones can.
    refused(&cloud, "DELETE", "/v1/pools/nfs", None, 409, "");
    for pool in ["disk2", "nfs", "gone"] {
        cloud.ok(&["volume", "delete", &format!("v-{pool}")]);
        wait_volume(&cloud, &format!("v-{pool}"), "deleted", |s, _| s == 404);
        let (s, e) = call(&cloud, "DELETE", &format!("/v1/pools/{pool}"), None);
        assert_eq!(s, 409, "the type still names it: {e}");
        cloud.ok(&["volume-type", "delete", &format!("t-{pool}")]);
        cloud.ok(&["pool", "delete", pool]);
    }
    for f in files {
        assert!(!f.exists(), "{} left behind", f.display());
    }
    let pools = cloud.json(&["pool", "list"]);
    assert_eq!(pools["items"].as_array().map(Vec::len), Some(1), "{pools}");
}
