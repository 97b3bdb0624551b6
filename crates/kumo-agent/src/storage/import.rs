//! Importing disk images into the dir pool: format detection (`qemu-img info` under resource limits,
//! plus the ISO 9660 signature), refusal of images that reach outside their file, conversion of
//! vmdk/vdi/vhdx to qcow2, sha256 verification.
//!
//! Deciding is pure ([`decide_format`], [`is_iso9660`], [`check_sha256`], [`self_contained`]);
//! [`DirPool::import_disk_from`] executes. Files come from a path on the server host (copied) or from a
//! finished download (moved into place).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use kumo_types::{Error, ImportFormat};
use sha2::{Digest, Sha256};

use super::{DirPool, Imported, copy_hashing, hex, run_tool};

/// Byte offset of the first volume descriptor's standard identifier in an ISO 9660 image
/// (sector 16 of 2048 bytes, after the one-byte descriptor type).
pub const ISO9660_MAGIC_OFFSET: usize = 0x8001;
const ISO9660_MAGIC: &[u8] = b"CD001";

/// Limits for `qemu-img info` on an untrusted file (as OpenStack does): a crafted image cannot make it
/// eat the host's memory or CPU.
const INFO_MEMORY_LIMIT: u64 = 1 << 30;
const INFO_CPU_SECONDS: u64 = 30;

/// A file to import a disk image from.
#[derive(Debug, Clone, Copy)]
pub struct DiskSource<'a> {
    pub path: &'a Path,
    /// The request field the file came from (`disk_path`, `url`): errors about it name that field.
    pub field: &'static str,
    /// What the user knows the file as (its path, or the URL): errors show it.
    pub label: &'a str,
    /// A finished download that the pool takes over: moved into place instead of copied.
    pub owned: bool,
    /// The file's sha256 when it is already known (computed while downloading).
    pub sha256: Option<&'a str>,
}

/// True if `head` (the start of a file, at least [`ISO9660_MAGIC_OFFSET`] + 5 bytes) carries the
/// ISO 9660 signature `CD001`.
pub fn is_iso9660(head: &[u8]) -> bool {
    head.get(ISO9660_MAGIC_OFFSET..ISO9660_MAGIC_OFFSET + ISO9660_MAGIC.len())
        == Some(ISO9660_MAGIC)
}

/// Whether the file at `p` is an ISO 9660 image (false for files too short to be one).
pub fn file_is_iso9660(p: &Path) -> Result<bool, Error> {
    let mut f = fs::File::open(p)
        .map_err(|e| Error::internal_with(format!("opening {}", p.display()), e))?;
    let mut buf = [0u8; ISO9660_MAGIC_OFFSET + 5];
    let len = f.seek(SeekFrom::End(0))?;
    if len < buf.len() as u64 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut buf)?;
    Ok(is_iso9660(&buf))
}

/// The format an import stores, from what the user declared and what `qemu-img info` and the ISO
/// signature found. `field`/`label` name the source in errors (pure).
///
/// - qemu-img's `qcow2`, `vmdk`, `vdi`, `vhdx` are taken as they are; a declared format must match.
/// - qemu-img says `raw` for ISOs: with the signature it is `iso`, unless `raw` was declared (a hybrid
///   ISO booted as a disk). A declared `iso` without the signature is refused.
pub fn decide_format(
    declared: Option<ImportFormat>,
    qemu_format: &str,
    iso_signature: bool,
    field: &str,
    label: &str,
) -> Result<ImportFormat, Error> {
    let detected = match qemu_format {
        "qcow2" => ImportFormat::Qcow2,
        "raw" if iso_signature => ImportFormat::Iso,
        "raw" => ImportFormat::Raw,
        "vmdk" => ImportFormat::Vmdk,
        "vdi" => ImportFormat::Vdi,
        "vhdx" => ImportFormat::Vhdx,
        other => {
            return Err(Error::invalid(
                field,
                format!(
                    "{label} is a {other} image; supported: qcow2, raw, iso, vmdk, vdi, vhdx \
                     (convert it with qemu-img convert)"
                ),
            ));
        }
    };
    match declared {
        None => Ok(detected),
        Some(d) if d == detected => Ok(d),
        Some(ImportFormat::Raw) if detected == ImportFormat::Iso => Ok(ImportFormat::Raw),
        Some(ImportFormat::Iso) if detected == ImportFormat::Raw => Err(Error::invalid(
            "format",
            format!(
                "{label} is not an ISO 9660 image (no CD001 signature at byte {ISO9660_MAGIC_OFFSET:#x})"
            ),
        )),
        Some(d) => Err(Error::invalid(
            "format",
            format!("{label} is {}, not {}", detected.as_str(), d.as_str()),
        )),
    }
}

