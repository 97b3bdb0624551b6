//! Kernel modules for the tiny guest: which `.ko` files to ship and in which order `/init` loads them.
//!
//! Debian's `.deb` ships no `modules.dep` (depmod runs at install time), so dependencies are read from
//! each module's own `.modinfo` section (`depends=a,b`). The order is a depth-first topological sort:
//! every module comes after everything it depends on, and otherwise keeps the order it was asked for,
//! so the result is deterministic. Modules listed in `modules.builtin` are built into the kernel and
//! are skipped. Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are decompressed at build time,
//! because busybox `insmod` takes plain ELF objects only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Modules the guest needs, in the order they should load. The virtio chain is required (no network
/// without it); the rest are best-effort and skipped with a warning when the kernel lacks them.
pub const REQUIRED: &[&str] = &["virtio_pci", "virtio_net", "virtio_blk"];
/// `virtio_mmio` for the microvm machine, `button` + `evdev` for the ACPI power button (busybox acpid
/// reads `/dev/input/event*`), `isofs` for a NoCloud `cidata` seed.
pub const OPTIONAL: &[&str] = &["virtio_mmio", "button", "evdev", "isofs"];

/// Canonical module name: the kernel treats `-` and `_` alike and reports `_`.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name from a file name such as `virtio-rng.ko.xz`, or None if it is not a module file.
pub fn module_name(file_name: &str) -> Option<String> {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))
        .map(canonical)
}

/// The `depends=` list from a module's `.modinfo` strings (NUL-separated `key=value`).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let value = rest.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(value)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(canonical)
        .collect()
}

/// Names of built-in modules from `modules.builtin` (lines like `kernel/drivers/virtio/virtio.ko`).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().rsplit('/').next())
        .filter_map(module_name)
        .collect()
}

