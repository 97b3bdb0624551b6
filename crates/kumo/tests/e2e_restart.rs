//! Crash-only behaviour: `kill -9` of the server (and so of its in-process agent) never restarts or
//! loses running VMs, and interrupted creations converge after restart with nothing orphaned.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{BOOT_TIMEOUT, Cloud, links};

#[test]
fn running_vms_survive_agent_and_server_kill_and_are_adopted() {
    let mut cloud = Cloud::start();
    cloud.import_tiny();
    for n in ["a1", "a2"] {
        cloud.ok(&[
            "instance", "run", "--name", n, "--image", "tiny", "--type", "nano", "--wait",
        ]);
        cloud.wait_console(n, "KUMO-READY");
    }
    let before: Vec<(String, u64)> = ["a1", "a2"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                cloud.json(&["instance", "show", n])["pid"]
                    .as_u64()
                    .expect("pid"),
            )
        })
        .collect();

    cloud.kill9();
    // With the agent gone, the VMs keep running.
    std::thread::sleep(Duration::from_secs(2));
    for (n, pid) in &before {
        assert!(
            kumo_testutil::pid_alive(*pid as i32),
            "{n}: QEMU {pid} died with the agent"
        );
    }

    cloud.spawn_server();
    // After restart: same PIDs, adopted, still running; boot counts unchanged (never restarted).
    for (n, pid) in &before {
        let v = cloud.wait_state(n, "running");
        assert_eq!(
            v["pid"].as_u64(),
            Some(*pid),
            "{n} was restarted instead of adopted: {v}"
        );
        assert_eq!(v["boot_count"].as_u64(), Some(1), "{n}: {v}");
    }
    // The adopted VM is still controllable: stop one through QMP.
    cloud.ok(&["instance", "stop", "a1", "--force", "--wait"]);
    assert!(!kumo_testutil::pid_alive(before[0].1 as i32));
    // A crash (QEMU killed behind kumo's back) is noticed and, with the default policy, restarted.
    let pid2 = before[1].1 as i32;
    // SAFETY: kill(2) of the QEMU this test's server started.
    unsafe { libc::kill(pid2, libc::SIGKILL) };
    let v = cloud.wait_instance("a2", "restart after crash", |v| {
        v["state"] == "running" && v["pid"].as_u64().is_some_and(|p| p as i32 != pid2)
    });
    assert_eq!(v["boot_count"].as_u64(), Some(2), "{v}");
}

