//! Moving instances between hosts (issue 5) on a test cluster (see `common/cluster.rs`): draining a
//! host live-migrates a running guest with shared storage while another guest pings it; a guest with
//! a local root disk moves cold, its disk copied; requests that cannot work are refused precisely.
//! Throughout, every host's QEMU processes are sampled: a guest never runs on two hosts at once.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
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

/// The tiny guest, a VXLAN network across the hosts, a shared-dir pool and its volume type.
fn setup(c: &Cluster, cidr: &str) -> tempfile::TempDir {
    c.cloud.import_tiny();
    let share = c.shared_pool();
    post(
        c,
        "/v1/networks",
        json!({"name": "overlay", "kind": "vxlan"}),
    );
    post(
        c,
        "/v1/subnets",
        json!({"name": "overlay-a", "network": "overlay", "cidr": cidr}),
    );
    share
}

/// The guest counts (`tick-N`, five a second) on its serial console; a sampler keeps every host's
/// copy of that console. If the guest ever ran on two hosts at once, both copies would continue from
/// the same state and print the same numbers: the hosts' tick numbers must be disjoint.
struct Ticks {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticks {
    fn start(c: &Cluster, id: &str) -> Ticks {
        let logs: Vec<std::path::PathBuf> = c
            .hosts
            .iter()
            .map(|h| h.data_dir().join("run").join(id).join("serial.log"))
            .collect();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![String::new(); logs.len()]));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st2.load(std::sync::atomic::Ordering::SeqCst) {
                for (i, p) in logs.iter().enumerate() {
                    if let Ok(text) = std::fs::read_to_string(p) {
                        let mut g = s2.lock().unwrap_or_else(|e| e.into_inner());
                        // A host's log only grows while it exists; keep the longest copy seen.
                        if text.len() > g[i].len() {
                            g[i] = text;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Ticks {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Per host, the tick numbers its console showed.
    fn finish(mut self) -> Vec<std::collections::BTreeSet<u64>> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().map(|log| tick_numbers(log)).collect()
    }
}

fn tick_numbers(log: &str) -> std::collections::BTreeSet<u64> {
    log.split("tick-")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            // Only whole lines: a number cut by the sampler's read is not counted.
            let complete = rest[digits.len()..].starts_with(['\r', '\n']);
            (complete && !digits.is_empty())
                .then(|| digits.parse().ok())
                .flatten()
        })
        .collect()
}

/// Wait until the instance's migration is over, sampling every host's QEMUs every 100 ms. Returns
/// the instance.
fn wait_migrated(c: &Cluster, name: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        c.hosts_running(id);
        let v = c.instance(name);
        if v["migration"].is_null() && !v["last_migration"].is_null() {
            assert_eq!(v["last_migration"]["succeeded"], true, "{v}\n{}", c.logs());
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not finish migrating: {v}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn host_id(c: &Cluster, name: &str) -> String {
    let (_, h) = c.cloud.http("GET", &format!("/v1/hosts/{name}"), None);
    h["id"].as_str().expect("host id").to_string()
}

/// `N packets transmitted, M packets received` of a busybox ping summary.
fn ping_counts(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}

/// The test: drain a host with a running guest; it moves by live migration, keeps its
/// address, and a ping from a guest on the other host loses at most a few packets.
#[test]
fn drain_live_migrates_a_running_guest_and_its_pings_barely_notice() {
    let c = Cluster::start(2, &[]);
    let _share = setup(&c, "198.18.62.0/24");
    let mover = post(
        &c,
        "/v1/instances",
        json!({"name": "mover", "image": "tiny", "instance_type": "nano",
            "root_volume": {"volume_type": "shared"}, "nics": [{"network": "overlay"}]}),
    );
    let id = mover["id"].as_str().expect("id").to_string();
    c.cloud.wait_state("mover", "running");
    c.wait_console("mover", "KUMO-READY");
    let from = c.host_of("mover");
    let other = c
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .find(|n| n != &from)
        .expect("two hosts");
    // The pinger goes to the other host (a label only that host has).
    let (s, v) = c.cloud.http(
        "PATCH",
        &format!("/v1/hosts/{other}"),
        Some(&json!({"labels": {"pinger": "yes"}}).to_string()),
    );
    assert_eq!(s, 200, "{v}");
    post(
        &c,
        "/v1/instances",
        json!({"name": "pinger", "image": "tiny", "instance_type": "nano",
            "nics": [{"network": "overlay"}], "host_selector": {"pinger": "yes"}}),
    );
    c.cloud.wait_state("pinger", "running");
    c.wait_console("pinger", "KUMO-READY");
    assert_eq!(c.host_of("pinger"), other);
    let ip = c.instance("mover")["ipv4"]
        .as_str()
        .expect("mover ip")
        .to_string();
    c.console_until(
        "pinger",
        &format!("ping -c 2 -W 2 {ip}"),
        "pinger reaches mover",
        |o| o.contains(" 0% packet loss"),
    );

    // The guest counts on its console; every host's copy of the console is kept.
    c.console_until(
        "mover",
        "(i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done) & echo counting-$?",
        "the guest counts",
        |o| o.contains("counting-0"),
    );
    let ticks = Ticks::start(&c, &id);
    // 150 pings, 5 per second (30 s), in the background; the drain starts meanwhile.
    c.console_until(
        "pinger",
        &format!("ping -i 0.2 -c 150 {ip} > /tmp/ping.txt 2>&1 & echo started-$?"),
        "the ping starts",
        |o| o.contains("started-0"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (s, v) = c
        .cloud
        .http("POST", &format!("/v1/hosts/{from}/drain"), None);
    assert_eq!(s, 200, "{v}");
    let t0 = Instant::now();
    let v = wait_migrated(&c, "mover", &id);
    let took = t0.elapsed();
    assert_eq!(v["last_migration"]["kind"], "live", "{v}");
    assert_eq!(v["host"].as_str(), Some(host_id(&c, &other).as_str()));
    assert_eq!(
        v["ipv4"].as_str(),
        Some(ip.as_str()),
        "the guest keeps its address"
    );
    assert_eq!(v["state"], "running", "{v}");

    // The ping ends 30 s after it began; then count.
    let out = c.console_until("pinger", "cat /tmp/ping.txt", "the ping summary", |o| {
        ping_counts(o).is_some()
    });
    let (sent, received) = ping_counts(&out).expect("summary");
    let lost = sent - received;
    // The source's QEMU measured the pause; its figures may follow the target's report.
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = loop {
        let last = c.instance("mover")["last_migration"].clone();
        if last["downtime_ms"].is_u64() || Instant::now() > deadline {
            break last;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!(
        "live migration by drain: {from} → {other} in {took:?}; QEMU: downtime {} ms, total {} ms, {} bytes; ping: {sent} sent, {received} received, {lost} lost",
        last["downtime_ms"], last["total_ms"], last["transferred_bytes"]
    );
    assert!(
        last["downtime_ms"].is_u64(),
        "the source reports QEMU's downtime: {last}"
    );
    assert_eq!(sent, 150, "{out}");
    assert!(
        lost <= 5,
        "{lost} of {sent} pings lost across the migration:\n{out}\n{}",
        c.logs()
    );
    std::thread::sleep(Duration::from_secs(2));
    let per_host = ticks.finish();
    let (a, b) = (&per_host[0], &per_host[1]);
    eprintln!(
        "guest ticks: {} on {}, {} on {}",
        a.len(),
        c.hosts[0].name,
        b.len(),
        c.hosts[1].name
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "the guest counted on both hosts in turn"
    );
    let both: Vec<&u64> = a.intersection(b).collect();
    assert!(
        both.is_empty(),
        "the guest ran on both hosts at once: ticks {both:?} printed by both"
    );
    // The guest runs on the other host now: its console answers there, and pings still work.
    c.console_until(
        "mover",
        "echo alive-$((6*7))",
        "the moved guest answers",
        |o| o.contains("alive-42"),
    );
    c.console_until(
        "pinger",
        &format!("ping -c 2 -W 2 {ip}"),
        "pinger reaches mover",
        |o| o.contains(" 0% packet loss"),
    );
    // The source's paused QEMU is gone: one QEMU of the guest is left, on the new host.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.qemu_hosts(&id) != vec![other.clone()] {
        assert!(
            Instant::now() < deadline,
            "QEMUs of {id}: {:?}\n{}",
            c.qemu_hosts(&id),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait_host_state(&from, "maintenance", 60);
}

/// A guest with a local root disk cannot move live (precise refusal), but moves cold: stopped, its
/// root disk copied to the other host, started there with what it had written.
#[test]
fn cold_migration_copies_the_local_root_disk_and_bad_requests_are_refused() {
    let c = Cluster::start(2, &[]);
    let _share = setup(&c, "198.18.63.0/24");
    let v = post(
        &c,
        "/v1/instances",
        json!({"name": "local", "image": "tiny", "instance_type": "nano",
            "nics": [{"network": "overlay"}]}),
    );
    let id = v["id"].as_str().expect("id").to_string();
    c.cloud.wait_state("local", "running");
    c.wait_console("local", "KUMO-READY");
    let from = c.host_of("local");
    let other = c
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .find(|n| n != &from)
        .expect("two hosts");
    // Mark the root disk (blank for a kernel image) so the copy can be recognised.
    c.console_until(
        "local",
        "echo KUMO-ROOT-MARK | dd of=/dev/vda conv=fsync 2>/dev/null; sync; head -c 14 /dev/vda; echo",
        "the mark is written",
        |o| o.contains("\nKUMO-ROOT-MARK"),
    );

    // Refusals: live needs shared storage; not to its own host; not to an unknown host.
    let (s, e) = c.cloud.http(
        "POST",
        "/v1/instances/local/migrate",
        Some(&json!({"kind": "live"}).to_string()),
    );
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["field"], "kind", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("root disk is a file"),
        "{e}"
    );
    let (s, e) = c.cloud.http(
        "POST",
        "/v1/instances/local/migrate",
        Some(&json!({"host": from, "kind": "cold"}).to_string()),
    );
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["field"], "host", "{e}");
    let (s, e) = c.cloud.http(
        "POST",
        "/v1/instances/local/migrate",
        Some(&json!({"host": "no-such-host"}).to_string()),
    );
    assert_eq!(s, 422, "{e}");
    let (s, e) = c.cloud.http(
        "POST",
        "/v1/instances/local/migrate",
        Some(&json!({"kind": "sideways"}).to_string()),
    );
    assert_eq!(s, 422, "{e}");

    // Cold, through the CLI, waiting until it runs on the other host.
    let t0 = Instant::now();
    let v = c.cloud.json(&[
        "instance", "migrate", "local", "--cold", "--host", &other, "--wait",
    ]);
    let took = t0.elapsed();
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(c.host_of("local"), other);
    assert_eq!(v["last_migration"]["kind"], "cold", "{v}");
    assert_eq!(c.qemu_hosts(&id), vec![other.clone()]);
    c.wait_console("local", "KUMO-READY");
    c.console_until(
        "local",
        "head -c 14 /dev/vda; echo",
        "the copied disk has the mark",
        |o| o.contains("\nKUMO-ROOT-MARK"),
    );
    // The source kept nothing of it.
    let src = c.host(&from);
    assert!(
        !src.data_dir().join("pool/instances").join(&id).exists(),
        "the source's copy of the root disk is removed"
    );
    eprintln!("cold migration with a copied root disk: {from} → {other} in {took:?}");
    let (_, ev) = c
        .cloud
        .http("GET", &format!("/v1/events?resource={id}"), None);
    let kinds: Vec<&str> = ev["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    for k in [
        "instance.migration_started",
        "instance.migration_ready",
        "instance.migration_copied",
        "instance.migrated",
    ] {
        assert!(kinds.contains(&k), "event {k} missing: {kinds:?}");
    }
}

#[test]
fn tick_numbers_count_whole_lines_only() {
    let log = "boot\ntick-1\r\ntick-2\r\nti\ntick-3";
    assert_eq!(
        tick_numbers(log).into_iter().collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn ping_summary_parses() {
    let out = "--- 198.18.62.3 ping statistics ---\n150 packets transmitted, 147 packets received, 2% packet loss\n";
    assert_eq!(ping_counts(out), Some((150, 147)));
    assert_eq!(ping_counts("nothing"), None);
}
