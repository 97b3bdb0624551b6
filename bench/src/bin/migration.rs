//! Live migration benchmark: the tiny guest moved between two QEMUs by kumo's runtime
//! (`kumo_agent::runtime::{process::adopt, migrate::{listen, send, query}}` over its QMP client),
//! against the same two QEMUs driven by a minimal raw QMP client written here.
//!
//! Setup: a single-host `kumo server` runs one tiny `nano` instance to `KUMO-READY`; its QEMU argv
//! is read from `/proc/<pid>/cmdline`; the instance is stopped with `force` (kumo keeps its tap,
//! disk, DHCP entry and metadata). A second tap (`bmt<i>`) is created on the bridge of each of its
//! taps, for the targets (a tap serves one QEMU); it is deleted at the end.
//!
//! Each migration: a source QEMU is launched from that argv with its run dir moved to a temp dir (as
//! `vmstart`'s reference is) and booted to `KUMO-READY` (DHCP, metadata); a target QEMU gets the
//! same argv, its own run dir, the second tap and `-incoming defer` (what kumo's agent launches for
//! a target). The target listens on `127.0.0.1:<free port>`; the clock starts before the source is
//! told to send (`migrate-set-parameters` with kumo's `MAX_BANDWIDTH_BYTES`/`DOWNTIME_LIMIT_MS`,
//! then `migrate`) and stops when the target's `query-status` says running. The source's
//! `query-migrate` and then the target's `query-status` are polled every `--poll-ms` on both sides.
//! Recorded: that wall time, and QEMU's `downtime`, `total-time` and `ram.transferred`, read once the
//! source is paused in `postmigrate` (QEMU 7.2 says `completed` a moment before it has computed them;
//! how often a `completed` reply came without them is counted). Both QEMUs are killed by PID before
//! the next migration.
//!
//! A pair is one kumo and one raw migration, in alternating order; `--warmup` pairs are discarded.
//!
//! Usage: `cargo run --release -p kumo-bench --bin migration -- [--runs N] [--warmup N] [--poll-ms MS]`
//! (defaults 5, 1 and 10; root needed; `$KUMO_BIN` or `$CARGO_TARGET_DIR/release/kumo`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kumo_agent::runtime::migrate::{self, DOWNTIME_LIMIT_MS, MAX_BANDWIDTH_BYTES};
use kumo_agent::runtime::process;
use kumo_bench::argv::{copy_run_inputs, incoming_argv, raw_argv, retap, tap_ifnames};
use kumo_bench::{
    Cloud, enter_netns, kill9, parse_cmdline, percentile, read_pidfile, runtime, table, tool,
    until_signal, wait_file_contains, wait_pid_gone,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

const MARKER: &str = "KUMO-READY";
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the source may take from `completed` to `postmigrate`.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const FILE_POLL: Duration = Duration::from_millis(5);
/// Hard cap on pairs, to bound the run time.
const MAX_RUNS: usize = 30;

struct Args {
    runs: usize,
    warmup: usize,
    poll: Duration,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        runs: 5,
        warmup: 1,
        poll: Duration::from_millis(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().with_context(|| format!("{x} needs a value"));
        match x.as_str() {
            "--runs" => a.runs = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--poll-ms" => a.poll = Duration::from_millis(val()?.parse()?),
            other => {
                bail!("unknown argument {other} (expected --runs N, --warmup N, --poll-ms MS)")
            }
        }
    }
    if a.runs == 0 || a.runs > MAX_RUNS {
        bail!("--runs must be 1..={MAX_RUNS}");
    }
    if a.poll.is_zero() || a.poll > Duration::from_secs(1) {
        bail!("--poll-ms must be 1..=1000");
    }
    Ok(a)
}

/// What one migration measured (QEMU's own figures from the source, and the driver's wall time).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    downtime_ms: f64,
    total_ms: f64,
    bytes: u64,
    /// From telling the source to send until the target reports running.
    wall_ms: f64,
    /// The first `completed` reply came without figures (`total-time` 0): QEMU 7.2 sets the status
    /// before it computes `downtime`/`total-time` (once it holds the BQL again, then `postmigrate`).
    /// The figures are therefore read once the source is `postmigrate`.
    early: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Kumo,
    Raw,
}

/// The order of pair `i`: kumo first on even pairs, raw first on odd ones.
fn order(i: usize) -> [Driver; 2] {
    if i.is_multiple_of(2) {
        [Driver::Kumo, Driver::Raw]
    } else {
        [Driver::Raw, Driver::Kumo]
    }
}

