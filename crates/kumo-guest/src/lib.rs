//! kumo's tiny guest — our CirrOS: a Debian cloud kernel plus a busybox initramfs that boots in a
//! couple of seconds under TCG and behaves like a small cloud instance.
//!
//! [`build_tiny`] downloads (once, into a cache) the current `linux-image-<ver>-cloud-amd64` and
//! `busybox-static` packages, unpacks them without installing, and writes
//! `out_dir/tiny-vmlinuz` and `out_dir/tiny-initrd.img` (an uncompressed newc cpio, see [`cpio`]).
//!
//! Invariants:
//! - **Reproducible**: the same `.deb`s give byte-identical outputs (sorted cpio entries, mtime 0,
//!   uid/gid 0, deterministic module order), so images can be content-addressed.
//! - **Atomic**: outputs are written to a temp file in `out_dir` and renamed into place; a reader
//!   never sees a half-written kernel or initrd.
//! - **Re-runnable offline**: cached `.deb`s are never fetched again.
//!
//! What the guest does at boot (see `src/init.sh`): loads the virtio modules, DHCP on eth0, reads
//! EC2-style metadata and user-data from 169.254.169.254 (IMDSv2 token if offered) or a NoCloud
//! `cidata` ISO, runs `#!` user-data, serves HTTP on port 80, powers off on the ACPI power button,
//! prints `KUMO-READY instance-id=<id> ip=<ip|none>` on ttyS0 and leaves a shell on the console.
//!
//! # Booting it
//!
//! ```text
//! qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 256 -nodefaults -no-user-config \
//!   -display none -serial <chardev> -qmp unix:<sock>,server=on,wait=off \
//!   -kernel tiny-vmlinuz -initrd tiny-initrd.img -append "console=ttyS0 quiet panic=-1" \
//!   -netdev tap,id=n0,ifname=<tap>,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=<mac>
//! ```
//! Measured on a 2-core TCG host (QEMU 7.2, Debian 12 cloud kernel 6.1), QEMU start to
//! `KUMO-READY` including DHCP and metadata: q35 ≈ 2.7 s, pc ≈ 2.9 s, microvm ≈ 2.4 s. q35 is the
//! default; microvm (needs [`MICROVM_CMDLINE_EXTRA`] and `virtio-net-device`/`virtio-blk-device`
//! on virtio-mmio) is only ~10% faster. Extra flags (`tsc=reliable no_timer_check
//! mitigations=off`) did not help on q35; dropping `quiet` costs ~0.5 s of serial output.

pub mod cpio;
pub mod debian;
pub mod modules;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The guest's `/init`.
pub const INIT_SH: &str = include_str!("init.sh");
/// The udhcpc event script that applies the DHCP lease.
pub const UDHCPC_SCRIPT: &str = include_str!("udhcpc.script");
/// The acpid action for the power button.
pub const POWER_SH: &str = include_str!("power.sh");

/// Kernel command line for the tiny guest on `q35`/`pc` (serial console on ttyS0).
/// `panic=-1` reboots at once on a panic instead of hanging.
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Appended to [`CMDLINE`] on the `microvm` machine: without a fixed TSC frequency the kernel can
/// hang calibrating it under TCG.
pub const MICROVM_CMDLINE_EXTRA: &str = "tsc_early_khz=2000000 tsc=reliable";

/// Line the guest prints once it is up: `KUMO-READY instance-id=<id> ip=<ipv4|none>`.
pub const READY_MARKER: &str = "KUMO-READY";
/// Prefix of every failure line the guest prints.
pub const ERROR_MARKER: &str = "KUMO-ERROR";
/// `KUMO-USERDATA-EXIT=<code>` follows a user-data script run.
pub const USERDATA_EXIT_MARKER: &str = "KUMO-USERDATA-EXIT=";

/// File names inside `out_dir`.
pub const KERNEL_FILE: &str = "tiny-vmlinuz";
pub const INITRD_FILE: &str = "tiny-initrd.img";

