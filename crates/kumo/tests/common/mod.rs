//! End-to-end harness: a real `kumo server` (with its in-process agent) in a private network
//! namespace, driven through the real `kumo` CLI and raw HTTP. Everything the test started — the
//! server, and the QEMU and dnsmasq processes it spawned (found through their pidfiles in the test's
//! data dir) — is killed by PID on drop; the namespace disappears with its last process.

#![allow(dead_code)]

pub mod cluster;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KUMO: &str = env!("CARGO_BIN_EXE_kumo");
/// Generous: TCG guests on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

pub fn test_cache() -> PathBuf {
    std::env::var_os("KUMO_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kumo-test-cache"))
}

pub struct Cloud {
    pub data: tempfile::TempDir,
    pub port: u16,
    pub token: String,
    server: Option<Child>,
    agent: Option<Child>,
    /// Server with `--no-agent` plus a separate `kumo agent` process.
    split: bool,
    extra_args: Vec<String>,
    /// The address the server listens on (127.0.0.1 unless agents in other namespaces must reach it).
    listen_ip: String,
    /// Wait for a host to register at start-up.
    wait_for_host: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Cloud {
    /// Enter a private netns and start a server with a fresh data dir.
    pub fn start() -> Cloud {
        Self::start_with(&[])
    }

    /// Like [`Cloud::start`], but the agent runs as its own `kumo agent` process.
    pub fn start_split() -> Cloud {
        Self::start_inner(&["--no-agent"], true)
    }

    pub fn start_with(extra: &[&str]) -> Cloud {
        Self::start_inner(extra, false)
    }

    /// Start a server in the namespace the test already entered (for tests that need to start other
    /// things, e.g. etcd, in the same namespace first).
    pub fn start_with_in_current_netns(extra: &[&str]) -> Cloud {
        Self::start_no_netns(extra, false)
    }

    fn start_inner(extra: &[&str], split: bool) -> Cloud {
        kumo_testutil::enter_private_netns();
        Self::start_no_netns(extra, split)
    }

    /// A server without an agent, listening on `listen_ip` in the current namespace (the hosts of a
    /// [`cluster::Cluster`] join it).
    pub fn start_server_only(listen_ip: &str, extra: &[&str]) -> Cloud {
        let mut args = vec!["--no-agent"];
        args.extend_from_slice(extra);
        Self::build(&args, false, listen_ip, false)
    }

    fn start_no_netns(extra: &[&str], split: bool) -> Cloud {
        Self::build(extra, split, "127.0.0.1", true)
    }

    fn build(extra: &[&str], split: bool, listen_ip: &str, wait_for_host: bool) -> Cloud {
        kumo_testutil::require("qemu-system-x86_64", "qemu-system-x86");
        kumo_testutil::require("qemu-img", "qemu-utils");
        kumo_testutil::require("dnsmasq", "dnsmasq-base");
        kumo_testutil::require("nft", "nftables");
        let data = tempfile::Builder::new()
            .prefix("kumo-e2e-")
            .tempdir()
            .expect("tempdir");
        let mut c = Cloud {
            data,
            port: free_port(),
            token: String::new(),
            server: None,
            agent: None,
            split,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            listen_ip: listen_ip.to_string(),
            wait_for_host,
        };
        c.spawn_server();
        c
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.listen_ip, self.port)
    }

