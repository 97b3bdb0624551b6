//! The `local` dir pool: images stored once, instance root disks as qcow2 overlays on them.
//!
//! Invariants:
//! - An image directory appears only complete: files are copied into `<id>.tmp/` and renamed.
//! - A root disk appears only complete: `qemu-img create` writes `root.qcow2.tmp`, then it is renamed,
//!   so an agent killed mid-way leaves at most a `.tmp` that the next attempt overwrites.
//! - Overlays reference the image by absolute path, so an image in use must not be deleted (the API
//!   refuses while instances use it).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use kumo_types::{DiskFormat, Error, Image, ImageKind};
use sha2::{Digest, Sha256};

/// What an import produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub format: Option<DiskFormat>,
    pub size_bytes: u64,
    pub virtual_size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct DirPool {
    root: PathBuf,
}

impl DirPool {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirPool { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn image_dir(&self, id: &str) -> PathBuf {
        self.root.join("images").join(id)
    }
    pub fn image_disk(&self, id: &str, format: DiskFormat) -> PathBuf {
        self.image_dir(id).join(format!("disk.{}", format.as_str()))
    }
    pub fn image_kernel(&self, id: &str) -> PathBuf {
        self.image_dir(id).join("kernel")
    }
    pub fn image_initrd(&self, id: &str) -> PathBuf {
        self.image_dir(id).join("initrd")
    }
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.root.join("instances").join(id)
    }
    pub fn root_disk(&self, id: &str) -> PathBuf {
        self.instance_dir(id).join("root.qcow2")
    }

    /// Import a disk image file (copied, hashed, format and virtual size read with `qemu-img info`).
    pub fn import_disk(
        &self,
        id: &str,
        src: &Path,
        format: Option<DiskFormat>,
    ) -> Result<Imported, Error> {
        let info = qemu_img_info(src)?;
        let detected = match info.format.as_str() {
            "qcow2" => DiskFormat::Qcow2,
            "raw" => DiskFormat::Raw,
            other => {
                return Err(Error::invalid(
                    "disk_path",
                    format!(
                        "{} is a {other} image; qcow2 and raw are supported",
                        src.display()
                    ),
                ));
            }
        };
        if let Some(f) = format
            && f != detected
        {
            return Err(Error::invalid(
                "format",
                format!(
                    "{} is {}, not {}",
                    src.display(),
                    detected.as_str(),
                    f.as_str()
                ),
            ));
        }
        if info.backing.is_some() {
            return Err(Error::invalid(
                "disk_path",
                format!(
                    "{} has a backing file; import a standalone image (qemu-img convert)",
                    src.display()
                ),
            ));
        }
        let tmp = self.tmp_dir(id)?;
        let (size, hash) =
            copy_hashing(src, &tmp.join(format!("disk.{}", detected.as_str())), None)?;
        self.commit_dir(id, &tmp)?;
        Ok(Imported {
            format: Some(detected),
            size_bytes: size,
            virtual_size_bytes: info.virtual_size,
            sha256: hash,
        })
    }

