//! Volume creation through kumo against the storage tool doing the same work, in the same run:
//! 1. a volume from a 1 GiB image: `POST /v1/volumes {image}` → `available`, against
//!    `qemu-img create -f qcow2 -b <image>` (what the dir pool's copy-on-write amounts to);
//! 2. a clone of a snapshot of a volume holding 256 MiB of data: `POST /v1/volumes {snapshot}` →
//!    `available`, against `qemu-img convert -l snapshot.name=…` of the same file.
//!
//! Runs alternate kumo / reference; p50 and p95 over `--runs` (default 10) each.
//!
//! Usage (root): `cargo build --release -p kumo && cargo run --release -p kumo-bench --bin volumes`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kumo_bench::{Cloud, enter_netns, percentile, runtime, table};
use serde_json::json;

fn tool(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Create a volume through the API and wait until it is `available`; returns the time taken.
async fn timed_volume(cloud: &Cloud, name: &str, body: serde_json::Value) -> Result<Duration> {
    let t0 = Instant::now();
    cloud.api_ok("POST", "/v1/volumes", Some(body)).await?;
    loop {
        let (_, v) = cloud
            .api("GET", &format!("/v1/volumes/{name}"), None)
            .await?;
        if v["state"] == "available" {
            return Ok(t0.elapsed());
        }
        if v["state"] == "error" || t0.elapsed() > Duration::from_secs(120) {
            bail!("volume {name}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One kumo run: create the volume (timed, in ms), then delete it.
async fn kumo_run(cloud: &Cloud, name: &str, body: serde_json::Value) -> Result<f64> {
    let d = timed_volume(cloud, name, body).await?;
    delete_volume(cloud, name).await?;
    Ok(ms(d))
}

/// One reference run: the storage tool alone (timed, in ms); its output file is removed after.
fn timed_tool(args: &[&str], out: &str) -> Result<f64> {
    let t0 = Instant::now();
    tool(args)?;
    let took = ms(t0.elapsed());
    remove(Path::new(out))?;
    Ok(took)
}

async fn delete_volume(cloud: &Cloud, name: &str) -> Result<()> {
    cloud
        .api_ok("DELETE", &format!("/v1/volumes/{name}"), None)
        .await?;
    let t0 = Instant::now();
    while cloud
        .api("GET", &format!("/v1/volumes/{name}"), None)
        .await?
        .0
        != 404
    {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("volume {name} not deleted");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn row(case: &str, v: &[f64]) -> Vec<String> {
    let p = |q| percentile(v, q).unwrap_or(f64::NAN);
    vec![
        case.to_string(),
        v.len().to_string(),
        format!("{:.1}", p(50.0)),
        format!("{:.1}", p(95.0)),
    ]
}

fn ratio(case: &str, a: &[f64], b: &[f64]) -> Vec<String> {
    let p = |v: &[f64], q| percentile(v, q).unwrap_or(f64::NAN);
    vec![
        case.to_string(),
        String::new(),
        format!("{:.2}x", p(a, 50.0) / p(b, 50.0)),
        format!("{:.2}x", p(a, 95.0) / p(b, 95.0)),
    ]
}

async fn bench(runs: usize) -> Result<()> {
    let cloud = Cloud::start().await?;
    let work = cloud.data_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    let w = |n: &str| work.join(n).to_string_lossy().into_owned();

    // A 1 GiB qcow2 image with 64 MiB of data, imported once.
    tool(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        &w("img.qcow2"),
        "1G",
    ])?;
    tool(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x5a 0 64M",
        &w("img.qcow2"),
    ])?;
    cloud
        .api_ok(
            "POST",
            "/v1/images",
            Some(json!({"name": "img1g", "disk_path": w("img.qcow2")})),
        )
        .await?;
    let (_, img) = cloud.api("GET", "/v1/images/img1g", None).await?;
    let pool = cloud.data_dir().join("pool");
    let stored = pool
        .join("images")
        .join(img["id"].as_str().context("image id")?)
        .join("disk.qcow2");

    let stored = stored.to_string_lossy().into_owned();
    let (mut kumo_img, mut ref_img) = (vec![], vec![]);
    for i in 0..runs {
        let name = format!("fromimg{i}");
        kumo_img.push(kumo_run(&cloud, &name, json!({"name": name, "image": "img1g"})).await?);
        let out = w(&format!("ref{i}.qcow2"));
        ref_img.push(timed_tool(
            &[
                "qemu-img", "create", "-q", "-f", "qcow2", "-b", &stored, "-F", "qcow2", &out, "1G",
            ],
            &out,
        )?);
    }

    // A volume with 256 MiB of data and a snapshot of it.
    timed_volume(&cloud, "src", json!({"name": "src", "size_gib": 1})).await?;
    let (_, src) = cloud.api("GET", "/v1/volumes/src", None).await?;
    let src_file = pool
        .join("volumes")
        .join(format!("{}.qcow2", src["id"].as_str().context("id")?));
    let src_path = src_file.to_string_lossy().into_owned();
    tool(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0xa5 0 256M",
        &src_path,
    ])?;
    cloud
        .api_ok(
            "POST",
            "/v1/snapshots",
            Some(json!({"name": "s1", "volume": "src"})),
        )
        .await?;
    let t0 = Instant::now();
    loop {
        let (_, s) = cloud.api("GET", "/v1/snapshots/s1", None).await?;
        if s["state"] == "completed" {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("snapshot not completed: {s}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, snap) = cloud.api("GET", "/v1/snapshots/s1", None).await?;
    let snap_id = snap["id"].as_str().context("snapshot id")?.to_string();
    let clone_runs = runs.min(5);
    let (mut kumo_clone, mut ref_clone) = (vec![], vec![]);
    let snapshot = format!("snapshot.name={snap_id}");
    for i in 0..clone_runs {
        let name = format!("clone{i}");
        kumo_clone.push(kumo_run(&cloud, &name, json!({"name": name, "snapshot": "s1"})).await?);
        let out = w(&format!("refclone{i}.qcow2"));
        ref_clone.push(timed_tool(
            &[
                "qemu-img", "convert", "-U", "-q", "-O", "qcow2", "-l", &snapshot, &src_path, &out,
            ],
            &out,
        )?);
    }

    let rows = vec![
        vec![
            "case".to_string(),
            "runs".into(),
            "p50 ms".into(),
            "p95 ms".into(),
        ],
        row("kumo: volume from 1 GiB image → available", &kumo_img),
        row("qemu-img create -b (same image)", &ref_img),
        ratio("kumo / qemu-img", &kumo_img, &ref_img),
        row("kumo: clone of a 256 MiB snapshot → available", &kumo_clone),
        row("qemu-img convert -l snapshot (same file)", &ref_clone),
        ratio("kumo / qemu-img", &kumo_clone, &ref_clone),
    ];
    println!("volumes: API request → `available` (polled every 2 ms) vs the storage tool alone");
    print!("{}", table(&rows));
    Ok(())
}

fn remove(p: &Path) -> Result<()> {
    std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))
}

fn main() -> Result<()> {
    enter_netns();
    kumo_testutil::require("qemu-io", "qemu-utils");
    let mut runs = 10usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a value")?.parse()?,
            other => bail!("unknown argument {other} (expected --runs N)"),
        }
    }
    if !(1..=50).contains(&runs) {
        bail!("--runs must be 1..=50 (bounded run time)");
    }
    runtime()?.block_on(bench(runs))
}
