//! `kumo image list|show|delete|import|build tiny`.
//!
//! Import paths are paths on the *server* host; relative paths are made absolute against the client's
//! working directory (right for the single-host case, where client and server share a filesystem).
//! URL imports (`--disk-url`, `--kernel-url`) run on the server in the background: `image import` polls the
//! image and shows the download's progress on stderr until it is `available` (or `error`: exit 1),
//! unless `--no-wait`.
//!
//! `image build tiny` builds the tiny guest locally with [`kumo_guest::build_tiny`] and imports it. It is
//! re-runnable: when an image of that name already exists with the same sha256 (kernel then initrd, as the
//! server hashes them) it is printed and the command succeeds; a different one is an error with a hint.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use kumo_types::{Image, ImageState, ImportFormat, ImportImageRequest};
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
    /// Change an image: `--visibility public` shows it to every project (cloud admins only).
    Update {
        name: String,
        #[arg(long, value_enum)]
        visibility: VisibilityArg,
    },
    /// Import an image: from an http(s) URL, from files on the server host, or from a volume or
    /// snapshot.
    Import(ImportArgs),
    /// Build a built-in image locally and import it.
    #[command(subcommand)]
    Build(BuildCmd),
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true)
    .args(["disk_url", "kernel_url", "kernel", "disk", "volume", "snapshot"])))]
#[command(group(ArgGroup::new("disk_source").args(["disk_url", "disk"])))]
#[command(group(ArgGroup::new("kernel_source").args(["kernel", "kernel_url"])))]
#[command(group(ArgGroup::new("downloaded").args(["disk_url", "kernel_url"])))]
pub struct ImportArgs {
    /// Name of the new image.
    #[arg(long)]
    pub name: String,
    /// http(s) URL of a disk image (qcow2, raw, iso, vmdk, vdi or vhdx) for the server to download
    /// (the API's `url`; `--url` is the global flag naming the kumo API).
    #[arg(long)]
    pub disk_url: Option<String>,
    /// http(s) URL of a kernel (with --initrd-url).
    #[arg(long, requires = "initrd_url")]
    pub kernel_url: Option<String>,
    /// http(s) URL of an initrd (with --kernel-url).
    #[arg(long, requires = "kernel_url")]
    pub initrd_url: Option<String>,
    /// Expected sha256 of the file (of the kernel then the initrd for a pair); a mismatch fails the
    /// import and keeps nothing.
    #[arg(long, conflicts_with_all = ["volume", "snapshot"])]
    pub sha256: Option<String>,
    /// Kernel file (with --initrd).
    #[arg(long, requires = "initrd")]
    pub kernel: Option<PathBuf>,
    /// Initrd file (with --kernel).
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (with --kernel or --kernel-url).
    #[arg(long, requires = "kernel_source")]
    pub cmdline: Option<String>,
    /// Disk image file on the server host.
    #[arg(long)]
    pub disk: Option<PathBuf>,
    /// Format of the disk image (with --disk or --disk-url); detected by the server when omitted. vmdk,
    /// vdi and vhdx are converted to qcow2; iso is stored as is.
    #[arg(long, requires = "disk_source", value_enum)]
    pub format: Option<FormatArg>,
    /// Make the image from a volume's data (ID or name).
    #[arg(long)]
    pub volume: Option<String>,
    /// Make the image from a completed snapshot (ID or name).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Make the image public: every project sees it and may boot it (cloud admins only).
    #[arg(long)]
    pub public: bool,
    /// With --disk-url or --kernel-url: return once the server accepted the import (state `importing`)
    /// instead of waiting for it to finish.
    #[arg(long, requires = "downloaded")]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VisibilityArg {
    Private,
    Public,
}

