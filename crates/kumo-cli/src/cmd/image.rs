//! `kumo image list|show|delete|import|build tiny`.
//!
//! Import paths are paths on the *server* host; relative paths are made absolute against the client's
//! working directory (right for the single-host case, where client and server share a filesystem).
//!
//! `image build tiny` builds the tiny guest locally with [`kumo_guest::build_tiny`] and imports it. It is
//! re-runnable: when an image of that name already exists with the same sha256 (kernel then initrd, as the
//! server hashes them) it is printed and the command succeeds; a different one is an error with a hint.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use kumo_types::{DiskFormat, Image, ImportImageRequest};
use sha2::{Digest, Sha256};

use crate::CliError;
use crate::client::{Client, Json, seg};
use crate::render::{self, Output};

/// Importing copies and hashes the files on the server: allow it time.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Subcommand)]
pub enum ImageCmd {
    /// List images.
    List,
    /// Show one image.
    Show { name: String },
    /// Delete an image.
    Delete { name: String },
    /// Import an image from files on the server host.
    Import(ImportArgs),
    /// Build a built-in image locally and import it.
    #[command(subcommand)]
    Build(BuildCmd),
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["kernel", "disk", "volume", "snapshot"])))]
pub struct ImportArgs {
    /// Name of the new image.
    #[arg(long)]
    pub name: String,
    /// Kernel file (with --initrd).
    #[arg(long, requires = "initrd", conflicts_with = "disk")]
    pub kernel: Option<PathBuf>,
    /// Initrd file (with --kernel).
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (with --kernel).
    #[arg(long, requires = "kernel")]
    pub cmdline: Option<String>,
    /// Bootable disk image (qcow2 or raw).
    #[arg(long)]
    pub disk: Option<PathBuf>,
    /// Disk format; detected by the server when omitted.
    #[arg(long, requires = "disk", conflicts_with = "kernel", value_enum)]
    pub format: Option<FormatArg>,
    /// Make the image from a volume's data (ID or name).
    #[arg(long, conflicts_with_all = ["kernel", "disk", "snapshot"])]
    pub volume: Option<String>,
    /// Make the image from a completed snapshot (ID or name).
    #[arg(long, conflicts_with_all = ["kernel", "disk"])]
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Qcow2,
    Raw,
}

