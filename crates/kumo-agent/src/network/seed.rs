//! NoCloud seed images: an ISO9660 volume labelled `cidata` holding `meta-data`, `user-data` and,
//! when given, `network-config`, which stock cloud-init images read at first boot.
//!
//! [`render_seed`] decides the files (pure); [`build_seed`] writes them under `<dir>/seed/` and runs
//! `genisoimage` (Debian package `genisoimage`).
//!
//! Invariants:
//! - `<dir>/seed.iso` only ever appears complete: the image is built as `seed.iso.tmp` and renamed.
//! - Idempotent: `<dir>/seed.sha256` records the digest of the rendered files the image was built
//!   from; the image is rebuilt only when that digest changes or the image is missing. The stamp is
//!   written after the rename, so a crash in between only causes one extra rebuild.
//! - `meta-data` is YAML whose strings are JSON-quoted (JSON strings are valid YAML scalars), so no
//!   user-supplied value can inject keys.

use std::path::{Path, PathBuf};

use kumo_types::{Error, Result};

/// What goes into a seed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeedSpec {
    pub instance_id: String,
    pub hostname: String,
    /// Passed through verbatim; `#cloud-config {}` when `None`.
    pub user_data: Option<String>,
    /// OpenSSH public keys.
    pub public_keys: Vec<String>,
    /// A cloud-init network-config (v1 or v2 YAML), written verbatim when given.
    pub network_config: Option<String>,
}

/// The files of the seed, `(name, content)`, in a stable order.
pub fn render_seed(spec: &SeedSpec) -> Result<Vec<(&'static str, String)>> {
    if spec.instance_id.is_empty() {
        return Err(Error::invalid("instance_id", "must not be empty"));
    }
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut meta = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(&spec.instance_id),
        q(&spec.hostname)
    );
    if !spec.public_keys.is_empty() {
        meta.push_str("public-keys:\n");
        for k in &spec.public_keys {
            meta.push_str(&format!("  - {}\n", q(k.trim())));
        }
    }
    let user = spec
        .user_data
        .clone()
        .unwrap_or_else(|| "#cloud-config\n{}\n".to_string());
    let mut files = vec![("meta-data", meta), ("user-data", user)];
    if let Some(nc) = &spec.network_config {
        files.push(("network-config", nc.clone()));
    }
    Ok(files)
}

fn digest(files: &[(&str, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, content) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::internal_with(what, e)
}

/// Build (or keep) `<dir>/seed.iso` for `spec` and return its path. See the module docs.
pub fn build_seed(dir: &Path, spec: &SeedSpec) -> Result<PathBuf> {
    let files = render_seed(spec)?;
    let iso = dir.join("seed.iso");
    let stamp = dir.join("seed.sha256");
    let want = digest(&files);
    if iso.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(iso);
    }
    let src = dir.join("seed");
    if src.exists() {
        std::fs::remove_dir_all(&src).map_err(io(format!("removing {}", src.display())))?;
    }
    std::fs::create_dir_all(&src).map_err(io(format!("creating {}", src.display())))?;
    for (name, content) in &files {
        let p = src.join(name);
        std::fs::write(&p, content).map_err(io(format!("writing {}", p.display())))?;
    }
    let tmp = dir.join("seed.iso.tmp");
    let mut args: Vec<String> = [
        "-quiet", "-output", "", "-volid", "cidata", "-joliet", "-rock",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args[2] = tmp.display().to_string();
    args.extend(files.iter().map(|(n, _)| src.join(n).display().to_string()));
    let out = std::process::Command::new("genisoimage")
        .args(&args)
        .output()
        .map_err(io(
            "cannot run `genisoimage` (Debian package genisoimage)".to_string()
        ))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::internal(format!(
            "genisoimage failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, &iso).map_err(io(format!("renaming to {}", iso.display())))?;
    std::fs::write(&stamp, &want).map_err(io(format!("writing {}", stamp.display())))?;
    Ok(iso)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_meta_and_default_user_data() {
        let spec = SeedSpec {
            instance_id: "i-0123456789abcdef0".into(),
            hostname: "web-1".into(),
            public_keys: vec!["ssh-ed25519 AAAA me@x\n".into()],
            ..SeedSpec::default()
        };
        let files = render_seed(&spec).unwrap();
        assert_eq!(
            files,
            [
                (
                    "meta-data",
                    "instance-id: \"i-0123456789abcdef0\"\nlocal-hostname: \"web-1\"\n\
                     public-keys:\n  - \"ssh-ed25519 AAAA me@x\"\n"
                        .to_string()
                ),
                ("user-data", "#cloud-config\n{}\n".to_string()),
            ]
        );
        let with_nc = SeedSpec {
            user_data: Some("#!/bin/sh\necho hi\n".into()),
            network_config: Some("version: 2\n".into()),
            ..spec.clone()
        };
        let files = render_seed(&with_nc).unwrap();
        assert_eq!(files[1].1, "#!/bin/sh\necho hi\n");
        assert_eq!(files[2], ("network-config", "version: 2\n".to_string()));
        assert_ne!(digest(&render_seed(&spec).unwrap()), digest(&files));
        // A hostile hostname stays one quoted scalar.
        let evil = SeedSpec {
            hostname: "x\ninstance-id: other".into(),
            ..spec
        };
        let meta = &render_seed(&evil).unwrap()[0].1;
        assert_eq!(meta.lines().count(), 4, "{meta}");
        assert!(render_seed(&SeedSpec::default()).is_err());
    }
}
