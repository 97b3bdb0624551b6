//! Guest-visible sequential write throughput of a volume, against `qemu-io` writing the same way into
//! a qcow2 file made the way kumo makes a volume, in the same run.
//!
//! kumo side, per run: a fresh 1 GiB `local` volume (`POST /v1/volumes`), hot-plugged into a running
//! tiny guest (`nano`: 1 vCPU, 256 MiB), where busybox writes it from the serial console:
//! `dd if=/dev/zero of=/dev/vdX bs=1M count=256 oflag=direct conv=fsync` — 256 synchronous 1 MiB
//! O_DIRECT writes (no guest page cache) and a final flush — twice: pass 1 allocates the qcow2
//! clusters, pass 2 overwrites them. Each pass is timed by the guest's clock (`/proc/uptime` before
//! and after, 10 ms resolution; the ratio uses it) and, as a cross-check, by the host, which sees the
//! markers the guest prints around `dd` appear in the serial log (polled every 5 ms).
//!
//! Reference, per run: `qemu-img create -f qcow2 F 1G` (as kumo creates a volume) on the same
//! filesystem, then `qemu-io -f qcow2 -t writeback` with 256 `write -P 0 <off> 1M` commands and a
//! `flush` — the same requests, one at a time, with kumo's cache mode (host page cache, flushes
//! honoured: `cache.direct=off`, `cache.no-flush=off`; qemu-io's own default is writethrough, which
//! flushes after every write). Also, for information: one `write -P 0 0 256M` + `flush`, and the 1 MiB
//! writes with `-t none` (O_DIRECT on the host). Each is timed around the qemu-io process.
//!
//! Under TCG the guest side is CPU-bound emulation (the guest's own `dd`, its virtio-blk driver and the
//! emulated device): the guest number is recorded, not judged.
//!
//! Usage (root): `cargo build --release -p kumo -p kumo-bench && cargo run --release -p kumo-bench --bin guestio`
//! (`--runs N`, default 3, at most 8 volumes on one instance; `--mib N`, default 256).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kumo_bench::{
    Cloud, enter_netns, line_after, mb_per_s, percentile, runtime, table, timed_tool, tool,
    until_signal,
};
use serde_json::json;

const MIB: u64 = 1 << 20;

/// The shell line that finds the volume's disk by its serial and writes it twice, printing markers the
/// host waits for. `G""IO` keeps the echo of the typed line from matching the markers.
fn guest_script(tag: &str, serial: &str, mib: u64) -> String {
    format!(
        "D=; for n in $(seq 40); do for d in /sys/block/vd*; do \
         [ \"$(cat $d/serial 2>/dev/null)\" = \"{serial}\" ] && D=${{d##*/}}; done; \
         [ -n \"$D\" ] && break; sleep 0.5; done; echo G\"\"IO-DEV-{tag} $D; sleep 2; \
         if [ -n \"$D\" ]; then for p in 1 2; do read a b </proc/uptime; echo G\"\"IO-START-{tag}-$p $a; \
         dd if=/dev/zero of=/dev/$D bs=1M count={mib} oflag=direct conv=fsync; r=$?; \
         read c b </proc/uptime; echo G\"\"IO-END-{tag}-$p $a $c $r; done; fi"
    )
}

/// Guest-clock seconds from an END marker's `<t0> <t1> <rc>` (pure).
fn parse_end(rest: &str) -> Result<f64> {
    let f: Vec<&str> = rest.split_whitespace().collect();
    let [t0, t1, rc] = f.as_slice() else {
        bail!("odd end marker {rest:?}");
    };
    if *rc != "0" {
        bail!("dd in the guest exited with {rc}");
    }
    Ok(t1.parse::<f64>()? - t0.parse::<f64>()?)
}

