//! The `local` dir pool: images stored once, instance root disks as qcow2 overlays on them.
//!
//! Invariants:
//! - An image directory appears only complete: files are copied into `<id>.tmp/` and renamed.
//! - A root disk appears only complete: `qemu-img create` writes `root.qcow2.tmp`, then it is renamed,
//!   so an agent killed mid-way leaves at most a `.tmp` that the next attempt overwrites.
//! - Overlays reference the image by absolute path, so an image in use must not be deleted (the API
//!   refuses while instances or volumes use it).
//! - A URL import downloads into `<id>.download/`, then stores like any import; a failed or cancelled
//!   import removes `<id>.download/`, `<id>.tmp/` and `<id>/` ([`DirPool::delete_image`]).
//!
//! Format detection, conversion and checks of imported disk images are in [`import`].

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use kumo_types::{DiskFormat, Error, Image, ImageKind, ImportFormat};
use sha2::{Digest, Sha256};

mod import;
pub use import::{
    DiskSource, ISO9660_MAGIC_OFFSET, check_sha256, decide_format, file_is_iso9660, is_iso9660,
    self_contained, sha256_file,
};

/// What an import produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The stored format (disk images).
    pub format: Option<DiskFormat>,
    /// The source's format when it was converted (vmdk, vdi, vhdx → qcow2).
    pub source_format: Option<ImportFormat>,
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

    /// Where a URL import downloads to before it stores the image.
    pub fn download_dir(&self, id: &str) -> PathBuf {
        self.root.join("images").join(format!("{id}.download"))
    }

    /// Import a disk image file from the server host (copied, hashed, format and virtual size read
    /// with `qemu-img info`; see [`DirPool::import_disk_from`]).
    pub fn import_disk(
        &self,
        id: &str,
        src: &Path,
        format: Option<DiskFormat>,
    ) -> Result<Imported, Error> {
        let label = src.display().to_string();
        let source = DiskSource {
            path: src,
            field: "disk_path",
            label: &label,
            owned: false,
            sha256: None,
        };
        self.import_disk_from(id, &source, format.map(ImportFormat::from), None)
    }

    /// Import a kernel + initrd pair. The hash covers the kernel then the initrd; with `expect_sha256`
    /// a different hash fails the import and keeps nothing.
    pub fn import_kernel(
        &self,
        id: &str,
        kernel: &Path,
        initrd: &Path,
        expect_sha256: Option<&str>,
    ) -> Result<Imported, Error> {
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
        let copied = copy_hashing(kernel, &tmp.join("kernel"), Some(&mut hasher)).and_then(|k| {
            let i = copy_hashing(initrd, &tmp.join("initrd"), Some(&mut hasher))?;
            let sha256 = hex(&hasher.finalize());
            if let Some(want) = expect_sha256 {
                check_sha256(want, &sha256, "the kernel then the initrd")?;
            }
            Ok((k.0 + i.0, sha256))
        });
        let (size_bytes, sha256) = match copied {
            Ok(c) => c,
            Err(e) => {
                let _ = remove_dir_if_exists(&tmp);
                return Err(e);
            }
        };
        self.commit_dir(id, &tmp)?;
        Ok(Imported {
            format: None,
            source_format: None,
            size_bytes,
            virtual_size_bytes: 0,
            sha256,
        })
    }

    /// Remove an image's files, and whatever an unfinished import of it left (no-op if none).
    pub fn delete_image(&self, id: &str) -> Result<(), Error> {
        remove_dir_if_exists(&self.download_dir(id))?;
        remove_dir_if_exists(&self.root.join("images").join(format!("{id}.tmp")))?;
        remove_dir_if_exists(&self.image_dir(id))
    }

    /// Remove every unfinished import's leftovers (`*.download`, `*.tmp`): at start-up, when no
    /// import runs. Returns the names removed.
    pub fn remove_import_leftovers(&self) -> Result<Vec<String>, Error> {
        let images = self.root.join("images");
        let mut removed = Vec::new();
        for name in read_dir_names(&images) {
            if name.ends_with(".download") || name.ends_with(".tmp") {
                remove_dir_if_exists(&images.join(&name))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Create the instance's root disk if it does not exist yet (idempotent): an overlay on a bootable
    /// disk image, or a blank qcow2 for kernel+initrd and ISO images. Returns its path.
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
        let fmt = image.format.unwrap_or(DiskFormat::Qcow2);
        if image.kind == ImageKind::Disk && fmt != DiskFormat::Iso {
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

#[cfg(test)]
struct ImgInfo {
    virtual_size: u64,
    backing: Option<String>,
}

#[cfg(test)]
fn qemu_img_info(p: &Path) -> Result<ImgInfo, Error> {
    if !p.is_file() {
        return Err(Error::invalid(
            "disk_path",
            format!("{} is not a readable file", p.display()),
        ));
    }
    let v = img_info_json(p, false)?;
    Ok(ImgInfo {
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
            state: kumo_types::ImageState::Available,
            status_message: None,
            format,
            source_format: None,
            cmdline: None,
            size_bytes: 0,
            virtual_size_bytes: 0,
            sha256: String::new(),
            source_url: None,
            progress: None,
            pool: "local".into(),
            visibility: Default::default(),
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
        let imp = pool.import_kernel("ami-k", &k, &i, None).unwrap();
        assert_eq!(imp.size_bytes, 12);
        // sha256("kernelinitrd")
        let mut h = Sha256::new();
        h.update(b"kernelinitrd");
        assert_eq!(imp.sha256, hex(&h.finalize()));
        let e = pool
            .import_kernel("ami-x", &dir.path().join("missing"), &i, None)
            .unwrap_err();
        assert_eq!(e.field(), Some("kernel_path"));
        let e = pool
            .import_kernel("ami-y", &k, &i, Some(&"0".repeat(64)))
            .unwrap_err();
        assert_eq!(e.field(), Some("sha256"));
        assert!(!pool.image_dir("ami-y").exists());
        assert!(
            pool.remove_import_leftovers().unwrap().is_empty(),
            "nothing left"
        );
    }
}
