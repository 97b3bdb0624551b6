//! Volume creation through kumo against the storage tool doing the same work, in the same run:
//! 1. a volume from a 1 GiB image: `POST /v1/volumes {image}` → `available`, against
//!    `qemu-img create -f qcow2 -b <image>` (what the dir pool's copy-on-write amounts to);
//! 2. a clone of a snapshot of a volume holding 256 MiB of data: `POST /v1/volumes {snapshot}` →
//!    `available`, against `qemu-img convert -l snapshot.name=…` of the same file.
//!
//! Runs alternate kumo / reference; p50 and p95 over `--runs` (default 10) each.
//!
//! With `--rbd`, the same on an `rbd` pool instead, against a real single-node Ceph that
//! `scripts/ceph-cluster.sh` starts in a temporary directory inside the run's network namespace (and
//! stops at the end, also on failure or SIGINT/SIGTERM). kumo's rbd driver (crates/kumo-agent/src/rbd.rs)
//! makes a volume from an image as an `rbd clone` of a per-image base, which the first such volume
//! imports (`qemu-img convert -O raw` into the pool, `rbd snap create` + `protect` of `@base`); a clone
//! of a snapshot is an `rbd cp <volume>@<snapshot>`. So:
//! 1. the first volume from a 1 GiB image holding 1 GiB of data (one run: it imports the base),
//!    against `qemu-img convert -O raw` of the same file into the pool + `rbd snap create` +
//!    `rbd snap protect` + `rbd clone`;
//!    A blank volume requested 1 s into that import is timed too (does other volume work wait?);
//! 2. blank 1 GiB volumes, against `rbd create`, and one `rbd info` (a CLI call's fixed cost);
//! 3. later volumes from that image, against `rbd clone <base>@base`;
//! 4. a clone of a snapshot of a volume holding 256 MiB, against `rbd cp <volume>@<snapshot>`;
//! 5. blank volumes again once 8 more idle volumes are in the pool: the agent re-checks every volume
//!    on each pass (`rbd info`, `rbd status`, …), so this shows what each volume adds.
//!
//! Usage (root): `cargo build --release -p kumo -p kumo-bench && cargo run --release -p kumo-bench --bin volumes [-- --rbd]`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kumo_bench::{Ceph, Cloud, enter_netns, mb_per_s, percentile, runtime, table, until_signal};
use serde_json::json;