    pub fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("server.log"))
            .expect("server log");
        let mut cmd = Command::new(KUMO);
        cmd.args(["server", "--data-dir"])
            .arg(self.data.path())
            .args([
                "--listen",
                &format!("{}:{}", self.listen_ip, self.port),
                "--accel",
                "tcg",
                "--stop-timeout",
                "10",
            ])
            .args(&self.extra_args)
            .env("KUMO_LOG", "info,kumo_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn kumo server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("kumo server exited with {st}:\n{}", self.server_log());
            }
            if self.http("GET", "/healthz", None).0 == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.token = std::fs::read_to_string(self.data.path().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
        if self.split && self.agent.is_none() {
            self.spawn_agent();
        }
        if self.wait_for_host {
            self.wait_host();
        }
    }

    pub fn spawn_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("agent.log"))
            .expect("agent log");
        let child = Command::new(KUMO)
            .args(["agent", "--server", &self.url(), "--token-file"])
            .arg(self.data.path().join("admin.token"))
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["--accel", "tcg", "--stop-timeout", "10"])
            .env("KUMO_LOG", "info,kumo_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn kumo agent");
        self.agent = Some(child);
    }

    /// SIGKILL the separate agent process.
    pub fn kill9_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    fn wait_host(&self) {
        // Wait for the agent to register the host.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .json(&["host", "list"])
            .pointer("/items/0/id")
            .is_none()
            && self.json(&["host", "list"]).pointer("/0/id").is_none()
        {
            assert!(
                Instant::now() < deadline,
                "agent did not register:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// SIGKILL the server (and so its in-process agent).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn server_log(&self) -> String {
        let mut s =
            std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default();
        if let Ok(a) = std::fs::read_to_string(self.data.path().join("agent.log")) {
            s.push_str("\n--- agent log ---\n");
            s.push_str(&a);
        }
        s
    }

    /// Run the CLI against this cloud.
    pub fn kumo(&self, args: &[&str]) -> Output {
        Command::new(KUMO)
            .args(args)
            .env("KUMO_URL", self.url())
            .env("KUMO_TOKEN", &self.token)
            .env_remove("KUMO_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run kumo")
    }

    /// `kumo instance console NAME` with `input` piped in, through `url` (this cloud's when `None`;
    /// an `https://` one with `ca_file`): the command's output once it has ended.
    pub fn console_session(
        &self,
        name: &str,
        url: Option<&str>,
        ca_file: Option<&Path>,
        input: &[u8],
    ) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(KUMO);
        cmd.args(["instance", "console", name])
            .env("KUMO_URL", url.map_or_else(|| self.url(), str::to_string))
            .env("KUMO_TOKEN", &self.token)
            .env_remove("KUMO_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = ca_file {
            cmd.env("KUMO_CA_FILE", ca);
        }
        let mut child = cmd.spawn().expect("spawn console");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write");
        child.wait_with_output().expect("console output")
    }

    /// Import a 1 MiB raw disk whose boot sector prints `marker` as image `bootsector`: the record.
    pub fn import_boot_sector(&self, marker: &[u8]) -> Value {
        let disk = self.data_dir().join("bootsector.raw");
        let mut d = boot_sector(marker);
        d.resize(1 << 20, 0);
        std::fs::write(&disk, &d).expect("boot sector disk");
        let body = serde_json::json!({"name": "bootsector", "disk_path": disk.to_string_lossy(),
            "format": "raw"});
        let (s, v) = self.http("POST", "/v1/images", Some(&body.to_string()));
        assert!(
            (200..300).contains(&s),
            "importing the boot sector: {s} {v}"
        );
        v
    }

    /// Run the CLI and require success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kumo(args);
        assert!(
            out.status.success(),
            "kumo {args:?} failed ({}):\nstdout: {}\nstderr: {}\n--- server log tail ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.server_log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run the CLI with `--json` and parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.kumo(&a);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Raw HTTP with the admin token: (status, JSON body or Null).
    /// An external network `public` (subnet `public-a`, 198.19.200.0/24, no DHCP) for Elastic IPs:
    /// a cloud admin's, shared by every project.
    pub fn external_network(&self) {
        self.ok(&["network", "create", "--name", "public", "--external"]);
        self.ok(&[
            "subnet",
            "create",
            "--name",
            "public-a",
            "--network",
            "public",
            "--cidr",
            "198.19.200.0/24",
            "--no-dhcp",
        ]);
    }

    /// An EC2 tenant through the CLI: the project (made unless it is `default`), a member
    /// `<project>-user` and that user's access key: (access key ID, secret).
    pub fn member_access_key(&self, project: &str) -> (String, String) {
        let user = format!("{project}-user");
        if project != "default" {
            self.ok(&["project", "create", project]);
        }
        self.ok(&[
            "user",
            "create",
            &user,
            "--role",
            &format!("{project}=member"),
        ]);
        let k = self.json(&[
            "--project",
            project,
            "access-key",
            "create",
            "--user",
            &user,
        ]);
        let id = k["access_key_id"].as_str().unwrap_or_default().to_string();
        let secret = k["secret_access_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            id.starts_with("AKIA") && !secret.is_empty(),
            "kumo access-key create --json: {k}"
        );
        (id, secret)
    }

    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.http_raw(
            method,
            path,
            body.map(|b| b.as_bytes().to_vec()),
            Some("application/json"),
        )
    }

    pub fn http_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> (u16, Value) {
        self.request(&self.token, None, method, path, body, content_type)
    }

    /// A JSON call with `token` (any user's), acting in `project` when given (`X-Kumo-Project`).
    pub fn http_as(
        &self,
        token: &str,
        project: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        self.request(token, project, method, path, body, Some("application/json"))
    }

    /// One HTTP call: (status, JSON body or Null; status 0 when nothing answered).
    fn request(
        &self,
        token: &str,
        project: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> (u16, Value) {
        block_on(async {
            let client = reqwest::Client::new();
            let mut req = client
                .request(
                    method.parse().expect("method"),
                    format!("{}{}", self.url(), path),
                )
                .bearer_auth(token)
                .timeout(Duration::from_secs(60));
            if let Some(p) = project {
                req = req.header("X-Kumo-Project", p);
            }
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let bytes = r.bytes().await.unwrap_or_default();
                    (
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    )
                }
                Err(_) => (0, Value::Null),
            }
        })
    }

    /// GET without a token.
    pub fn http_raw_noauth(&self, path: &str) -> (u16, Value) {
        block_on(async {
            match reqwest::get(format!("{}{}", self.url(), path)).await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    (
                        s,
                        serde_json::from_slice(&r.bytes().await.unwrap_or_default())
                            .unwrap_or(Value::Null),
                    )
                }
                Err(_) => (0, Value::Null),
            }
        })
    }

    /// Build (cached, under a lock shared by parallel tests) and import the tiny guest as `tiny`.
    pub fn import_tiny(&self) {
        let cache = test_cache();
        std::fs::create_dir_all(&cache).expect("cache dir");
        let lock = std::fs::File::create(cache.join(".build.lock")).expect("lock file");
        // SAFETY: flock on a file descriptor we own; blocks until the other builder is done.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        let debs = cache.join("debs");
        let out = cache.join("tiny");
        self.ok(&[
            "image",
            "build",
            "tiny",
            "--cache-dir",
            &debs.to_string_lossy(),
            "--out-dir",
            &out.to_string_lossy(),
        ]);
        drop(lock);
    }

    /// Wait until the instance is gone (404).
    pub fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while self.http("GET", &format!("/v1/instances/{name}"), None).0 != 404 {
            assert!(
                Instant::now() < deadline,
                "instance {name} was not deleted:\n{}",
                tail(&self.server_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until `pred` holds for the instance's JSON view.
    pub fn wait_instance(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let v = self.json(&["instance", "show", name]);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "instance {name}: timed out waiting for {what}; last: {v}\n{}",
                tail(&self.server_log(), 60)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        self.wait_instance(name, state, |v| v["state"] == state)
    }

    /// Wait until the serial log contains `needle`; returns the log.
    pub fn wait_console(&self, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let out = self.kumo(&["instance", "logs", name]);
            let log = String::from_utf8_lossy(&out.stdout).into_owned();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "instance {name}: no {needle:?} on the console; log:\n{}",
                tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Type `script` into the instance's serial console (a root shell in the tiny guest) and return
    /// what came back, up to the line `KUMO-DONE`. Lines of `script` run in order.
    pub fn console_run(&self, name: &str, script: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(KUMO)
            .args(["instance", "console", name, "--linger", "4"])
            .env("KUMO_URL", self.url())
            .env("KUMO_TOKEN", &self.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn console");
        let input = format!("\n{script}\necho KUMO-DONE\n");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write console");
        let out = child.wait_with_output().expect("console output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "console of {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("\nKUMO-DONE"),
            "console of {name}: the script did not finish:\n{text}"
        );
        text
    }

    /// Poll `console_run` until `pred` holds on its output (rules take a moment to apply).
    pub fn console_until(
        &self,
        name: &str,
        script: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.console_run(name, script);
            if pred(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: timed out waiting for {what}; last output:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// PIDs of QEMU processes started for this cloud (from pidfiles), alive now.
    pub fn qemu_pids(&self) -> Vec<i32> {
        pids_under(&self.data.path().join("run"), "qemu.pid")
    }

    /// Both dnsmasq processes of every network (DHCP and DNS).
    pub fn dnsmasq_pids(&self) -> Vec<i32> {
        let net = self.data.path().join("net");
        let mut p = pids_under(&net, "dnsmasq.pid");
        p.extend(pids_under(&net, "dns.pid"));
        p
    }
}

fn pids_under(root: &Path, file: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join(file)).ok())
        .filter_map(|s| s.trim().parse::<i32>().ok())
        .filter(|p| kumo_testutil::pid_alive(*p))
        .collect()
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.kill9_agent();
        self.kill9();
        for pid in self.qemu_pids().into_iter().chain(self.dnsmasq_pids()) {
            // SAFETY: kill(2) of a process this test's server started (read from its own pidfiles).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", tail(&self.server_log(), 200));
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Names of links in the current (test) namespace.
pub fn links() -> Vec<String> {
    let out = kumo_testutil::run("ip", &["-j", "link", "show"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Read a whole file or "".
pub fn read(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// A 512-byte boot sector that prints `msg` on COM1 and halts: `xor ax,ax; mov ds,ax; mov si,msg;
/// mov dx,0x3f8; l: lodsb; test al,al; jz d; out dx,al; jmp l; d: hlt; jmp d; msg: db …,13,10,0`.
/// Padded, it is a bootable raw disk (or, with El Torito no-emulation, a bootable CD).
pub fn boot_sector(msg: &[u8]) -> Vec<u8> {
    let mut s = vec![
        0x31, 0xC0, 0x8E, 0xD8, 0xBE, 0x15, 0x7C, 0xBA, 0xF8, 0x03, 0xAC, 0x84, 0xC0, 0x74, 0x03,
        0xEE, 0xEB, 0xF8, 0xF4, 0xEB, 0xFD,
    ];
    s.extend_from_slice(msg);
    s.extend_from_slice(b"\r\n\0");
    s.resize(512, 0);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// One HTTPS call trusting only the cluster CA, with an optional client identity and bearer token.
pub fn tls_call(
    ca_pem: &[u8],
    identity: Option<&[u8]>,
    bearer: Option<&str>,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    block_on(async {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("ca"));
        if let Some(id) = identity {
            b = b.identity(reqwest::Identity::from_pem(id).expect("identity"));
        }
        let client = b.build().expect("client");
        let mut req = client
            .request(method.parse().expect("method"), url)
            .timeout(Duration::from_secs(30));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(v) = body {
            req = req.json(&v);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

/// Run `f` to completion on a runtime of its own (for the blocking test helpers).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(f)
}
