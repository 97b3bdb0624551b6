//! Joining hosts (issue 5): one-time join tokens, the cluster CA, and mutual TLS between agents and
//! the server. Everything runs in the test's private network namespace: the server listens with TLS
//! on a bridge address (198.19.0.1, switch `kumo-sw`) and plain HTTP on loopback; the agents (no
//! instances) run in the same namespace, each with its own data directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cloud, KUMO, tail, tls_call};
use serde_json::{Value, json};

const SWITCH_IP: &str = "198.19.0.1";

/// A `kumo agent` process with its own data dir; killed on drop.
struct Agent {
    data: tempfile::TempDir,
    child: Option<Child>,
}

impl Agent {
    fn new(name: &str) -> Agent {
        Agent {
            data: tempfile::Builder::new()
                .prefix(&format!("kumo-join-{name}-"))
                .tempdir()
                .expect("tempdir"),
            child: None,
        }
    }

    fn command(&self, server: &str, args: &[&str]) -> Command {
        let mut c = Command::new(KUMO);
        c.args(["agent", "--server", server, "--data-dir"])
            .arg(self.data.path())
            .args(["--accel", "tcg", "--stop-timeout", "10"])
            .args(args)
            .env("KUMO_LOG", "info")
            .env_remove("KUMO_JOIN_TOKEN")
            .env_remove("KUMO_CA_FINGERPRINT")
            .stdin(Stdio::null());
        c
    }

    /// Start it in the background, logging to `<data>/agent.log`.
    fn spawn(&mut self, server: &str, args: &[&str]) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let child = self
            .command(server, args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn kumo agent");
        self.child = Some(child);
    }

    /// Run it to completion (it is expected to fail): (success, stderr).
    fn run_to_exit(&self, server: &str, args: &[&str]) -> (bool, String) {
        let out = self.command(server, args).output().expect("run kumo agent");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("agent.log")
    }

    fn log(&self) -> String {
        common::read(&self.log_path())
    }

    fn tls(&self, file: &str) -> PathBuf {
        self.data.path().join("tls").join(file)
    }

    /// Its certificate and key, as one PEM identity.
    fn identity(&self) -> Vec<u8> {
        let mut id = std::fs::read(self.tls("host.pem")).expect("host.pem");
        id.extend(std::fs::read(self.tls("host.key")).expect("host.key"));
        id
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log {} ---\n{}",
                self.data.path().display(),
                tail(&self.log(), 60)
            );
        }
    }
}

fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn create_token(cloud: &Cloud, ttl: &str) -> (String, String, String) {
    let v = cloud.json(&["cluster", "join-token", "create", "--ttl", ttl]);
    let token = v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token in {v}"));
    let fp = v["ca_fingerprint"].as_str().expect("ca_fingerprint");
    let id = v["join_token"]["id"].as_str().expect("id");
    assert!(token.starts_with(&format!("{id}.")), "{token}");
    (token.to_string(), fp.to_string(), id.to_string())
}

