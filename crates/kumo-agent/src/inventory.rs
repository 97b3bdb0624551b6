//! Host inventory and the KVM probe.
//!
//! `/dev/kvm` can exist and still be unusable (nested guests hang on these machines), so whether KVM
//! works is decided by a real **probe boot** with a timeout: a 512-byte boot sector ([`PROBE_BOOT_SECTOR`])
//! writes to QEMU's `isa-debug-exit` port, which makes QEMU exit with a known code
//! ([`PROBE_EXIT_CODE`]). Exit with that code in time → the accelerator works; timeout → the probe QEMU
//! (a child of ours) is killed by pid and the accelerator is declared unusable. The same probe under
//! TCG checks the QEMU install itself.
//!
//! The result is cached in `<data_dir>/kvm-probe.json` together with the kernel release, the QEMU
//! version and whether `/dev/kvm` existed; any change of those re-probes ([`cache_valid`]).
//!
//! Everything here is blocking (it runs processes and waits up to the probe timeouts): call it from
//! `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kumo_types::HostInventory;
use serde::{Deserialize, Serialize};

use crate::runtime::qemu::{Accel, QEMU_BINARY};

/// How long a KVM probe boot may take.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TCG sanity probe may take (emulated firmware is slower, and the host may be busy).
pub const TCG_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Value the boot sector writes to the debug-exit port.
const PROBE_VALUE: u8 = 0x21;
/// QEMU's exit status for that value: `(value << 1) | 1`.
pub const PROBE_EXIT_CODE: i32 = ((PROBE_VALUE as i32) << 1) | 1;
/// The cache file's name in the data directory.
pub const PROBE_CACHE_FILE: &str = "kvm-probe.json";

/// A boot sector: `mov al,0x21; out 0xf4,al; hlt; jmp hlt`, zero padding, `0x55 0xAA` signature.
pub const PROBE_BOOT_SECTOR: [u8; 512] = {
    let mut s = [0u8; 512];
    let code = [0xB0, PROBE_VALUE, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD];
    let mut i = 0;
    while i < code.len() {
        s[i] = code[i];
        i += 1;
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    s
};

/// The outcome of one probe boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    pub usable: bool,
    /// Human-readable reason, e.g. "probe boot under KVM did not finish in 5s".
    pub detail: String,
}

/// The cached probe results and what they were made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub kernel: String,
    pub qemu_version: String,
    pub dev_kvm: bool,
    pub kvm: ProbeOutcome,
    pub tcg: ProbeOutcome,
}

impl ProbeRecord {
    /// The accelerator instances on this host should use.
    pub fn accel(&self) -> Accel {
        if self.kvm.usable { Accel::Kvm } else { Accel::Tcg }
    }
}

/// The argv (without binary) of a probe boot of the boot sector image at `image`.
pub fn probe_argv(accel: Accel, image: &Path) -> Vec<String> {
    let accel = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    [
        "-machine",
        "pc",
        "-accel",
        accel,
        "-m",
        "16M",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("file={},format=raw,if=ide,index=0,readonly=on", image.to_string_lossy().replace(',', ",,"))])
    .collect()
}

/// Interpret how a probe QEMU ended (pure). `code` is its exit code, `None` if it timed out.
pub fn judge_probe(accel: Accel, code: Option<i32>, timeout: Duration, stderr: &str) -> ProbeOutcome {
    let name = match accel {
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG",
    };
    match code {
        Some(c) if c == PROBE_EXIT_CODE => ProbeOutcome { usable: true, detail: format!("probe boot under {name} ok") },
        Some(c) => ProbeOutcome {
            usable: false,
            detail: format!("probe boot under {name} exited with code {c}: {}", stderr.trim()),
        },
        None => ProbeOutcome {
            usable: false,
            detail: format!("probe boot under {name} did not finish in {}s", timeout.as_secs()),
        },
    }
}

/// Boot the probe sector under `accel` with `qemu`, killing it after `timeout`. `work_dir` holds the
/// temporary boot image.
pub fn probe(qemu: &Path, accel: Accel, timeout: Duration, work_dir: &Path) -> ProbeOutcome {
    if accel == Accel::Kvm && !Path::new("/dev/kvm").exists() {
        return ProbeOutcome { usable: false, detail: "/dev/kvm missing".into() };
    }
    let image = work_dir.join(format!(".probe-{}-{}.img", accel.as_str(), std::process::id()));
    let res = run_probe(qemu, accel, timeout, &image);
    let _ = std::fs::remove_file(&image);
    match res {
        Ok(o) => o,
        Err(e) => ProbeOutcome { usable: false, detail: format!("probe boot under {} failed: {e}", accel.as_str()) },
    }
}

fn run_probe(qemu: &Path, accel: Accel, timeout: Duration, image: &Path) -> std::io::Result<ProbeOutcome> {
    std::fs::write(image, PROBE_BOOT_SECTOR)?;
    let mut child = Command::new(qemu)
        .args(probe_argv(accel, image))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st.code().unwrap_or(-1));
        }
        if start.elapsed() >= timeout {
            // Our own child, killed by its pid and reaped.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Ok(judge_probe(accel, code, timeout, &stderr))
}

/// True if a cached record still applies to this host (pure).
pub fn cache_valid(rec: &ProbeRecord, kernel: &str, qemu_version: &str, dev_kvm: bool) -> bool {
    rec.kernel == kernel && rec.qemu_version == qemu_version && rec.dev_kvm == dev_kvm
}

