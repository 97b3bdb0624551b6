//! A tiny instance's whole life on real QEMU, through the CLI: run → running with its DHCP address →
//! KUMO-READY and user-data on the console → stop → start → reboot → delete, which leaves no QEMU
//! process, tap, lease or disk behind.

mod common;

use common::{Cloud, links, read};

#[test]
fn tiny_instance_lifecycle() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    let ud = cloud.data_dir().join("user-data.sh");
    std::fs::write(&ud, "#!/bin/sh\necho USERDATA-RAN-$((6*7))\n").unwrap();

    // run --wait returns once the instance is running.
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "web-1",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--user-data",
        &ud.to_string_lossy(),
        "--wait",
    ]);
    let v = cloud.json(&["instance", "show", "web-1"]);
    assert_eq!(v["name"], "web-1");
    assert_eq!(v["state"], "running", "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("i-"), "{id}");
    let host = v["host"].as_str().expect("host").to_string();
    assert!(host.starts_with("host-"), "{host}");
    let ip = v["ipv4"].as_str().expect("ipv4").to_string();
    let mac = v["mac"].as_str().expect("mac").to_string();
    assert!(ip.starts_with("198.18.0."), "{ip}");

    // The guest got exactly that address by DHCP, read its metadata and ran its user-data.
    let log = cloud.wait_console("web-1", "KUMO-READY");
    assert!(
        log.contains(&format!("KUMO-READY instance-id={id} ip={ip}")),
        "console:\n{log}"
    );
    assert!(
        log.contains("USERDATA-RAN-42"),
        "user-data did not run:\n{log}"
    );
    let net = cloud.json(&["network", "show", "default"]);
    let net_id = net["id"].as_str().expect("network id").to_string();
    let leases = read(&cloud.data_dir().join("net").join(&net_id).join("leases"));
    assert!(
        leases.contains(&mac) && leases.contains(&ip),
        "lease for {mac} {ip} missing:\n{leases}"
    );

    // Stop (ACPI power button; the tiny guest powers off) and start again.
    let pid1 = v["pid"].as_u64().expect("pid");
    cloud.ok(&["instance", "stop", "web-1", "--wait"]);
    let v = cloud.wait_state("web-1", "stopped");
    assert!(v["pid"].is_null(), "{v}");
    assert!(
        !kumo_testutil::pid_alive(pid1 as i32),
        "QEMU {pid1} still alive after stop"
    );
    cloud.ok(&["instance", "start", "web-1", "--wait"]);
    let v = cloud.wait_state("web-1", "running");
    assert_eq!(v["ipv4"], ip.as_str(), "address must survive stop/start");
    let boots = v["boot_count"].as_u64().unwrap_or(0);

    // Reboot resets the guest: a second KUMO-READY appears.
    let before = cloud
        .wait_console("web-1", "KUMO-READY")
        .matches("KUMO-READY")
        .count();
    cloud.ok(&["instance", "reboot", "web-1"]);
    let deadline = std::time::Instant::now() + common::BOOT_TIMEOUT;
    loop {
        let log = String::from_utf8_lossy(&cloud.kumo(&["instance", "logs", "web-1"]).stdout)
            .into_owned();
        if log.matches("KUMO-READY").count() > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no KUMO-READY after reboot"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let v = cloud.wait_instance("web-1", "boot count to grow", |v| {
        v["boot_count"].as_u64().unwrap_or(0) > boots
    });
    assert_eq!(v["state"], "running");

    // Events tell the story.
    let ev = cloud.json(&["events", "--resource", &id]);
    let kinds: Vec<String> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for k in [
        "instance.created",
        "instance.started",
        "instance.stopped",
        "instance.rebooted",
    ] {
        assert!(kinds.iter().any(|x| x == k), "missing event {k}: {kinds:?}");
    }

    // Delete leaves nothing behind.
    let pid = v["pid"].as_u64().expect("pid") as i32;
    cloud.ok(&["instance", "delete", "web-1", "--wait"]);
    let out = cloud.kumo(&["instance", "show", "web-1"]);
    assert!(!out.status.success(), "instance still visible after delete");
    assert!(!kumo_testutil::pid_alive(pid), "QEMU {pid} survived delete");
    assert!(
        cloud.qemu_pids().is_empty(),
        "QEMU processes left: {:?}",
        cloud.qemu_pids()
    );
    let taps: Vec<String> = links()
        .into_iter()
        .filter(|l| l.starts_with("kt"))
        .collect();
    assert!(taps.is_empty(), "taps left: {taps:?}");
    assert!(
        !cloud.data_dir().join("pool/instances").join(&id).exists(),
        "disk left behind"
    );
    assert!(
        !cloud.data_dir().join("run").join(&id).exists(),
        "run dir left behind"
    );
    let leases = read(&cloud.data_dir().join("net").join(&net_id).join("leases"));
    assert!(!leases.contains(&mac), "lease left behind:\n{leases}");
    let hosts = read(&cloud.data_dir().join("net").join(&net_id).join("hosts"));
    assert!(
        !hosts.contains(&mac),
        "DHCP host entry left behind:\n{hosts}"
    );
    // The address is free again: the next instance gets it.
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "web-2",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--stopped",
    ]);
    let v2 = cloud.json(&["instance", "show", "web-2"]);
    assert_eq!(v2["ipv4"], ip.as_str(), "released address should be reused");
}