/// Wait until host `name` is registered; its ID.
fn wait_host(cloud: &Cloud, name: &str, agent: &Agent) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = cloud.json(&["host", "list"]);
        if let Some(h) = v["items"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["name"] == name))
        {
            return h["id"].as_str().expect("host id").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "host {name} did not register:\n{}\n--- server ---\n{}",
            tail(&agent.log(), 40),
            tail(&cloud.server_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn token_state(cloud: &Cloud, id: &str) -> Value {
    cloud.json(&["cluster", "join-token", "show", id])
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn hosts_join_with_one_time_tokens_and_speak_mutual_tls() {
    kumo_testutil::enter_private_netns();
    let run = kumo_testutil::run;
    run("ip", &["link", "add", "kumo-sw", "type", "bridge"]);
    run(
        "ip",
        &["addr", "add", &format!("{SWITCH_IP}/24"), "dev", "kumo-sw"],
    );
    run("ip", &["link", "set", "kumo-sw", "up"]);
    let port = free_port_on(SWITCH_IP);
    let tls_listen = format!("{SWITCH_IP}:{port}");
    let cloud = Cloud::start_server_only("127.0.0.1", &["--tls-listen", &tls_listen]);
    let server = format!("https://{tls_listen}");
    let ca_path = cloud.data_dir().join("tls/ca.pem");
    let ca = std::fs::read(&ca_path).expect("the server wrote tls/ca.pem");
    assert_eq!(mode(&cloud.data_dir().join("tls/ca.key")), 0o600);
    let internal = |path: &str| format!("{server}/internal/v1{path}");

    // The CA is public; its fingerprint is the one join tokens come with.
    let (token, fp, token_id) = create_token(&cloud, "10m");
    let (s, v) = tls_call(&ca, None, None, "GET", &internal("/ca"), None);
    assert_eq!(
        (s, v["fingerprint"].as_str()),
        (200, Some(fp.as_str())),
        "{v}"
    );

    // The CLI speaks TLS too, trusting the cluster CA.
    let out = Command::new(KUMO)
        .args(["--json", "cluster", "join-token", "list"])
        .env("KUMO_URL", &server)
        .env("KUMO_TOKEN", &cloud.token)
        .env("KUMO_CA_FILE", &ca_path)
        .output()
        .expect("kumo over TLS");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["id"] == token_id))
    );

    // A wrong pin: the agent refuses to join, and the token stays unused.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let rogue = Agent::new("rogue");
    let (ok, err) = rogue.run_to_exit(
        &server,
        &[
            "--join-token",
            &token,
            "--ca-fingerprint",
            &wrong,
            "--host-name",
            "rogue",
        ],
    );
    assert!(!ok, "an agent with the wrong CA pin must not start");
    assert!(
        err.contains("fingerprint mismatch") && err.contains(&wrong),
        "{err}"
    );
    assert!(!rogue.tls("host.pem").exists());
    assert_eq!(token_state(&cloud, &token_id)["state"], "valid");

    // h1 joins with the token and registers over mTLS.
    let mut h1 = Agent::new("h1");
    h1.spawn(
        &server,
        &[
            "--join-token",
            &token,
            "--ca-fingerprint",
            &fp,
            "--host-name",
            "h1",
        ],
    );
    let h1_id = wait_host(&cloud, "h1", &h1);
    assert_eq!(mode(&h1.tls("host.key")), 0o600, "the host key is private");
    let t = token_state(&cloud, &token_id);
    assert_eq!(
        (t["state"].as_str(), t["used_by"].as_str()),
        (Some("used"), Some("h1")),
        "{t}"
    );

    // The token was one-time: a second join with it is refused, saying so.
    let h2_again = Agent::new("h2-again");
    let (ok, err) = h2_again.run_to_exit(
        &server,
        &[
            "--join-token",
            &token,
            "--ca-fingerprint",
            &fp,
            "--host-name",
            "h2",
        ],
    );
    assert!(!ok);
    assert!(err.contains("403") && err.contains("already used"), "{err}");

    // Precise join errors.
    let join = |body: Value| tls_call(&ca, None, None, "POST", &internal("/join"), Some(body));
    let (s, v) = join(json!({"token": "jt-00000000000000000.nope", "host_name": "h9", "csr": "x"}));
    assert_eq!(s, 401, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown join token")),
        "{v}"
    );
    let (s, v) = join(json!({"token": token, "host_name": "bad name", "csr": "x"}));
    assert_eq!((s, v["field"].as_str()), (422, Some("host_name")), "{v}");
    let (fresh, _, fresh_id) = create_token(&cloud, "10m");
    let (s, v) = join(json!({"token": fresh, "host_name": "h9", "csr": "not a CSR"}));
    assert_eq!((s, v["field"].as_str()), (422, Some("csr")), "{v}");
    assert_eq!(
        token_state(&cloud, &fresh_id)["state"],
        "valid",
        "a failed join uses nothing"
    );
    let (short, _, _) = create_token(&cloud, "1s");
    std::thread::sleep(Duration::from_millis(2100));
    let (s, v) = join(json!({"token": short, "host_name": "h9", "csr": "x"}));
    assert_eq!(s, 401, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("expired")),
        "{v}"
    );

    // Over TLS, the agents' API needs a host certificate: none, or the admin token, gets 401.
    let hb = internal(&format!("/hosts/{h1_id}/heartbeat"));
    assert_eq!(tls_call(&ca, None, None, "POST", &hb, None).0, 401);
    assert_eq!(
        tls_call(&ca, None, Some(&cloud.token), "POST", &hb, None).0,
        401
    );
    // The public API over TLS takes the bearer token as usual.
    assert_eq!(
        tls_call(
            &ca,
            None,
            Some(&cloud.token),
            "GET",
            &format!("{server}/v1/hosts"),
            None
        )
        .0,
        200
    );
    // h1's certificate heartbeats for h1.
    assert_eq!(
        tls_call(&ca, Some(&h1.identity()), None, "POST", &hb, None).0,
        204
    );

    // h2 joins with a token of its own; its certificate cannot act for h1.
    let (token2, _, _) = create_token(&cloud, "10m");
    let mut h2 = Agent::new("h2");
    h2.spawn(
        &server,
        &[
            "--join-token",
            &token2,
            "--ca-fingerprint",
            &fp,
            "--host-name",
            "h2",
        ],
    );
    let h2_id = wait_host(&cloud, "h2", &h2);
    let (s, v) = tls_call(&ca, Some(&h2.identity()), None, "POST", &hb, None);
    assert_eq!(s, 403, "h2 heartbeating as h1: {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"h2\"") && m.contains("\"h1\"")),
        "{v}"
    );
    let h2_hb = internal(&format!("/hosts/{h2_id}/heartbeat"));
    assert_eq!(
        tls_call(&ca, Some(&h2.identity()), None, "POST", &h2_hb, None).0,
        204
    );
    let (s, _) = tls_call(
        &ca,
        Some(&h2.identity()),
        None,
        "GET",
        &internal(&format!("/hosts/{h1_id}/assignments")),
        None,
    );
    assert_eq!(s, 403, "h2 reading h1's assignments");

    // Heartbeats flow: after more than a lease period, no failed heartbeat and h1 is still ready.
    std::thread::sleep(Duration::from_secs(17));
    assert!(
        !h1.log().contains("heartbeat failed"),
        "{}",
        tail(&h1.log(), 30)
    );
    let host = cloud.json(&["host", "show", "h1"]);
    assert_eq!(host["state"], "ready", "{host}");

    // Restarted without a token, h1 reconnects with its certificate (same host record).
    h1.kill();
    let before = h1.log().matches("agent registered").count();
    h1.spawn(&server, &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while h1.log().matches("agent registered").count() <= before {
        assert!(
            Instant::now() < deadline,
            "h1 did not re-register:\n{}",
            tail(&h1.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(wait_host(&cloud, "h1", &h1), h1_id, "the host keeps its ID");
    let names: Vec<Value> = cloud.json(&["host", "list"])["items"]
        .as_array()
        .map(|a| a.iter().map(|h| h["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A host renews its certificate over mTLS (here at once: `--cert-renew-within-days 400` is more than
/// a certificate's life) and keeps working; its old certificate stays valid until it expires.
/// Removing the (drained) host revokes both: its agent's calls are refused from then on.
#[test]
fn hosts_renew_their_certificates_and_removal_revokes_them() {
    kumo_testutil::enter_private_netns();
    let run = kumo_testutil::run;
    run("ip", &["link", "add", "kumo-sw", "type", "bridge"]);
    run(
        "ip",
        &["addr", "add", &format!("{SWITCH_IP}/24"), "dev", "kumo-sw"],
    );
    run("ip", &["link", "set", "kumo-sw", "up"]);
    let tls_listen = format!("{SWITCH_IP}:{}", free_port_on(SWITCH_IP));
    let cloud = Cloud::start_server_only("127.0.0.1", &["--tls-listen", &tls_listen]);
    let server = format!("https://{tls_listen}");
    let ca = std::fs::read(cloud.data_dir().join("tls/ca.pem")).expect("ca.pem");
    let internal = |path: &str| format!("{server}/internal/v1{path}");

    let (token, fp, _) = create_token(&cloud, "10m");
    let mut h = Agent::new("renew");
    h.spawn(
        &server,
        &[
            "--join-token",
            &token,
            "--ca-fingerprint",
            &fp,
            "--host-name",
            "r1",
        ],
    );
    let id = wait_host(&cloud, "r1", &h);
    let first = h.identity();
    h.kill();

    // Restarted with a renewal window longer than the certificate's life: it renews at once.
    h.spawn(&server, &["--cert-renew-within-days", "400"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.log().contains("host certificate renewed") {
        assert!(
            Instant::now() < deadline,
            "no renewal:\n{}",
            tail(&h.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let second = h.identity();
    assert_ne!(first, second, "a new key and certificate");
    let (_, ev) = cloud.http("GET", "/v1/events?resource=r1", None);
    assert!(ev.to_string().contains("host.certificate_renewed"), "{ev}");
    // Both certificates work; the agent carries on with the new one.
    let hb = internal(&format!("/hosts/{id}/heartbeat"));
    assert_eq!(tls_call(&ca, Some(&first), None, "POST", &hb, None).0, 204);
    assert_eq!(tls_call(&ca, Some(&second), None, "POST", &hb, None).0, 204);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        !h.log().contains("heartbeat failed"),
        "{}",
        tail(&h.log(), 30)
    );
    assert_eq!(cloud.json(&["host", "show", "r1"])["state"], "ready");

    // Only a drained or down host with nothing on it can be removed.
    let (s, e) = cloud.http("DELETE", "/v1/hosts/r1", None);
    assert_eq!(s, 409, "{e}");
    assert!(
        e["message"].as_str().unwrap_or_default().contains("drain"),
        "{e}"
    );
    let (s, _) = cloud.http("POST", "/v1/hosts/r1/drain", None);
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cloud.json(&["host", "show", "r1"])["state"] != "maintenance" {
        assert!(Instant::now() < deadline, "r1 never reached maintenance");
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = cloud.json(&["host", "remove", "r1"]);
    assert!(out.is_null() || out.is_object(), "{out}");
    let (s, _) = cloud.http("GET", "/v1/hosts/r1", None);
    assert_eq!(s, 404, "the host is gone");
    for (which, ident) in [("old", &first), ("current", &second)] {
        let (s, v) = tls_call(&ca, Some(ident), None, "POST", &hb, None);
        assert_eq!(s, 401, "the {which} certificate after removal: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("revoked"),
            "{v}"
        );
    }
    let (_, ev) = cloud.http("GET", &format!("/v1/events?resource={id}"), None);
    assert!(ev.to_string().contains("host.removed"), "{ev}");
}
