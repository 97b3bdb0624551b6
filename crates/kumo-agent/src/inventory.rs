//! Host inventory and the KVM probe.
//!
//! `/dev/kvm` can exist and still be unusable (nested guests hang on these machines), so whether KVM
//! works is decided by a real **probe boot** with a timeout: a 512-byte boot sector ([`PROBE_BOOT_SECTOR`])
//! enters long mode, runs a short compute loop (a broken nested KVM reaches long mode but then crawls)
//! and writes to QEMU's `isa-debug-exit` port, which makes QEMU exit with a known code
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
/// Size of the probe disk image (sparse).
const PROBE_IMAGE_BYTES: u64 = 1 << 20;
/// The cache file's name in the data directory.
pub const PROBE_CACHE_FILE: &str = "kvm-probe.json";

/// The probe program (150 bytes): real mode → long mode with a 2 MiB identity page, then a loop of
/// 2^27 iterations, then `out 0xf4, 0x21` (isa-debug-exit). Reaching long mode alone is not enough:
/// on these machines nested KVM gets there and then executes guest code a thousand times slower than
/// TCG (a Linux kernel needs minutes to decompress itself), so the probe must also compute. The loop
/// takes well under a second natively or under TCG.
///
/// Assembled with `as --32` + `objcopy -O binary` from:
/// ```text
/// .code16
/// .globl _start
/// _start:
///     cli
///     xor %ax, %ax
///     mov %ax, %ds
///     mov %ax, %es
///     mov %ax, %ss
///     mov $0x7c00, %sp
///     /* zero 0x1000..0x3fff: PML4, PDPT, PD */
///     mov $0x1000, %di
///     mov $0x1800, %cx
///     cld
///     rep stosw
///     movw $0x2003, 0x1000
///     movw $0x3003, 0x2000
///     movw $0x0083, 0x3000
///     lgdtl gdtr - _start + 0x7c00
///     mov %cr4, %eax
///     or $0x20, %eax
///     mov %eax, %cr4
///     mov $0x1000, %eax
///     mov %eax, %cr3
///     mov $0xC0000080, %ecx
///     rdmsr
///     or $0x100, %eax
///     wrmsr
///     mov %cr0, %eax
///     or $0x80000001, %eax
///     mov %eax, %cr0
///     ljmpl $0x08, $(lm64 - _start + 0x7c00)
/// .code64
/// lm64:
///     mov $0x8000000, %rcx
/// 3:  dec %rcx
///     jnz 3b
///     mov $0x21, %al
///     out %al, $0xf4
/// 1:  hlt
///     jmp 1b
/// .p2align 3
/// gdt:
///     .quad 0
///     .quad 0x00AF9A000000FFFF
///     .quad 0x00CF92000000FFFF
/// gdtr:
///     .word gdtr - gdt - 1
///     .long gdt - _start + 0x7c00
/// ```
const PROBE_CODE: [u8; 150] = [
    0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0, 0xBC, 0x00, 0x7C, 0xBF, 0x00, 0x10, 0xB9,
    0x00, 0x18, 0xFC, 0xF3, 0xAB, 0xC7, 0x06, 0x00, 0x10, 0x03, 0x20, 0xC7, 0x06, 0x00, 0x20, 0x03,
    0x30, 0xC7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x66, 0x0F, 0x01, 0x16, 0x90, 0x7C, 0x0F, 0x20, 0xE0,
    0x66, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0, 0x66, 0xB8, 0x00, 0x10, 0x00, 0x00, 0x0F, 0x22, 0xD8,
    0x66, 0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32, 0x66, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30,
    0x0F, 0x20, 0xC0, 0x66, 0x0D, 0x01, 0x00, 0x00, 0x80, 0x0F, 0x22, 0xC0, 0x66, 0xEA, 0x64, 0x7C,
    0x00, 0x00, 0x08, 0x00, 0x48, 0xC7, 0xC1, 0x00, 0x00, 0x00, 0x08, 0x48, 0xFF, 0xC9, 0x75, 0xFB,
    0xB0, 0x21, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0xAF, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00,
    0x17, 0x00, 0x78, 0x7C, 0x00, 0x00,
];