/// Poll the serial log every 5 ms until a line starts with `needle`; returns when, and the rest.
async fn wait_marker(
    log: &std::path::Path,
    needle: &str,
    timeout: Duration,
) -> Result<(Instant, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = line_after(&text, needle) {
            return Ok((Instant::now(), rest.to_string()));
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            bail!(
                "no {needle} in the serial log after {timeout:?}; tail (newest first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Default)]
struct Samples {
    host: [Vec<f64>; 2],
    guest: [Vec<f64>; 2],
    writeback: [Vec<f64>; 2],
    one_write: Vec<f64>,
    direct: [Vec<f64>; 2],
}

/// One kumo run: a fresh volume, attached, written twice by the guest.
async fn kumo_run(cloud: &Cloud, inst: &str, i: usize, mib: u64, s: &mut Samples) -> Result<()> {
    let name = format!("io{i}");
    let v = cloud
        .api_ok(
            "POST",
            "/v1/volumes",
            Some(json!({"name": name, "size_gib": 1})),
        )
        .await?;
    let vol_id = v["id"].as_str().context("volume id")?.to_string();
    let path = format!("/v1/volumes/{name}");
    let (secs, every) = (Duration::from_secs(120), Duration::from_millis(50));
    cloud
        .wait_json(
            &path,
            "available",
            secs,
            every,
            |_, v| v["state"] == "available",
            |v| v["state"] == "error",
        )
        .await?;
    cloud
        .api_ok(
            "POST",
            &format!("{path}/attach"),
            Some(json!({"instance": "g", "delete_on_termination": true})),
        )
        .await?;
    cloud
        .wait_json(
            &path,
            "plugged into g",
            secs,
            every,
            |_, v| v["plugged_into"] == inst,
            |v| v["state"] == "error",
        )
        .await?;
    let tag = i.to_string();
    let serial = &vol_id[..vol_id.len().min(20)];
    cloud
        .console_send("g", &guest_script(&tag, serial, mib))
        .await?;
    let log = cloud.serial_log_path(inst);
    let (_, dev) = wait_marker(&log, &format!("GIO-DEV-{tag}"), Duration::from_secs(60)).await?;
    if dev.is_empty() {
        bail!("the guest did not find a disk with serial {serial}");
    }
    for p in 0..2 {
        let timeout = Duration::from_secs(900);
        let (t0, _) = wait_marker(&log, &format!("GIO-START-{tag}-{}", p + 1), timeout).await?;
        let (t1, rest) = wait_marker(&log, &format!("GIO-END-{tag}-{}", p + 1), timeout).await?;
        s.host[p].push((t1 - t0).as_secs_f64());
        s.guest[p].push(parse_end(&rest)?);
    }
    eprintln!(
        "run {}: guest {dev}: pass 1 {:.2} s, pass 2 {:.2} s (host-observed)",
        i + 1,
        s.host[0].last().copied().unwrap_or(f64::NAN),
        s.host[1].last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// `qemu-io -f qcow2 -t <cache>` writing `mib` MiB as 1 MiB writes (or one write) and a flush.
fn qemu_io(file: &str, cache: &str, mib: u64, one_write: bool) -> Result<f64> {
    let mut args: Vec<String> = ["qemu-io", "-f", "qcow2", "-t", cache]
        .iter()
        .map(|a| a.to_string())
        .collect();
    if one_write {
        args.extend(["-c".into(), format!("write -P 0 0 {mib}M")]);
    } else {
        for k in 0..mib {
            args.extend(["-c".into(), format!("write -P 0 {k}M 1M")]);
        }
    }
    args.extend(["-c".into(), "flush".into(), file.into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    timed_tool(&a)
}

/// One reference run: fresh files made like kumo's volumes, written by qemu-io.
fn reference_run(work: &std::path::Path, mib: u64, s: &mut Samples) -> Result<()> {
    let f = work.join("ref.qcow2").to_string_lossy().into_owned();
    let fresh = || tool(&["qemu-img", "create", "-q", "-f", "qcow2", &f, "1G"]);
    fresh()?;
    for p in 0..2 {
        s.writeback[p].push(qemu_io(&f, "writeback", mib, false)?);
    }
    fresh()?;
    s.one_write.push(qemu_io(&f, "writeback", mib, true)?);
    fresh()?;
    for p in 0..2 {
        s.direct[p].push(qemu_io(&f, "none", mib, false)?);
    }
    std::fs::remove_file(&f)?;
    Ok(())
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
        format!("{:.1}", mb_per_s(bytes, p50(v))),
    ]
}

fn ratio(case: &str, kumo: &[f64], reference: &[f64]) -> Vec<String> {
    let r = p50(reference) / p50(kumo);
    vec![
        case.to_string(),
        String::new(),
        String::new(),
        String::new(),
        format!("{r:.3}x"),
    ]
}

async fn bench(runs: usize, mib: u64) -> Result<()> {
    let cloud = Cloud::start().await?;
    cloud.import_tiny().await?;
    let inst = cloud.run_instance("g", true).await?;
    let log = cloud.serial_log_path(&inst);
    kumo_bench::wait_file_contains(
        &log,
        "KUMO-READY",
        Duration::from_secs(300),
        Duration::from_millis(50),
    )
    .await?;
    let work = cloud.data_dir().join("bench");
    std::fs::create_dir_all(&work)?;

    let mut s = Samples::default();
    for i in 0..runs {
        kumo_run(&cloud, &inst, i, mib, &mut s).await?;
        reference_run(&work, mib, &mut s)?;
    }
    cloud.delete_instance(&inst).await?;

    let bytes = mib * MIB;
    let rows = vec![
        vec![
            "case".to_string(),
            "runs".into(),
            "p50 s".into(),
            "p95 s".into(),
            "MB/s".into(),
        ],
        row(
            &format!("guest dd {mib}×1M direct+fsync, pass 1 (allocating), guest clock"),
            &s.guest[0],
            bytes,
        ),
        row("  same, host-observed (serial markers)", &s.host[0], bytes),
        row(
            "guest dd, pass 2 (overwrite), guest clock",
            &s.guest[1],
            bytes,
        ),
        row("  same, host-observed", &s.host[1], bytes),
        row(
            &format!("qemu-io -t writeback {mib}×write 1M + flush, pass 1"),
            &s.writeback[0],
            bytes,
        ),
        row(
            "qemu-io -t writeback, pass 2 (overwrite)",
            &s.writeback[1],
            bytes,
        ),
        row(
            &format!("qemu-io -t writeback write {mib}M + flush (one request)"),
            &s.one_write,
            bytes,
        ),
        row(
            &format!("qemu-io -t none {mib}×write 1M + flush, pass 1"),
            &s.direct[0],
            bytes,
        ),
        row("qemu-io -t none, pass 2 (overwrite)", &s.direct[1], bytes),
        ratio(
            "guest ÷ qemu-io writeback (MB/s), pass 1",
            &s.guest[0],
            &s.writeback[0],
        ),
        ratio(
            "guest ÷ qemu-io writeback (MB/s), pass 2",
            &s.guest[1],
            &s.writeback[1],
        ),
    ];
    println!(
        "guestio: sequential writes to a fresh 1 GiB volume, guest (TCG) vs qemu-io on a like file"
    );
    print!("{}", table(&rows));
    Ok(())
}

fn main() -> Result<()> {
    enter_netns();
    kumo_testutil::require("qemu-io", "qemu-utils");
    let (mut runs, mut mib) = (3usize, 256u64);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a value")?.parse()?,
            "--mib" => mib = it.next().context("--mib needs a value")?.parse()?,
            other => bail!("unknown argument {other} (expected --runs N, --mib N)"),
        }
    }
    if !(1..=8).contains(&runs) {
        bail!("--runs must be 1..=8 (one volume per run, 8 per instance)");
    }
    if !(1..=1000).contains(&mib) {
        bail!("--mib must be 1..=1000 (the volume is 1 GiB)");
    }
    runtime()?.block_on(until_signal(bench(runs, mib)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn end_markers_give_guest_seconds() {
        assert!((parse_end("10.50 14.75 0").unwrap() - 4.25).abs() < 1e-9);
        assert!(parse_end("10.50 14.75 1").is_err());
        assert!(parse_end("10.50").is_err());
    }

    #[test]
    fn script_markers_do_not_match_their_echo() {
        let s = guest_script("3", "vol-0123456789abcdef", 256);
        assert!(s.contains("count=256 oflag=direct conv=fsync"), "{s}");
        assert!(!s.contains("GIO-END-3"), "{s}");
        assert!(s.contains("= \"vol-0123456789abcdef\""), "{s}");
    }
}
