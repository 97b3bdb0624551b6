//! URL imports, in the background.
//!
//! [`start`] sends the GETs and refuses the request (422 on the URL's field) unless every web server
//! answers 2xx within [`ANSWER_TIMEOUT`]; only then is the image recorded `importing` and a task
//! spawned. The task streams each body into `<pool>/images/<id>.download/` while hashing it, writes
//! the progress into the image record every [`PROGRESS_INTERVAL`], verifies the sha256, stores the
//! image like a file import (format detection, conversion) and writes it `available`, or `error` with
//! the reason. Every write is a compare-and-swap on the record's revision: when it fails, the image
//! was deleted, and the task stops and removes what it wrote (deleting an importing image cancels
//! it). A download that sends nothing for [`IDLE_TIMEOUT`] fails.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kumo_agent::storage::{DiskSource, Imported, check_sha256};
use kumo_store::{Compare, Op, Revision, Txn};
use kumo_types::{
    Error, Image, ImageState, ImportFormat, ImportImageRequest, ImportProgress, Result,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{App, NameClaim, new_image, redact, stored};
use crate::storeutil::{encode, keys, store_err};

/// How long the web server has to accept the connection and answer the GET.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// A download that receives nothing for this long fails.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often progress is written to the image record.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// Tries of the final write of the record when the store is briefly unavailable.
const FINAL_WRITE_TRIES: u32 = 10;

/// A web server's answer to a GET, body not read yet.
struct Answer {
    field: &'static str,
    /// The URL as shown to users (no credentials).
    shown: String,
    resp: reqwest::Response,
}

/// Why a running import stopped early.
enum Stop {
    /// Its image was deleted.
    Cancelled,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Failed(Error::internal_with("writing the download", e))
    }
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        src = c.source();
    }
    s
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(ANSWER_TIMEOUT)
        .user_agent(concat!(
            "kumo/",
            env!("CARGO_PKG_VERSION"),
            " (image import)"
        ))
        .build()
        .map_err(|e| Error::internal_with("building the HTTP client", e))
}