/// Load order for `wanted`: dependencies first, otherwise in request order; `deps` maps every module
/// in the closure to its dependencies. Errors on a dependency cycle or a module missing from `deps`.
pub fn load_order(
    wanted: &[String],
    deps: &HashMap<String, Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    fn visit(
        m: &str,
        deps: &HashMap<String, Vec<String>>,
        done: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if done.iter().any(|d| d == m) {
            return Ok(());
        }
        if stack.iter().any(|s| s == m) {
            bail!("module dependency cycle: {} -> {m}", stack.join(" -> "));
        }
        let ds = deps
            .get(m)
            .with_context(|| format!("module {m} is not available"))?;
        stack.push(m.to_string());
        for d in ds {
            visit(d, deps, done, stack)?;
        }
        stack.pop();
        done.push(m.to_string());
        Ok(())
    }
    let mut done = Vec::new();
    for m in wanted {
        visit(m, deps, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

/// Every module file under `<moddir>/kernel`, by canonical name (first path in sorted order wins).
fn index_modules(moddir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = rd.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        paths.sort();
        for p in paths {
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(module_name)
            {
                out.entry(name).or_insert(p);
            }
        }
    }
    Ok(out)
}

/// Read a module file, decompressing `.xz`/`.zst`/`.gz` with the host tools.
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some(("xz", "xz-utils"))
    } else if name.ends_with(".zst") {
        Some(("zstd", "zstd"))
    } else if name.ends_with(".gz") {
        Some(("gzip", "gzip"))
    } else {
        None
    };
    let Some((tool, package)) = tool else {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .with_context(|| {
            format!(
                "running {tool} (Debian package {package}) on {}",
                path.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{tool} -d {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// A module ready to ship: canonical name and uncompressed `.ko` bytes.
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

/// Collect [`REQUIRED`] and the available [`OPTIONAL`] modules with their dependencies from an
/// extracted `lib/modules/<version>` directory, in load order.
pub fn collect(moddir: &Path) -> anyhow::Result<Vec<Module>> {
    let index = index_modules(moddir)?;
    let builtin = match std::fs::read_to_string(moddir.join("modules.builtin")) {
        Ok(t) => parse_builtin(&t),
        Err(_) => BTreeSet::new(),
    };
    let mut wanted = Vec::new();
    for m in REQUIRED.iter().chain(OPTIONAL) {
        let m = canonical(m);
        if builtin.contains(&m) {
            continue;
        }
        if index.contains_key(&m) {
            wanted.push(m);
        } else if REQUIRED.contains(&m.as_str()) {
            bail!(
                "kernel module {m} is neither built in nor shipped in {}",
                moddir.display()
            );
        } else {
            tracing::warn!(module = %m, "optional kernel module not available; skipping");
        }
    }
    // Read the closure of the wanted modules.
    let mut data: HashMap<String, Vec<u8>> = HashMap::new();
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    let mut todo = wanted.clone();
    while let Some(m) = todo.pop() {
        if deps.contains_key(&m) {
            continue;
        }
        let path = index.get(&m).with_context(|| {
            format!(
                "kernel module {m} (a dependency) not found in {}",
                moddir.display()
            )
        })?;
        let bytes = read_module(path)?;
        let ds: Vec<String> = modinfo_depends(&bytes)
            .into_iter()
            .filter(|d| !builtin.contains(d))
            .collect();
        todo.extend(ds.iter().cloned());
        deps.insert(m.clone(), ds);
        data.insert(m, bytes);
    }
    let order = load_order(&wanted, &deps)?;
    order
        .into_iter()
        .map(|name| {
            let data = data
                .remove(&name)
                .with_context(|| format!("module {name} was not read"))?;
            Ok(Module { name, data })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_from_files() {
        assert_eq!(module_name("virtio-rng.ko").as_deref(), Some("virtio_rng"));
        assert_eq!(
            module_name("virtio_net.ko.xz").as_deref(),
            Some("virtio_net")
        );
        assert_eq!(module_name("isofs.ko.zst").as_deref(), Some("isofs"));
        assert_eq!(module_name("modules.order"), None);
    }

    #[test]
    fn depends_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=virtio_ring,virtio,net-failover\0name=virtio_net\0";
        assert_eq!(
            modinfo_depends(ko),
            s(&["virtio_ring", "virtio", "net_failover"])
        );
        assert!(modinfo_depends(b"\0depends=\0name=failover\0").is_empty());
        assert!(modinfo_depends(b"no modinfo at all").is_empty());
    }

    #[test]
    fn builtin_list() {
        let b =
            parse_builtin("kernel/drivers/virtio/virtio.ko\nkernel/drivers/char/virtio-rng.ko\n\n");
        assert!(b.contains("virtio") && b.contains("virtio_rng") && b.len() == 2);
    }

    #[test]
    fn debian_cloud_virtio_order() {
        // The dependency graph of Debian 12's cloud kernel (read from its .modinfo sections).
        let deps: HashMap<String, Vec<String>> = [
            ("virtio_ring", vec![]),
            ("virtio", vec!["virtio_ring"]),
            ("virtio_pci_modern_dev", vec![]),
            ("virtio_pci_legacy_dev", vec![]),
            (
                "virtio_pci",
                vec![
                    "virtio_ring",
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio",
                ],
            ),
            ("failover", vec![]),
            ("net_failover", vec!["failover"]),
            ("virtio_net", vec!["virtio_ring", "virtio", "net_failover"]),
            ("virtio_blk", vec!["virtio", "virtio_ring"]),
            ("button", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), s(&v)))
        .collect();
        let order = load_order(
            &s(&["virtio_pci", "virtio_net", "virtio_blk", "button"]),
            &deps,
        )
        .unwrap();
        assert_eq!(
            order,
            s(&[
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_blk",
                "button"
            ])
        );
        // Every module comes after all of its dependencies.
        for (i, m) in order.iter().enumerate() {
            for d in &deps[m] {
                assert!(order[..i].contains(d), "{d} must load before {m}");
            }
        }
    }

    #[test]
    fn cycles_and_missing_modules_are_errors() {
        let deps: HashMap<String, Vec<String>> =
            [("a".to_string(), s(&["b"])), ("b".to_string(), s(&["a"]))]
                .into_iter()
                .collect();
        assert!(
            load_order(&s(&["a"]), &deps)
                .unwrap_err()
                .to_string()
                .contains("cycle")
        );
        assert!(load_order(&s(&["zzz"]), &deps).is_err());
    }
}