impl From<FormatArg> for DiskFormat {
    fn from(f: FormatArg) -> DiskFormat {
        match f {
            FormatArg::Qcow2 => DiskFormat::Qcow2,
            FormatArg::Raw => DiskFormat::Raw,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum BuildCmd {
    /// The tiny guest: Debian cloud kernel + busybox initramfs; boots in seconds, no internet needed.
    Tiny(BuildTinyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BuildTinyArgs {
    /// Name of the image to create.
    #[arg(long, default_value = "tiny")]
    pub name: String,
    /// Where downloaded Debian packages are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Where the kernel and initrd are written.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Only build (download and cache the packages, write kernel and initrd); import nothing. Needs
    /// no server: useful to prepare an offline host.
    #[arg(long)]
    pub no_import: bool,
}

pub async fn run(client: &Client, out: &Output, cmd: ImageCmd) -> Result<i32, CliError> {
    match cmd {
        ImageCmd::List => out.list(&client.list::<Image>("images").await?, render::images_table),
        ImageCmd::Show { name } => out.one(
            &client
                .get::<Image>(&format!("images/{}", seg(&name)))
                .await?,
            render::image_detail,
        ),
        ImageCmd::Delete { name } => {
            client
                .delete_empty(&format!("images/{}", seg(&name)))
                .await?;
            out.note(format!("image `{name}` deleted"));
        }
        ImageCmd::Import(a) => {
            let req = import_request(&a)?;
            let img: Json<Image> = client
                .post("images", Some(&req), Some(IMPORT_TIMEOUT))
                .await?;
            out.one(&img, render::image_detail);
        }
        ImageCmd::Build(BuildCmd::Tiny(a)) => return build_tiny(client, out, a).await,
    }
    Ok(0)
}

/// The request body for `image import` (paths made absolute).
pub fn import_request(a: &ImportArgs) -> Result<ImportImageRequest, CliError> {
    let abs = |p: &Option<PathBuf>| -> Result<Option<String>, CliError> {
        p.as_deref().map(absolute).transpose()
    };
    Ok(ImportImageRequest {
        name: a.name.clone(),
        disk_path: abs(&a.disk)?,
        format: a.format.map(Into::into),
        kernel_path: abs(&a.kernel)?,
        initrd_path: abs(&a.initrd)?,
        cmdline: a.cmdline.clone(),
        volume: a.volume.clone(),
        snapshot: a.snapshot.clone(),
    })
}

fn absolute(p: &Path) -> Result<String, CliError> {
    let abs = std::path::absolute(p)
        .map_err(|e| CliError::usage(format!("path {}: {e}", p.display())))?;
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::usage(format!("path {} is not valid UTF-8", abs.display())))
}

/// Default (cache, out) directories for `image build tiny`: system paths for root, else the XDG cache.
pub fn default_build_dirs(
    is_root: bool,
    xdg_cache: Option<PathBuf>,
    home: Option<PathBuf>,
) -> (PathBuf, PathBuf) {
    if is_root {
        return (
            PathBuf::from("/var/cache/kumo/tiny-build"),
            PathBuf::from("/var/lib/kumo/build/tiny"),
        );
    }
    let base = xdg_cache
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kumo");
    (base.join("tiny-build"), base.join("build").join("tiny"))
}

/// sha256 over the files in order, as the server computes it for kernel+initrd images.
pub fn sha256_files(paths: &[&Path]) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        let mut f = std::fs::File::open(p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What to do given the image that may already exist under the requested name (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Nothing there: import.
    Import,
    /// Same content: reuse it.
    Reuse,
    /// Different content under that name.
    Conflict(String),
}

pub fn existing_decision(name: &str, existing: Option<&Image>, local_sha256: &str) -> Existing {
    match existing {
        None => Existing::Import,
        Some(img) if img.sha256 == local_sha256 => Existing::Reuse,
        Some(img) => Existing::Conflict(format!(
            "an image named `{name}` ({}) already exists with different content (sha256 {} here, {} there); \
             delete it first with `kumo image delete {name}` or choose another --name",
            img.id, local_sha256, img.sha256
        )),
    }
}

/// Build the tiny guest (kernel + initrd) into the cache/output dirs; returns it and its sha256.
async fn build_tiny_files(
    out: &Output,
    a: &BuildTinyArgs,
) -> Result<(kumo_guest::TinyGuest, String), CliError> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let (def_cache, def_out) = default_build_dirs(is_root, env("XDG_CACHE_HOME"), env("HOME"));
    let cache = std::path::absolute(a.cache_dir.clone().unwrap_or(def_cache))
        .map_err(|e| CliError::usage(e.to_string()))?;
    let outdir = std::path::absolute(a.out_dir.clone().unwrap_or(def_out))
        .map_err(|e| CliError::usage(e.to_string()))?;
    out.note(format!(
        "building the tiny guest (cache {}, output {})…",
        cache.display(),
        outdir.display()
    ));
    let built = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let g = kumo_guest::build_tiny(&cache, &outdir)?;
        let sha = sha256_files(&[&g.kernel, &g.initrd])?;
        Ok((g, sha))
    })
    .await
    .map_err(|e| CliError::Other(anyhow::anyhow!("build task: {e}")))?;
    built.map_err(|e| CliError::Other(e.context("building the tiny guest")))
}

/// `image build tiny --no-import`: build only; needs no server (and no token).
pub async fn build_tiny_only(out: &Output, a: &BuildTinyArgs) -> Result<i32, CliError> {
    let (guest, _) = build_tiny_files(out, a).await?;
    out.note(format!(
        "built {} and {} (not imported)",
        guest.kernel.display(),
        guest.initrd.display()
    ));
    Ok(0)
}

async fn build_tiny(client: &Client, out: &Output, a: BuildTinyArgs) -> Result<i32, CliError> {
    let (guest, sha) = build_tiny_files(out, &a).await?;
    let existing: Option<Json<Image>> = client.get_opt(&format!("images/{}", seg(&a.name))).await?;
    match existing_decision(&a.name, existing.as_ref().map(|j| &j.value), &sha) {
        Existing::Reuse => {
            out.note(format!("image `{}` is already up to date", a.name));
            if let Some(img) = existing {
                out.one(&img, render::image_detail);
            }
            return Ok(0);
        }
        Existing::Conflict(msg) => return Err(CliError::usage(msg)),
        Existing::Import => {}
    }
    let req = ImportImageRequest {
        name: a.name.clone(),
        disk_path: None,
        format: None,
        kernel_path: Some(absolute(&guest.kernel)?),
        initrd_path: Some(absolute(&guest.initrd)?),
        cmdline: Some(guest.cmdline.clone()),
        volume: None,
        snapshot: None,
    };
    let img: Json<Image> = client
        .post("images", Some(&req), Some(IMPORT_TIMEOUT))
        .await?;
    out.one(&img, render::image_detail);
    Ok(0)
}
