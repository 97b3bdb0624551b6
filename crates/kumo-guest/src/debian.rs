//! Fetching and unpacking the Debian packages the tiny guest is made of, without installing them.
//!
//! `.deb` files are cached in a caller-chosen directory and never fetched again once present, so a
//! rebuild is offline and fast. Downloads land in a private temp directory first and are renamed into
//! the cache, so an interrupted download never leaves a truncated `.deb` that later looks cached.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The metapackage that always depends on the current Debian cloud kernel.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
pub const BUSYBOX: &str = "busybox-static";

/// The concrete kernel package from `apt-cache depends linux-image-cloud-amd64` output.
pub fn parse_kernel_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64") && *p != KERNEL_META)
        .map(str::to_string)
}

/// Whether `file_name` is a `.deb` of `package` (`<package>_<version>_<arch>.deb`).
pub fn is_deb_of(file_name: &str, package: &str) -> bool {
    file_name
        .strip_prefix(package)
        .is_some_and(|rest| rest.starts_with('_'))
        && file_name.ends_with(".deb")
}

fn run(cmd: &mut Command) -> anyhow::Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    Ok(out)
}

/// Cached `.deb`s of `package` in `dir`, sorted by name (the last is the highest version for the
/// single-ABI packages used here).
fn cached(dir: &Path, package: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_name()
            .to_str()
            .is_some_and(|n| is_deb_of(n, package))
        {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

/// The current cloud kernel package name. Falls back to the newest kernel `.deb` already in the cache
/// when apt cannot answer (no lists, offline).
pub fn kernel_package(cache_dir: &Path) -> anyhow::Result<String> {
    if let Ok(out) = run(Command::new("apt-cache").args(["depends", KERNEL_META]))
        && let Some(p) = parse_kernel_depends(&String::from_utf8_lossy(&out.stdout))
    {
        return Ok(p);
    }
    let mut names: Vec<String> = std::fs::read_dir(cache_dir)
        .with_context(|| format!("reading {}", cache_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.starts_with("linux-image-") && n.contains("-cloud-amd64_") && n.ends_with(".deb")
        })
        .collect();
    names.sort();
    match names.last().and_then(|n| n.split('_').next()) {
        Some(p) => {
            tracing::warn!(
                package = p,
                "apt-cache cannot resolve {KERNEL_META}; using the cached kernel"
            );
            Ok(p.to_string())
        }
        None => bail!(
            "cannot find the Debian cloud kernel: `apt-cache depends {KERNEL_META}` names no \
             linux-image-<version>-cloud-amd64 package (run `apt-get update`; Debian main must be in \
             the apt sources) and none is cached in {}",
            cache_dir.display()
        ),
    }
}

/// Download `package` into `cache_dir` unless a `.deb` of it is already there; returns its path.
pub fn fetch(package: &str, cache_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(p) = cached(cache_dir, package)?.pop() {
        return Ok(p);
    }
    let tmp = cache_dir.join(format!(".download-{package}-{}", crate::unique_suffix()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = download_into(package, &tmp).and_then(|()| {
        let deb = cached(&tmp, package)?
            .pop()
            .with_context(|| format!("apt-get download {package} wrote no .deb"))?;
        let name = deb.file_name().context("deb has no file name")?;
        let dest = cache_dir.join(name);
        std::fs::rename(&deb, &dest)
            .with_context(|| format!("moving {} into the cache", deb.display()))?;
        Ok(dest)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn download_into(package: &str, dir: &Path) -> anyhow::Result<()> {
    let attempt = || {
        run(Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(dir))
    };
    let out = attempt()?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Missing or stale package lists: refresh them once and retry.
    if err.contains("Unable to locate package")
        || err.contains("Can't select candidate")
        || err.contains("404")
    {
        tracing::info!(
            package,
            "apt-get download failed; running apt-get update once"
        );
        let up = run(Command::new("apt-get").args(["update", "-q"]))?;
        if !up.status.success() {
            bail!(
                "apt-get update failed: {}",
                String::from_utf8_lossy(&up.stderr)
            );
        }
        let again = attempt()?;
        if again.status.success() {
            return Ok(());
        }
        bail!(
            "apt-get download {package} failed: {}",
            String::from_utf8_lossy(&again.stderr)
        );
    }
    bail!("apt-get download {package} failed (is the Debian package {package} available?): {err}")
}

/// Unpack a `.deb` into `dest` with `dpkg-deb -x` (no install, no maintainer scripts).
pub fn extract(deb: &Path, dest: &Path) -> anyhow::Result<()> {
    let out = run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest))?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kernel_from_apt_cache_output() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            parse_kernel_depends(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let virt = "linux-image-cloud-amd64\n  Depends: <linux-image-6.12.9-cloud-amd64>\n";
        assert_eq!(
            parse_kernel_depends(virt).as_deref(),
            Some("linux-image-6.12.9-cloud-amd64")
        );
        assert_eq!(parse_kernel_depends("W: Unable to locate package"), None);
    }

    #[test]
    fn deb_file_names() {
        assert!(is_deb_of(
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb",
            "busybox-static"
        ));
        assert!(!is_deb_of(
            "busybox-static-extra_1_amd64.deb",
            "busybox-static"
        ));
        assert!(!is_deb_of(
            "busybox-static_1_amd64.deb.part",
            "busybox-static"
        ));
    }
}
