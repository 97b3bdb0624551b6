//! A multi-host test cluster on one machine: the test's private network namespace holds a switch
//! (bridge `kumo-sw`, 198.19.0.1/24) and the `kumo server` (no agent; its API on loopback for the
//! test, its TLS listener on the switch for the hosts); every host is
//! a `kumo agent` in a network namespace of its own (created for the agent process with
//! `unshare(CLONE_NEWNET)`, so it dies with it), with `eth0` (198.19.0.1x/24) on a veth whose other end
//! is plugged into the switch. Its QEMU, dnsmasq and nftables live in its namespace, as on a separate
//! machine. Everything is killed by PID on drop; the namespaces vanish with their last process.
//!
//! Hosts join as operators would: a one-time join token, the CA pinned by its fingerprint, then
//! mutual TLS with the host certificate the cluster CA issued.
//!
//! `cut(i)` takes host `i`'s cable out of the switch (a network partition: the agent and its guests
//! keep running); `kill(i)` kills the agent and its QEMUs (the host died).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Cloud, KUMO, pids_under};

/// The switch's address: the server listens here.
pub const SWITCH_IP: &str = "198.19.0.1";

/// One simulated host.
pub struct TestHost {
    pub name: String,
    /// Its address on the switch (also its VXLAN tunnel endpoint).
    pub ip: String,
    pub data: tempfile::TempDir,
    /// The switch side of its veth.
    pub port: String,
    agent: Option<Child>,
    /// PID of a process inside the host's namespace (the first agent), to enter it.
    pub ns_pid: u32,
}

impl TestHost {
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// QEMU processes of this host, alive now.
    pub fn qemu_pids(&self) -> Vec<i32> {
        pids_under(&self.data.path().join("run"), "qemu.pid")
    }

    pub fn agent_log(&self) -> String {
        super::read(&self.data.path().join("agent.log"))
    }

