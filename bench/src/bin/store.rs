//! Store benchmark: durable writes/s at concurrency 1 and 64 for the SQLite and etcd backends,
//! against the fsync floor measured in the same run on the same filesystem.
//!
//! The floor is a loop of 512-byte write + fdatasync on one file (what
//! `dd bs=512 oflag=dsync` measures): one durable write per fsync. A store that beats it at
//! concurrency 64 is batching many writes per fsync (group commit).
//!
//! Usage: `cargo run --release -p kumo-bench --bin store -- [--secs N] [--dir PATH]`
//! (defaults: 3 s per case, the system temp dir). etcd (Debian `etcd-server`) is started on
//! loopback in a temp dir and killed by PID at the end; without it the etcd rows are skipped.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kumo_store::{EtcdKv, Kv, SqliteKv};

struct Args {
    secs: u64,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        secs: 3,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => args.secs = it.next().context("--secs needs a value")?.parse()?,
            "--dir" => args.dir = it.next().context("--dir needs a value")?.into(),
            other => bail!("unknown argument {other} (expected --secs N, --dir PATH)"),
        }
    }
    Ok(args)
}

/// Durable 512-byte writes per second: write + fdatasync in a loop.
fn fsync_floor(dir: &Path, dur: Duration) -> Result<f64> {
    let mut f = tempfile::tempfile_in(dir).context("temp file for the fsync floor")?;
    let block = [0u8; 512];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Puts of distinct keys from `concurrency` tasks for `dur`; returns acknowledged writes/s.
async fn writes_per_sec(kv: Arc<dyn Kv>, concurrency: usize, dur: Duration) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (kv, done) = (Arc::clone(&kv), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < dur {
                kv.put(&format!("/bench/{concurrency}/{t}/{i}"), vec![b'x'; 128])
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// A single-member etcd on free loopback ports; killed (by PID) and its directory removed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_etcd(dir: &Path) -> Result<Option<(Etcd, EtcdKv)>> {
    let dir = tempfile::tempdir_in(dir)?;
    let (client, peer) = (
        format!("http://127.0.0.1:{}", free_port()?),
        format!("http://127.0.0.1:{}", free_port()?),
    );
    let spawned = Command::new("etcd")
        .arg("--name=bench")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=bench={peer}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("spawn etcd"),
    };
    let etcd = Etcd {
        child,
        endpoint: client,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdKv::connect(std::slice::from_ref(&etcd.endpoint)).await {
            Ok(kv) => return Ok(Some((etcd, kv))),
            Err(e) if Instant::now() > deadline => bail!("etcd did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let dur = Duration::from_secs(args.secs);
    let floor = fsync_floor(&args.dir, dur)?;
    println!(
        "fsync floor (512 B write + fdatasync, {}): {floor:.0} writes/s",
        args.dir.display()
    );

    let mut rows: Vec<(String, usize, f64)> = Vec::new();
    let db_dir = tempfile::tempdir_in(&args.dir)?;
    let sqlite: Arc<dyn Kv> = Arc::new(SqliteKv::open(&db_dir.path().join("bench.db"))?);
    for c in [1, 64] {
        rows.push((
            "sqlite".into(),
            c,
            writes_per_sec(Arc::clone(&sqlite), c, dur).await?,
        ));
    }
    drop(sqlite);
    match start_etcd(&args.dir).await? {
        Some((etcd, kv)) => {
            let kv: Arc<dyn Kv> = Arc::new(kv);
            for c in [1, 64] {
                rows.push((
                    "etcd".into(),
                    c,
                    writes_per_sec(Arc::clone(&kv), c, dur).await?,
                ));
            }
            drop(etcd);
        }
        None => println!("etcd: not installed (Debian package etcd-server) — etcd rows skipped"),
    }

    println!();
    println!(
        "{:<8} {:>11} {:>12} {:>16}",
        "backend", "concurrency", "writes/s", "x fsync floor"
    );
    for (backend, c, wps) in rows {
        println!("{backend:<8} {c:>11} {wps:>12.0} {:>16.2}", wps / floor);
    }
    Ok(())
}