/// The instance as kumo launched it.
struct Template {
    id: String,
    argv: Vec<String>,
    run_dir: String,
}

/// Second taps on the bridges of the instance's taps, for the targets; deleted on drop.
struct Taps(Vec<(String, String)>);

impl Taps {
    fn create(sources: &[String]) -> Result<Taps> {
        let mut taps = Taps(Vec::new());
        for (i, src) in sources.iter().enumerate() {
            // `ip`, not /sys/class/net: sysfs shows the namespace it was mounted in, not ours.
            let link: Value = serde_json::from_str(&tool(&["ip", "-j", "link", "show", src])?)?;
            let bridge = link[0]["master"]
                .as_str()
                .with_context(|| format!("tap {src} is on no bridge: {link}"))?
                .to_string();
            let new = format!("bmt{i}");
            tool(&["ip", "tuntap", "add", "dev", &new, "mode", "tap"])?;
            taps.0.push((src.clone(), new.clone()));
            tool(&["ip", "link", "set", &new, "master", &bridge, "up"])?;
        }
        Ok(taps)
    }
}

impl Drop for Taps {
    fn drop(&mut self) {
        for (_, t) in &self.0 {
            if let Err(e) = tool(&["ip", "link", "del", t]) {
                eprintln!("warning: deleting tap {t}: {e:#}");
            }
        }
    }
}

/// QEMUs this run started: SIGKILLed by PID on drop; [`Qemus::stop`] also waits until they are gone
/// (the next source needs the tap free).
#[derive(Default)]
struct Qemus(Vec<i32>);

