//! Volumes in a Ceph RBD pool: one RBD image per volume, named by the volume ID.
//!
//! Driven with the `rbd` and `ceph` CLIs (Debian package `ceph-common`) against the cluster named
//! by the pool's `ceph.conf`, whose `[global] keyring` names the client's keyring (QEMU's rbd driver
//! reads the same file, so one setting serves both).
//!
//! Invariants (those of [`crate::volume`], in RBD terms):
//! - A volume appears only complete: it is made as `<id>.tmp`, then renamed.
//! - A volume from an image is a copy-on-write clone of a per-image base, `kumo-image-<image id>`,
//!   imported once with `qemu-img convert` and frozen as the protected snapshot `@base`.
//! - A volume from a snapshot is an independent copy (`rbd cp <src>@<snap>`), so it does not depend
//!   on its source volume.
//! - Snapshots are RBD snapshots named by the snapshot's ID; Ceph takes them while QEMU has the
//!   image open (crash-consistent), so they never go through the VM.

use std::process::Command;

use kumo_types::{Error, Result};
use serde_json::Value;

use crate::runtime::qemu::DiskSource;
use crate::volume::{VolumeSource, VolumeSpec, VolumeStep, plan_volume};

const MIB: u64 = 1 << 20;

/// One RBD pool as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdPool {
    /// The Ceph pool.
    pub pool: String,
    /// Path of `ceph.conf` (monitors, and `keyring` under `[global]`).
    pub conf: String,
    /// Ceph client id (`admin` for `client.admin`).
    pub user: String,
}

/// The base image a pool keeps for a kumo image (volumes from it are clones of `@base`).
pub fn image_base(image_id: &str) -> String {
    format!("kumo-image-{image_id}")
}

impl RbdPool {
    fn spec(&self, image: &str) -> String {
        format!("{}/{image}", self.pool)
    }

    /// An `rbd` command against this pool's cluster.
    fn rbd(&self) -> Command {
        let mut c = Command::new("rbd");
        c.args(["-c", &self.conf, "--id", &self.user]);
        c
    }

    /// `info` of an image or snapshot spec, or `None` if it does not exist.
    fn info(&self, spec: &str) -> Result<Option<Value>> {
        let out = output(self.rbd().args(["info", "--format", "json", spec]), "rbd")?;
        if out.status.success() {
            return Ok(Some(serde_json::from_slice(&out.stdout)?));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file") || err.contains("error opening image") {
            return Ok(None);
        }
        Err(failed("rbd info", &out))
    }

    /// Size of volume `id`, or `None` if it does not exist.
    pub fn size(&self, id: &str) -> Result<Option<u64>> {
        Ok(self
            .info(&self.spec(id))?
            .map(|i| i["size"].as_u64().unwrap_or(0)))
    }

    /// Make volume `spec` exist with at least its size (idempotent).
    pub fn ensure(&self, spec: &VolumeSpec) -> Result<()> {
        let source_size = match &spec.source {
            VolumeSource::Image { path, .. } => {
                crate::storage::img_info_json(path, true)?["virtual-size"].as_u64()
            }
            _ => None,
        };
        for step in plan_volume(spec, self.size(&spec.id)?, source_size)? {
            match step {
                VolumeStep::Create { size } => self.create(spec, size)?,
                VolumeStep::Grow { size } => self.resize(&spec.id, size)?,
            }
        }
        Ok(())
    }

    fn create(&self, spec: &VolumeSpec, size: u64) -> Result<()> {
        let tmp = format!("{}.tmp", spec.id);
        self.remove_image(&tmp)?;
        match &spec.source {
            VolumeSource::Blank => {
                run(
                    self.rbd()
                        .args(["create", "--size", &format!("{}M", size / MIB)])
                        .arg(self.spec(&tmp)),
                    "rbd create",
                )?;
            }
            VolumeSource::Image { path, format } => {
                let base = self.ensure_image_base(spec, path, *format)?;
                run(
                    self.rbd()
                        .arg("clone")
                        .arg(format!("{}@base", self.spec(&base)))
                        .arg(self.spec(&tmp)),
                    "rbd clone",
                )?;
                self.resize(&tmp, size)?;
            }
            VolumeSource::Snapshot {
                volume_id,
                snapshot,
            } => {
                run(
                    self.rbd()
                        .arg("cp")
                        .arg(format!("{}@{snapshot}", self.spec(volume_id)))
                        .arg(self.spec(&tmp)),
                    "rbd cp (clone a snapshot)",
                )?;
                let copied = self.size(&tmp)?.unwrap_or(0);
                if copied > size {
                    self.remove_image(&tmp)?;
                    return Err(Error::invalid(
                        "size",
                        format!("{size} bytes is smaller than the snapshot's {copied} bytes"),
                    ));
                }
                self.resize(&tmp, size)?;
            }
        }
        run(
            self.rbd()
                .arg("rename")
                .arg(self.spec(&tmp))
                .arg(self.spec(&spec.id)),
            "rbd rename",
        )?;
        Ok(())
    }

