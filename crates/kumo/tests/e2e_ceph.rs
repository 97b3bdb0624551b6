//! The `rbd` pool driver against a real single-node Ceph (one monitor, one manager, one BlueStore
//! OSD on a file) started from Debian's packages by `scripts/ceph-cluster.sh`, inside the test's
//! private network namespace (the monitor listens on its loopback). Nothing is mocked.
//!
//! A Ceph pool exposed as a volume type (`cinder-ssd`): a volume is an RBD image; a running tiny
//! guest writes a pattern to it; an RBD snapshot is taken while it is plugged in; more is written; a
//! clone of the snapshot, plugged into the guest, shows the old data only; the clone grows online; a
//! volume from a disk image is a copy-on-write clone of the image's base; deletes remove the RBD
//! images, and deleting the images removes their bases; a pool with volumes or volume types cannot
//! be deleted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cloud;
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;

/// A Ceph cluster in a directory, stopped (by the PIDs it recorded) on drop.
struct Ceph {
    dir: PathBuf,
    conf: String,
}

impl Ceph {
    fn start() -> Ceph {
        kumo_testutil::require("ceph-mon", "ceph-mon");
        kumo_testutil::require("ceph-osd", "ceph-osd");
        kumo_testutil::require("ceph-mgr", "ceph-mgr");
        kumo_testutil::require("rbd", "ceph-common");
        let dir = std::env::temp_dir().join(format!("kumo-ceph-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run ceph-cluster.sh");
        assert!(
            out.status.success(),
            "ceph-cluster.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ceph {
            conf: dir.join("ceph.conf").to_string_lossy().to_string(),
            dir,
        }
    }

    fn rbd(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("rbd")
            .args(["-c", &self.conf, "--id", "admin"])
            .args(args)
            .output()
            .expect("rbd");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn images(&self) -> Vec<String> {
        let (ok, out) = self.rbd(&["ls", "--format", "json", "kumo"]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap_or_default()
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-cluster.sh")
}

fn call(c: &Cloud, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    c.http(method, path, body.map(|b| b.to_string()).as_deref())
}

fn ok(c: &Cloud, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = call(c, method, path, body);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn wait(c: &Cloud, path: &str, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, v) = call(c, "GET", path, None);
        if pred(s, &v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: timed out waiting for {what}; last {s}: {v}\n{}",
            common::tail(&c.server_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Shell that sets `D` to the guest's disk with `vol`'s serial (the first 20 bytes of it).
fn find_dev(vol: &str) -> String {
    let vol = &vol[..vol.len().min(20)];
    format!(
        "D=; for i in $(seq 40); do for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = \"{vol}\" ] && D=${{d##*/}}; done; [ -n \"$D\" ] && break; sleep 0.5; done; echo DEV=$D"
    )
}

#[test]
fn rbd_pool_volumes_snapshots_clones_and_images_on_real_ceph() {
    kumo_testutil::enter_private_netns();
    let ceph = Ceph::start();
    let cloud = Cloud::start_with_in_current_netns(&[]);
    cloud.import_tiny();

    // Bad input first: each refused precisely, nothing created.
    let (s, e) = call(
        &cloud,
        "POST",
        "/v1/pools",
        Some(json!({"name": "ceph", "driver": "rbd", "rbd_pool": "kumo"})),
    );
    assert_eq!((s, e["field"].as_str()), (422, Some("ceph_conf")), "{e}");
    let (s, e) = call(
        &cloud,
        "POST",
        "/v1/pools",
        Some(json!({"name": "ceph", "driver": "rbd", "rbd_pool": "kumo",
            "ceph_conf": ceph.conf, "path": "/srv"})),
    );
    assert_eq!((s, e["field"].as_str()), (422, Some("path")), "{e}");

    cloud.ok(&[
        "pool",
        "create",
        "ceph",
        "--driver",
        "rbd",
        "--rbd-pool",
        "kumo",
        "--ceph-conf",
        &ceph.conf,
    ]);
    let p = wait(&cloud, "/v1/pools/ceph", "the host's report", |_, v| {
        v["hosts"][0]["capacity_bytes"].as_u64().unwrap_or(0) > 0
    });
    assert!(p["hosts"][0]["error"].is_null(), "{p}");
    assert!(p["free_bytes"].as_u64().unwrap_or(0) > 0, "{p}");
    cloud.ok(&[
        "volume-type",
        "create",
        "--name",
        "cinder-ssd",
        "--pool",
        "ceph",
        "--tier",
        "ssd",
    ]);

    // A blank volume is an RBD image named by its ID.
    let v = cloud.json(&[
        "volume",
        "create",
        "--name",
        "data",
        "--size",
        "1",
        "--type",
        "cinder-ssd",
    ]);
    let vol = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["pool"], "ceph", "{v}");
    wait(&cloud, "/v1/volumes/data", "available", |_, v| {
        v["state"] == "available" && v["size_bytes"] == GIB
    });
    assert!(ceph.images().contains(&vol), "{:?}", ceph.images());

    // A guest writes a pattern to it.
    ok(
        &cloud,
        "POST",
        "/v1/instances",
        Some(json!({"name": "g1", "image": "tiny", "instance_type": "nano"})),
    );
    cloud.wait_state("g1", "running");
    cloud.wait_console("g1", "KUMO-READY");
    let g1 = cloud.json(&["instance", "show", "g1"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    cloud.ok(&["volume", "attach", "data", "--instance", "g1"]);
    wait(&cloud, "/v1/volumes/data", "plugged into g1", |_, v| {
        v["plugged_into"] == g1.as_str()
    });
    let (watched, status) = ceph.rbd(&["status", &format!("kumo/{vol}")]);
    assert!(watched && status.contains("watcher="), "{status}");
    let write = |text: &str| {
        format!(
            "{}; printf {text} > /tmp/p; dd if=/tmp/p of=/dev/$D bs=512 conv=sync; sync; echo WROTE",
            find_dev(&vol)
        )
    };
    cloud.console_until("g1", &write("KUMO-CEPH-OLD"), "the first pattern", |o| {
        o.contains("\nWROTE") && o.contains("DEV=vd")
    });

    // An RBD snapshot while the guest has it; then more data.
    ok(
        &cloud,
        "POST",
        "/v1/snapshots",
        Some(json!({"name": "before", "volume": "data"})),
    );
    wait(&cloud, "/v1/snapshots/before", "completed", |_, v| {
        v["state"] == "completed"
    });
    let (_, snaps) = ceph.rbd(&["snap", "ls", &format!("kumo/{vol}")]);
    assert!(snaps.contains("snap-"), "{snaps}");
    cloud.console_until("g1", &write("KUMO-CEPH-NEW"), "the second pattern", |o| {
        o.contains("\nWROTE")
    });

    // The AMI workflow from Ceph: an image made from the RBD snapshot holds the old data.
    let golden = ok(
        &cloud,
        "POST",
        "/v1/images",
        Some(json!({"name": "golden", "snapshot": "before"})),
    );
    let stored = cloud
        .data_dir()
        .join("pool/images")
        .join(golden["id"].as_str().expect("id"))
        .join("disk.qcow2");
    let raw = cloud.data_dir().join("golden.raw");
    kumo_testutil::run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            &stored.to_string_lossy(),
            &raw.to_string_lossy(),
        ],
    );
    let head = std::fs::read(&raw).expect("golden raw");
    assert_eq!(
        &head[..13],
        b"KUMO-CEPH-OLD",
        "the image holds the snapshot's data"
    );
    std::fs::remove_file(&raw).expect("rm");

    // A clone of the snapshot (in the snapshot's pool) shows the old data only.
    let c = ok(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "clone", "snapshot": "before"})),
    );
    let clone = c["id"].as_str().expect("id").to_string();
    assert_eq!(c["pool"], "ceph", "{c}");
    wait(&cloud, "/v1/volumes/clone", "available", |_, v| {
        v["state"] == "available"
    });
    cloud.ok(&["volume", "attach", "clone", "--instance", "g1"]);
    wait(&cloud, "/v1/volumes/clone", "plugged into g1", |_, v| {
        v["plugged_into"] == g1.as_str()
    });
    let read = |id: &str| {
        format!(
            "{}; dd if=/dev/$D bs=13 count=1 2>/dev/null; echo",
            find_dev(id)
        )
    };
    cloud.console_until("g1", &read(&clone), "the clone's data", |o| {
        o.contains("\nKUMO-CEPH-OLD")
    });
    cloud.console_until("g1", &read(&vol), "the source's data", |o| {
        o.contains("\nKUMO-CEPH-NEW")
    });

    // Online grow of an RBD volume: the guest sees 2 GiB (512-byte sectors).
    cloud.ok(&["volume", "resize", "clone", "--size", "2"]);
    wait(&cloud, "/v1/volumes/clone", "2 GiB", |_, v| {
        v["size_bytes"] == 2 * GIB
    });
    let size = format!("{}; cat /sys/block/$D/size", find_dev(&clone));
    cloud.console_until("g1", &size, "the guest to see 2 GiB", |o| {
        o.contains("\n4194304")
    });

    // A volume from a disk image is a copy-on-write clone of the image's base in the pool.
    let disk = cloud.data_dir().join("pattern.qcow2");
    kumo_testutil::run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            &disk.to_string_lossy(),
            "64M",
        ],
    );
    kumo_testutil::run(
        "qemu-io",
        &["-c", "write -P 0x5a 0 1M", &disk.to_string_lossy()],
    );
    let img = ok(
        &cloud,
        "POST",
        "/v1/images",
        Some(json!({"name": "pattern", "disk_path": disk.to_string_lossy()})),
    );
    let img_id = img["id"].as_str().expect("id").to_string();
    let fromimg = ok(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "fromimg", "image": "pattern", "volume_type": "cinder-ssd"})),
    );
    let fromimg = fromimg["id"].as_str().expect("id").to_string();
    wait(&cloud, "/v1/volumes/fromimg", "available", |_, v| {
        v["state"] == "available"
    });
    let (_, info) = ceph.rbd(&["info", "--format", "json", &format!("kumo/{fromimg}")]);
    assert!(
        info.contains(&format!("kumo-image-{img_id}")),
        "not a clone of the image base: {info}"
    );
    let json_name = format!(
        r#"json:{{"driver":"raw","file":{{"driver":"rbd","pool":"kumo","image":"{fromimg}","conf":"{}","user":"admin"}}}}"#,
        ceph.conf
    );
    let out = Command::new("qemu-io")
        .args(["-r", "-c", "read -P 0x5a 0 1M", &json_name])
        .output()
        .expect("qemu-io");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Pattern verification failed"),
        "the image's data in the volume: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Boot from an RBD volume: a clone of the image's base in Ceph is the boot disk; it goes with
    // the instance (delete_on_termination by default).
    cloud.import_boot_sector(b"KUMO-DISK-BOOT");
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "bfv",
        "--image",
        "bootsector",
        "--type",
        "nano",
        "--boot-volume-type",
        "cinder-ssd",
        "--wait",
    ]);
    cloud.wait_console("bfv", "KUMO-DISK-BOOT");
    let bfv = cloud.json(&["instance", "show", "bfv"]);
    let boot_vol = bfv["boot_volume_id"]
        .as_str()
        .expect("boot volume")
        .to_string();
    assert!(ceph.images().contains(&boot_vol), "{:?}", ceph.images());
    let (_, status) = ceph.rbd(&["status", &format!("kumo/{boot_vol}")]);
    assert!(
        status.contains("watcher="),
        "QEMU has the boot volume open: {status}"
    );
    cloud.ok(&["instance", "delete", "bfv", "--wait"]);
    wait(
        &cloud,
        "/v1/volumes/bfv-root",
        "deleted with bfv",
        |s, _| s == 404,
    );
    assert!(!ceph.images().contains(&boot_vol), "{:?}", ceph.images());

    // A pool with volumes, or named by a volume type, cannot be deleted.
    let (s, e) = call(&cloud, "DELETE", "/v1/pools/ceph", None);
    assert_eq!(s, 409, "{e}");
    let pools = cloud.json(&["pool", "show", "ceph"]);
    assert_eq!(pools["volumes"], 3, "{pools}");

    // Deleting the instance keeps its volumes; deleting them removes their RBD images (snapshots
    // first).
    cloud.ok(&["instance", "delete", "g1", "--wait"]);
    for name in ["data", "clone"] {
        wait(
            &cloud,
            &format!("/v1/volumes/{name}"),
            "detached",
            |_, v| v["state"] == "available" && v["attachment"].is_null(),
        );
    }
    cloud.ok(&["snapshot", "delete", "before"]);
    wait(&cloud, "/v1/snapshots/before", "deleted", |s, _| s == 404);
    for name in ["data", "clone", "fromimg"] {
        cloud.ok(&["volume", "delete", name]);
        wait(&cloud, &format!("/v1/volumes/{name}"), "deleted", |s, _| {
            s == 404
        });
    }
    let left = ceph.images();
    for id in [&vol, &clone, &fromimg] {
        assert!(!left.contains(id), "{id} left behind: {left:?}");
    }
    // Deleting the images (nothing uses them now) removes their bases from Ceph too.
    let base = format!("kumo-image-{img_id}");
    assert!(ceph.images().contains(&base), "{:?}", ceph.images());
    cloud.ok(&["image", "delete", "pattern"]);
    cloud.ok(&["image", "delete", "bootsector"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while ceph.images().iter().any(|i| i.starts_with("kumo-image-")) {
        assert!(
            std::time::Instant::now() < deadline,
            "image bases left in Ceph: {:?}\n{}",
            ceph.images(),
            cloud.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (s, e) = call(&cloud, "DELETE", "/v1/pools/ceph", None);
    assert_eq!(s, 409, "the volume type still names it: {e}");
    cloud.ok(&["volume-type", "delete", "cinder-ssd"]);
    cloud.ok(&["pool", "delete", "ceph"]);
    let (s, _) = call(&cloud, "GET", "/v1/pools/ceph", None);
    assert_eq!(s, 404);
}