#[test]
fn kill9_during_ten_creations_converges_with_nothing_orphaned() {
    let mut cloud = Cloud::start();
    cloud.import_tiny();
    let url = cloud.url();
    let token = cloud.token.clone();
    // Fire 10 creations concurrently and kill the server while they are in flight.
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                std::process::Command::new(common::KUMO)
                    .args([
                        "instance",
                        "run",
                        "--name",
                        &format!("c{i}"),
                        "--image",
                        "tiny",
                        "--type",
                        "nano",
                    ])
                    .env("KUMO_URL", url)
                    .env("KUMO_TOKEN", token)
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            })
        })
        .collect();
    // Kill as soon as the first creation is in the store, while the others are still in flight or
    // being started: the kill must interrupt something.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (stored, running_at_kill) = loop {
        let (_, list) = cloud.http("GET", "/v1/instances", None);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            let running = items.iter().filter(|v| v["state"] == "running").count();
            break (items.len(), running);
        }
        assert!(Instant::now() < deadline, "no creation reached the store");
        std::thread::sleep(Duration::from_millis(5));
    };
    cloud.kill9();
    assert!(
        running_at_kill < 10,
        "all 10 were already running: the kill interrupted nothing"
    );
    eprintln!("killed with {stored} instance(s) stored, {running_at_kill} running");
    let accepted: usize = handles
        .into_iter()
        .map(|h| usize::from(h.join().unwrap_or(false)))
        .sum();
    eprintln!("{accepted} of 10 creations were acknowledged before the kill");

    cloud.spawn_server();
    // Every instance that exists ends `running` or `failed` with a reason.
    let deadline = Instant::now() + BOOT_TIMEOUT * 2;
    let views = loop {
        let list = cloud.json(&["instance", "list"]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let settled = items.iter().all(|v| {
            v["state"] == "running" || (v["state"] == "failed" && v["status_message"].is_string())
        });
        if settled {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "instances did not settle: {list}\n{}",
            common::tail(&cloud.server_log(), 80)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        views.len() >= accepted,
        "an acknowledged creation was lost: {} < {accepted}",
        views.len()
    );
    // Nothing orphaned: exactly one QEMU per running instance, one tap per instance, no stray dirs,
    // distinct addresses.
    let running: Vec<&serde_json::Value> =
        views.iter().filter(|v| v["state"] == "running").collect();
    let pids: HashSet<u64> = running.iter().filter_map(|v| v["pid"].as_u64()).collect();
    let live: HashSet<u64> = cloud.qemu_pids().into_iter().map(|p| p as u64).collect();
    assert_eq!(pids, live, "QEMU processes do not match running instances");
    let ids: HashSet<String> = views
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    for dir in ["run", "pool/instances"] {
        for e in std::fs::read_dir(cloud.data_dir().join(dir))
            .map(|r| r.filter_map(|e| e.ok()).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(ids.contains(&name), "orphaned {dir}/{name}");
        }
    }
    // Taps: every running instance has its own, and no tap belongs to an instance that is gone.
    let taps: HashSet<String> = links()
        .into_iter()
        .filter(|l| l.starts_with("kt"))
        .collect();
    let tap_of = |v: &serde_json::Value| {
        kumo_agent::network::tap_name(v["id"].as_str().unwrap_or_default(), 0)
    };
    for v in &running {
        assert!(
            taps.contains(&tap_of(v)),
            "running {} has no tap",
            v["name"]
        );
    }
    let known: HashSet<String> = views.iter().map(tap_of).collect();
    for t in &taps {
        assert!(known.contains(t), "orphaned tap {t}");
    }
    let ips: HashSet<&str> = views.iter().filter_map(|v| v["ipv4"].as_str()).collect();
    assert_eq!(ips.len(), views.len(), "duplicate addresses");
    // DHCP: the host entries and leases name only existing instances' MACs.
    let macs: HashSet<String> = views
        .iter()
        .filter_map(|v| v["mac"].as_str().map(str::to_lowercase))
        .collect();
    let net = cloud.json(&["network", "show", "default"]);
    let net_dir = cloud
        .data_dir()
        .join("net")
        .join(net["id"].as_str().expect("network id"));
    for file in ["hosts", "leases"] {
        let text = std::fs::read_to_string(net_dir.join(file)).unwrap_or_default();
        for mac in text.split(|c: char| c == ',' || c.is_whitespace()) {
            if mac.len() == 17 && mac.matches(':').count() == 5 {
                assert!(
                    macs.contains(&mac.to_lowercase()),
                    "{file} names {mac}, which belongs to no instance:\n{text}"
                );
            }
        }
    }
}

#[test]
fn separate_agent_killed_while_vms_run_then_adopts_them() {
    let mut cloud = Cloud::start_split();
    cloud.import_tiny();
    cloud.ok(&[
        "instance", "run", "--name", "s1", "--image", "tiny", "--type", "nano", "--wait",
    ]);
    cloud.wait_console("s1", "KUMO-READY");
    let pid = cloud.json(&["instance", "show", "s1"])["pid"]
        .as_u64()
        .expect("pid");

    cloud.kill9_agent();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        kumo_testutil::pid_alive(pid as i32),
        "QEMU died with the agent"
    );
    // The control plane still answers while the agent is away; changes wait for it.
    cloud.ok(&["instance", "stop", "s1"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        kumo_testutil::pid_alive(pid as i32),
        "nothing should act on the VM while the agent is down"
    );

    cloud.spawn_agent();
    // The restarted agent adopts the VM and then applies the pending stop through QMP.
    let v = cloud.wait_state("s1", "stopped");
    assert!(v["pid"].is_null(), "{v}");
    assert!(
        !kumo_testutil::pid_alive(pid as i32),
        "QEMU {pid} still alive"
    );
    cloud.ok(&["instance", "start", "s1", "--wait"]);
    let v = cloud.wait_state("s1", "running");
    assert_eq!(v["boot_count"].as_u64(), Some(2), "{v}");
}

/// With `restart_policy: never`, a QEMU that dies is reported `crashed` with a reason and an event,
/// and is not restarted; `start` brings it back. (The default policy's restart is covered above.)
#[test]
fn crash_with_restart_policy_never_is_reported_not_restarted() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    cloud.ok(&[
        "instance",
        "run",
        "--name",
        "fragile",
        "--image",
        "tiny",
        "--type",
        "nano",
        "--restart-policy",
        "never",
        "--wait",
    ]);
    let v = cloud.wait_state("fragile", "running");
    let id = v["id"].as_str().expect("id").to_string();
    let pid = v["pid"].as_i64().expect("pid") as i32;
    // SAFETY: kill(2) on the QEMU this test's server started (its PID comes from that server).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let v = cloud.wait_state("fragile", "crashed");
    assert!(
        v["status_message"]
            .as_str()
            .is_some_and(|m| m.contains("crash")),
        "{v}"
    );
    let ev = cloud.json(&["events", "--resource", &id]);
    assert!(
        ev["items"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "instance.crashed"),
        "no instance.crashed event: {ev}"
    );
    // Not restarted behind the user's back.
    std::thread::sleep(Duration::from_secs(3));
    let v = cloud.json(&["instance", "show", "fragile"]);
    assert_eq!(v["state"], "crashed", "{v}");
    assert!(cloud.qemu_pids().is_empty(), "a QEMU was started again");
    cloud.ok(&["instance", "start", "fragile", "--wait"]);
    let v = cloud.wait_state("fragile", "running");
    assert_ne!(v["pid"].as_i64(), Some(i64::from(pid)));
}
