//! A real Debian 12 cloud image with stock cloud-init, booted by kumo under TCG (issue 4).
//!
//! The image is built offline from Debian packages by `scripts/build-debian-image.sh` (debootstrap,
//! linux-image-cloud-amd64, cloud-init, openssh-server, GRUB; a qcow2), which `scripts/test.sh` runs
//! before the tests (they run in private namespaces without a network). kumo imports it, runs an
//! instance with a key pair and `#cloud-config` user-data, and the guest's own cloud-init must:
//! set the hostname from the instance name, install the key for the `debian` user, run the
//! user-data. The test checks each on the serial console, then logs in over SSH with the key.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cloud;
use serde_json::json;

fn image() -> PathBuf {
    let p = common::test_cache().join("debian-image/debian-12.qcow2");
    assert!(
        p.exists(),
        "{} is missing: build it with `scripts/build-debian-image.sh {}` (scripts/test.sh does)",
        p.display(),
        p.display()
    );
    p
}

#[test]
fn stock_cloud_init_sets_hostname_keys_and_runs_user_data() {
    kumo_testutil::require("ssh", "openssh-client");
    kumo_testutil::require("ssh-keygen", "openssh-client");
    let img = image();
    let cloud = Cloud::start();
    let dir = cloud.data_dir().to_path_buf();

    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kumo-e2e", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{out:?}");
    let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub")).expect("public key");
    cloud.ok(&[
        "key-pair",
        "import",
        "--name",
        "me",
        "--public-key-file",
        &dir.join("id_ed25519.pub").to_string_lossy(),
    ]);
    let user_data = dir.join("user-data");
    std::fs::write(
        &user_data,
        "#cloud-config\nruncmd:\n  - [sh, -c, 'echo KUMO-USERDATA-OK $(hostname) > /dev/ttyS0']\n  - [sh, -c, 'echo KUMO-AUTHKEYS $(cat /home/debian/.ssh/authorized_keys) > /dev/ttyS0']\n",
    )
    .expect("user-data");

    let t0 = Instant::now();
    let img_json = cloud.json(&[
        "image",
        "import",
        "--name",
        "debian-12",
        "--disk",
        &img.to_string_lossy(),
    ]);
    assert_eq!(img_json["format"], "qcow2", "{img_json}");
    let (s, v) = cloud.http(
        "POST",
        "/v1/instances",
        Some(
            &json!({"name": "deb1", "image": "debian-12", "instance_type": "small",
                "key_name": "me", "user_data": std::fs::read_to_string(&user_data).expect("ud"),
                "root_disk_gib": 4})
            .to_string(),
        ),
    );
    assert!((200..300).contains(&s), "{s} {v}");
    let v = cloud.wait_state("deb1", "running");
    let ip = v["ipv4"].as_str().expect("ipv4").to_string();

    // cloud-init's work, as the guest prints it on its serial console.
    let deadline = Instant::now() + Duration::from_secs(900);
    let log = loop {
        let log = cloud.ok(&["instance", "logs", "deb1"]);
        if log.contains("KUMO-AUTHKEYS") && log.contains("deb1 login:") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "cloud-init did not finish in time; console:\n{}",
            common::tail(&log, 60)
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let booted = t0.elapsed();
    assert!(
        log.contains("KUMO-USERDATA-OK deb1"),
        "user-data ran with the hostname set:\n{log}"
    );
    let key_line = pubkey.split_whitespace().nth(1).expect("key body");
    assert!(
        log.lines()
            .any(|l| l.contains("KUMO-AUTHKEYS") && l.contains(key_line)),
        "the key pair in ~debian/.ssh/authorized_keys:\n{log}"
    );
    assert!(log.contains("Cloud-init v."), "{log}");

    // And the key lets us in over the instance's network.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("ssh")
            .args(["-i", &key.to_string_lossy()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .arg(format!("debian@{ip}"))
            .arg("hostname; cloud-init status")
            .output()
            .expect("ssh");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("deb1") {
            assert!(text.contains("status: done"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ssh debian@{ip}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    eprintln!("debian cloud image: import to cloud-init done in {booted:?} (TCG)");
    cloud.ok(&["instance", "delete", "deb1", "--wait"]);
}