/// [`PROBE_CODE`] padded to a 512-byte boot sector with the `0x55 0xAA` signature.
pub const PROBE_BOOT_SECTOR: [u8; 512] = {
    let mut s = [0u8; 512];
    let mut i = 0;
    while i < PROBE_CODE.len() {
        s[i] = PROBE_CODE[i];
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
        if self.kvm.usable {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
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
    .chain([format!(
        "file={},format=raw,if=ide,index=0",
        image.to_string_lossy().replace(',', ",,")
    )])
    .collect()
}

/// Interpret how a probe QEMU ended (pure). `code` is its exit code, `None` if it timed out.
pub fn judge_probe(
    accel: Accel,
    code: Option<i32>,
    timeout: Duration,
    stderr: &str,
) -> ProbeOutcome {
    let name = match accel {
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG",
    };
    match code {
        Some(c) if c == PROBE_EXIT_CODE => ProbeOutcome {
            usable: true,
            detail: format!("probe boot under {name} ok"),
        },
        Some(c) => ProbeOutcome {
            usable: false,
            detail: format!(
                "probe boot under {name} exited with code {c}: {}",
                stderr_tail(stderr)
            ),
        },
        None => ProbeOutcome {
            usable: false,
            detail: format!(
                "probe boot under {name} did not finish in {}s",
                timeout.as_secs()
            ),
        },
    }
}

/// The last few non-empty lines of QEMU's stderr (its error comes last, after CPUID warnings).
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Boot the probe sector under `accel` with `qemu`, killing it after `timeout`. `work_dir` holds the
/// temporary boot image.
pub fn probe(qemu: &Path, accel: Accel, timeout: Duration, work_dir: &Path) -> ProbeOutcome {
    if accel == Accel::Kvm && !Path::new("/dev/kvm").exists() {
        return ProbeOutcome {
            usable: false,
            detail: "/dev/kvm missing".into(),
        };
    }
    let image = work_dir.join(format!(
        ".probe-{}-{}.img",
        accel.as_str(),
        std::process::id()
    ));
    let res = run_probe(qemu, accel, timeout, &image);
    let _ = std::fs::remove_file(&image);
    match res {
        Ok(o) => o,
        Err(e) => ProbeOutcome {
            usable: false,
            detail: format!("probe boot under {} failed: {e}", accel.as_str()),
        },
    }
}

fn run_probe(
    qemu: &Path,
    accel: Accel,
    timeout: Duration,
    image: &Path,
) -> std::io::Result<ProbeOutcome> {
    std::fs::write(image, PROBE_BOOT_SECTOR)?;
    // SeaBIOS refuses to boot a disk of a single sector ("could not read the boot disk").
    std::fs::OpenOptions::new()
        .write(true)
        .open(image)?
        .set_len(PROBE_IMAGE_BYTES)?;
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
    if let Some(rec) =
        read_cache(data_dir).filter(|r| cache_valid(r, kernel, qemu_version, dev_kvm))
    {
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
    let rec = ProbeRecord {
        kernel: kernel.into(),
        qemu_version: qemu_version.into(),
        dev_kvm,
        kvm,
        tcg,
    };
    if let Err(e) = write_atomic(&path, &rec) {
        tracing::warn!(error = %e, path = %path.display(), "cannot cache the KVM probe result");
    }
    rec
}

/// The cached probe record, if any (not checked for validity).
pub fn read_cache(data_dir: &Path) -> Option<ProbeRecord> {
    let bytes = std::fs::read(data_dir.join(PROBE_CACHE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_atomic(path: &Path, rec: &ProbeRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?,
    )?;
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
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Everything the agent reports about its host. Runs the KVM probe unless the cache is valid.
pub fn collect(data_dir: &Path) -> HostInventory {
    collect_with(data_dir, true)
}

/// Like [`collect`]; with `probe_kvm == false` (the operator forced TCG) no probe boot is run: a valid
/// cached result is still reported, otherwise KVM is reported as not probed.
pub fn collect_with(data_dir: &Path, probe_kvm: bool) -> HostInventory {
    let kernel = kernel_release();
    let qemu_version = qemu_version();
    let (disk_free_bytes, disk_total_bytes) = disk_space(data_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, dir = %data_dir.display(), "statvfs failed");
        (0, 0)
    });
    let probe = if probe_kvm {
        Some(probe_cached(data_dir, &kernel, &qemu_version))
    } else {
        read_cache(data_dir)
            .filter(|r| cache_valid(r, &kernel, &qemu_version, Path::new("/dev/kvm").exists()))
    };
    let (kvm_usable, kvm_probe) = match probe {
        Some(p) => {
            let mut detail = p.kvm.detail.clone();
            if !p.tcg.usable {
                detail.push_str(&format!("; TCG sanity probe failed too: {}", p.tcg.detail));
            }
            (p.kvm.usable, detail)
        }
        None => (
            false,
            "KVM not probed (TCG forced by configuration)".to_string(),
        ),
    };
    HostInventory {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        cpus: online_cpus(),
        memory_mib: parse_meminfo_mib(
            &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        )
        .unwrap_or(0),
        disk_free_bytes,
        disk_total_bytes,
        qemu_version,
        kernel,
        kvm_usable,
        kvm_probe,
        tunnel_ip: None,
        // GPUs and devices bound to vfio-pci (the policy is in `crate::pci`).
        pci_devices: crate::pci::discover_or_warn(Path::new(crate::pci::SYSFS_ROOT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_shape() {
        assert_eq!(&PROBE_BOOT_SECTOR[510..], &[0x55, 0xAA]);
        // `mov al, PROBE_VALUE; out 0xf4, al` is in the code.
        assert!(
            PROBE_CODE
                .windows(4)
                .any(|w| w == [0xB0, PROBE_VALUE, 0xE6, 0xF4])
        );
        assert_eq!(PROBE_EXIT_CODE, 0x43);
    }

    #[test]
    fn parsers() {
        assert_eq!(
            parse_meminfo_mib("MemTotal:        8167848 kB\nMemFree: 1 kB\n"),
            Some(7976)
        );
        assert_eq!(parse_meminfo_mib("MemFree: 1 kB\n"), None);
        let v = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022";
        assert_eq!(parse_qemu_version(v).as_deref(), Some("7.2.22"));
        assert_eq!(parse_qemu_version(""), None);
    }

    #[test]
    fn judging() {
        let t = Duration::from_secs(5);
        assert!(judge_probe(Accel::Kvm, Some(PROBE_EXIT_CODE), t, "").usable);
        let bad = judge_probe(
            Accel::Kvm,
            Some(1),
            t,
            "Could not access KVM kernel module\n",
        );
        assert!(!bad.usable && bad.detail.contains("Could not access KVM"));
        let hung = judge_probe(Accel::Kvm, None, t, "");
        assert_eq!(hung.detail, "probe boot under KVM did not finish in 5s");
    }

    #[test]
    fn cache_is_invalidated_by_upgrades() {
        let ok = ProbeOutcome {
            usable: true,
            detail: String::new(),
        };
        let rec = ProbeRecord {
            kernel: "6.1".into(),
            qemu_version: "7.2.22".into(),
            dev_kvm: true,
            kvm: ok.clone(),
            tcg: ok,
        };
        assert!(cache_valid(&rec, "6.1", "7.2.22", true));
        assert!(!cache_valid(&rec, "6.2", "7.2.22", true));
        assert!(!cache_valid(&rec, "6.1", "8.0.0", true));
        assert!(!cache_valid(&rec, "6.1", "7.2.22", false));
        assert_eq!(rec.accel(), Accel::Kvm);
    }
}