impl Qemus {
    /// Launch `argv` (it daemonizes, with its pidfile in `dir`); its PID.
    async fn spawn(&mut self, argv: &[String], dir: &Path) -> Result<i32> {
        let (prog, rest) = argv.split_first().context("empty argv")?;
        let out = tokio::process::Command::new(prog)
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .await
            .context("spawning QEMU")?;
        if !out.status.success() {
            bail!(
                "QEMU failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let pidfile = dir.join("qemu.pid");
        wait_file_contains(&pidfile, "\n", Duration::from_secs(10), FILE_POLL).await?;
        let pid = read_pidfile(&pidfile).context("QEMU pidfile")?;
        self.0.push(pid);
        Ok(pid)
    }

    async fn stop(mut self) -> Result<()> {
        for pid in std::mem::take(&mut self.0) {
            kill9(pid);
            wait_pid_gone(pid, Duration::from_secs(20)).await?;
        }
        Ok(())
    }
}

impl Drop for Qemus {
    fn drop(&mut self) {
        self.0.iter().copied().for_each(kill9);
    }
}

/// A source booted to `KUMO-READY` and a target waiting (`-incoming defer`), each in its run dir.
struct Pair {
    src: tempfile::TempDir,
    tgt: tempfile::TempDir,
    qemus: Qemus,
}

async fn boot_pair(t: &Template, taps: &Taps) -> Result<Pair> {
    let dir = |p| tempfile::Builder::new().prefix(p).tempdir_in("/tmp");
    let (src, tgt) = (dir("kmsrc")?, dir("kmtgt")?);
    let path = |d: &tempfile::TempDir| d.path().to_string_lossy().into_owned();
    let src_argv = raw_argv(&t.argv, &t.run_dir, &path(&src))?;
    let tgt_argv = incoming_argv(&retap(
        &raw_argv(&t.argv, &t.run_dir, &path(&tgt))?,
        &taps.0,
    )?)?;
    for d in [&src, &tgt] {
        copy_run_inputs(Path::new(&t.run_dir), d.path())?;
    }
    let mut qemus = Qemus::default();
    qemus.spawn(&src_argv, src.path()).await?;
    wait_file_contains(
        &src.path().join("serial.log"),
        MARKER,
        BOOT_TIMEOUT,
        FILE_POLL,
    )
    .await?;
    qemus.spawn(&tgt_argv, tgt.path()).await?;
    Ok(Pair { src, tgt, qemus })
}

fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// kumo's path: adopt both QEMUs (pidfile + `process=kumo-<id>` marker), `migrate::listen` on the
/// target, `migrate::send` to it, poll `migrate::query` and the target's `query-status`.
async fn drive_kumo(p: &Pair, id: &str, poll: Duration) -> Result<Outcome> {
    let src = process::adopt(p.src.path(), id).await?;
    let src = src.context("source QEMU not adoptable (pidfile, process marker)")?;
    let tgt = process::adopt(p.tgt.path(), id).await?;
    let tgt = tgt.context("target QEMU not adoptable (pidfile, process marker)")?;
    let addr = free_addr()?;
    migrate::listen(&tgt, &addr).await?;
    let t0 = Instant::now();
    migrate::send(&src, &addr).await?;
    let info = loop {
        let i = migrate::query(&src).await?;
        if i.completed() {
            break i;
        }
        if i.failed() || i.idle() {
            bail!("migration failed: {}", i.error.unwrap_or(i.status));
        }
        if t0.elapsed() > MIGRATE_TIMEOUT {
            bail!("migration still {} after {MIGRATE_TIMEOUT:?}", i.status);
        }
        tokio::time::sleep(poll).await;
    };
    while !tgt.qmp().query_status().await?.running {
        if t0.elapsed() > MIGRATE_TIMEOUT {
            bail!("target not running {MIGRATE_TIMEOUT:?} after migrate");
        }
        tokio::time::sleep(poll).await;
    }
    let wall_ms = ms(t0.elapsed());
    let early = info.total_ms == Some(0);
    let t1 = Instant::now();
    loop {
        let st = src.qmp().query_status().await?.status;
        if st == "postmigrate" {
            break;
        }
        if t1.elapsed() > SETTLE_TIMEOUT {
            bail!("source is {st}, not postmigrate, {SETTLE_TIMEOUT:?} after the migration");
        }
        tokio::time::sleep(poll).await;
    }
    let info = migrate::query(&src).await?;
    Ok(Outcome {
        downtime_ms: info.downtime_ms.context("no downtime")? as f64,
        total_ms: info.total_ms.context("no total-time")? as f64,
        bytes: info.transferred_bytes.context("no ram.transferred")?,
        wall_ms,
        early,
    })
}

/// The reference's QMP client: JSON lines over the unix socket, one command at a time, events
/// skipped.
struct RawQmp {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl RawQmp {
    async fn connect(sock: &Path) -> Result<RawQmp> {
        let s = UnixStream::connect(sock)
            .await
            .with_context(|| format!("connecting {}", sock.display()))?;
        let (rd, wr) = s.into_split();
        let mut q = RawQmp {
            rd: BufReader::new(rd),
            wr,
        };
        let greeting = q.line().await?;
        if greeting.get("QMP").is_none() {
            bail!("no QMP greeting: {greeting}");
        }
        q.cmd("qmp_capabilities", None).await?;
        Ok(q)
    }

    async fn line(&mut self) -> Result<Value> {
        let mut l = String::new();
        if self.rd.read_line(&mut l).await? == 0 {
            bail!("QMP closed");
        }
        serde_json::from_str(&l).with_context(|| format!("QMP line {l:?}"))
    }

    async fn cmd(&mut self, name: &str, args: Option<Value>) -> Result<Value> {
        let mut req = json!({ "execute": name });
        if let Some(a) = args {
            req["arguments"] = a;
        }
        self.wr.write_all(format!("{req}\n").as_bytes()).await?;
        loop {
            let v = self.line().await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {name}: {e}");
            }
        }
    }
}

/// The reference: the same commands, parameters and polling with [`RawQmp`].
async fn drive_raw(p: &Pair, poll: Duration) -> Result<Outcome> {
    let mut src = RawQmp::connect(&p.src.path().join("qmp.sock")).await?;
    let mut tgt = RawQmp::connect(&p.tgt.path().join("qmp.sock")).await?;
    let uri = format!("tcp:{}", free_addr()?);
    tgt.cmd("migrate-incoming", Some(json!({ "uri": uri })))
        .await?;
    let t0 = Instant::now();
    let params =
        json!({ "max-bandwidth": MAX_BANDWIDTH_BYTES, "downtime-limit": DOWNTIME_LIMIT_MS });
    src.cmd("migrate-set-parameters", Some(params)).await?;
    src.cmd("migrate", Some(json!({ "uri": uri }))).await?;
    let info = loop {
        let v = src.cmd("query-migrate", None).await?;
        match v["status"].as_str().unwrap_or("none") {
            "completed" => break v,
            "failed" | "cancelled" | "none" => bail!("migration failed: {v}"),
            _ => {}
        }
        if t0.elapsed() > MIGRATE_TIMEOUT {
            bail!("migration still running after {MIGRATE_TIMEOUT:?}: {v}");
        }
        tokio::time::sleep(poll).await;
    };
    while tgt.cmd("query-status", None).await?["running"] != true {
        if t0.elapsed() > MIGRATE_TIMEOUT {
            bail!("target not running {MIGRATE_TIMEOUT:?} after migrate");
        }
        tokio::time::sleep(poll).await;
    }
    let wall_ms = ms(t0.elapsed());
    let early = info["total-time"] == 0;
    let t1 = Instant::now();
    loop {
        let st = src.cmd("query-status", None).await?;
        if st["status"] == "postmigrate" {
            break;
        }
        if t1.elapsed() > SETTLE_TIMEOUT {
            bail!(
                "source is {}, not postmigrate, {SETTLE_TIMEOUT:?} after the migration",
                st["status"]
            );
        }
        tokio::time::sleep(poll).await;
    }
    let info = src.cmd("query-migrate", None).await?;
    let num = |k: &str| info.pointer(k).and_then(Value::as_u64);
    Ok(Outcome {
        downtime_ms: num("/downtime").context("no downtime")? as f64,
        total_ms: num("/total-time").context("no total-time")? as f64,
        bytes: num("/ram/transferred").context("no ram.transferred")?,
        wall_ms,
        early,
    })
}

/// Boot a pair, migrate it with `d`, kill both QEMUs.
async fn one(t: &Template, taps: &Taps, d: Driver, poll: Duration) -> Result<Outcome> {
    let p = boot_pair(t, taps).await?;
    let r = match d {
        Driver::Kumo => drive_kumo(&p, &t.id, poll).await,
        Driver::Raw => drive_raw(&p, poll).await,
    };
    p.qemus.stop().await?;
    r.with_context(|| format!("{d:?} migration"))
}

/// Run one instance through kumo, keep its argv, stop it.
async fn template(cloud: &Cloud) -> Result<Template> {
    let id = cloud.run_instance("mig", true).await?;
    let run_dir = cloud.data_dir().join("run").join(&id);
    wait_file_contains(&cloud.serial_log_path(&id), MARKER, BOOT_TIMEOUT, FILE_POLL)
        .await
        .with_context(|| format!("kumo instance {id}:\n{}", cloud.log_tail(20)))?;
    let pid = read_pidfile(&run_dir.join("qemu.pid")).context("kumo's QEMU pidfile")?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).context("reading QEMU cmdline")?;
    cloud.force_stop(&id).await?;
    Ok(Template {
        id,
        argv: parse_cmdline(&raw),
        run_dir: run_dir.to_string_lossy().into_owned(),
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Per-pair rows: kumo and raw side by side.
fn runs_table(pairs: &[(Outcome, Outcome)]) -> String {
    let head = [
        "pair",
        "downtime k",
        "raw",
        "total k",
        "raw",
        "wall k",
        "raw",
    ];
    let mut rows = vec![strings(&[&head[..], &["MB k", "raw"]].concat())];
    for (i, (k, r)) in pairs.iter().enumerate() {
        let mut row = vec![i.to_string()];
        for (a, b) in [
            (k.downtime_ms, r.downtime_ms),
            (k.total_ms, r.total_ms),
            (k.wall_ms, r.wall_ms),
        ] {
            row.extend([format!("{a:.0}"), format!("{b:.0}")]);
        }
        row.extend([k, r].map(|o| format!("{:.1}", mb(o.bytes))));
        rows.push(row);
    }
    table(&rows)
}

/// p50 and max per figure, and the kumo/raw ratio of the p50s.
fn summary(pairs: &[(Outcome, Outcome)]) -> Result<String> {
    type Pick = fn(&Outcome) -> f64;
    let figures: [(&str, Pick); 4] = [
        ("QEMU downtime ms", |o| o.downtime_ms),
        ("QEMU total-time ms", |o| o.total_ms),
        ("wall: migrate -> target running ms", |o| o.wall_ms),
        ("RAM transferred MB", |o| mb(o.bytes)),
    ];
    let head = [
        "figure", "kumo p50", "raw p50", "kumo/raw", "kumo max", "raw max",
    ];
    let mut rows = vec![strings(&head)];
    for (name, pick) in figures {
        let k: Vec<f64> = pairs.iter().map(|(k, _)| pick(k)).collect();
        let r: Vec<f64> = pairs.iter().map(|(_, r)| pick(r)).collect();
        let p = |v: &[f64], q| percentile(v, q).context("no samples");
        let (k50, r50) = (p(&k, 50.0)?, p(&r, 50.0)?);
        let ratio = if r50 > 0.0 {
            format!("{:.3}x", k50 / r50)
        } else {
            "-".into()
        };
        rows.push(vec![
            name.into(),
            format!("{k50:.1}"),
            format!("{r50:.1}"),
            ratio,
            format!("{:.1}", p(&k, 100.0)?),
            format!("{:.1}", p(&r, 100.0)?),
        ]);
    }
    Ok(table(&rows))
}

async fn bench(args: Args) -> Result<()> {
    let cloud = Cloud::start().await?;
    cloud.import_tiny().await?;
    let t = template(&cloud).await?;
    let sources = tap_ifnames(&t.argv);
    let taps = Taps::create(&sources)?;
    let started = Instant::now();
    let mut pairs = Vec::new();
    for i in 0..args.warmup + args.runs {
        let (mut k, mut r) = (None, None);
        for d in order(i) {
            let o = one(&t, &taps, d, args.poll).await?;
            match d {
                Driver::Kumo => k = Some(o),
                Driver::Raw => r = Some(o),
            }
        }
        let (k, r) = (k.context("kumo run")?, r.context("raw run")?);
        let tag = if i < args.warmup { " (warm-up)" } else { "" };
        eprintln!(
            "pair {i}: kumo downtime {:.0} ms, total {:.0} ms, wall {:.0} ms; raw {:.0} / {:.0} / {:.0} ms{tag}",
            k.downtime_ms, k.total_ms, k.wall_ms, r.downtime_ms, r.total_ms, r.wall_ms
        );
        if i >= args.warmup {
            pairs.push((k, r));
        }
    }
    drop(taps);
    cloud.delete_instance(&t.id).await?;
    println!(
        "migration: live migration of the tiny guest (TCG, nano, idle after {MARKER}) between two \
         QEMUs of kumo's argv on one host, over TCP on 127.0.0.1\n\
         kumo = kumo_agent::runtime::{{process::adopt, migrate::{{listen, send, query}}}}; raw = a \
         bare QMP client sending the same commands\n\
         ({} pairs in alternating order after {} warm-up; max-bandwidth {} MiB/s, downtime-limit \
         {DOWNTIME_LIMIT_MS} ms; query polled every {} ms; NICs: {}; {:.0} s total)\n",
        args.runs,
        args.warmup,
        MAX_BANDWIDTH_BYTES >> 20,
        args.poll.as_millis(),
        sources.len(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", runs_table(&pairs));
    println!();
    print!("{}", summary(&pairs)?);
    let early = |f: fn(&(Outcome, Outcome)) -> bool| pairs.iter().filter(|p| f(p)).count();
    println!(
        "`completed` replies still without downtime/total-time (read again at postmigrate): kumo {}, \
         raw {} of {}",
        early(|p| p.0.early),
        early(|p| p.1.early),
        pairs.len()
    );
    println!(
        "QEMU measures downtime and total-time itself; wall adds the driver's QMP round trips and \
         polling (recorded, not gated)"
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    enter_netns();
    runtime()?.block_on(until_signal(bench(args)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn o(d: f64, t: f64, b: u64, w: f64) -> Outcome {
        Outcome {
            downtime_ms: d,
            total_ms: t,
            bytes: b,
            wall_ms: w,
            early: false,
        }
    }

    #[test]
    fn pairs_alternate_which_side_goes_first() {
        assert_eq!(order(0), [Driver::Kumo, Driver::Raw]);
        assert_eq!(order(1), [Driver::Raw, Driver::Kumo]);
        assert_eq!(order(4), order(0));
    }

    #[test]
    fn summary_reports_p50_ratio_and_max() {
        let pairs = [
            (
                o(60.0, 600.0, 100_000_000, 700.0),
                o(50.0, 500.0, 100_000_000, 650.0),
            ),
            (
                o(80.0, 700.0, 102_000_000, 800.0),
                o(40.0, 550.0, 100_000_000, 640.0),
            ),
        ];
        let s = summary(&pairs).unwrap();
        assert!(s.contains("QEMU downtime ms"), "{s}");
        // p50 of two samples is the lower one (nearest rank): 60 vs 40.
        assert!(s.contains("1.500x"), "{s}");
        assert!(s.contains("80.0"), "{s}");
        let t = runs_table(&pairs);
        assert!(t.contains("102.0"), "{t}");
        assert_eq!(t.lines().count(), 4, "{t}");
    }
}