fn tool(args: &[&str]) -> Result<()> {
    kumo_bench::tool(args).map(|_| ())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Create a volume through the API and wait until it is `available`; returns the time taken.
async fn timed_volume(cloud: &Cloud, name: &str, body: serde_json::Value) -> Result<Duration> {
    timed_volume_within(cloud, name, body, Duration::from_secs(120)).await
}

/// [`timed_volume`] with a bound of `limit`.
async fn timed_volume_within(
    cloud: &Cloud,
    name: &str,
    body: serde_json::Value,
    limit: Duration,
) -> Result<Duration> {
    let t0 = Instant::now();
    cloud.api_ok("POST", "/v1/volumes", Some(body)).await?;
    loop {
        let (_, v) = cloud
            .api("GET", &format!("/v1/volumes/{name}"), None)
            .await?;
        if v["state"] == "available" {
            return Ok(t0.elapsed());
        }
        if v["state"] == "error" || t0.elapsed() > limit {
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

/// Milliseconds of one `rbd` call.
fn rbd_ms(ceph: &Ceph, args: &[&str]) -> Result<f64> {
    Ok(ceph.timed_rbd(args)? * 1e3)
}

async fn bench_rbd(runs: usize) -> Result<()> {
    // Started first so that it is dropped (stopped) last, after the server that uses it.
    eprintln!("starting a single-node Ceph (scripts/ceph-cluster.sh)…");
    let ceph = Ceph::start("8G")?;
    let cloud = Cloud::start().await?;
    let work = cloud.data_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    let w = |n: &str| work.join(n).to_string_lossy().into_owned();

    cloud
        .api_ok(
            "POST",
            "/v1/pools",
            Some(json!({"name": "ceph", "driver": "rbd", "rbd_pool": ceph.pool, "ceph_conf": ceph.conf})),
        )
        .await?;
    cloud
        .wait_json(
            "/v1/pools/ceph",
            "the host's report on the pool",
            Duration::from_secs(120),
            Duration::from_millis(100),
            |_, v| v["hosts"][0]["capacity_bytes"].as_u64().unwrap_or(0) > 0,
            // `error` reads "not reported by the host yet" until the host's first report.
            |_| false,
        )
        .await?;
    cloud
        .api_ok(
            "POST",
            "/v1/volume-types",
            Some(json!({"name": "rbd", "pool": "ceph", "tier": "bench"})),
        )
        .await?;

    // A 1 GiB qcow2 image holding 1 GiB of data, imported once into the local image store.
    let gib: u64 = 1 << 30;
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
        "write -P 0x5a 0 1G",
        &w("img.qcow2"),
    ])?;
    let img = cloud
        .api_ok_within(
            "POST",
            "/v1/images",
            Some(json!({"name": "img1g", "disk_path": w("img.qcow2")})),
            Duration::from_secs(600),
        )
        .await?;
    let img_id = img["id"].as_str().context("image id")?.to_string();
    let stored = cloud
        .data_dir()
        .join("pool/images")
        .join(&img_id)
        .join("disk.qcow2")
        .to_string_lossy()
        .into_owned();
    let from_image = |name: &str| json!({"name": name, "image": "img1g", "volume_type": "rbd"});

    // 1. The first volume from the image imports its base; then the same work by hand. A blank
    //    volume requested 1 s later shows whether other volume work waits for that import.
    let blank_body = |name: &str| json!({"name": name, "size_gib": 1, "volume_type": "rbd"});
    let (first, blank_during) = tokio::join!(
        timed_volume_within(
            &cloud,
            "first",
            from_image("first"),
            Duration::from_secs(900)
        ),
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            timed_volume_within(
                &cloud,
                "blank-during",
                blank_body("blank-during"),
                Duration::from_secs(900),
            )
            .await
        }
    );
    let (first, blank_during) = (ms(first?), ms(blank_during?));
    delete_volume(&cloud, "blank-during").await?;
    let mut first_steps = vec![(
        "qemu-img convert -O raw → rbd",
        ms_of(|| {
            tool(&[
                "qemu-img",
                "convert",
                "-q",
                "-f",
                "qcow2",
                "-O",
                "raw",
                &stored,
                &ceph.qemu_uri("refbase"),
            ])
        })?,
    )];
    let refsnap = ceph.spec("refbase@base");
    first_steps.push((
        "rbd snap create",
        rbd_ms(&ceph, &["snap", "create", &refsnap])?,
    ));
    first_steps.push((
        "rbd snap protect",
        rbd_ms(&ceph, &["snap", "protect", &refsnap])?,
    ));
    first_steps.push((
        "rbd clone",
        rbd_ms(&ceph, &["clone", &refsnap, &ceph.spec("reffirst")])?,
    ));
    let first_ref: f64 = first_steps.iter().map(|(_, t)| t).sum();

    // 2. Blank volumes (one other volume, `first`, in the pool), against `rbd create`.
    let (kumo_blank, ref_blank) = blank_runs(&cloud, &ceph, runs, "blank").await?;
    // One `rbd` CLI call's fixed cost (process start, monitor session, cephx): `rbd info`.
    let info_calls = (0..runs.max(5))
        .map(|_| rbd_ms(&ceph, &["info", &base_snap_spec(&ceph, &img_id)]))
        .collect::<Result<Vec<f64>>>()?;

    // 3. Later volumes from the image: clones of its base.
    let base_snap = base_snap_spec(&ceph, &img_id);
    let (mut kumo_img, mut ref_img) = (vec![], vec![]);
    for i in 0..runs {
        let name = format!("fromimg{i}");
        kumo_img.push(kumo_run(&cloud, &name, from_image(&name)).await?);
        let out = ceph.spec(&format!("refclone{i}"));
        ref_img.push(rbd_ms(&ceph, &["clone", &base_snap, &out])?);
        ceph.rbd(&["rm", "--no-progress", &out])?;
    }

    // 4. A volume holding 256 MiB, a snapshot of it, and clones of the snapshot.
    timed_volume(
        &cloud,
        "src",
        json!({"name": "src", "size_gib": 1, "volume_type": "rbd"}),
    )
    .await?;
    let (_, src) = cloud.api("GET", "/v1/volumes/src", None).await?;
    let src_id = src["id"].as_str().context("id")?.to_string();
    tool(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0xa5 0 256M",
        &ceph.qemu_uri(&src_id),
    ])?;
    cloud
        .api_ok(
            "POST",
            "/v1/snapshots",
            Some(json!({"name": "s1", "volume": "src"})),
        )
        .await?;
    let snap = cloud
        .wait_json(
            "/v1/snapshots/s1",
            "completed",
            Duration::from_secs(120),
            Duration::from_millis(10),
            |_, s| s["state"] == "completed",
            |s| s["state"] == "error",
        )
        .await?;
    let snap_id = snap["id"].as_str().context("snapshot id")?.to_string();
    let src_snap = ceph.spec(&format!("{src_id}@{snap_id}"));
    let clone_runs = runs.min(5);
    let (mut kumo_clone, mut ref_clone) = (vec![], vec![]);
    for i in 0..clone_runs {
        let name = format!("clone{i}");
        kumo_clone.push(kumo_run(&cloud, &name, json!({"name": name, "snapshot": "s1"})).await?);
        let out = ceph.spec(&format!("refcp{i}"));
        ref_clone.push(rbd_ms(&ceph, &["cp", "--no-progress", &src_snap, &out])?);
        ceph.rbd(&["rm", "--no-progress", &out])?;
    }

    // 5. Blank volumes again, with 8 more idle volumes in the pool (each agent pass checks every one).
    for i in 0..8 {
        let name = format!("idle{i}");
        timed_volume(&cloud, &name, blank_body(&name)).await?;
    }
    let others = cloud.api_ok("GET", "/v1/volumes", None).await?["items"]
        .as_array()
        .map_or(0, Vec::len);
    let (kumo_crowd, ref_crowd) = blank_runs(&cloud, &ceph, runs, "crowd").await?;

    let mut rows = vec![
        vec![
            "case".to_string(),
            "runs".into(),
            "p50 ms".into(),
            "p95 ms".into(),
        ],
        row(
            "kumo: first volume from the 1 GiB image → available",
            &[first],
        ),
    ];
    let steps: Vec<&str> = first_steps.iter().map(|(l, _)| *l).collect();
    rows.push(row(
        &format!("reference: {}", steps.join(" + ")),
        &[first_ref],
    ));
    for (label, t) in &first_steps {
        rows.push(row(&format!("  {label}"), &[*t]));
    }
    rows.extend([
        ratio("kumo / reference", &[first], &[first_ref]),
        row(
            "kumo: blank volume requested 1 s into that import",
            &[blank_during],
        ),
        row(
            "kumo: blank 1 GiB volume → available (1 other volume)",
            &kumo_blank,
        ),
        row("rbd create --size 1024", &ref_blank),
        ratio("kumo / rbd create", &kumo_blank, &ref_blank),
        row("one rbd CLI call (rbd info)", &info_calls),
        row("kumo: later volume from the image → available", &kumo_img),
        row("rbd clone <base>@base", &ref_img),
        ratio("kumo / rbd clone", &kumo_img, &ref_img),
        row("kumo: clone of a 256 MiB snapshot → available", &kumo_clone),
        row("rbd cp <volume>@<snapshot>", &ref_clone),
        ratio("kumo / rbd cp", &kumo_clone, &ref_clone),
        row(
            &format!("kumo: blank volume, {others} other volumes in the pool"),
            &kumo_crowd,
        ),
        row("rbd create --size 1024 (same time)", &ref_crowd),
        ratio("kumo / rbd create", &kumo_crowd, &ref_crowd),
    ]);
    println!(
        "volumes --rbd: API request → `available` (polled every 2 ms) vs the rbd/qemu-img tools alone"
    );
    print!("{}", table(&rows));
    println!(
        "first volume from the image: kumo {:.0} MB/s, reference {:.0} MB/s (1 GiB of data into Ceph)",
        mb_per_s(gib, first / 1e3),
        mb_per_s(gib, first_ref / 1e3)
    );
    drop(cloud);
    drop(ceph);
    Ok(())
}