/// A built tiny guest: boot it with `-kernel`, `-initrd`, `-append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// Parse a `KUMO-READY instance-id=<id> ip=<ip>` console line into `(id, ip)`.
pub fn parse_ready(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix(READY_MARKER)?.trim();
    let mut id = None;
    let mut ip = None;
    for tok in rest.split_whitespace() {
        if let Some(v) = tok.strip_prefix("instance-id=") {
            id = Some(v.to_string());
        } else if let Some(v) = tok.strip_prefix("ip=") {
            ip = Some(v.to_string());
        }
    }
    Some((id?, ip?))
}

/// Download (cached in `cache_dir`), unpack and assemble the tiny guest into `out_dir`.
pub fn build_tiny(cache_dir: &Path, out_dir: &Path) -> anyhow::Result<TinyGuest> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let kernel_pkg = debian::kernel_package(cache_dir)?;
    let kernel_deb = debian::fetch(&kernel_pkg, cache_dir)?;
    let busybox_deb = debian::fetch(debian::BUSYBOX, cache_dir)?;

    let kernel_out = out_dir.join(KERNEL_FILE);
    let initrd_out = out_dir.join(INITRD_FILE);
    let guest = TinyGuest {
        kernel: kernel_out.clone(),
        initrd: initrd_out.clone(),
        cmdline: CMDLINE.to_string(),
    };
    let stamp_path = out_dir.join(STAMP_FILE);
    let stamp = build_stamp(&kernel_deb, &busybox_deb);
    if kernel_out.is_file()
        && initrd_out.is_file()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
    {
        tracing::debug!(out = %out_dir.display(), "tiny guest is up to date");
        return Ok(guest);
    }

    let work = TempDir::new(out_dir, "unpack")?;
    debian::extract(&kernel_deb, &work.0).with_context(|| format!("unpacking {kernel_pkg}"))?;
    debian::extract(&busybox_deb, &work.0).context("unpacking busybox-static")?;

    let (vmlinuz, moddir) = find_kernel(&work.0)?;
    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| work.0.join(p))
        .find(|p| p.is_file())
        .context("busybox-static unpacked without bin/busybox")?;
    let busybox =
        std::fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let mods = modules::collect(&moddir)?;
    let initrd = initramfs(&busybox, &mods)?;

    let kernel_bytes =
        std::fs::read(&vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    write_atomic(&kernel_out, &kernel_bytes)?;
    write_atomic(&initrd_out, &initrd)?;
    // Written last: a stamp never vouches for outputs that are not complete.
    write_atomic(&stamp_path, stamp.as_bytes())?;
    tracing::info!(kernel = %kernel_pkg, modules = mods.len(), initrd_bytes = initrd.len(), "built tiny guest");
    Ok(guest)
}

/// Records what the outputs in `out_dir` were built from; a matching stamp skips the rebuild.
pub const STAMP_FILE: &str = "tiny.stamp";

/// The inputs of a build: package files, this crate's version and a hash of the guest scripts
/// and module lists (FNV-1a, stable across toolchains).
fn build_stamp(kernel_deb: &Path, busybox_deb: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let lists = [modules::REQUIRED.join(","), modules::OPTIONAL.join(",")];
    let parts = [INIT_SH, UDHCPC_SCRIPT, POWER_SH, &lists[0], &lists[1]];
    for b in parts.iter().flat_map(|p| p.bytes().chain([0])) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!(
        "kumo-guest {}\nkernel {}\nbusybox {}\nscripts {h:016x}\n",
        env!("CARGO_PKG_VERSION"),
        name(kernel_deb),
        name(busybox_deb)
    )
}