/// GET `url`; anything but a 2xx answer in time is refused, naming `field`.
async fn open(client: &reqwest::Client, field: &'static str, url: &reqwest::Url) -> Result<Answer> {
    let shown = redact(url);
    let resp = match tokio::time::timeout(ANSWER_TIMEOUT, client.get(url.clone()).send()).await {
        Err(_) => {
            return Err(Error::invalid(
                field,
                format!("{shown}: no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            ));
        }
        Ok(Err(e)) => {
            return Err(Error::invalid(
                field,
                format!("{shown}: cannot download: {}", chain(&e.without_url())),
            ));
        }
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        return Err(Error::invalid(
            field,
            format!("{shown}: the web server answered {}", resp.status()),
        ));
    }
    Ok(Answer { field, shown, resp })
}

/// Check the URLs answer, record the image `importing`, and import it in the background.
pub(super) async fn start(
    app: &App,
    id: &str,
    req: &ImportImageRequest,
    claim: NameClaim,
    urls: Vec<reqwest::Url>,
    sha256: Option<String>,
) -> Result<Image> {
    let client = client()?;
    let fields: &[&'static str] = if urls.len() == 1 {
        &["url"]
    } else {
        &["kernel_url", "initrd_url"]
    };
    let mut answers = Vec::new();
    for (field, u) in fields.iter().zip(&urls) {
        answers.push(open(&client, field, u).await?);
    }
    let total = answers
        .iter()
        .map(|a| a.resp.content_length())
        .sum::<Option<u64>>();
    let kind = if urls.len() == 1 {
        kumo_types::ImageKind::Disk
    } else {
        kumo_types::ImageKind::KernelInitrd
    };
    let mut image = new_image(&claim.project, id, kind, req, ImageState::Importing);
    image.source_url = answers.first().map(|a| a.shown.clone());
    image.status_message = Some("downloading".into());
    image.progress = Some(ImportProgress {
        bytes_done: 0,
        bytes_total: total,
    });
    let r = app.kv().txn(claim.txn(&image)?).await.map_err(store_err)?;
    if !r.succeeded {
        return Err(Error::conflict_field(
            "name",
            format!("image `{}` already exists", image.name),
        ));
    }
    claim.replaced(app).await?;
    super::super::event::record(
        app,
        id,
        "image.import_started",
        &format!(
            "import of image `{}` from {} started",
            image.name,
            image.source_url.as_deref().unwrap_or("?")
        ),
    )
    .await?;
    let job = Job {
        app: app.clone(),
        image: image.clone(),
        rev: r.revision,
        format: req.format,
        sha256,
        total,
        done: 0,
        reported: 0,
    };
    tokio::spawn(job.run(answers));
    Ok(image)
}

/// One running URL import.
struct Job {
    app: App,
    /// The record as last written.
    image: Image,
    /// Its revision: every write compares it.
    rev: Revision,
    format: Option<ImportFormat>,
    sha256: Option<String>,
    total: Option<u64>,
    done: u64,
    /// `done` as last written.
    reported: u64,
}

impl Job {
    async fn run(mut self, answers: Vec<Answer>) {
        let outcome = self.fetch_and_store(answers).await;
        match outcome {
            Ok(imported) => self.succeed(imported).await,
            Err(Stop::Cancelled) => {
                tracing::info!(image = %self.image.id, "image deleted while importing; import cancelled");
                self.remove_files().await;
            }
            Err(Stop::Failed(e)) => self.fail(e).await,
        }
    }

    async fn fetch_and_store(&mut self, answers: Vec<Answer>) -> Result<Imported, Stop> {
        let pool = self.app.pool.clone();
        let dir = pool.download_dir(&self.image.id);
        tokio::fs::create_dir_all(&dir).await?;
        let names = if answers.len() == 1 {
            ["source"].as_slice()
        } else {
            ["kernel", "initrd"].as_slice()
        };
        let label = answers.first().map(|a| a.shown.clone()).unwrap_or_default();
        let mut hasher = Sha256::new();
        let mut files: Vec<PathBuf> = Vec::new();
        for (a, name) in answers.into_iter().zip(names) {
            let path = dir.join(name);
            self.download(a, &path, &mut hasher).await?;
            files.push(path);
        }
        let sha: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Some(want) = &self.sha256 {
            let what = if files.len() == 1 {
                label.clone()
            } else {
                "the kernel then the initrd".to_string()
            };
            check_sha256(want, &sha, &what)?;
        }
        self.image.status_message = Some("storing".into());
        self.write().await?;
        let (id, format) = (self.image.id.clone(), self.format);
        let imported = tokio::task::spawn_blocking(move || {
            let r = match files.as_slice() {
                [disk] => pool.import_disk_from(
                    &id,
                    &DiskSource {
                        path: disk,
                        field: "url",
                        label: &label,
                        owned: true,
                        sha256: Some(&sha),
                    },
                    format,
                    None,
                ),
                [kernel, initrd] => pool.import_kernel(&id, kernel, initrd, None),
                _ => Err(Error::internal("a URL import downloads one or two files")),
            };
            let _ = std::fs::remove_dir_all(pool.download_dir(&id));
            r
        })
        .await
        .map_err(|e| Error::internal_with("import task", e))??;
        Ok(imported)
    }

    /// Stream one answer's body into `path`, hashing it and reporting progress.
    async fn download(
        &mut self,
        a: Answer,
        path: &std::path::Path,
        hasher: &mut Sha256,
    ) -> Result<(), Stop> {
        let Answer { field, shown, resp } = a;
        let expected = resp.content_length();
        let file = tokio::fs::File::create(path).await?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut body = resp.bytes_stream();
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_data = Instant::now();
        let mut got = 0u64;
        loop {
            tokio::select! {
                chunk = body.next() => match chunk {
                    None => break,
                    Some(Err(e)) => {
                        return Err(Stop::Failed(Error::invalid(
                            field,
                            format!(
                                "{shown}: the download failed after {got} bytes: {}",
                                chain(&e.without_url())
                            ),
                        )));
                    }
                    Some(Ok(bytes)) => {
                        hasher.update(&bytes);
                        out.write_all(&bytes).await?;
                        got += bytes.len() as u64;
                        self.done += bytes.len() as u64;
                        last_data = Instant::now();
                    }
                },
                _ = ticker.tick() => {
                    if last_data.elapsed() >= IDLE_TIMEOUT {
                        return Err(Stop::Failed(Error::invalid(
                            field,
                            format!(
                                "{shown}: no data for {} s after {got} bytes",
                                IDLE_TIMEOUT.as_secs()
                            ),
                        )));
                    }
                    self.report().await?;
                }
            }
        }
        out.flush().await?;
        out.into_inner().sync_all().await?;
        if let Some(n) = expected
            && n != got
        {
            return Err(Stop::Failed(Error::invalid(
                field,
                format!("{shown}: the download ended after {got} of {n} bytes"),
            )));
        }
        self.report().await
    }

    /// Write the progress if it moved; otherwise only check that the image still exists.
    async fn report(&mut self) -> Result<(), Stop> {
        if self.done == self.reported {
            let key = keys::image(&self.image.id);
            return match self.app.kv().get(&key).await {
                Ok(Some(kv)) if kv.mod_revision == self.rev => Ok(()),
                Ok(_) => Err(Stop::Cancelled),
                Err(_) => Ok(()), // the store hiccupped: check again at the next tick
            };
        }
        self.image.progress = Some(ImportProgress {
            bytes_done: self.done,
            bytes_total: self.total,
        });
        self.write().await?;
        self.reported = self.done;
        Ok(())
    }

    /// Compare-and-swap the record; `Cancelled` if it is gone (or no longer ours).
    async fn write(&mut self) -> Result<(), Stop> {
        match self.try_write().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Cancelled),
            Err(e) => {
                tracing::warn!(image = %self.image.id, error = %e, "cannot write import progress");
                Ok(())
            }
        }
    }

    async fn try_write(&mut self) -> Result<bool> {
        let key = keys::image(&self.image.id);
        let r = self
            .app
            .kv()
            .txn(Txn {
                compare: vec![Compare::mod_revision(&key, self.rev)],
                success: vec![Op::put(&key, encode(&self.image)?)],
                failure: vec![],
            })
            .await
            .map_err(store_err)?;
        if r.succeeded {
            self.rev = r.revision;
        }
        Ok(r.succeeded)
    }

    /// The last write of the record, retried while the store is unavailable. False if the image was
    /// deleted meanwhile.
    async fn write_final(&mut self) -> bool {
        for _ in 0..FINAL_WRITE_TRIES {
            match self.try_write().await {
                Ok(written) => return written,
                Err(e) => {
                    tracing::warn!(image = %self.image.id, error = %e, "cannot record the import's end; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::error!(image = %self.image.id, "cannot record the import's end; a restart marks it failed");
        true
    }

    async fn succeed(&mut self, imported: Imported) {
        let mut image = stored(self.image.clone(), imported);
        image.progress = Some(ImportProgress {
            bytes_done: self.done,
            bytes_total: Some(self.done),
        });
        self.image = image;
        if !self.write_final().await {
            self.remove_files().await;
            return;
        }
        if let Err(e) = super::replica::held_here(&self.app, &self.image.id).await {
            // The replicator records it on its next pass.
            tracing::warn!(image = %self.image.id, error = %e, "recording this server's copy");
        }
        let converted = self
            .image
            .source_format
            .map(|f| format!(", converted from {}", f.as_str()))
            .unwrap_or_default();
        let msg = format!(
            "image `{}` imported from {} ({} bytes{converted})",
            self.image.name,
            self.image.source_url.as_deref().unwrap_or("?"),
            self.image.size_bytes
        );
        self.event("image.imported", &msg).await;
    }

    async fn fail(&mut self, e: Error) {
        self.remove_files().await;
        let message = e.body().message;
        tracing::warn!(image = %self.image.id, error = %message, "image import failed");
        self.image.state = ImageState::Error;
        self.image.status_message = Some(message.clone());
        if self.write_final().await {
            let msg = format!("import of image `{}` failed: {message}", self.image.name);
            self.event("image.import_failed", &msg).await;
        }
    }

    async fn remove_files(&self) {
        let pool = self.app.pool.clone();
        let id = self.image.id.clone();
        match tokio::task::spawn_blocking(move || pool.delete_image(&id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(image = %self.image.id, error = ?e, "removing an import's files")
            }
            Err(e) => {
                tracing::warn!(image = %self.image.id, error = %e, "removing an import's files")
            }
        }
    }

    async fn event(&self, kind: &str, msg: &str) {
        if let Err(e) = super::super::event::record(&self.app, &self.image.id, kind, msg).await {
            tracing::warn!(image = %self.image.id, error = %e, "recording an event");
        }
    }
}