/// `runs` blank 1 GiB volumes through kumo (each deleted after), alternating with `rbd create` of
/// the same size (removed after); milliseconds.
async fn blank_runs(
    cloud: &Cloud,
    ceph: &Ceph,
    runs: usize,
    tag: &str,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut kumo, mut reference) = (vec![], vec![]);
    for i in 0..runs {
        let name = format!("{tag}{i}");
        let body = json!({"name": name, "size_gib": 1, "volume_type": "rbd"});
        kumo.push(kumo_run(cloud, &name, body).await?);
        let out = ceph.spec(&format!("ref{tag}{i}"));
        reference.push(rbd_ms(ceph, &["create", "--size", "1024", &out])?);
        ceph.rbd(&["rm", "--no-progress", &out])?;
    }
    Ok((kumo, reference))
}

/// `pool/kumo-image-<id>@base`: the protected snapshot kumo's volumes from image `<id>` are clones of.
fn base_snap_spec(ceph: &Ceph, img_id: &str) -> String {
    ceph.spec(&format!("kumo-image-{img_id}@base"))
}

/// Milliseconds `f` takes.
fn ms_of(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(ms(t0.elapsed()))
}

fn main() -> Result<()> {
    enter_netns();
    kumo_testutil::require("qemu-io", "qemu-utils");
    let mut runs = 10usize;
    let mut rbd = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a value")?.parse()?,
            "--rbd" => rbd = true,
            other => bail!("unknown argument {other} (expected --runs N, --rbd)"),
        }
    }
    if !(1..=50).contains(&runs) {
        bail!("--runs must be 1..=50 (bounded run time)");
    }
    let rt = runtime()?;
    if rbd {
        rt.block_on(until_signal(bench_rbd(runs)))
    } else {
        rt.block_on(until_signal(bench(runs)))
    }
}