/// The probe results for this host: from `<data_dir>/kvm-probe.json` if still valid, else probed now
/// (KVM and TCG) and written back.
pub fn probe_cached(data_dir: &Path, kernel: &str, qemu_version: &str) -> ProbeRecord {
    let path = data_dir.join(PROBE_CACHE_FILE);
    let dev_kvm = Path::new("/dev/kvm").exists();
    let cached = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<ProbeRecord>(&b).ok());
    if let Some(rec) = cached.filter(|r| cache_valid(r, kernel, qemu_version, dev_kvm)) {
        return rec;
    }
    let qemu = PathBuf::from(QEMU_BINARY);
    let kvm = probe(&qemu, Accel::Kvm, KVM_PROBE_TIMEOUT, data_dir);
    let tcg = probe(&qemu, Accel::Tcg, TCG_PROBE_TIMEOUT, data_dir);
    if !kvm.usable {
        tracing::warn!(detail = %kvm.detail, "KVM is not usable: instances run under TCG (slow software emulation)");
    }
    if !tcg.usable {
        tracing::error!(detail = %tcg.detail, "QEMU cannot boot even under TCG: check the qemu-system-x86 install");
    }
    let rec = ProbeRecord { kernel: kernel.into(), qemu_version: qemu_version.into(), dev_kvm, kvm, tcg };
    if let Err(e) = write_atomic(&path, &rec) {
        tracing::warn!(error = %e, path = %path.display(), "cannot cache the KVM probe result");
    }
    rec
}

fn write_atomic(path: &Path, rec: &ProbeRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// `MemTotal` of `/proc/meminfo` in MiB (pure).
pub fn parse_meminfo_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The version from `qemu-system-x86_64 --version` output (pure): `QEMU emulator version 7.2.22 (…)`
/// → `7.2.22`.
pub fn parse_qemu_version(out: &str) -> Option<String> {
    let first = out.lines().next()?;
    let rest = first.split("version").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Installed QEMU version, or an explanation of why it is unknown.
pub fn qemu_version() -> String {
    match Command::new(QEMU_BINARY).arg("--version").output() {
        Ok(o) if o.status.success() => parse_qemu_version(&String::from_utf8_lossy(&o.stdout))
            .unwrap_or_else(|| "unknown".into()),
        Ok(o) => format!("unknown ({QEMU_BINARY} --version exited {})", o.status),
        Err(e) => format!("missing ({QEMU_BINARY}: {e}; install qemu-system-x86)"),
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Kernel release (`uname -r`).
pub fn kernel_release() -> String {
    read_trim("/proc/sys/kernel/osrelease")
}

/// (free, total) bytes of the filesystem holding `dir`.
pub fn disk_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value and the kernel fills it in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer for the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// Everything the agent reports about its host. Runs the KVM probe unless the cache is valid.
pub fn collect(data_dir: &Path) -> HostInventory {
    let kernel = kernel_release();
    let qemu_version = qemu_version();
    let (disk_free_bytes, disk_total_bytes) = disk_space(data_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, dir = %data_dir.display(), "statvfs failed");
        (0, 0)
    });
    let probe = probe_cached(data_dir, &kernel, &qemu_version);
    let mut kvm_probe = probe.kvm.detail.clone();
    if !probe.tcg.usable {
        kvm_probe.push_str(&format!("; TCG sanity probe failed too: {}", probe.tcg.detail));
    }
    HostInventory {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        cpus: online_cpus(),
        memory_mib: parse_meminfo_mib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()).unwrap_or(0),
        disk_free_bytes,
        disk_total_bytes,
        qemu_version,
        kernel,
        kvm_usable: probe.kvm.usable,
        kvm_probe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_shape() {
        assert_eq!(&PROBE_BOOT_SECTOR[510..], &[0x55, 0xAA]);
        assert_eq!(PROBE_BOOT_SECTOR[1], 0x21);
        assert_eq!(PROBE_EXIT_CODE, 0x43);
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_meminfo_mib("MemTotal:        8167848 kB\nMemFree: 1 kB\n"), Some(7976));
        assert_eq!(parse_meminfo_mib("MemFree: 1 kB\n"), None);
        let v = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022";
        assert_eq!(parse_qemu_version(v).as_deref(), Some("7.2.22"));
        assert_eq!(parse_qemu_version(""), None);
    }

    #[test]
    fn judging() {
        let t = Duration::from_secs(5);
        assert!(judge_probe(Accel::Kvm, Some(PROBE_EXIT_CODE), t, "").usable);
        let bad = judge_probe(Accel::Kvm, Some(1), t, "Could not access KVM kernel module\n");
        assert!(!bad.usable && bad.detail.contains("Could not access KVM"));
        let hung = judge_probe(Accel::Kvm, None, t, "");
        assert_eq!(hung.detail, "probe boot under KVM did not finish in 5s");
    }

    #[test]
    fn cache_is_invalidated_by_upgrades() {
        let ok = ProbeOutcome { usable: true, detail: String::new() };
        let rec = ProbeRecord { kernel: "6.1".into(), qemu_version: "7.2.22".into(), dev_kvm: true, kvm: ok.clone(), tcg: ok };
        assert!(cache_valid(&rec, "6.1", "7.2.22", true));
        assert!(!cache_valid(&rec, "6.2", "7.2.22", true));
        assert!(!cache_valid(&rec, "6.1", "8.0.0", true));
        assert!(!cache_valid(&rec, "6.1", "7.2.22", false));
        assert_eq!(rec.accel(), Accel::Kvm);
    }
}