/// Refuse images that would make QEMU read other files: a backing file, a qcow2 external data file,
/// vmdk extents outside the file (pure, on `qemu-img info --output=json`).
pub fn self_contained(info: &serde_json::Value, field: &str, label: &str) -> Result<(), Error> {
    let refuse = |what: &str| {
        Err(Error::invalid(
            field,
            format!(
                "{label} {what}; import a standalone image (qemu-img convert -O qcow2 makes one)"
            ),
        ))
    };
    if info.get("backing-filename").is_some() {
        return refuse("has a backing file");
    }
    let specific = &info["format-specific"]["data"];
    if specific.get("data-file").is_some() {
        return refuse("has an external data file");
    }
    if let Some(extents) = specific["extents"].as_array() {
        let own = info["filename"].as_str().unwrap_or_default();
        if extents
            .iter()
            .any(|e| e["filename"].as_str().unwrap_or_default() != own)
        {
            return refuse("keeps its data in other files (extents)");
        }
    }
    Ok(())
}

/// Compare an expected sha256 (hex, any case) with the actual one (pure).
pub fn check_sha256(expected: &str, actual: &str, what: &str) -> Result<(), Error> {
    if expected.eq_ignore_ascii_case(actual) {
        return Ok(());
    }
    Err(Error::invalid(
        "sha256",
        format!(
            "{what} has sha256 {actual}, not the expected {}; nothing was kept",
            expected.to_ascii_lowercase()
        ),
    ))
}

