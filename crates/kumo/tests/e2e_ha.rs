//! High availability on a test cluster (issue 5): hosts are agents in their own network namespaces
//! (see `common/cluster.rs`); an HA instance boots from a volume in a `shared-dir` pool (every host
//! reaches it). Throughout, every host's QEMU processes are sampled: the instance must never run on
//! two hosts at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, SWITCH_IP};
use serde_json::{Value, json};

fn post(c: &Cluster, path: &str, body: Value) -> Value {
    let (s, v) = c.cloud.http("POST", path, Some(&body.to_string()));
    assert!(
        (200..300).contains(&s),
        "POST {path}: {s} {v}\n{}",
        c.logs()
    );
    v
}

/// A shared-dir pool, a volume type on it, and the boot-sector image.
fn setup(c: &Cluster) -> tempfile::TempDir {
    let share = c.shared_pool();
    c.cloud.import_boot_sector(b"KUMO-DISK-BOOT");
    share
}

fn run_ha(c: &Cluster, name: &str) -> String {
    let v = post(
        c,
        "/v1/instances",
        json!({"name": name, "image": "bootsector", "instance_type": "nano", "ha": true,
            "root_volume": {"volume_type": "shared"}}),
    );
    c.cloud.wait_state(name, "running");
    c.wait_console(name, "KUMO-DISK-BOOT");
    v["id"].as_str().expect("id").to_string()
}