    /// Import a kernel + initrd pair. The hash covers the kernel then the initrd.
    pub fn import_kernel(&self, id: &str, kernel: &Path, initrd: &Path) -> Result<Imported, Error> {
        for (field, p) in [("kernel_path", kernel), ("initrd_path", initrd)] {
            if !p.is_file() {
                return Err(Error::invalid(
                    field,
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let tmp = self.tmp_dir(id)?;
        let mut hasher = Sha256::new();
        let (k, _) = copy_hashing(kernel, &tmp.join("kernel"), Some(&mut hasher))?;
        let (i, _) = copy_hashing(initrd, &tmp.join("initrd"), Some(&mut hasher))?;
        self.commit_dir(id, &tmp)?;
        Ok(Imported {
            format: None,
            size_bytes: k + i,
            virtual_size_bytes: 0,
            sha256: hex(&hasher.finalize()),
        })
    }

    pub fn delete_image(&self, id: &str) -> Result<(), Error> {
        remove_dir_if_exists(&self.image_dir(id))
    }

    /// Create the instance's root disk if it does not exist yet (idempotent): an overlay on a disk
    /// image, or a blank qcow2 for kernel+initrd images. Returns its path.
    pub fn ensure_root_disk(
        &self,
        instance_id: &str,
        image: &Image,
        size_gib: u64,
    ) -> Result<PathBuf, Error> {
        let path = self.root_disk(instance_id);
        if path.exists() {
            return Ok(path);
        }
        fs::create_dir_all(self.instance_dir(instance_id))?;
        let tmp = path.with_extension("qcow2.tmp");
        let size = format!("{size_gib}G");
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", "qcow2"]);
        if image.kind == ImageKind::Disk {
            let fmt = image.format.unwrap_or(DiskFormat::Qcow2);
            let backing = self.image_disk(&image.id, fmt);
            cmd.arg("-b").arg(&backing).args(["-F", fmt.as_str()]);
        }
        cmd.arg(&tmp).arg(&size);
        run_tool(&mut cmd, "qemu-img create")?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    pub fn delete_instance_disks(&self, instance_id: &str) -> Result<(), Error> {
        remove_dir_if_exists(&self.instance_dir(instance_id))
    }

    /// IDs of instances that have a directory in the pool (for garbage collection).
    pub fn instance_ids(&self) -> Vec<String> {
        read_dir_names(&self.root.join("instances"))
    }

    fn tmp_dir(&self, id: &str) -> Result<PathBuf, Error> {
        let tmp = self.root.join("images").join(format!("{id}.tmp"));
        remove_dir_if_exists(&tmp)?;
        fs::create_dir_all(&tmp)?;
        Ok(tmp)
    }
    fn commit_dir(&self, id: &str, tmp: &Path) -> Result<(), Error> {
        let dst = self.image_dir(id);
        remove_dir_if_exists(&dst)?;
        fs::rename(tmp, &dst)?;
        Ok(())
    }
}

/// Names of the entries of a directory (empty if it does not exist).
pub fn read_dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_dir_if_exists(p: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::internal_with(format!("removing {}", p.display()), e)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Copy `src` to `dst`, fsync it, and return (bytes, sha256 hex). With `shared`, feed that hasher too.
fn copy_hashing(
    src: &Path,
    dst: &Path,
    shared: Option<&mut Sha256>,
) -> Result<(u64, String), Error> {
    let mut input = fs::File::open(src)
        .map_err(|e| Error::internal_with(format!("opening {}", src.display()), e))?;
    let mut out = fs::File::create(dst)?;
    let mut own = Sha256::new();
    let mut shared = shared;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        own.update(&buf[..n]);
        if let Some(h) = shared.as_deref_mut() {
            h.update(&buf[..n]);
        }
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    out.sync_all()?;
    Ok((total, hex(&own.finalize())))
}

struct ImgInfo {
    format: String,
    virtual_size: u64,
    backing: Option<String>,
}

fn qemu_img_info(p: &Path) -> Result<ImgInfo, Error> {
    if !p.is_file() {
        return Err(Error::invalid(
            "disk_path",
            format!("{} is not a readable file", p.display()),
        ));
    }
    let v = img_info_json(p, false)?;
    Ok(ImgInfo {
        format: v["format"].as_str().unwrap_or("unknown").to_string(),
        virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
        backing: v["backing-filename"].as_str().map(str::to_string),
    })
}

/// `qemu-img info` as JSON; with `force_share` (`-U`) it reads a file a running VM has open.
pub(crate) fn img_info_json(p: &Path, force_share: bool) -> Result<serde_json::Value, Error> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--output=json"]);
    if force_share {
        cmd.arg("-U");
    }
    let out = run_tool(cmd.arg(p), "qemu-img info")?;
    Ok(serde_json::from_slice(&out)?)
}

/// Run a storage tool (`qemu-img`, …); its stderr becomes the error. Shared with [`crate::volume`].
pub(crate) fn run_tool(cmd: &mut Command, what: &str) -> Result<Vec<u8>, Error> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::unavailable(format!(
                "{what}: qemu-img not found (install the Debian package qemu-utils)"
            ))
        } else {
            Error::internal_with(what.to_string(), e)
        }
    })?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_types::ImageKind;

    fn image(id: &str, kind: ImageKind, format: Option<DiskFormat>) -> Image {
        Image {
            id: id.into(),
            name: "x".into(),
            project: "default".into(),
            kind,
            format,
            cmdline: None,
            size_bytes: 0,
            virtual_size_bytes: 0,
            sha256: String::new(),
            pool: "local".into(),
            created_at: String::new(),
        }
    }

    #[test]
    fn import_disk_and_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.qcow2");
        run_tool(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&src)
                .arg("64M"),
            "t",
        )
        .unwrap();
        let pool = DirPool::new(dir.path().join("pool"));
        let imp = pool.import_disk("ami-1", &src, None).unwrap();
        assert_eq!(imp.format, Some(DiskFormat::Qcow2));
        assert_eq!(imp.virtual_size_bytes, 64 << 20);
        assert_eq!(imp.sha256.len(), 64);
        let img = image("ami-1", ImageKind::Disk, imp.format);
        let root = pool.ensure_root_disk("i-1", &img, 1).unwrap();
        let info = qemu_img_info(&root).unwrap();
        assert_eq!(info.virtual_size, 1 << 30);
        assert!(info.backing.unwrap().ends_with("images/ami-1/disk.qcow2"));
        // Idempotent, and removable.
        assert_eq!(pool.ensure_root_disk("i-1", &img, 1).unwrap(), root);
        assert_eq!(pool.instance_ids(), vec!["i-1".to_string()]);
        pool.delete_instance_disks("i-1").unwrap();
        assert!(!root.exists());
        // Wrong declared format is a precise error.
        let e = pool
            .import_disk("ami-2", &src, Some(DiskFormat::Raw))
            .unwrap_err();
        assert_eq!(e.field(), Some("format"));
    }

    #[test]
    fn import_kernel_pair_hashes_both() {
        let dir = tempfile::tempdir().unwrap();
        let (k, i) = (dir.path().join("k"), dir.path().join("i"));
        fs::write(&k, b"kernel").unwrap();
        fs::write(&i, b"initrd").unwrap();
        let pool = DirPool::new(dir.path().join("pool"));
        let imp = pool.import_kernel("ami-k", &k, &i).unwrap();
        assert_eq!(imp.size_bytes, 12);
        // sha256("kernelinitrd")
        let mut h = Sha256::new();
        h.update(b"kernelinitrd");
        assert_eq!(imp.sha256, hex(&h.finalize()));
        let e = pool
            .import_kernel("ami-x", &dir.path().join("missing"), &i)
            .unwrap_err();
        assert_eq!(e.field(), Some("kernel_path"));
    }
}