impl From<VisibilityArg> for kumo_types::Visibility {
    fn from(v: VisibilityArg) -> kumo_types::Visibility {
        match v {
            VisibilityArg::Private => kumo_types::Visibility::Private,
            VisibilityArg::Public => kumo_types::Visibility::Public,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Qcow2,
    Raw,
    Iso,
    Vmdk,
    Vdi,
    Vhdx,
}

impl From<FormatArg> for ImportFormat {
    fn from(f: FormatArg) -> ImportFormat {
        match f {
            FormatArg::Qcow2 => ImportFormat::Qcow2,
            FormatArg::Raw => ImportFormat::Raw,
            FormatArg::Iso => ImportFormat::Iso,
            FormatArg::Vmdk => ImportFormat::Vmdk,
            FormatArg::Vdi => ImportFormat::Vdi,
            FormatArg::Vhdx => ImportFormat::Vhdx,
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
        ImageCmd::Update { name, visibility } => {
            let body = kumo_types::UpdateImageRequest {
                visibility: Some(visibility.into()),
            };
            let img: Json<Image> = client
                .patch(&format!("images/{}", seg(&name)), &body)
                .await?;
            out.one(&img, render::image_detail);
        }
        ImageCmd::Import(a) => {
            let req = import_request(&a)?;
            let img: Json<Image> = client
                .post("images", Some(&req), Some(IMPORT_TIMEOUT))
                .await?;
            if img.value.state == ImageState::Importing && !a.no_wait {
                let done = wait_import(client, out, &img.value).await?;
                out.one(&done, render::image_detail);
            } else {
                out.one(&img, render::image_detail);
            }
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
        url: a.disk_url.clone(),
        kernel_url: a.kernel_url.clone(),
        initrd_url: a.initrd_url.clone(),
        sha256: a.sha256.clone(),
        disk_path: abs(&a.disk)?,
        format: a.format.map(Into::into),
        kernel_path: abs(&a.kernel)?,
        initrd_path: abs(&a.initrd)?,
        cmdline: a.cmdline.clone(),
        volume: a.volume.clone(),
        snapshot: a.snapshot.clone(),
        visibility: a.public.then_some(kumo_types::Visibility::Public),
    })
}

/// How often a waiting `image import` polls the image.
pub const IMPORT_POLL: Duration = Duration::from_secs(1);
/// Without a terminal, a progress line at most this often (unless the phase changes).
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The progress of an importing image in words: `downloading: 45% (450.0 MiB of 1000.0 MiB)` (pure).
pub fn progress_line(img: &Image) -> String {
    let phase = img.status_message.as_deref().unwrap_or("importing");
    let Some(p) = img.progress else {
        return format!("image `{}`: {phase}", img.name);
    };
    let amount = match (p.percent(), p.bytes_total) {
        (Some(pc), Some(t)) => format!(
            "{pc}% ({} of {})",
            render::bytes(p.bytes_done),
            render::bytes(t)
        ),
        _ => format!("{} (size unknown)", render::bytes(p.bytes_done)),
    };
    format!("image `{}`: {phase}: {amount}", img.name)
}

/// Whether to print a new progress line without a terminal: when the phase changed, or after
/// [`PLAIN_PROGRESS_EVERY`] (pure).
pub fn plain_progress_due(last: Option<(&str, Duration)>, phase: &str, every: Duration) -> bool {
    match last {
        None => true,
        Some((p, since)) => p != phase || since >= every,
    }
}

/// Poll an importing image until it is `available` (returned) or `error` (exit 1 with its message).
async fn wait_import(client: &Client, out: &Output, img: &Image) -> Result<Json<Image>, CliError> {
    let path = format!("images/{}", seg(&img.id));
    let tty = std::io::stderr().is_terminal() && !out.json;
    let mut last: Option<(String, Instant)> = None;
    loop {
        tokio::time::sleep(IMPORT_POLL).await;
        let Some(seen) = client.get_opt::<Image>(&path).await? else {
            return Err(CliError::usage(format!(
                "image `{}` was deleted while importing",
                img.name
            )));
        };
        match seen.value.state {
            ImageState::Available => {
                if tty {
                    eprintln!();
                }
                return Ok(seen);
            }
            ImageState::Error => {
                if tty {
                    eprintln!();
                }
                return Err(CliError::usage(format!(
                    "import of image `{}` failed: {}",
                    img.name,
                    seen.value.status_message.as_deref().unwrap_or("no message")
                )));
            }
            ImageState::Importing => {}
        }
        let line = progress_line(&seen.value);
        let phase = seen.value.status_message.clone().unwrap_or_default();
        if tty {
            eprint!("\r\x1b[K{line}");
        } else if plain_progress_due(
            last.as_ref().map(|(p, t)| (p.as_str(), t.elapsed())),
            &phase,
            PLAIN_PROGRESS_EVERY,
        ) {
            out.note(&line);
            last = Some((phase, Instant::now()));
        }
    }
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

/// A failed import (`error`) is replaced by a new one, so it counts as nothing there.
pub fn existing_decision(name: &str, existing: Option<&Image>, local_sha256: &str) -> Existing {
    match existing {
        None => Existing::Import,
        Some(img) if img.state == ImageState::Error => Existing::Import,
        Some(img) if img.state == ImageState::Importing => Existing::Conflict(format!(
            "an image named `{name}` ({}) is being imported; wait for it, or delete it with \
             `kumo image delete {name}`",
            img.id
        )),
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
        kernel_path: Some(absolute(&guest.kernel)?),
        initrd_path: Some(absolute(&guest.initrd)?),
        cmdline: Some(guest.cmdline.clone()),
        // The smoke-test guest serves every project.
        visibility: Some(kumo_types::Visibility::Public),
        ..Default::default()
    };
    let img: Json<Image> = client
        .post("images", Some(&req), Some(IMPORT_TIMEOUT))
        .await?;
    out.one(&img, render::image_detail);
    Ok(0)
}