    /// The base of the image a volume starts from, imported on first use.
    fn ensure_image_base(
        &self,
        spec: &VolumeSpec,
        path: &std::path::Path,
        format: kumo_types::DiskFormat,
    ) -> Result<String> {
        // The image ID is the stored image's directory name (`<pool>/images/<id>/disk.<fmt>`).
        let image_id = path
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| Error::internal(format!("volume {}: odd image path", spec.id)))?;
        let base = image_base(&image_id);
        if self.info(&format!("{}@base", self.spec(&base)))?.is_some() {
            return Ok(base);
        }
        let tmp = format!("{base}.tmp");
        self.remove_image(&tmp)?;
        self.remove_image(&base)?;
        run(
            Command::new("qemu-img")
                .args(["convert", "-q", "-f", format.as_str(), "-O", "raw"])
                .arg(path)
                .arg(self.legacy_uri(&tmp)),
            "qemu-img convert (image into rbd)",
        )?;
        run(
            self.rbd()
                .arg("rename")
                .arg(self.spec(&tmp))
                .arg(self.spec(&base)),
            "rbd rename",
        )?;
        let snap = format!("{}@base", self.spec(&base));
        run(
            self.rbd().args(["snap", "create", &snap]),
            "rbd snap create",
        )?;
        run(
            self.rbd().args(["snap", "protect", &snap]),
            "rbd snap protect",
        )?;
        Ok(base)
    }

    /// Grow `image` to `size` bytes (no-op if it has that size; `rbd resize` refuses to shrink).
    fn resize(&self, image: &str, size: u64) -> Result<()> {
        if self.size(image)? == Some(size) {
            return Ok(());
        }
        run(
            self.rbd()
                .args([
                    "resize",
                    "--no-progress",
                    "--size",
                    &format!("{}M", size / MIB),
                ])
                .arg(self.spec(image)),
            "rbd resize",
        )
        .map(|_| ())
    }

    /// The images whose base (`kumo-image-<id>`) this pool holds.
    pub fn image_bases(&self) -> Result<Vec<String>> {
        let out = run(
            self.rbd().args(["ls", "--format", "json"]).arg(&self.pool),
            "rbd ls",
        )?;
        let names: Vec<String> = serde_json::from_slice(&out)?;
        Ok(names
            .into_iter()
            .filter_map(|n| n.strip_prefix(&image_base("")).map(str::to_string))
            .collect())
    }

    /// Whether a client (a QEMU) has volume `id` open: it is then a watcher of the image.
    pub fn in_use(&self, id: &str) -> Result<bool> {
        let out = output(
            self.rbd()
                .args(["status", "--format", "json"])
                .arg(self.spec(id)),
            "rbd",
        )?;
        if !out.status.success() {
            return Err(failed("rbd status", &out));
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["watchers"].as_array().is_some_and(|w| !w.is_empty()))
    }

    /// Names of volume `id`'s snapshots.
    pub fn snapshots(&self, id: &str) -> Result<Vec<(String, bool)>> {
        let out = run(
            self.rbd()
                .args(["snap", "ls", "--format", "json"])
                .arg(self.spec(id)),
            "rbd snap ls",
        )?;
        let v: Value = serde_json::from_slice(&out)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        let protected = s["protected"].as_str() == Some("true");
                        Some((s["name"].as_str()?.to_string(), protected))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Take snapshot `name` of volume `id` (no-op if it exists).
    pub fn snapshot(&self, id: &str, name: &str) -> Result<()> {
        if self.snapshots(id)?.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        run(
            self.rbd()
                .args(["snap", "create", "--no-progress"])
                .arg(format!("{}@{name}", self.spec(id))),
            "rbd snap create",
        )
        .map(|_| ())
    }

    /// Delete snapshot `name` of volume `id` (no-op if it or the volume is gone).
    pub fn delete_snapshot(&self, id: &str, name: &str) -> Result<()> {
        if self.size(id)?.is_none() {
            return Ok(());
        }
        let Some((_, protected)) = self.snapshots(id)?.into_iter().find(|(n, _)| n == name) else {
            return Ok(());
        };
        let snap = format!("{}@{name}", self.spec(id));
        if protected {
            run(
                self.rbd().args(["snap", "unprotect", &snap]),
                "rbd snap unprotect",
            )?;
        }
        run(
            self.rbd().args(["snap", "rm", "--no-progress", &snap]),
            "rbd snap rm",
        )
        .map(|_| ())
    }

    /// Delete volume `id` and its snapshots (no-op if it is gone).
    pub fn delete(&self, id: &str) -> Result<()> {
        if self.size(id)?.is_none() {
            return Ok(());
        }
        for (name, _) in self.snapshots(id)? {
            self.delete_snapshot(id, &name)?;
        }
        self.remove_image(id)
    }

    fn remove_image(&self, image: &str) -> Result<()> {
        let out = output(
            self.rbd()
                .args(["rm", "--no-progress"])
                .arg(self.spec(image)),
            "rbd",
        )?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || err.contains("No such file") {
            return Ok(());
        }
        Err(failed("rbd rm", &out))
    }

    /// What QEMU opens for volume `id`.
    pub fn source(&self, id: &str) -> DiskSource {
        DiskSource::Rbd {
            pool: self.pool.clone(),
            image: id.to_string(),
            conf: self.conf.clone(),
            user: self.user.clone(),
        }
    }

    /// A `json:` filename for `qemu-img` (volume `id`, or its snapshot).
    pub fn qemu_json(&self, id: &str, snapshot: Option<&str>) -> String {
        let mut file = serde_json::json!({
            "driver": "rbd", "pool": self.pool, "image": id, "conf": self.conf, "user": self.user,
        });
        if let Some(s) = snapshot {
            file["snapshot"] = Value::String(s.to_string());
        }
        format!(
            "json:{}",
            serde_json::json!({ "driver": "raw", "file": file })
        )
    }

    /// The `rbd:` filename `qemu-img` creates images with (the `json:` form cannot create).
    fn legacy_uri(&self, image: &str) -> String {
        format!(
            "rbd:{}/{image}:id={}:conf={}",
            self.pool, self.user, self.conf
        )
    }

    /// `(capacity, free)` of the Ceph pool, from `ceph df`.
    pub fn space(&self) -> Result<(u64, u64)> {
        let out = run(
            Command::new("ceph")
                .args([
                    "-c",
                    &self.conf,
                    "--id",
                    &self.user,
                    "--connect-timeout",
                    "10",
                ])
                .args(["df", "--format", "json"]),
            "ceph df",
        )?;
        let v: Value = serde_json::from_slice(&out)?;
        let stats = v["pools"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"].as_str() == Some(&self.pool)))
            .map(|p| p["stats"].clone())
            .ok_or_else(|| {
                Error::unavailable(format!("the Ceph cluster has no pool `{}`", self.pool))
            })?;
        let free = stats["max_avail"].as_u64().unwrap_or(0);
        let used = stats["bytes_used"].as_u64().unwrap_or(0);
        Ok((used + free, free))
    }
}

fn output(cmd: &mut Command, tool: &str) -> Result<std::process::Output> {
    cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::unavailable(format!(
                "{tool} not found (install the Debian package {})",
                if tool == "qemu-img" {
                    "qemu-utils"
                } else {
                    "ceph-common"
                }
            ))
        } else {
            Error::internal_with(tool.to_string(), e)
        }
    })
}

fn failed(what: &str, out: &std::process::Output) -> Error {
    Error::unavailable(format!(
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let tool = cmd.get_program().to_string_lossy().to_string();
    let out = output(cmd, &tool)?;
    if !out.status.success() {
        return Err(failed(what, &out));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> RbdPool {
        RbdPool {
            pool: "kumo".into(),
            conf: "/etc/ceph/ceph.conf".into(),
            user: "admin".into(),
        }
    }

    #[test]
    fn qemu_names() {
        assert_eq!(
            pool().qemu_json("vol-1", Some("snap-2")),
            r#"json:{"driver":"raw","file":{"conf":"/etc/ceph/ceph.conf","driver":"rbd","image":"vol-1","pool":"kumo","snapshot":"snap-2","user":"admin"}}"#
        );
        assert_eq!(
            pool().legacy_uri("x.tmp"),
            "rbd:kumo/x.tmp:id=admin:conf=/etc/ceph/ceph.conf"
        );
        assert_eq!(image_base("img-1"), "kumo-image-img-1");
    }
}
