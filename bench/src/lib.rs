//! Shared helpers for kumo's benchmarks: start a real `kumo server` (with its in-process agent) in a
//! private network namespace, drive it over its REST API, and report results as small tables with a
//! ratio against a reference measured in the same run.
//!
//! Invariants every benchmark keeps:
//! - [`enter_netns`] runs first, before any runtime or child process exists, so every bridge, tap,
//!   dnsmasq and QEMU the run creates lives in a namespace that vanishes with the run.
//! - Only PIDs this run started are killed: the server child, and the QEMU/dnsmasq processes named by
//!   pidfiles inside this run's own temporary data directory ([`Cloud`]'s `Drop`).
//! - Durations and counts are bounded by the caller; nothing is gated on timing.
//!
//! Deciding (percentiles, argv rewriting, `/proc` parsing, table layout) is pure and unit-tested;
//! the rest are thin executors.

pub mod argv;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Where the tiny guest's downloaded .debs and built kernel+initrd are cached (shared with the tests).
pub fn test_cache() -> PathBuf {
    std::env::var_os("KUMO_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kumo-test-cache"))
}

/// The `kumo` binary under test: `$KUMO_BIN`, else `$CARGO_TARGET_DIR/release/kumo`, else `kumo`
/// beside this benchmark's own executable (both are built into the same `release/` dir). Fails with
/// the build command if it is missing.
pub fn kumo_bin() -> Result<PathBuf> {
    let sibling = || {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("kumo")))
            .unwrap_or_else(|| PathBuf::from("target/release/kumo"))
    };
    let p = match std::env::var_os("KUMO_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(|d| PathBuf::from(d).join("release/kumo"))
            .unwrap_or_else(sibling),
    };
    if !p.is_file() {
        bail!(
            "kumo binary not found at {} — run `cargo build --release -p kumo` or set KUMO_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// Enter a fresh private network namespace (needs root) and check the host tools a server needs.
/// Must be the first thing `main` does, before any runtime thread exists.
pub fn enter_netns() {
    kumo_testutil::enter_private_netns();
    kumo_testutil::require("qemu-system-x86_64", "qemu-system-x86");
    kumo_testutil::require("qemu-img", "qemu-utils");
    kumo_testutil::require("dnsmasq", "dnsmasq-base");
    kumo_testutil::require("nft", "nftables");
    kumo_testutil::require("ip", "iproute2");
}

/// A multi-threaded tokio runtime (built after [`enter_netns`]).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A running `kumo server` (TCG, in-process agent) with a temporary data directory.
pub struct Cloud {
    pub data: tempfile::TempDir,
    pub port: u16,
    pub token: String,
    pub bin: PathBuf,
    pub http: reqwest::Client,
    server: Option<std::process::Child>,
}

impl Cloud {
    /// Start a server and wait until it answers and its agent registered the host.
    pub async fn start() -> Result<Cloud> {
        Self::start_with(&[]).await
    }

    /// [`Cloud::start`] with extra `kumo server` arguments (e.g. `--cpu-overcommit`).
    pub async fn start_with(extra: &[&str]) -> Result<Cloud> {
        let bin = kumo_bin()?;
        let data = tempfile::Builder::new()
            .prefix("kumo-bench-")
            .tempdir()
            .context("creating the data dir")?;
        let port = free_port()?;
        let log = std::fs::File::create(data.path().join("server.log"))?;
        let child = std::process::Command::new(&bin)
            .args(["server", "--data-dir"])
            .arg(data.path())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--accel", "tcg"])
            .args(["--stop-timeout", "10"])
            .args(extra)
            .env("KUMO_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {} server", bin.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut c = Cloud {
            data,
            port,
            token: String::new(),
            bin,
            http,
            server: Some(child),
        };
        c.wait_up().await?;
        Ok(c)
    }

    async fn wait_up(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("kumo server exited with {st}:\n{}", self.log_tail(30));
            }
            let ok = self
                .http
                .get(format!("{}/healthz", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if Instant::now() > deadline {
                bail!("server did not come up:\n{}", self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.token = std::fs::read_to_string(self.data.path().join("admin.token"))
            .context("reading admin.token")?
            .trim()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self.api("GET", "/v1/hosts", None).await?;
            if v.pointer("/items/0/id").is_some() || v.pointer("/0/id").is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("agent did not register a host:\n{}", self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(std::process::Child::id)
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// One REST call with the admin token: (status, JSON body or Null).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.parse()?, format!("{}{}", self.url(), path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A REST call that must answer 2xx.
    pub async fn api_ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (st, v) = self.api(method, path, body).await?;
        if !(200..300).contains(&st) {
            bail!("{method} {path} answered {st}: {v}");
        }
        Ok(v)
    }

    /// Run the CLI against this server and require success; returns stdout.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .env("KUMO_URL", self.url())
            .env("KUMO_TOKEN", &self.token)
            .env_remove("KUMO_CONFIG")
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running kumo {args:?}"))?;
        if !out.status.success() {
            bail!(
                "kumo {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Build (cached) and import the tiny guest as image `tiny`, under the lock the tests use.
    pub async fn import_tiny(&self) -> Result<()> {
        let cache = test_cache();
        std::fs::create_dir_all(&cache)?;
        let lock = std::fs::File::create(cache.join(".build.lock"))?;
        // SAFETY: flock on a descriptor we own; blocks until another builder is done.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        let debs = cache.join("debs").to_string_lossy().into_owned();
        let out = cache.join("tiny").to_string_lossy().into_owned();
        let r = self
            .cli(&[
                "image",
                "build",
                "tiny",
                "--cache-dir",
                &debs,
                "--out-dir",
                &out,
            ])
            .await;
        drop(lock);
        r.map(|_| ())
    }

    /// `POST /v1/instances` for a tiny `nano` instance; returns its ID.
    pub async fn run_instance(&self, name: &str, start: bool) -> Result<String> {
        let body = serde_json::json!({
            "name": name, "image": "tiny", "instance_type": "nano", "start": start,
        });
        let v = self.api_ok("POST", "/v1/instances", Some(body)).await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no id in run answer: {v}"))
    }

    /// The instance's serial log as the agent writes it (`<data>/run/<id>/serial.log`).
    pub fn serial_log_path(&self, id: &str) -> PathBuf {
        self.data_dir().join("run").join(id).join("serial.log")
    }

    /// Poll `GET /v1/instances/{id}` until `pred` holds.
    pub async fn wait_instance(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(u16, &Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (st, v) = self
                .api("GET", &format!("/v1/instances/{id}"), None)
                .await?;
            if pred(st, &v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("instance {id}: timed out waiting for {what}; last {st}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Delete an instance and wait until it is gone (404).
    pub async fn delete_instance(&self, id: &str) -> Result<()> {
        self.api_ok("DELETE", &format!("/v1/instances/{id}"), None)
            .await?;
        self.wait_instance(id, "deletion", Duration::from_secs(60), |st, _| st == 404)
            .await
            .map(|_| ())
    }

    /// Stop an instance with `force` and wait until its QEMU is gone. kumo keeps its tap, root disk
    /// overlay, DHCP host entry and metadata registration, so its argv can be launched again.
    pub async fn force_stop(&self, id: &str) -> Result<()> {
        let pid = read_pidfile(&self.data_dir().join("run").join(id).join("qemu.pid"));
        let body = serde_json::json!({"force": true});
        self.api_ok("POST", &format!("/v1/instances/{id}/stop"), Some(body))
            .await?;
        self.wait_instance(id, "stopped", Duration::from_secs(60), |_, v| {
            v["state"] == "stopped"
        })
        .await?;
        if let Some(pid) = pid {
            wait_pid_gone(pid, Duration::from_secs(20)).await?;
        }
        Ok(())
    }

    /// PIDs of live QEMU processes this server started (from pidfiles in its run dirs).
    pub fn qemu_pids(&self) -> Vec<i32> {
        pids_under(&self.data_dir().join("run"), "qemu.pid")
    }

    /// PIDs of live dnsmasq processes this server started.
    pub fn dnsmasq_pids(&self) -> Vec<i32> {
        let net = self.data_dir().join("net");
        let mut p = pids_under(&net, "dnsmasq.pid");
        p.extend(pids_under(&net, "dns.pid"));
        p
    }
}

impl Cloud {
    /// A REST call that must answer 2xx within `timeout` (for calls that do long work before they
    /// answer, such as importing a file, beyond the client's default 30 s).
    pub async fn api_ok_within(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.parse()?, format!("{}{}", self.url(), path))
            .bearer_auth(&self.token)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let st = r.status().as_u16();
        let v = serde_json::from_slice(&r.bytes().await?).unwrap_or(Value::Null);
        if !(200..300).contains(&st) {
            bail!("{method} {path} answered {st}: {v}");
        }
        Ok(v)
    }

    /// Poll `GET path` every `every` until `pred(status, body)` holds; fails if `fail(body)` holds
    /// (e.g. an `error` state) or after `timeout`.
    pub async fn wait_json(
        &self,
        path: &str,
        what: &str,
        timeout: Duration,
        every: Duration,
        pred: impl Fn(u16, &Value) -> bool,
        fail: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (st, v) = self.api("GET", path, None).await?;
            if pred(st, &v) {
                return Ok(v);
            }
            if fail(&v) {
                bail!("{path}: failed while waiting for {what}: {v}");
            }
            if Instant::now() > deadline {
                bail!("{path}: timed out waiting for {what}; last {st}: {v}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// `DELETE path`, then wait until `GET path` answers 404.
    pub async fn delete_and_wait(&self, path: &str, timeout: Duration) -> Result<()> {
        self.api_ok("DELETE", path, None).await?;
        self.wait_json(
            path,
            "deletion",
            timeout,
            Duration::from_millis(20),
            |st, _| st == 404,
            |_| false,
        )
        .await
        .map(|_| ())
    }

    /// Type `script` into instance `name`'s serial console (a root shell in the tiny guest) and
    /// disconnect once the guest has been quiet for half a second. The guest goes on running what it
    /// was sent; its output keeps landing in [`Cloud::serial_log_path`].
    pub async fn console_send(&self, name: &str, script: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&self.bin)
            .args(["instance", "console", name, "--linger", "0.5"])
            .env("KUMO_URL", self.url())
            .env("KUMO_TOKEN", &self.token)
            .env_remove("KUMO_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning kumo instance console")?;
        let mut stdin = child.stdin.take().context("console stdin")?;
        stdin.write_all(format!("\n{script}\n").as_bytes()).await?;
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .context("kumo instance console did not exit within 60 s")??;
        if !out.status.success() {
            bail!(
                "kumo instance console {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in self.qemu_pids().into_iter().chain(self.dnsmasq_pids()) {
            kill9(pid);
        }
    }
}

/// SIGKILL one PID this run started.
pub fn kill9(pid: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; callers pass only PIDs they started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Read a pidfile's PID if that process is alive.
pub fn read_pidfile(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| kumo_testutil::pid_alive(*p))
}

fn pids_under(root: &Path, file: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| read_pidfile(&e.path().join(file)))
        .collect()
}

/// Wait until `pid` is gone (or a zombie), at most `timeout`.
pub async fn wait_pid_gone(pid: i32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while kumo_testutil::pid_alive(pid) {
        if Instant::now() > deadline {
            bail!("process {pid} still alive after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Poll a file every `every` until it contains `needle`; returns when it was seen.
pub async fn wait_file_contains(
    path: &Path,
    needle: &str,
    timeout: Duration,
    every: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(b) = std::fs::read(path)
            && contains(&b, needle.as_bytes())
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(path).unwrap_or_default();
            bail!(
                "no {needle:?} in {} after {timeout:?}; log tail:\n{}",
                path.display(),
                tail.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Run a host tool (`qemu-img`, `rbd`, `sha256sum`, …) and require success; returns its stdout.
pub fn tool(args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().context("empty command")?;
    let out = std::process::Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a host tool (see [`tool`]) and return how long it took, in seconds.
pub fn timed_tool(args: &[&str]) -> Result<f64> {
    let t0 = Instant::now();
    tool(args)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Throughput in MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// The rest of the first line of `text` that starts with `needle` followed by a space or the line's
/// end, trimmed (pure). Lines of a serial log may end in `\r`.
pub fn line_after<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let l = l.trim_end_matches('\r');
        let rest = l.strip_prefix(needle)?;
        (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim())
    })
}

/// A throw-away single-node Ceph cluster (one monitor, manager and BlueStore OSD on a sparse file)
/// started by `scripts/ceph-cluster.sh` in a directory of its own, inside the benchmark's network
/// namespace (the monitor listens on 127.0.0.1). Dropping it stops the daemons (by the PIDs the
/// script recorded) and removes the directory, also when the benchmark fails.
pub struct Ceph {
    pub dir: PathBuf,
    /// `ceph.conf`, which names the `client.admin` keyring.
    pub conf: String,
    /// The RBD pool the script created (`kumo`).
    pub pool: String,
}

impl Ceph {
    /// The script, from the source tree this benchmark was built from.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ceph-cluster.sh")
    }

    /// Start a cluster whose OSD file may grow to `osd_size` (e.g. `"8G"`); waits until it serves RBD.
    pub fn start(osd_size: &str) -> Result<Ceph> {
        kumo_testutil::require("ceph-mon", "ceph-mon");
        kumo_testutil::require("ceph-osd", "ceph-osd");
        kumo_testutil::require("ceph-mgr", "ceph-mgr");
        kumo_testutil::require("rbd", "ceph-common");
        let dir = std::env::temp_dir().join(format!("kumo-bench-ceph-{}", std::process::id()));
        // From here on, Drop stops whatever the script started, even if start fails half way.
        let ceph = Ceph {
            conf: dir.join("ceph.conf").to_string_lossy().into_owned(),
            dir,
            pool: "kumo".into(),
        };
        let out = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .arg(&ceph.dir)
            .env("CEPH_OSD_SIZE", osd_size)
            .stdin(Stdio::null())
            .output()
            .context("running scripts/ceph-cluster.sh start")?;
        if !out.status.success() {
            bail!(
                "ceph-cluster.sh start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(ceph)
    }

    /// `rbd -c <conf> --id admin ARGS`; returns stdout.
    pub fn rbd(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["rbd", "-c", &self.conf, "--id", "admin"];
        all.extend_from_slice(args);
        tool(&all)
    }

    /// `rbd ARGS`, timed (seconds).
    pub fn timed_rbd(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        self.rbd(args)?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// `pool/image`.
    pub fn spec(&self, image: &str) -> String {
        format!("{}/{image}", self.pool)
    }

    /// The `rbd:` filename QEMU tools open (and create) an image of this cluster by.
    pub fn qemu_uri(&self, image: &str) -> String {
        format!("rbd:{}/{image}:id=admin:conf={}", self.pool, self.conf)
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let st = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!(
                "warning: stopping the Ceph cluster in {} failed ({st:?}); run: scripts/ceph-cluster.sh stop {}",
                self.dir.display(),
                self.dir.display()
            );
        }
    }
}

/// Run `fut` until it ends or the process gets SIGINT/SIGTERM; on a signal the future is dropped, so
/// that the guards it holds ([`Cloud`], [`Ceph`]) stop what the run started.
pub async fn until_signal<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted (SIGINT); cleaned up"),
        _ = term.recv() => bail!("terminated (SIGTERM); cleaned up"),
    }
}

/// Byte-substring search.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resident memory of a live process, in KiB.
pub fn rss_kib(pid: i32) -> Result<u64> {
    let p = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
    parse_vm_rss_kib(&s).with_context(|| format!("no VmRSS in {p}"))
}

/// Split a NUL-separated `/proc/<pid>/cmdline` into arguments.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Nearest-rank percentile (`q` in 0..=100) of unsorted samples; `None` when empty.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Render rows as a fixed-width table; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = width[c])
                } else {
                    format!("{s:>w$}", w = width[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let total = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// Format KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 95.0), Some(10.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 100.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        let h: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&h, 99.0), Some(990.0));
    }

    #[test]
    fn vm_rss_is_parsed_from_status() {
        let s = "Name:\tkumo\nVmPeak:\t  999 kB\nVmRSS:\t   51234 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss_kib(s), Some(51234));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cmdline_splits_on_nul() {
        let raw = b"qemu-system-x86_64\0-name\0guest=a,b\0-m\x00128M\0";
        assert_eq!(
            parse_cmdline(raw),
            ["qemu-system-x86_64", "-name", "guest=a,b", "-m", "128M"]
        );
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"xx KUMO-READY instance-id=i-1", b"KUMO-READY"));
        assert!(!contains(b"KUMO-READ", b"KUMO-READY"));
    }

    #[test]
    fn marker_lines_are_found_whole() {
        let log = "# echo G\"\"IO-END-1 $a\r\nGIO-END-1 12.50 17.25 0\r\nGIO-END-10 1 2 0\n";
        assert_eq!(line_after(log, "GIO-END-1"), Some("12.50 17.25 0"));
        assert_eq!(line_after(log, "GIO-END-10"), Some("1 2 0"));
        assert_eq!(line_after(log, "GIO-END-2"), None);
        assert_eq!(line_after("GIO-DEV-1\n", "GIO-DEV-1"), Some(""));
        assert!((mb_per_s(268_435_456, 2.0) - 134.217728).abs() < 1e-9);
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            vec!["case".into(), "ms".into()],
            vec!["kumo".into(), "1234".into()],
            vec!["raw qemu".into(), "9".into()],
        ]);
        assert_eq!(
            t,
            "case        ms\n--------------\nkumo      1234\nraw qemu     9\n"
        );
        assert_eq!(mib(2048), "2.0");
    }
}