/// Wait until the instance runs on a host other than `from` (booted there), checking every 200 ms
/// that it never runs twice. Returns the new host and the time it took.
fn wait_moved(c: &Cluster, name: &str, id: &str, from: &str, t0: Instant) -> (String, Duration) {
    let deadline = t0 + Duration::from_secs(180);
    loop {
        c.hosts_running(id);
        // One read of the record for both the host and the migration (two reads could pair a
        // record from before a live migration with the host from after it).
        let v = c.instance(name);
        let now_on = c.host_name(v["host"].as_str().unwrap_or_default());
        if now_on != from && v["state"] == "running" {
            let elapsed = t0.elapsed();
            // A restarted guest boots again; a live-migrated one carries on (its console on the new
            // host only shows what it prints from now on).
            if v["last_migration"]["kind"] != "live" {
                c.wait_console(name, "KUMO-DISK-BOOT");
            }
            return (now_on, elapsed);
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not restart elsewhere: {v}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(c: &Cluster, resource: &str) -> Vec<String> {
    let (_, v) = c
        .cloud
        .http("GET", &format!("/v1/events?resource={resource}"), None);
    v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A Redfish-style BMC for the test hosts: `POST /hosts/<name>/redfish/v1/Systems/1/Actions/
/// ComputerSystem.Reset` with `ForceOff` kills that host's QEMUs (its power is cut).
struct Bmc {
    port: u16,
    calls: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Bmc {
    fn start(hosts: Vec<(String, PathBuf)>) -> Bmc {
        let l = TcpListener::bind((SWITCH_IP, 0)).expect("bmc bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (calls.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let host = path
                    .strip_prefix("/hosts/")
                    .and_then(|p| p.split('/').next())
                    .unwrap_or("")
                    .to_string();
                let ok = req.starts_with("POST ")
                    && path.ends_with("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
                    && req.contains("ForceOff");
                if let (true, Some((_, dir))) = (ok, hosts.iter().find(|(h, _)| *h == host)) {
                    for pid in qemu_pids(dir) {
                        // SAFETY: kill(2) of a QEMU the test cluster's agent started (own pidfile).
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    c2.lock().unwrap_or_else(|p| p.into_inner()).push(host);
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                } else {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        Bmc { port, calls, stop }
    }

    fn url(&self, host: &str) -> String {
        format!(
            "http://{SWITCH_IP}:{}/hosts/{host}/redfish/v1/Systems/1",
            self.port
        )
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn qemu_pids(data: &std::path::Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(data.join("run")) else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("qemu.pid")).ok())
        .filter_map(|s| s.trim().parse::<i32>().ok())
        .collect()
}

/// Kill a host (agent and QEMUs gone, cable cut): after its BMC powers it off, its HA instance runs
/// again on the other host.
#[test]
fn dead_host_is_fenced_through_its_bmc_then_its_ha_instance_restarts_elsewhere() {
    let mut c = Cluster::start(2, &[]);
    let bmc = Bmc::start(
        c.hosts
            .iter()
            .map(|h| (h.name.clone(), h.data_dir().to_path_buf()))
            .collect(),
    );
    for h in c.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>() {
        let (s, v) = c.cloud.http(
            "PUT",
            &format!("/v1/hosts/{h}/fencing"),
            Some(&json!({"redfish_url": bmc.url(&h)}).to_string()),
        );
        assert_eq!(s, 200, "{v}");
    }
    let (s, e) = c.cloud.http(
        "PUT",
        "/v1/hosts/host0/fencing",
        Some(&json!({"redfish_url": "ftp://bmc"}).to_string()),
    );
    assert_eq!((s, e["field"].as_str()), (422, Some("redfish_url")), "{e}");
    let _share = setup(&c);
    let id = run_ha(&c, "web");
    let from = c.host_of("web");
    let i = c.hosts.iter().position(|h| h.name == from).expect("host");

    let t0 = Instant::now();
    c.kill(i);
    c.cut(i);
    let (to, took) = wait_moved(&c, "web", &id, &from, t0);
    eprintln!("HA failover with BMC fencing: {from} died → web running on {to} after {took:?}");
    let calls = bmc.calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        calls,
        vec![from.clone()],
        "the dead host was powered off through its BMC, once"
    );
    let host_id = c.cloud.json(&["host", "show", &from])["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let hev = events(&c, &host_id);
    for k in ["host.down", "host.fenced"] {
        assert!(hev.iter().any(|e| e == k), "{k} missing: {hev:?}");
    }
    assert!(
        events(&c, &id).iter().any(|e| e == "instance.ha_restarted"),
        "{:?}",
        events(&c, &id)
    );
    let h = c.cloud.json(&["host", "show", &from]);
    assert_eq!(h["state"], "down", "{h}");
}

/// Cut a host off from the servers while its agent and guest keep running: the agent fences itself
/// (stops the HA instance), the control plane waits out the fencing deadline, then restarts it
/// elsewhere; the instance never runs twice. When the cable comes back, the host returns to service
/// and does not start the instance again.
#[test]
fn partitioned_host_fences_itself_and_the_instance_never_runs_twice() {
    let c = Cluster::start(2, &[]);
    let _share = setup(&c);
    let id = run_ha(&c, "db");
    let from = c.host_of("db");
    let i = c.hosts.iter().position(|h| h.name == from).expect("host");

    let t0 = Instant::now();
    c.cut(i);
    let (to, took) = wait_moved(&c, "db", &id, &from, t0);
    eprintln!("HA failover by self-fencing: {from} cut off → db running on {to} after {took:?}");
    assert!(
        c.hosts[i].agent_log().contains("SELF-FENCING"),
        "{}",
        c.logs()
    );

    c.reconnect(i);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        c.hosts_running(&id);
        let h = c.cloud.json(&["host", "show", &from]);
        if h["state"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "{from} did not come back: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A while longer: the returned host must not start it again.
    for _ in 0..25 {
        assert_eq!(c.hosts_running(&id), 1);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.host_of("db"), to);
}

/// Drain a host: a running instance with shared storage is live-migrated to the other host, one
/// with a local root disk is stopped; the host goes to maintenance. Undrain: ready again, and the stopped
/// instance starts. Drained again with `--local-disks migrate`, the local-disk instance moves cold.
#[test]
fn draining_moves_what_can_move_stops_the_rest_and_undrain_restores() {
    let c = Cluster::start(2, &[]);
    let _share = setup(&c);
    let id = run_ha(&c, "mover");
    let from = c.host_of("mover");
    // A second instance with a local root disk, pinned next to the first by a host selector on a
    // label only that host has.
    let (s, v) = c.cloud.http(
        "PATCH",
        &format!("/v1/hosts/{from}"),
        Some(&json!({"labels": {"drain-test": "yes"}}).to_string()),
    );
    assert_eq!(s, 200, "{v}");
    post(
        &c,
        "/v1/instances",
        json!({"name": "stayer", "image": "bootsector", "instance_type": "nano",
            "host_selector": {"drain-test": "yes"}}),
    );
    c.cloud.wait_state("stayer", "running");
    assert_eq!(c.host_of("stayer"), from);

    let (s, v) = c
        .cloud
        .http("POST", &format!("/v1/hosts/{from}/drain"), None);
    assert_eq!(s, 200, "{v}");
    let (to, took) = wait_moved(&c, "mover", &id, &from, Instant::now());
    eprintln!("live migration by drain: {from} → {to} in {took:?}");
    let moved = c.instance("mover");
    assert_eq!(moved["last_migration"]["kind"], "live", "{moved}");
    // The source's paused QEMU goes; the guest's only QEMU is on the new host.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.qemu_hosts(&id) != vec![to.clone()] {
        assert!(Instant::now() < deadline, "{:?}", c.qemu_hosts(&id));
        std::thread::sleep(Duration::from_millis(200));
    }
    c.cloud.wait_state("stayer", "stopped");
    c.wait_host_state(&from, "maintenance", 60);
    // Nothing new lands on a host in maintenance.
    let (s, e) = c.cloud.http(
        "POST",
        "/v1/instances",
        Some(
            &json!({"name": "x", "image": "bootsector", "instance_type": "nano",
                "host_selector": {"drain-test": "yes"}})
            .to_string(),
        ),
    );
    assert_eq!(s, 503, "{e}");

    let (s, v) = c
        .cloud
        .http("POST", &format!("/v1/hosts/{from}/undrain"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "ready", "{v}");
    c.cloud.wait_state("stayer", "running");
    assert_eq!(c.host_of("stayer"), from);
    assert_eq!(
        c.host_of("mover"),
        to,
        "a moved instance stays where it went"
    );

    // Drain again, this time cold-migrating what is on local disks: with the other host now
    // matching its selector, `stayer` moves there with its root disk and runs.
    let (s, v) = c.cloud.http(
        "PATCH",
        &format!("/v1/hosts/{to}"),
        Some(&json!({"labels": {"drain-test": "yes"}}).to_string()),
    );
    assert_eq!(s, 200, "{v}");
    let stayer = c.instance("stayer")["id"].as_str().expect("id").to_string();
    let (s, e) = c.cloud.http(
        "POST",
        &format!("/v1/hosts/{from}/drain"),
        Some(&json!({"local_disks": "sideways"}).to_string()),
    );
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["field"], "local_disks", "{e}");
    c.cloud
        .ok(&["host", "drain", &from, "--local-disks", "migrate"]);
    c.wait_host_state(&from, "maintenance", 120);
    assert_eq!(c.host_of("stayer"), to);
    c.cloud.wait_state("stayer", "running");
    let moved = c.instance("stayer");
    assert_eq!(moved["last_migration"]["kind"], "cold", "{moved}");
    assert_eq!(c.qemu_hosts(&stayer), vec![to.clone()]);
    assert!(
        events(&c, &stayer)
            .iter()
            .any(|e| e.contains("instance.migrated")),
        "{:?}",
        events(&c, &stayer)
    );
}