/// The initramfs image: busybox, `/init`, its helper scripts and the kernel modules.
pub fn initramfs(busybox: &[u8], mods: &[modules::Module]) -> anyhow::Result<Vec<u8>> {
    let mut a = cpio::Archive::new();
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "etc", "root", "mnt",
        "www",
    ] {
        a.dir(d, 0o755)?;
    }
    a.dir("tmp", 0o1777)?;
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.file("bin/busybox", 0o755, busybox.to_vec())?;
    a.symlink("bin/sh", "busybox")?;
    a.file("init", 0o755, INIT_SH)?;
    a.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT)?;
    a.file("etc/acpi/PWRF/00000080", 0o755, POWER_SH)?;
    a.file("etc/passwd", 0o644, "root::0:0:root:/root:/bin/sh\n")?;
    a.file("etc/group", 0o644, "root:x:0:\n")?;
    a.file("etc/hostname", 0o644, "kumo-tiny\n")?;
    let mut list = String::new();
    for m in mods {
        a.file(&format!("lib/modules/{}.ko", m.name), 0o644, m.data.clone())?;
        list.push_str(&m.name);
        list.push('\n');
    }
    a.file("etc/kumo/modules", 0o644, list)?;
    a.to_bytes()
}

/// `boot/vmlinuz-<ver>` and its `lib/modules/<ver>` (or `usr/lib/modules/<ver>`) in an unpacked kernel.
fn find_kernel(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let boot = root.join("boot");
    let mut kernels: Vec<String> = std::fs::read_dir(&boot)
        .with_context(|| format!("kernel package has no boot/ directory ({})", boot.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    kernels.sort();
    let Some(name) = kernels.pop() else {
        bail!("kernel package contains no boot/vmlinuz-*")
    };
    let version = &name["vmlinuz-".len()..];
    let moddir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| root.join(p).join(version))
        .find(|p| p.is_dir())
        .with_context(|| format!("kernel package has no lib/modules/{version}"))?;
    Ok((boot.join(&name), moddir))
}

/// A name unique within this machine for temp files: pid + per-process counter.
pub(crate) fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Write `data` to `dest` via a temp file in the same directory and a rename.
fn write_atomic(dest: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = dest
        .parent()
        .context("destination has no parent directory")?;
    let name = dest
        .file_name()
        .context("destination has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", unique_suffix()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("writing {}", dest.display()))
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path, tag: &str) -> anyhow::Result<Self> {
        let p = parent.join(format!(".kumo-guest-{tag}-{}", unique_suffix()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        assert_eq!(
            parse_ready("KUMO-READY instance-id=i-abc ip=198.18.0.23\r"),
            Some(("i-abc".into(), "198.18.0.23".into()))
        );
        assert_eq!(
            parse_ready("KUMO-READY instance-id=unknown ip=none").map(|r| r.1),
            Some("none".into())
        );
        assert_eq!(parse_ready("KUMO-ERROR dhcp eth0"), None);
    }

    #[test]
    fn initramfs_layout() {
        let mods = vec![
            modules::Module {
                name: "virtio_ring".into(),
                data: b"ko1".to_vec(),
            },
            modules::Module {
                name: "virtio".into(),
                data: b"ko2".to_vec(),
            },
        ];
        let img = initramfs(b"BB", &mods).unwrap();
        assert_eq!(img, initramfs(b"BB", &mods).unwrap(), "deterministic");
        let entries = cpio::parse(&img).unwrap();
        let get = |p: &str| {
            entries
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("no {p}"))
        };
        assert_eq!(get("init").perm, 0o755);
        assert_eq!(
            get("init").kind,
            cpio::Kind::File(INIT_SH.as_bytes().to_vec())
        );
        assert_eq!(
            get("etc/kumo/modules").kind,
            cpio::Kind::File(b"virtio_ring\nvirtio\n".to_vec())
        );
        assert_eq!(
            get("dev/console").kind,
            cpio::Kind::CharDev { major: 5, minor: 1 }
        );
        assert_eq!(
            get("lib/modules/virtio.ko").kind,
            cpio::Kind::File(b"ko2".to_vec())
        );
        assert_eq!(get("etc/acpi/PWRF/00000080").perm, 0o755);
        assert!(INIT_SH.starts_with("#!/bin/busybox sh\n"));
    }
}
