//! A tiny writer (and reader) for the `newc` cpio format the Linux kernel unpacks as an initramfs.
//!
//! Invariants of what [`Archive::to_bytes`] produces, relied on for reproducible images:
//! - entries come out sorted by path, so a directory always precedes its contents and the same set
//!   of entries always gives the same bytes, whatever order they were added in;
//! - every header carries mtime 0, uid/gid 0 and inode numbers assigned in that sorted order;
//! - parent directories are created implicitly (mode 0755) when a path below them is added;
//! - header+name and data are each padded with NULs to a 4-byte boundary, and the archive ends with
//!   the `TRAILER!!!` entry (padded to 4 bytes as well).
//!
//! Paths are stored relative (no leading `/`), as the kernel and `cpio -i` expect.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// What an entry is; the permission bits live in [`Entry::perm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// One archive member as read back by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path, no leading `/`.
    pub path: String,
    /// Permission bits (e.g. 0o755), without the file-type bits.
    pub perm: u32,
    pub kind: Kind,
}

/// An in-memory archive; see the module docs for the layout guarantees.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, (u32, Kind)>,
}

fn normalize(path: &str) -> anyhow::Result<String> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!("invalid archive path {path:?}");
    }
    Ok(p.to_string())
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, path: &str, perm: u32, kind: Kind) -> anyhow::Result<()> {
        let path = normalize(path)?;
        for (idx, _) in path.match_indices('/') {
            let parent = &path[..idx];
            match self.entries.get(parent) {
                None => {
                    self.entries.insert(parent.to_string(), (0o755, Kind::Dir));
                }
                Some((_, Kind::Dir)) => {}
                Some(_) => bail!("{parent:?} is not a directory, cannot add {path:?} below it"),
            }
        }
        match self.entries.get(&path) {
            // Re-adding a directory (e.g. explicitly after it was created implicitly) sets its mode.
            Some((_, Kind::Dir)) if kind == Kind::Dir => {}
            Some(_) => bail!("duplicate archive path {path:?}"),
            None => {}
        }
        self.entries.insert(path, (perm & 0o7777, kind));
        Ok(())
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> anyhow::Result<()> {
        self.insert(path, perm, Kind::Dir)
    }

    pub fn file(&mut self, path: &str, perm: u32, data: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.insert(path, perm, Kind::File(data.into()))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> anyhow::Result<()> {
        self.insert(path, 0o777, Kind::Symlink(target.to_string()))
    }

    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> anyhow::Result<()> {
        self.insert(path, perm, Kind::CharDev { major, minor })
    }

    /// Number of entries (not counting the trailer).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serialize as newc cpio. Deterministic: same entries → same bytes.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        for (i, (path, (perm, kind))) in self.entries.iter().enumerate() {
            let ino = u32::try_from(i + 1).context("too many archive entries")?;
            let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match kind {
                Kind::Dir => (S_IFDIR | perm, &[], 2, (0, 0)),
                Kind::File(d) => (S_IFREG | perm, d, 1, (0, 0)),
                Kind::Symlink(t) => (S_IFLNK | perm, t.as_bytes(), 1, (0, 0)),
                Kind::CharDev { major, minor } => (S_IFCHR | perm, &[], 1, (*major, *minor)),
            };
            write_member(&mut out, ino, mode, nlink, rdev, path, data)?;
        }
        write_member(&mut out, 0, 0, 1, (0, 0), TRAILER, &[])?;
        Ok(out)
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn write_member(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> anyhow::Result<()> {
    let size =
        u32::try_from(data.len()).with_context(|| format!("{name:?} is larger than 4 GiB"))?;
    let namesize = u32::try_from(name.len() + 1).context("name too long")?;
    // Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    out.extend_from_slice(MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

fn hex_field(header: &[u8], idx: usize) -> anyhow::Result<u32> {
    let start = 6 + idx * 8;
    let s = std::str::from_utf8(&header[start..start + 8]).context("non-ASCII cpio header")?;
    u32::from_str_radix(s, 16).with_context(|| format!("bad hex field {s:?} in cpio header"))
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Parse a newc archive (up to and excluding its trailer). Checks magic, alignment and the trailer.
pub fn parse(bytes: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let mut pos: usize = 0;
    let mut out = Vec::new();
    loop {
        if !pos.is_multiple_of(4) {
            bail!("member at offset {pos} is not 4-byte aligned");
        }
        let header = bytes
            .get(pos..pos + HEADER_LEN)
            .context("truncated cpio header (no trailer?)")?;
        if &header[..6] != MAGIC {
            bail!("bad cpio magic at offset {pos}");
        }
        let mode = hex_field(header, 1)?;
        let size = hex_field(header, 6)? as usize;
        let (rmaj, rmin) = (hex_field(header, 9)?, hex_field(header, 10)?);
        let namesize = hex_field(header, 11)? as usize;
        let name_start = pos + HEADER_LEN;
        let name_bytes = bytes
            .get(name_start..name_start + namesize)
            .context("truncated cpio name")?;
        let (last, name) = name_bytes.split_last().context("empty cpio name")?;
        if *last != 0 {
            bail!("cpio name at offset {pos} is not NUL-terminated");
        }
        let name = std::str::from_utf8(name)
            .context("non-UTF-8 cpio name")?
            .to_string();
        let data_start = align4(name_start + namesize);
        let data = bytes
            .get(data_start..data_start + size)
            .context("truncated cpio data")?;
        pos = align4(data_start + size);
        if name == TRAILER {
            if pos != bytes.len() {
                bail!(
                    "{} bytes after the cpio trailer",
                    bytes.len().saturating_sub(pos)
                );
            }
            return Ok(out);
        }
        let kind = match mode & 0o170_000 {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File(data.to_vec()),
            S_IFLNK => {
                Kind::Symlink(String::from_utf8(data.to_vec()).context("non-UTF-8 symlink")?)
            }
            S_IFCHR => Kind::CharDev {
                major: rmaj,
                minor: rmin,
            },
            other => bail!("unsupported cpio file type {other:o} for {name:?}"),
        };
        out.push(Entry {
            path: name,
            perm: mode & 0o7777,
            kind,
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.file("/bin/busybox", 0o755, b"ELF...".to_vec()).unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.file("init", 0o755, b"#!/bin/busybox sh\n".to_vec())
            .unwrap();
        a.dir("tmp", 0o1777).unwrap();
        a.file("etc/empty", 0o644, Vec::new()).unwrap();
        a
    }

    #[test]
    fn round_trips_and_sorts_with_implicit_parents() {
        let bytes = sample().to_bytes().unwrap();
        let entries = parse(&bytes).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "etc",
                "etc/empty",
                "init",
                "tmp"
            ]
        );
        assert_eq!(
            entries[0],
            Entry {
                path: "bin".into(),
                perm: 0o755,
                kind: Kind::Dir
            }
        );
        assert_eq!(entries[1].kind, Kind::File(b"ELF...".to_vec()));
        assert_eq!(entries[2].kind, Kind::Symlink("busybox".into()));
        assert_eq!(entries[4].kind, Kind::CharDev { major: 5, minor: 1 });
        assert_eq!(entries[4].perm, 0o600);
        assert_eq!(entries[8].perm, 0o1777);
    }

    #[test]
    fn layout_is_aligned_and_ends_with_trailer() {
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(&bytes[..6], b"070701");
        // The trailer is the last member: header, "TRAILER!!!\0", padded to 4.
        let tail = align4(HEADER_LEN + TRAILER.len() + 1);
        let trailer = &bytes[bytes.len() - tail..];
        assert_eq!(&trailer[..6], b"070701");
        assert_eq!(&trailer[HEADER_LEN..HEADER_LEN + 10], TRAILER.as_bytes());
        // Every member starts on a 4-byte boundary: parse() checks that; corrupt one byte of padding
        // position by dropping a byte and it must fail.
        let mut broken = bytes.clone();
        broken.remove(HEADER_LEN);
        assert!(parse(&broken).is_err());
        assert!(
            parse(&bytes[..bytes.len() - 4]).is_err(),
            "missing trailer must be detected"
        );
    }

    #[test]
    fn deterministic_regardless_of_insertion_order() {
        let mut b = Archive::new();
        b.dir("tmp", 0o1777).unwrap();
        b.file("etc/empty", 0o644, Vec::new()).unwrap();
        b.file("init", 0o755, b"#!/bin/busybox sh\n".to_vec())
            .unwrap();
        b.char_dev("dev/console", 0o600, 5, 1).unwrap();
        b.symlink("bin/sh", "busybox").unwrap();
        b.file("bin/busybox", 0o755, b"ELF...".to_vec()).unwrap();
        assert_eq!(sample().to_bytes().unwrap(), b.to_bytes().unwrap());
    }

    #[test]
    fn rejects_bad_paths_and_duplicates() {
        let mut a = Archive::new();
        assert!(a.file("../x", 0o644, Vec::new()).is_err());
        assert!(a.file("a//b", 0o644, Vec::new()).is_err());
        assert!(a.file("", 0o644, Vec::new()).is_err());
        a.file("a", 0o644, Vec::new()).unwrap();
        assert!(a.file("a", 0o644, Vec::new()).is_err());
        assert!(
            a.file("a/b", 0o644, Vec::new()).is_err(),
            "a is a file, not a dir"
        );
    }

    #[test]
    fn readable_by_gnu_cpio() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("`cpio` not found: install the Debian package `cpio`");
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.cpio");
        std::fs::write(&img, sample().to_bytes().unwrap()).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-t", "-F"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(listed.lines().count(), 9, "{listed}");
        assert!(listed.lines().any(|l| l == "bin/sh"));
    }
}
