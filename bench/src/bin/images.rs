//! Image import throughput: `POST /v1/images` of a 1 GiB image until it is `available`, against the
//! host tools doing the same work on the same file, in the same run.
//!
//! What kumo does per source (crates/kumo-agent/src/storage/import.rs, crates/kumo-server/src/app/image):
//! - `disk_path`, qcow2 or raw: `qemu-img info` (format detection), then one pass that copies the file
//!   into the pool while hashing it, and an fsync. Reference: `qemu-img info`, `cp`, `sync <copy>`
//!   (fsync), `openssl dgst -sha256 <copy>` (SHA-NI where the CPU has it, like kumo's `sha2`; coreutils'
//!   `sha256sum` 9.1 does not use it and is ~5× slower here, so it would flatter kumo).
//! - `disk_path` with `sha256`: the same, after a first pass that hashes the source to check it.
//!   Reference: the same steps (one hash is enough to check and record it).
//! - `disk_path`, vmdk: `qemu-img info`, `qemu-img convert -O qcow2`, `sha256` of the result. Reference:
//!   the same three tools.
//! - `url` (qcow2, with `sha256`), answered 202 and imported in the background: the server streams the
//!   body into the pool while hashing it, fsyncs, runs `qemu-img info` and moves the file in place.
//!   Reference: `curl -o`, `sync <file>`, `openssl dgst -sha256`, `qemu-img info`. Both download from the same
//!   loopback HTTP server inside this process (sendfile from the page cache).
//!
//! Sources hold 1 GiB of non-zero data (pattern 0x5a) and are read once before the runs, so both sides
//! read them from the page cache. Runs alternate kumo / reference; after each the copy is removed
//! (`DELETE /v1/images/{name}`, `rm`), untimed. MB/s are 10^6 bytes per second of the source's size.
//!
//! Usage (root): `cargo build --release -p kumo -p kumo-bench && cargo run --release -p kumo-bench --bin images`
//! (`--runs N`, default 3; `--warmup N` discarded kumo/reference pairs of the first case first, default 1).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kumo_bench::{
    Cloud, enter_netns, mb_per_s, percentile, runtime, table, timed_tool, tool, until_signal,
};
use serde_json::{Value, json};

/// A static file server on 127.0.0.1 for the URL imports: `GET /<name>` answers the file `<dir>/<name>`
/// with its length, copied with `std::io::copy` (sendfile(2)). One thread per connection.
struct FileServer {
    port: u16,
}

impl FileServer {
    fn start(dir: PathBuf) -> Result<FileServer> {
        let l = TcpListener::bind("127.0.0.1:0").context("binding the file server")?;
        let port = l.local_addr()?.port();
        std::thread::Builder::new()
            .name("file-server".into())
            .spawn(move || {
                for conn in l.incoming().flatten() {
                    let dir = dir.clone();
                    let _ = std::thread::Builder::new()
                        .name("file-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(conn, &dir) {
                                eprintln!("file server: {e:#}");
                            }
                        });
                }
            })?;
        Ok(FileServer { port })
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

/// Answer one request (HTTP/1.1, `Connection: close`).
fn serve(conn: TcpStream, dir: &Path) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut out = conn;
    let name = target.trim_start_matches('/');
    let file = (!name.contains('/') && !name.is_empty())
        .then(|| std::fs::File::open(dir.join(name)).ok())
        .flatten();
    let Some(mut file) = file.filter(|_| method == "GET" || method == "HEAD") else {
        out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let len = file.metadata()?.len();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    )?;
    if method == "GET" {
        std::io::copy(&mut file, &mut out)?;
    }
    Ok(())
}

/// How kumo is asked to import, and the reference steps (`SRC`, `DST` and `URL` are substituted).
struct Case {
    label: &'static str,
    src: PathBuf,
    /// The request body, given the image name.
    body: Box<dyn Fn(&str) -> Value>,
    /// Imported in the background: poll until `available`.
    background: bool,
    refs: Vec<(&'static str, Vec<&'static str>)>,
}

/// Timings of one case, in seconds.
#[derive(Default)]
struct Timings {
    kumo: Vec<f64>,
    /// URL imports: until the server reported `storing` (the download is done).
    kumo_download: Vec<f64>,
    steps: Vec<Vec<f64>>,
    reference: Vec<f64>,
}

/// sha256 of a file (hex), with `openssl dgst -r` (`<hex> *<path>`).
fn sha256_of(p: &Path) -> Result<String> {
    let out = tool(&["openssl", "dgst", "-sha256", "-r", &p.to_string_lossy()])?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .context("openssl dgst printed nothing")
}