/// sha256 of a whole file (hex).
pub fn sha256_file(p: &Path) -> Result<String, Error> {
    let mut f = fs::File::open(p)
        .map_err(|e| Error::internal_with(format!("opening {}", p.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// `qemu-img info` on a file that came from a user, under memory and CPU limits.
fn untrusted_info(p: &Path) -> Result<serde_json::Value, Error> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--output=json"]).arg(p);
    // SAFETY: the closure runs in the child between fork and exec and only calls setrlimit(2), which
    // is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            for (resource, limit) in [
                (libc::RLIMIT_AS, INFO_MEMORY_LIMIT),
                (libc::RLIMIT_CPU, INFO_CPU_SECONDS),
            ] {
                let l = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(resource, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = run_tool(&mut cmd, "qemu-img info")?;
    Ok(serde_json::from_slice(&out)?)
}

impl DirPool {
    /// Import a disk image: check `expect_sha256` (if given), detect and check the format, store it
    /// (unchanged, or converted to qcow2 for vmdk/vdi/vhdx) as `images/<id>/disk.<format>`. Leaves
    /// nothing behind when it fails. An owned source is moved (or removed once copied).
    pub fn import_disk_from(
        &self,
        id: &str,
        src: &DiskSource<'_>,
        declared: Option<ImportFormat>,
        expect_sha256: Option<&str>,
    ) -> Result<Imported, Error> {
        if !src.path.is_file() {
            return Err(Error::invalid(
                src.field,
                format!("{} is not a readable file", src.label),
            ));
        }
        let mut known = src.sha256.map(str::to_string);
        if let Some(want) = expect_sha256 {
            let got = match &known {
                Some(k) => k.clone(),
                None => sha256_file(src.path)?,
            };
            check_sha256(want, &got, src.label)?;
            known = Some(got);
        }
        let info = untrusted_info(src.path)?;
        let qemu_format = info["format"].as_str().unwrap_or("unknown");
        let iso = qemu_format == "raw" && file_is_iso9660(src.path)?;
        let format = decide_format(declared, qemu_format, iso, src.field, src.label)?;
        self_contained(&info, src.field, src.label)?;
        let virtual_size = info["virtual-size"].as_u64().unwrap_or(0);
        let stored = format.stored();
        let converted = ImportFormat::from(stored) != format;
        let tmp = self.tmp_dir(id)?;
        let dst = tmp.join(format!("disk.{}", stored.as_str()));
        let written = if converted {
            run_tool(
                Command::new("qemu-img")
                    .args(["convert", "-q", "-f", format.as_str(), "-O", "qcow2"])
                    .arg(src.path)
                    .arg(&dst),
                "qemu-img convert",
            )
            .and_then(|_| {
                // On disk before the image is recorded `available`, like the copy path.
                fs::File::open(&dst)?.sync_all()?;
                Ok((fs::metadata(&dst)?.len(), sha256_file(&dst)?))
            })
        } else {
            store_file(src, &dst, known)
        };
        let (size, sha256) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        self.commit_dir(id, &tmp)?;
        Ok(Imported {
            format: Some(stored),
            source_format: converted.then_some(format),
            size_bytes: size,
            virtual_size_bytes: virtual_size,
            sha256,
        })
    }
}

/// Put the source at `dst` unchanged: moved if the pool owns it, else copied; returns (bytes, sha256).
fn store_file(
    src: &DiskSource<'_>,
    dst: &Path,
    known: Option<String>,
) -> Result<(u64, String), Error> {
    if src.owned && fs::rename(src.path, dst).is_ok() {
        fs::File::open(dst)?.sync_all()?;
        let sha = match known {
            Some(k) => k,
            None => sha256_file(dst)?,
        };
        return Ok((fs::metadata(dst)?.len(), sha));
    }
    let copied = copy_hashing(src.path, dst, None)?;
    if src.owned {
        let _ = fs::remove_file(src.path);
    }
    Ok(copied)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kumo_types::DiskFormat;
    use serde_json::json;

    #[test]
    fn iso_signature_at_0x8001() {
        let mut head = vec![0u8; 0x8006];
        assert!(!is_iso9660(&head));
        head[0x8001..0x8006].copy_from_slice(b"CD001");
        assert!(is_iso9660(&head));
        assert!(!is_iso9660(&head[..0x8004]), "too short");
        let mut off = vec![0u8; 0x8006];
        off[0x8000..0x8005].copy_from_slice(b"CD001");
        assert!(!is_iso9660(&off), "one byte early");
    }

    #[test]
    fn formats_detected_and_declared() {
        let d = |decl, q, iso| decide_format(decl, q, iso, "url", "http://x/y");
        assert_eq!(d(None, "qcow2", false).unwrap(), ImportFormat::Qcow2);
        assert_eq!(d(None, "raw", false).unwrap(), ImportFormat::Raw);
        assert_eq!(d(None, "raw", true).unwrap(), ImportFormat::Iso);
        assert_eq!(d(None, "vmdk", false).unwrap(), ImportFormat::Vmdk);
        assert_eq!(d(None, "vhdx", false).unwrap(), ImportFormat::Vhdx);
        assert_eq!(d(None, "vdi", false).unwrap(), ImportFormat::Vdi);
        // A hybrid ISO declared raw is a raw disk.
        assert_eq!(
            d(Some(ImportFormat::Raw), "raw", true).unwrap(),
            ImportFormat::Raw
        );
        let e = d(Some(ImportFormat::Iso), "raw", false).unwrap_err();
        assert_eq!(e.field(), Some("format"));
        assert!(e.to_string().contains("CD001"), "{e}");
        let e = d(Some(ImportFormat::Raw), "qcow2", false).unwrap_err();
        assert_eq!(e.field(), Some("format"));
        assert!(e.to_string().contains("is qcow2, not raw"), "{e}");
        let e = d(None, "dmg", false).unwrap_err();
        assert_eq!(e.field(), Some("url"));
        assert!(e.to_string().contains("dmg"), "{e}");
        // Stored formats.
        assert_eq!(ImportFormat::Vmdk.stored(), DiskFormat::Qcow2);
        assert_eq!(ImportFormat::Iso.stored(), DiskFormat::Iso);
        assert_eq!(DiskFormat::Iso.qemu_driver(), "raw");
    }

    #[test]
    fn only_self_contained_images() {
        let ok = json!({"filename": "/a.vmdk", "format": "vmdk",
            "format-specific": {"data": {"extents": [{"filename": "/a.vmdk"}]}}});
        assert!(self_contained(&ok, "url", "x").is_ok());
        let flat = json!({"filename": "/a.vmdk", "format": "vmdk",
            "format-specific": {"data": {"extents": [{"filename": "/etc/shadow"}]}}});
        assert_eq!(
            self_contained(&flat, "url", "x").unwrap_err().field(),
            Some("url")
        );
        let backed = json!({"filename": "/a", "backing-filename": "/b"});
        assert!(self_contained(&backed, "disk_path", "x").is_err());
        let data_file = json!({"filename": "/a",
            "format-specific": {"data": {"data-file": "/dev/sda"}}});
        assert!(self_contained(&data_file, "disk_path", "x").is_err());
    }

    #[test]
    fn sha256_compared_case_insensitively() {
        let a = "ab".repeat(32);
        assert!(check_sha256(&a.to_uppercase(), &a, "f").is_ok());
        let e = check_sha256(&"cd".repeat(32), &a, "http://x/f").unwrap_err();
        assert_eq!(e.field(), Some("sha256"));
        assert!(e.to_string().contains(&a), "{e}");
    }

    fn qemu_img(args: &[&str], p: &Path, size: &str) {
        run_tool(Command::new("qemu-img").args(args).arg(p).arg(size), "t").unwrap();
    }

    #[test]
    fn converts_vmdk_and_refuses_flat_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let pool = DirPool::new(dir.path().join("pool"));
        let vmdk = dir.path().join("a.vmdk");
        qemu_img(&["create", "-q", "-f", "vmdk"], &vmdk, "16M");
        let label = vmdk.display().to_string();
        let src = DiskSource {
            path: &vmdk,
            field: "disk_path",
            label: &label,
            owned: false,
            sha256: None,
        };
        let imp = pool.import_disk_from("ami-v", &src, None, None).unwrap();
        assert_eq!(imp.format, Some(DiskFormat::Qcow2));
        assert_eq!(imp.source_format, Some(ImportFormat::Vmdk));
        assert_eq!(imp.virtual_size_bytes, 16 << 20);
        assert!(pool.image_disk("ami-v", DiskFormat::Qcow2).is_file());
        assert!(vmdk.exists(), "a path source is copied, not moved");

        let flat = dir.path().join("f.vmdk");
        qemu_img(
            &[
                "create",
                "-q",
                "-f",
                "vmdk",
                "-o",
                "subformat=monolithicFlat",
            ],
            &flat,
            "16M",
        );
        let label = flat.display().to_string();
        let e = pool
            .import_disk_from(
                "ami-f",
                &DiskSource {
                    path: &flat,
                    label: &label,
                    ..src
                },
                None,
                None,
            )
            .unwrap_err();
        assert_eq!(e.field(), Some("disk_path"), "{e}");
        assert!(!pool.image_dir("ami-f").exists());
        assert_eq!(
            super::super::read_dir_names(&dir.path().join("pool/images")),
            vec!["ami-v".to_string()],
            "nothing left of the refused import"
        );
    }

    #[test]
    fn owned_iso_is_moved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pool = DirPool::new(dir.path().join("pool"));
        let iso = dir.path().join("cd.iso");
        let mut data = vec![0u8; 0x9000];
        data[0x8001..0x8006].copy_from_slice(b"CD001");
        fs::write(&iso, &data).unwrap();
        let sha = sha256_file(&iso).unwrap();
        let src = DiskSource {
            path: &iso,
            field: "url",
            label: "http://h/cd.iso",
            owned: true,
            sha256: Some(&sha),
        };
        let e = pool
            .import_disk_from("ami-x", &src, None, Some(&"00".repeat(32)))
            .unwrap_err();
        assert_eq!(e.field(), Some("sha256"));
        assert!(!pool.image_dir("ami-x").exists());
        let imp = pool
            .import_disk_from("ami-i", &src, None, Some(&sha.to_uppercase()))
            .unwrap();
        assert_eq!(imp.format, Some(DiskFormat::Iso));
        assert_eq!(imp.source_format, None);
        assert_eq!(
            (imp.size_bytes, imp.sha256.as_str()),
            (0x9000, sha.as_str())
        );
        assert!(!iso.exists(), "an owned source is moved");
        assert!(pool.image_disk("ami-i", DiskFormat::Iso).is_file());
    }
}
