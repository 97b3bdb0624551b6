//! Rewriting a QEMU argv that kumo produced (read from `/proc/<pid>/cmdline`) into the reference
//! runs of the benchmarks: the same machine, devices, disk and MAC, with only what must differ
//! changed. Pure and unit-tested (but [`copy_run_inputs`]); every function refuses an argv it would
//! rewrite wrongly.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The reference argv: `argv` with every mention of `old_run_dir` replaced by `new_run_dir`.
/// Fails unless the pidfile and serial log moved and nothing still points into the old run dir.
pub fn raw_argv(argv: &[String], old_run_dir: &str, new_run_dir: &str) -> Result<Vec<String>> {
    if argv.is_empty() {
        bail!("empty QEMU argv");
    }
    let out: Vec<String> = argv
        .iter()
        .map(|a| a.replace(old_run_dir, new_run_dir))
        .collect();
    let pidfile = out
        .iter()
        .position(|a| a == "-pidfile")
        .and_then(|i| out.get(i + 1))
        .context("QEMU argv has no -pidfile")?;
    if !pidfile.starts_with(new_run_dir) {
        bail!("pidfile {pidfile} is not in the run dir {old_run_dir}");
    }
    if !out
        .iter()
        .any(|a| a.contains(&format!("{new_run_dir}/serial.log")))
    {
        bail!("QEMU argv has no serial log in the run dir {old_run_dir}");
    }
    if out.iter().any(|a| a.contains(old_run_dir)) {
        bail!("argv still refers to {old_run_dir}");
    }
    Ok(out)
}

/// Copy the inputs QEMU reads from a run dir (the NoCloud `seed.iso`, …: every regular file but
/// the pidfile and the serial log) into the reference's run dir, so [`raw_argv`] finds them there.
pub fn copy_run_inputs(old_run_dir: &Path, new_run_dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(old_run_dir)
        .with_context(|| format!("reading {}", old_run_dir.display()))?;
    for e in rd {
        let e = e?;
        let name = e.file_name();
        if !e.file_type()?.is_file() || name == "qemu.pid" || name == "serial.log" {
            continue;
        }
        let to = new_run_dir.join(&name);
        std::fs::copy(e.path(), &to).with_context(|| format!("copying to {}", to.display()))?;
    }
    Ok(())
}

/// Indexes of the values of `-netdev tap,…` options, with the tap each one opens (`ifname=`).
fn tap_netdevs(argv: &[String]) -> Vec<(usize, String)> {
    argv.windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == "-netdev" && w[1].starts_with("tap,"))
        .filter_map(|(i, w)| {
            w[1].split(',')
                .find_map(|kv| kv.strip_prefix("ifname="))
                .map(|t| (i + 1, t.to_string()))
        })
        .collect()
}

/// The host taps the argv's NICs open, in argv order.
pub fn tap_ifnames(argv: &[String]) -> Vec<String> {
    tap_netdevs(argv).into_iter().map(|(_, t)| t).collect()
}

/// `argv` with the tap of every `-netdev tap` swapped by `taps` (`(old, new)` pairs), so a second
/// QEMU of the same argv can run beside the first (a tap serves one QEMU). Fails if a NIC's tap has
/// no replacement or a replacement names no NIC.
pub fn retap(argv: &[String], taps: &[(String, String)]) -> Result<Vec<String>> {
    let mut out = argv.to_vec();
    let netdevs = tap_netdevs(argv);
    for (i, old) in &netdevs {
        let (_, new) = taps
            .iter()
            .find(|(o, _)| o == old)
            .with_context(|| format!("no replacement for tap {old}"))?;
        out[*i] = argv[*i]
            .split(',')
            .map(|kv| {
                if kv.starts_with("ifname=") {
                    format!("ifname={new}")
                } else {
                    kv.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(",");
    }
    if let Some((o, _)) = taps
        .iter()
        .find(|(o, _)| !netdevs.iter().any(|(_, t)| t == o))
    {
        bail!("tap {o} is not in the QEMU argv");
    }
    Ok(out)
}

/// The argv of a live migration's target: QEMU starts paused and waits for `migrate-incoming`
/// (what kumo's agent adds for a target, `VmConfig::incoming`).
pub fn incoming_argv(argv: &[String]) -> Result<Vec<String>> {
    if argv.iter().any(|a| a == "-incoming") {
        bail!("QEMU argv already has -incoming");
    }
    let mut out = argv.to_vec();
    out.extend(["-incoming".to_string(), "defer".to_string()]);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn kumo_argv() -> Vec<String> {
        v(&[
            "qemu-system-x86_64",
            "-blockdev",
            r#"{"file":{"filename":"/d/pool/instances/i-1/root.qcow2"}}"#,
            "-netdev",
            "tap,id=net0,ifname=kt1,script=no,downscript=no",
            "-device",
            "virtio-net-pci,id=dev-net0,netdev=net0,mac=02:00:00:00:00:01",
            "-chardev",
            "socket,id=serial0,path=/d/run/i-1/serial.sock,server=on,wait=off,logfile=/d/run/i-1/serial.log",
            "-chardev",
            "socket,id=qmp,path=/d/run/i-1/qmp.sock,server=on,wait=off",
            "-daemonize",
            "-pidfile",
            "/d/run/i-1/qemu.pid",
        ])
    }

    #[test]
    fn run_dir_moves_and_nothing_else_changes() {
        let argv = kumo_argv();
        let out = raw_argv(&argv, "/d/run/i-1", "/tmp/kraw1").unwrap();
        assert_eq!(out.len(), argv.len());
        assert_eq!(out[2], argv[2], "disk stays");
        assert_eq!(out[4], argv[4], "tap stays");
        assert_eq!(
            out[8],
            "socket,id=serial0,path=/tmp/kraw1/serial.sock,server=on,wait=off,logfile=/tmp/kraw1/serial.log"
        );
        assert_eq!(out[13], "/tmp/kraw1/qemu.pid");
    }

    #[test]
    fn argv_without_pidfile_is_refused() {
        let argv = v(&["qemu", "-chardev", "socket,logfile=/d/run/i-1/serial.log"]);
        assert!(raw_argv(&argv, "/d/run/i-1", "/tmp/x").is_err());
        assert!(raw_argv(&[], "/d/run/i-1", "/tmp/x").is_err());
    }

    #[test]
    fn taps_are_found_and_swapped_alone() {
        let argv = kumo_argv();
        assert_eq!(tap_ifnames(&argv), ["kt1"]);
        let out = retap(&argv, &[("kt1".into(), "kbt0".into())]).unwrap();
        assert_eq!(out[4], "tap,id=net0,ifname=kbt0,script=no,downscript=no");
        let changed: Vec<usize> = (0..argv.len()).filter(|&i| out[i] != argv[i]).collect();
        assert_eq!(changed, [4], "only the tap changes (the MAC stays)");
        assert!(retap(&argv, &[]).is_err(), "a NIC without a new tap");
        assert!(retap(&argv, &[("kt9".into(), "x".into())]).is_err());
        assert_eq!(retap(&v(&["qemu"]), &[]).unwrap(), ["qemu"]);
    }

    #[test]
    fn target_waits_for_the_stream() {
        let out = incoming_argv(&kumo_argv()).unwrap();
        assert_eq!(&out[out.len() - 2..], ["-incoming", "defer"]);
        assert!(incoming_argv(&out).is_err());
    }
}
