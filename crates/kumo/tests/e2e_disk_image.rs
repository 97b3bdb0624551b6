//! The happy paths of the resources around an instance, on a real server: a raw disk image imported
//! through the API boots as a disk-boot guest on a qcow2 overlay of the requested size; custom
//! instance types are created, used and deleted; hosts are readable one by one; images in use cannot
//! be deleted and unused ones can.

mod common;

use common::Cloud;
use serde_json::{Value, json};

fn ok(c: &Cloud, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = c.http(method, path, body.map(|b| b.to_string()).as_deref());
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

#[test]
fn disk_image_boots_on_a_sized_overlay_with_a_custom_type() {
    let cloud = Cloud::start();
    kumo_testutil::require("qemu-img", "qemu-utils");
    // A raw disk image: the boot sector, padded to 1 MiB.
    let img = cloud.import_boot_sector(b"KUMO-DISK-BOOT");
    let shown = ok(&cloud, "GET", "/v1/images/bootsector", None);
    assert_eq!(shown["id"], img["id"]);
    let listed = cloud.json(&["image", "list"]);
    assert!(
        listed["items"]
            .as_array()
            .expect("images")
            .iter()
            .any(|i| i["name"] == "bootsector"),
        "{listed}"
    );

    // A custom instance type with a 2 GiB root disk.
    ok(
        &cloud,
        "POST",
        "/v1/instance-types",
        Some(json!({"name": "tiny-disk", "vcpus": 1, "memory_mib": 128, "root_disk_gib": 2})),
    );
    let t = ok(&cloud, "GET", "/v1/instance-types/tiny-disk", None);
    assert_eq!(
        (t["vcpus"].as_u64(), t["memory_mib"].as_u64()),
        (Some(1), Some(128))
    );

    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "diskvm",
        "--image",
        "bootsector",
        "--type",
        "tiny-disk",
        "--wait",
    ]);
    let v = cloud.wait_state("diskvm", "running");
    let log = cloud.wait_console("diskvm", "KUMO-DISK-BOOT");
    assert!(log.contains("KUMO-DISK-BOOT"), "{log}");

    // The root disk is a qcow2 overlay on the stored image, of the type's size.
    let id = v["id"].as_str().expect("id").to_string();
    let root = cloud
        .data_dir()
        .join("pool/instances")
        .join(&id)
        .join("root.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(&root)
        .output()
        .expect("qemu-img info");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "qemu-img info {}: {e}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"].as_u64(), Some(2 << 30), "{info}");
    let backing = info["full-backing-filename"]
        .as_str()
        .or(info["backing-filename"].as_str())
        .unwrap_or_default();
    assert!(
        backing.contains(img["id"].as_str().expect("image id")),
        "overlay backing {backing:?} is not the stored image: {info}"
    );

    // Boot from volume: a volume made from the image at launch is the boot disk (here kept when the
    // instance goes). Bad boot-volume input is refused precisely.
    for (body, field) in [
        (json!({"volume_type": "nope"}), "root_volume.volume_type"),
        (json!({"size_gib": 0}), "root_volume.size_gib"),
        (json!({"size": 1}), ""),
    ] {
        let (s, e) = cloud.http(
            "POST",
            "/v1/instances",
            Some(
                &json!({"name": "bad", "image": "bootsector", "instance_type": "tiny-disk",
                    "root_volume": body})
                .to_string(),
            ),
        );
        assert_eq!(s, 422, "{e}");
        if !field.is_empty() {
            assert_eq!(e["field"], field, "{e}");
        }
    }
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "bfv",
        "--image",
        "bootsector",
        "--type",
        "tiny-disk",
        "--boot-volume",
        "--keep-boot-volume",
        "--wait",
    ]);
    let bfv = cloud.wait_state("bfv", "running");
    cloud.wait_console("bfv", "KUMO-DISK-BOOT");
    let bfv_id = bfv["id"].as_str().expect("id").to_string();
    let boot_vol = bfv["boot_volume_id"]
        .as_str()
        .expect("boot volume")
        .to_string();
    let bv = ok(&cloud, "GET", "/v1/volumes/bfv-root", None);
    assert_eq!(bv["id"], boot_vol.as_str(), "{bv}");
    assert_eq!(bv["attachment"]["boot"], true, "{bv}");
    assert_eq!(bv["attachment"]["instance_id"], bfv_id.as_str(), "{bv}");
    assert_eq!(bv["size_gib"], 2, "{bv}");
    assert!(
        !cloud
            .data_dir()
            .join("pool/instances")
            .join(&bfv_id)
            .join("root.qcow2")
            .exists(),
        "a root disk file for a volume-backed instance"
    );
    let (s, e) = cloud.http("POST", "/v1/volumes/bfv-root/detach", None);
    assert_eq!(s, 409, "a boot volume stays attached: {e}");
    cloud.ok(&["instance", "delete", "bfv", "--wait"]);
    let mut kept = ok(&cloud, "GET", "/v1/volumes/bfv-root", None);
    for _ in 0..100 {
        if kept["state"] == "available" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        kept = ok(&cloud, "GET", "/v1/volumes/bfv-root", None);
    }
    assert!(kept["attachment"].is_null(), "{kept}");
    assert_eq!(kept["state"], "available", "{kept}");
    cloud.ok(&["volume", "delete", "bfv-root"]);
    for _ in 0..150 {
        if cloud.http("GET", "/v1/volumes/bfv-root", None).0 == 404 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(cloud.http("GET", "/v1/volumes/bfv-root", None).0, 404);

    // Volumes from a disk image: no smaller than the image; by default its size; an overlay on it,
    // which keeps the image from being deleted.
    let big = cloud.data_dir().join("big.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&big)
        .arg("3G")
        .output()
        .expect("qemu-img create");
    assert!(out.status.success(), "{out:?}");
    ok(
        &cloud,
        "POST",
        "/v1/images",
        Some(json!({"name": "big", "disk_path": big.to_string_lossy()})),
    );
    let (s, e) = cloud.http(
        "POST",
        "/v1/volumes",
        Some(&json!({"name": "small", "image": "big", "size_gib": 2}).to_string()),
    );
    assert_eq!((s, e["field"].as_str()), (422, Some("size_gib")), "{e}");
    assert!(e["message"].as_str().unwrap_or("").contains("3 GiB"), "{e}");
    let vol = ok(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "from-big", "image": "big"})),
    );
    assert_eq!(vol["size_gib"], 3);
    let (s, _) = cloud.http("DELETE", "/v1/images/big", None);
    assert_eq!(s, 409, "an image under a volume cannot go");
    let (_, list) = cloud.http("GET", "/v1/volumes", None);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // Hosts are readable one by one.
    let hosts = ok(&cloud, "GET", "/v1/hosts", None);
    let host_id = hosts["items"][0]["id"]
        .as_str()
        .expect("host id")
        .to_string();
    let h = ok(&cloud, "GET", &format!("/v1/hosts/{host_id}"), None);
    assert_eq!(h["id"], host_id.as_str());
    assert!(v["host"] == h["id"] || v["host"] == h["name"], "{v} on {h}");

    // An image in use cannot go. A type can (instances keep a copy of its sizes, as with OpenStack
    // flavors): the instance still shows them and restarts with them.
    let (s, _) = cloud.http("DELETE", "/v1/images/bootsector", None);
    assert_eq!(s, 409);
    let (s, v) = cloud.http("DELETE", "/v1/instance-types/tiny-disk", None);
    assert!((200..300).contains(&s), "{s} {v}");
    cloud.ok(&["instance", "reboot", "diskvm"]);
    let v = cloud.json(&["instance", "show", "diskvm"]);
    assert_eq!(
        (v["vcpus"].as_u64(), v["memory_mib"].as_u64()),
        (Some(1), Some(128)),
        "{v}"
    );
    cloud.ok(&["instance", "stop", "diskvm", "--wait"]);
    cloud.ok(&["instance", "start", "diskvm", "--wait"]);
    cloud.ok(&["instance", "delete", "diskvm", "--wait"]);
    assert!(!root.exists(), "root disk left behind");
    let (s, v) = cloud.http("DELETE", "/v1/images/bootsector", None);
    assert!((200..300).contains(&s), "{s} {v}");
    assert_eq!(cloud.http("GET", "/v1/images/bootsector", None).0, 404);
    assert_eq!(
        cloud.http("GET", "/v1/instance-types/tiny-disk", None).0,
        404
    );
    let images = cloud
        .data_dir()
        .join("pool/images")
        .join(img["id"].as_str().expect("image id"));
    assert!(!images.exists(), "image files left behind");
}