    /// Instance IDs whose QEMU runs on this host now (from its pidfiles).
    pub fn running_instances(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.data.path().join("run")) else {
            return vec![];
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| {
                std::fs::read_to_string(e.path().join("qemu.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .is_some_and(kumo_testutil::pid_alive)
            })
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    }
}

pub struct Cluster {
    pub cloud: Cloud,
    pub hosts: Vec<TestHost>,
    /// The server's TLS listener on the switch (`https://198.19.0.1:PORT`), where hosts join.
    pub server_url: String,
}

impl Cluster {
    /// Enter a private namespace, build the switch, start the server on it and `n` hosts; wait until
    /// all hosts are registered.
    pub fn start(n: usize, server_args: &[&str]) -> Cluster {
        kumo_testutil::enter_private_netns();
        kumo_testutil::require("nsenter", "util-linux");
        let run = kumo_testutil::run;
        run("ip", &["link", "add", "kumo-sw", "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{SWITCH_IP}/24"), "dev", "kumo-sw"],
        );
        run("ip", &["link", "set", "kumo-sw", "up"]);
        let port = std::net::TcpListener::bind((SWITCH_IP, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port on the switch");
        let tls_listen = format!("{SWITCH_IP}:{port}");
        let mut args = vec!["--tls-listen", tls_listen.as_str()];
        args.extend_from_slice(server_args);
        let cloud = Cloud::start_server_only("127.0.0.1", &args);
        let mut c = Cluster {
            cloud,
            hosts: Vec::new(),
            server_url: format!("https://{tls_listen}"),
        };
        for i in 0..n {
            c.add_host(i);
        }
        c.wait_hosts(n);
        c
    }

    fn add_host(&mut self, i: usize) {
        let name = format!("host{i}");
        let ip = format!("198.19.0.{}", 10 + i);
        let data = tempfile::Builder::new()
            .prefix(&format!("kumo-{name}-"))
            .tempdir()
            .expect("tempdir");
        let mut h = TestHost {
            name,
            ip,
            data,
            port: format!("kumo-sw{i}"),
            agent: None,
            ns_pid: 0,
        };
        let child = self.spawn_agent(&h, true);
        h.ns_pid = child.id();
        h.agent = Some(child);
        // The cable: a veth from the switch into the host's namespace.
        let run = kumo_testutil::run;
        let pid = h.ns_pid.to_string();
        run(
            "ip",
            &[
                "link", "add", &h.port, "type", "veth", "peer", "name", "eth0", "netns", &pid,
            ],
        );
        run("ip", &["link", "set", &h.port, "master", "kumo-sw", "up"]);
        let ns = |args: &[&str]| {
            let mut a = vec!["-t", pid.as_str(), "-n"];
            a.extend_from_slice(args);
            run("nsenter", &a);
        };
        ns(&["ip", "link", "set", "lo", "up"]);
        ns(&["ip", "addr", "add", &format!("{}/24", h.ip), "dev", "eth0"]);
        ns(&["ip", "link", "set", "eth0", "up"]);
        self.hosts.push(h);
    }

    /// Start host `h`'s agent: in a new network namespace (`fresh`), or in the namespace of the
    /// host's first agent (a restart).
    fn spawn_agent(&self, h: &TestHost, fresh: bool) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.data.path().join("agent.log"))
            .expect("agent log");
        let mut cmd = if fresh {
            let mut c = Command::new(KUMO);
            // SAFETY: unshare(2) is async-signal-safe; it runs in the forked child before exec and
            // only gives the agent (and what it starts) a network namespace of its own.
            unsafe {
                c.pre_exec(|| {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            c
        } else {
            let mut c = Command::new("nsenter");
            c.args(["-t", &h.ns_pid.to_string(), "-n", "--", KUMO]);
            c
        };
        cmd.args(["agent", "--server", &self.server_url]);
        if fresh {
            let v = self
                .cloud
                .json(&["cluster", "join-token", "create", "--ttl", "10m"]);
            let token = v["token"].as_str().expect("join token").to_string();
            let fp = v["ca_fingerprint"]
                .as_str()
                .expect("fingerprint")
                .to_string();
            cmd.args(["--join-token", &token, "--ca-fingerprint", &fp]);
        }
        cmd.arg("--data-dir")
            .arg(h.data.path())
            .args(["--accel", "tcg", "--stop-timeout", "10"])
            .args(["--host-name", &h.name, "--vxlan-local-ip", &h.ip])
            .env("KUMO_LOG", "info,kumo_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn kumo agent")
    }

    /// Wait until `n` hosts are registered.
    pub fn wait_hosts(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, v) = self.cloud.http("GET", "/v1/hosts", None);
            let got = v["items"].as_array().map(Vec::len).unwrap_or(0);
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got} of {n} hosts registered:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The host an instance runs on (its name), from the API.
    /// Wait until host `name` is in `state` (within `secs`).
    pub fn wait_host_state(&self, name: &str, state: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let h = self.cloud.json(&["host", "show", name]);
            if h["state"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "{h}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn host_of(&self, instance: &str) -> String {
        let v = self.cloud.json(&["instance", "show", instance]);
        self.host_name(v["host"].as_str().unwrap_or_default())
    }

    /// The name of the host with this id (the id itself if there is no such host).
    pub fn host_name(&self, id: &str) -> String {
        let (_, h) = self.cloud.http("GET", &format!("/v1/hosts/{id}"), None);
        h["name"].as_str().unwrap_or(id).to_string()
    }

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host {name}"))
    }

    /// Take host `i`'s cable out of the switch: it can no longer reach the servers (nor the other
    /// hosts); its agent and guests keep running.
    pub fn cut(&self, i: usize) {
        kumo_testutil::run("ip", &["link", "set", &self.hosts[i].port, "down"]);
    }

    /// Plug host `i`'s cable back in.
    pub fn reconnect(&self, i: usize) {
        kumo_testutil::run("ip", &["link", "set", &self.hosts[i].port, "up"]);
    }

    /// Host `i` dies: its agent and its QEMUs are killed (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        if let Some(mut c) = h.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in h.qemu_pids() {
            // SAFETY: kill(2) of a QEMU this test's agent started (read from its own pidfile).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// All agents' logs (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for h in &self.hosts {
            s.push_str(&format!(
                "--- {} agent log ---\n{}\n",
                h.name,
                super::tail(&h.agent_log(), 60)
            ));
        }
        s.push_str(&format!(
            "--- server log ---\n{}",
            super::tail(&self.cloud.server_log(), 80)
        ));
        s
    }