/// One kumo import: seconds until `available` (and, in the background, until `storing`).
async fn kumo_import(cloud: &Cloud, case: &Case, name: &str) -> Result<(f64, Option<f64>)> {
    let path = format!("/v1/images/{name}");
    let t0 = Instant::now();
    let v = cloud
        .api_ok_within(
            "POST",
            "/v1/images",
            Some((case.body)(name)),
            Duration::from_secs(600),
        )
        .await?;
    if !case.background {
        if v["state"] != "available" {
            bail!("{name}: answered {v}");
        }
        return Ok((t0.elapsed().as_secs_f64(), None));
    }
    let mut downloaded = None;
    loop {
        let (_, v) = cloud.api("GET", &path, None).await?;
        if downloaded.is_none() && (v["status_message"] == "storing" || v["state"] == "available") {
            downloaded = Some(t0.elapsed().as_secs_f64());
        }
        if v["state"] == "available" {
            return Ok((t0.elapsed().as_secs_f64(), downloaded));
        }
        if v["state"] == "error" || t0.elapsed() > Duration::from_secs(600) {
            bail!("{name}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One reference run: each step timed; the copy is removed after.
fn reference(case: &Case, dst: &Path, url: &str) -> Result<Vec<f64>> {
    let (src, dst_s) = (case.src.to_string_lossy(), dst.to_string_lossy());
    let mut took = Vec::new();
    for (_, args) in &case.refs {
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "SRC" => src.as_ref(),
                "DST" => dst_s.as_ref(),
                "URL" => url,
                other => other,
            })
            .collect();
        took.push(timed_tool(&args)?);
    }
    std::fs::remove_file(dst).with_context(|| format!("removing {}", dst.display()))?;
    Ok(took)
}

fn p50(v: &[f64]) -> f64 {
    percentile(v, 50.0).unwrap_or(f64::NAN)
}

fn row(case: &str, v: &[f64], bytes: u64) -> Vec<String> {
    vec![
        case.to_string(),
        v.len().to_string(),
        format!("{:.2}", p50(v)),
        format!("{:.2}", percentile(v, 95.0).unwrap_or(f64::NAN)),
        format!("{:.0}", mb_per_s(bytes, p50(v))),
    ]
}

async fn bench(runs: usize, warmup: usize) -> Result<()> {
    let cloud = Cloud::start().await?;
    let work = cloud.data_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    let w = |n: &str| work.join(n);
    let s = |p: &Path| p.to_string_lossy().into_owned();

    // 1 GiB of non-zero data as raw, qcow2 and vmdk.
    let (raw, qcow2, vmdk) = (w("src.raw"), w("src.qcow2"), w("src.vmdk"));
    tool(&["qemu-img", "create", "-q", "-f", "raw", &s(&raw), "1G"])?;
    tool(&["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1G", &s(&raw)])?;
    for (p, fmt) in [(&qcow2, "qcow2"), (&vmdk, "vmdk")] {
        tool(&[
            "qemu-img",
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            fmt,
            &s(&raw),
            &s(p),
        ])?;
    }
    // Written out now, so that their writeback does not land in the first runs; hashing them then
    // reads them into the page cache for both sides.
    tool(&["sync", &s(&raw), &s(&qcow2), &s(&vmdk)])?;
    let raw_sha = sha256_of(&raw)?;
    let qcow2_sha = sha256_of(&qcow2)?;
    sha256_of(&vmdk)?;
    let server = FileServer::start(work.clone())?;
    let url = server.url("src.qcow2");

    let info: (&str, Vec<&str>) = ("qemu-img info", vec!["qemu-img", "info", "--output=json"]);
    let with = |mut v: Vec<&'static str>, arg: &'static str| {
        v.push(arg);
        v
    };
    let copy_steps = || {
        vec![
            (info.0, with(info.1.clone(), "SRC")),
            (
                "cp --reflink=never",
                vec!["cp", "--reflink=never", "SRC", "DST"],
            ),
            ("sync <copy> (fsync)", vec!["sync", "DST"]),
            (
                "openssl dgst -sha256 <copy>",
                vec!["openssl", "dgst", "-sha256", "DST"],
            ),
        ]
    };
    let (raw_p, qcow2_p, vmdk_p) = (s(&raw), s(&qcow2), s(&vmdk));
    let url2 = url.clone();
    let cases = [
        Case {
            label: "raw, disk_path",
            src: raw.clone(),
            body: Box::new(move |n| json!({"name": n, "disk_path": raw_p})),
            background: false,
            refs: copy_steps(),
        },
        Case {
            label: "qcow2, disk_path",
            src: qcow2.clone(),
            body: Box::new(move |n| json!({"name": n, "disk_path": qcow2_p})),
            background: false,
            refs: copy_steps(),
        },
        Case {
            label: "raw, disk_path + sha256",
            src: raw.clone(),
            body: {
                let (p, sha) = (s(&raw), raw_sha.clone());
                Box::new(move |n| json!({"name": n, "disk_path": p, "sha256": sha}))
            },
            background: false,
            refs: copy_steps(),
        },
        Case {
            label: "vmdk, disk_path (converted to qcow2)",
            src: vmdk.clone(),
            body: Box::new(move |n| json!({"name": n, "disk_path": vmdk_p})),
            background: false,
            refs: vec![
                (info.0, with(info.1.clone(), "SRC")),
                (
                    "qemu-img convert -O qcow2",
                    vec![
                        "qemu-img", "convert", "-q", "-f", "vmdk", "-O", "qcow2", "SRC", "DST",
                    ],
                ),
                (
                    "openssl dgst -sha256 <copy>",
                    vec!["openssl", "dgst", "-sha256", "DST"],
                ),
            ],
        },
        Case {
            label: "qcow2, url + sha256 (loopback HTTP)",
            src: qcow2.clone(),
            body: Box::new(move |n| json!({"name": n, "url": url2, "sha256": qcow2_sha})),
            background: true,
            refs: vec![
                ("curl -o", vec!["curl", "-sSf", "-o", "DST", "URL"]),
                ("sync <file> (fsync)", vec!["sync", "DST"]),
                (
                    "openssl dgst -sha256 <file>",
                    vec!["openssl", "dgst", "-sha256", "DST"],
                ),
                (info.0, with(info.1.clone(), "DST")),
            ],
        },
    ];

    // Discarded pairs first: the first import of a run pays for things later ones do not (the
    // server's first large write and fsync, allocating disk space).
    for i in 0..warmup {
        let name = format!("warmup{i}");
        kumo_import(&cloud, &cases[0], &name).await?;
        cloud
            .delete_and_wait(&format!("/v1/images/{name}"), Duration::from_secs(60))
            .await?;
        reference(&cases[0], &w(&format!("warmup{i}")), &url)?;
    }
    let mut all: Vec<Timings> = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let mut t = Timings {
            steps: vec![Vec::new(); case.refs.len()],
            ..Default::default()
        };
        for i in 0..runs {
            let name = format!("img{ci}-{i}");
            let (took, downloaded) = kumo_import(&cloud, case, &name).await?;
            t.kumo.push(took);
            t.kumo_download.extend(downloaded);
            cloud
                .delete_and_wait(&format!("/v1/images/{name}"), Duration::from_secs(60))
                .await?;
            let steps = reference(case, &w(&format!("ref{ci}-{i}")), &url)?;
            t.reference.push(steps.iter().sum());
            for (k, d) in steps.into_iter().enumerate() {
                t.steps[k].push(d);
            }
            eprintln!(
                "{}: run {}/{runs}: kumo {:.2} s, reference {:.2} s",
                case.label,
                i + 1,
                took,
                t.reference.last().copied().unwrap_or(f64::NAN)
            );
        }
        all.push(t);
    }

    let mut rows = vec![vec![
        "case (1 GiB of data)".to_string(),
        "runs".into(),
        "p50 s".into(),
        "p95 s".into(),
        "MB/s".into(),
    ]];
    for (case, t) in cases.iter().zip(&all) {
        let bytes = std::fs::metadata(&case.src)?.len();
        rows.push(vec![format!("{} ({} MB)", case.label, bytes / 1_000_000)]);
        rows.push(row("  kumo: POST → available", &t.kumo, bytes));
        if !t.kumo_download.is_empty() {
            rows.push(row("    of which until `storing`", &t.kumo_download, bytes));
        }
        let steps: Vec<&str> = case.refs.iter().map(|(l, _)| *l).collect();
        rows.push(row(
            &format!("  reference: {}", steps.join(" + ")),
            &t.reference,
            bytes,
        ));
        for ((label, _), v) in case.refs.iter().zip(&t.steps) {
            rows.push(row(&format!("    {label}"), v, bytes));
        }
        rows.push(vec![
            "  kumo ÷ reference (MB/s at p50)".into(),
            String::new(),
            String::new(),
            String::new(),
            format!("{:.2}x", p50(&t.reference) / p50(&t.kumo)),
        ]);
    }
    println!("images: import through the API → `available` vs the host tools alone, same files");
    print!("{}", table(&rows));
    Ok(())
}

fn main() -> Result<()> {
    enter_netns();
    kumo_testutil::require("qemu-io", "qemu-utils");
    kumo_testutil::require("curl", "curl");
    kumo_testutil::require("openssl", "openssl");
    let (mut runs, mut warmup) = (3usize, 1usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a value")?.parse()?,
            "--warmup" => warmup = it.next().context("--warmup needs a value")?.parse()?,
            other => bail!("unknown argument {other} (expected --runs N, --warmup N)"),
        }
    }
    if !(1..=20).contains(&runs) || warmup > 5 {
        bail!("--runs must be 1..=20 and --warmup 0..=5 (bounded run time)");
    }
    runtime()?.block_on(until_signal(bench(runs, warmup)))
}
