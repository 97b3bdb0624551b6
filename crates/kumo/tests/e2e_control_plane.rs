//! The control plane on a three-member etcd with three servers (issue 5): every server serves the
//! API, one leads (runs the reconcilers), images are copied between them. Stop one etcd member and
//! the leading server (which imported the image): another server takes the lead, and creating and
//! deleting instances still work through either of the other two.

mod common;

use std::time::{Duration, Instant};

use common::Cloud;
use kumo_testutil::etcd::EtcdCluster;

fn status(c: &Cloud) -> serde_json::Value {
    c.http("GET", "/v1/cluster/status", None).1
}

fn wait_leader(c: &Cloud, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(c);
        if s["is_leader"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s}\n{}", c.server_log());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Wait until server `c` lists `n` live servers, each with a URL.
fn wait_servers(c: &Cloud, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(c);
        let urls = s["servers"]
            .as_array()
            .map(|v| v.iter().filter(|s| s["url"].is_string()).count())
            .unwrap_or_default();
        if urls == n {
            return;
        }
        assert!(Instant::now() < deadline, "{n} servers: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn image_dir(c: &Cloud, image: &str) -> std::path::PathBuf {
    c.data_dir().join("pool/images").join(image)
}

/// Wait until server `c` holds a complete copy of `image` (`present`), or none.
fn wait_copy(c: &Cloud, image: &str, present: bool) {
    let dir = image_dir(c, image);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ["kernel", "initrd"].iter().all(|f| dir.join(f).is_file()) != present {
        assert!(
            Instant::now() < deadline,
            "image {image} on {}: expected present={present}\n{}",
            c.data_dir().display(),
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn losing_an_etcd_member_and_the_leading_server_keeps_the_cloud_working() {
    kumo_testutil::enter_private_netns();
    let mut etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints.join(",");
    let store = ["--store", "etcd", "--etcd-endpoints", endpoints.as_str()];
    // Server A first (no agent): it becomes the leader. Server B carries this host's agent.
    let mut a = Cloud::start_server_only("127.0.0.1", &store);
    wait_leader(&a, "server A leads");
    let b = Cloud::start_with_in_current_netns(&store);
    let sb = status(&b);
    assert_eq!(sb["is_leader"], false, "{sb}");
    assert_eq!(sb["leader"], status(&a)["server"], "{sb}");
    // A third server, without an agent.
    let c = Cloud::start_server_only("127.0.0.1", &store);

    // All three are registered, each with the URL the others reach it at.
    wait_servers(&a, 3);

    // An image imported through server A is copied to server B (checked against its sha256),
    // before any host asks for it: it outlives server A.
    a.import_tiny();
    let tiny = a.json(&["image", "show", "tiny"])["id"]
        .as_str()
        .expect("image id")
        .to_string();
    wait_copy(&b, &tiny, true);
    wait_copy(&c, &tiny, true);
    // A second image, imported through B and deleted through B: A copies it, then drops its copy.
    let cache = common::test_cache().join("tiny");
    b.ok(&[
        "image",
        "import",
        "--name",
        "scratch",
        "--kernel",
        &cache.join("tiny-vmlinuz").to_string_lossy(),
        "--initrd",
        &cache.join("tiny-initrd.img").to_string_lossy(),
    ]);
    let scratch = b.json(&["image", "show", "scratch"])["id"]
        .as_str()
        .expect("image id")
        .to_string();
    wait_copy(&a, &scratch, true);
    b.ok(&["image", "delete", "scratch"]);
    wait_copy(&a, &scratch, false);
    assert!(!image_dir(&b, &scratch).exists());

    b.ok(&[
        "instance", "run", "--name", "one", "--image", "tiny", "--type", "nano", "--wait",
    ]);
    // Both servers serve the same state.
    let via_a = a.json(&["instance", "show", "one"]);
    assert_eq!(via_a["id"], b.json(&["instance", "show", "one"])["id"]);

    // A host whose agent runs on its own, told about both servers.
    let remote_dir = tempfile::Builder::new()
        .prefix("kumo-remote-")
        .tempdir()
        .expect("tempdir");
    let servers = format!("{},{}", a.url(), b.url());
    let log = std::fs::File::create(remote_dir.path().join("agent.log")).expect("log");
    let mut remote = std::process::Command::new(common::KUMO)
        .args(["agent", "--server", &servers, "--token-file"])
        .arg(a.data_dir().join("admin.token"))
        .arg("--data-dir")
        .arg(remote_dir.path())
        .args(["--accel", "tcg", "--host-name", "remote"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn agent");
    let mut guard = kumo_testutil::PidGuard::new();
    guard.add(i32::try_from(remote.id()).unwrap_or(i32::MAX));
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.json(&["host", "show", "remote"])["state"] != "ready" {
        assert!(
            Instant::now() < deadline,
            "the remote agent did not register"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Lose one etcd member and the leading server.
    let gone = status(&a)["server"].clone();
    etcd.kill(0);
    a.kill9();
    // Server B or C takes the lead; both say which.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (sb, sc) = (status(&b), status(&c));
        let leader = &sb["leader"];
        let one_leads = sb["is_leader"] == true || sc["is_leader"] == true;
        if leader.is_string() && *leader != gone && sc["leader"] == *leader && one_leads {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B or C takes the lead: {sb} {sc}\n{}",
            b.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Server A's record goes with its lease.
    wait_servers(&c, 2);
    // The remote agent moved on to server B: a lease period later its host is still ready.
    std::thread::sleep(Duration::from_secs(20));
    let h = b.json(&["host", "show", "remote"]);
    assert_eq!(
        h["state"],
        "ready",
        "{h}\n{}",
        common::read(&remote_dir.path().join("agent.log"))
    );
    assert!(
        common::read(&remote_dir.path().join("agent.log")).contains("trying the next server"),
        "the agent failed over"
    );
    // Keep new instances on this host's in-process agent.
    b.ok(&["host", "drain", "remote"]);
    let _ = remote.kill();
    let _ = remote.wait();
    // Created through server C, run by the agent that talks to server B.
    c.ok(&[
        "instance", "run", "--name", "two", "--image", "tiny", "--type", "nano", "--wait",
    ]);
    b.wait_console("two", "KUMO-READY");
    // Its interactive console through server C: B's agent joins it, forwarding over /peer/v1.
    std::thread::sleep(Duration::from_secs(1));
    let out = c.console_session("two", None, None, b"\necho CONSOLE-$((40+2))\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CONSOLE-42"),
        "console through another server: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.server_log()
    );
    c.ok(&["instance", "delete", "one", "--wait"]);
    b.ok(&["instance", "delete", "two", "--wait"]);
    let (_, list) = b.http("GET", "/v1/instances", None);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    assert!(b.qemu_pids().is_empty());
}