    /// The data directories of all hosts.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.hosts
            .iter()
            .map(|h| h.data.path().to_path_buf())
            .collect()
    }

    /// The instance's ID and the test host it runs on.
    fn locate(&self, instance: &str) -> (String, &TestHost) {
        let v = self.instance(instance);
        let id = v["id"].as_str().expect("instance id").to_string();
        let host = self.host_of(instance);
        (id, self.host(&host))
    }

    /// The instance's serial log, read on its host (the API serves consoles of the control-plane
    /// host only; see docs/cluster.md).
    pub fn serial_log(&self, instance: &str) -> String {
        let (id, h) = self.locate(instance);
        super::read(&kumo_agent::paths::serial_log(h.data_dir(), &id))
    }

    /// Wait until the instance's serial log on its host contains `needle`.
    pub fn wait_console(&self, instance: &str, needle: &str) -> String {
        let deadline = Instant::now() + super::BOOT_TIMEOUT;
        loop {
            let log = self.serial_log(instance);
            if log.contains(needle) {
                return log;
            }
            if Instant::now() >= deadline {
                let (id, h) = self.locate(instance);
                let running: Vec<String> = self
                    .hosts
                    .iter()
                    .map(|x| format!("{}: {:?}", x.name, x.running_instances()))
                    .collect();
                let dir = kumo_agent::paths::run_dir(h.data_dir(), &id);
                let files: Vec<String> = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                panic!(
                    "{instance} ({id}, on {}): no {needle:?} on the console:\n{}\ninstance: {}\nrunning: {running:?}\n{}: {files:?}\n{}",
                    h.name,
                    super::tail(&log, 30),
                    self.instance(instance),
                    dir.display(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Type `script` into the instance's serial console (through its socket on its host) until
    /// `done` holds for what came back; retried, as guests under TCG answer slowly.
    pub fn console_until(
        &self,
        instance: &str,
        script: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        while Instant::now() < deadline {
            let (id, h) = self.locate(instance);
            let sock = kumo_agent::paths::serial_sock(h.data_dir(), &id);
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&sock) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = s.write_all(format!("\n{script}\necho KUMO-DONE\n").as_bytes());
                let until = Instant::now() + Duration::from_secs(20);
                let mut out = Vec::new();
                let mut buf = [0u8; 4096];
                while Instant::now() < until {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                    let text = String::from_utf8_lossy(&out);
                    if text.contains("\nKUMO-DONE") {
                        break;
                    }
                }
                last = String::from_utf8_lossy(&out).into_owned();
                if done(&last) {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!(
            "{instance}: timed out waiting for {what}; last output:\n{last}\n{}",
            self.logs()
        );
    }

    /// A `shared-dir` pool named `shared` on a fresh directory (every test host sees the same
    /// filesystem, as hosts see an NFS mount) and a volume type `shared` on it. Keep the directory
    /// for the test's lifetime.
    pub fn shared_pool(&self) -> tempfile::TempDir {
        let share = tempfile::Builder::new()
            .prefix("kumo-share-")
            .tempdir()
            .expect("share");
        for (path, body) in [
            (
                "/v1/pools",
                serde_json::json!({"name": "shared", "driver": "shared-dir",
                    "path": share.path().to_string_lossy()}),
            ),
            (
                "/v1/volume-types",
                serde_json::json!({"name": "shared", "pool": "shared"}),
            ),
        ] {
            let (s, v) = self.cloud.http("POST", path, Some(&body.to_string()));
            assert!((200..300).contains(&s), "POST {path}: {s} {v}");
        }
        share
    }

    /// The hosts where a QEMU of instance `id` is alive (whatever its state).
    pub fn qemu_hosts(&self, id: &str) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| h.running_instances().iter().any(|i| i == id))
            .map(|h| h.name.clone())
            .collect()
    }

    /// How many hosts run instance `id` now outside a live migration; panics if more than one. The
    /// target of a live migration is a QEMU started with `-incoming`: it cannot run the guest until
    /// the source has stopped it and sent its last state (QEMU's guarantee; e2e_migration checks
    /// from the guest's own console that it never ran twice).
    pub fn hosts_running(&self, id: &str) -> usize {
        let n = self
            .hosts
            .iter()
            .filter(|h| {
                let pidfile = h.data_dir().join("run").join(id).join("qemu.pid");
                std::fs::read_to_string(pidfile)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .filter(|p| kumo_testutil::pid_alive(*p))
                    .and_then(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
                    .is_some_and(|cmd| !cmd.split(|b| *b == 0).any(|a| a == b"-incoming"))
            })
            .count();
        assert!(
            n <= 1,
            "instance {id} runs on {n} hosts at once\n{}",
            self.logs()
        );
        n
    }

    /// Instance JSON from the API.
    pub fn instance(&self, name: &str) -> Value {
        self.cloud.json(&["instance", "show", name])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill(i);
            let h = &self.hosts[i];
            let net = h.data.path().join("net");
            let mut p = pids_under(&net, "dnsmasq.pid");
            p.extend(pids_under(&net, "dns.pid"));
            for pid in p {
                // SAFETY: kill(2) of a dnsmasq this test's agent started (from its own pidfile).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
