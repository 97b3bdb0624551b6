//! Image replication between the control plane's servers.
//!
//! An image's files are written where it is imported: in one server's data directory. Every server
//! copies every available image from a server that holds it ([`tick`], every [`EVERY`]), so that
//! any server can hand images to hosts, and an image outlives the server it was imported on.
//!
//! `/image-copies/<image>/<server>` says that a server holds a complete, checked copy. It is written
//! after the files are in place (an import writes it for the importing server; a copy is checked
//! against the image's sha256 before it takes its final name) and deleted with them:
//! - a server that deletes an image removes its own files and key with the record;
//! - every other server removes its files once it sees its key for an image that is gone.
//!
//! A host (or this server's own agent) asking a server for an image that server does not hold yet
//! gets it all the same: the server copies it first ([`ensure_here`]).

use std::path::Path;
use std::time::Duration;

use kumo_agent::imagecache::{self, FetchFile};
use kumo_types::{Error, Image, ImageState, Result, ServerInfo};

use crate::app::App;
use crate::storeutil::{keys, list_json, list_raw, store_err};

/// How often every server looks for images it lacks and copies it should drop.
pub const EVERY: Duration = Duration::from_secs(5);

const COPIES: &str = "/image-copies/";

fn copy_key(image: &str, server: &str) -> String {
    format!("{COPIES}{image}/{server}")
}

/// Record that this server holds a complete copy of `image`.
pub async fn held_here(app: &App, image: &str) -> Result<()> {
    app.kv()
        .put(&copy_key(image, &app.peers.me), Vec::new())
        .await
        .map_err(store_err)?;
    Ok(())
}

/// The op that forgets this server's copy (with the image's delete).
pub fn forget_here(app: &App, image: &str) -> kumo_store::Op {
    kumo_store::Op::delete(copy_key(image, &app.peers.me))
}

/// The servers that hold a copy of `image`.
pub async fn holders(app: &App, image: &str) -> Result<Vec<String>> {
    let prefix = format!("{COPIES}{image}/");
    Ok(list_raw(app.kv(), &prefix)
        .await?
        .into_iter()
        .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// Make `image`'s files present on this server: already here (recorded if it was not), or copied
/// from a live server that holds them, checked against the image's sha256.
pub async fn ensure_here(app: &App, image: &Image) -> Result<()> {
    let _one_at_a_time = app.replicating.lock().await;
    let mine = holders(app, &image.id).await?;
    if imagecache::is_complete(&app.pool, image) {
        if !mine.contains(&app.peers.me) {
            held_here(app, &image.id).await?;
        }
        return Ok(());
    }
    let live = crate::peers::live(app.kv()).await?;
    let from: Vec<&ServerInfo> = live
        .iter()
        .filter(|s| s.id != app.peers.me && mine.contains(&s.id))
        .collect();
    if from.is_empty() {
        return Err(Error::unavailable(format!(
            "image {} is not on this server, and no live server holds it (held by: {})",
            image.id,
            if mine.is_empty() {
                "none".to_string()
            } else {
                mine.join(", ")
            }
        )));
    }
    let mut last = None;
    for server in from {
        let src = FromPeer { app, server };
        match imagecache::ensure_local_from(&src, &app.pool, image, "replica").await {
            Ok(()) => {
                held_here(app, &image.id).await?;
                tracing::info!(image = %image.id, from = %server.id, "image copied from a peer server");
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::unavailable("no server to copy the image from")))
}

/// Files from a peer server's `/peer/v1/images/{id}/files/{file}`.
struct FromPeer<'a> {
    app: &'a App,
    server: &'a ServerInfo,
}

#[async_trait::async_trait]
impl FetchFile for FromPeer<'_> {
    async fn fetch_image_file(&self, image_id: &str, file: &str, dest: &Path) -> Result<()> {
        let resp = self
            .app
            .peers
            .get(self.server, &format!("/images/{image_id}/files/{file}"))
            .await?;
        imagecache::write_body(resp, dest, &format!("image {image_id}/{file}")).await
    }
}

/// One pass: copy the available images this server lacks; drop copies of deleted images.
pub async fn tick(app: &App) -> Result<()> {
    let images: Vec<Image> = list_json(app.kv(), keys::IMAGES).await?;
    let suffix = format!("/{}", app.peers.me);
    // This server's copies: (image id, key).
    let mine: Vec<(String, String)> = list_raw(app.kv(), COPIES)
        .await?
        .into_iter()
        .filter_map(|kv| {
            let image = kv.key.strip_prefix(COPIES)?.strip_suffix(&suffix)?;
            Some((image.to_string(), kv.key.clone()))
        })
        .collect();
    for img in images.iter().filter(|i| i.state == ImageState::Available) {
        if mine.iter().any(|(id, _)| id == &img.id) {
            continue;
        }
        if let Err(e) = ensure_here(app, img).await {
            tracing::debug!(image = %img.id, error = %e, "image not replicated yet");
        }
    }
    for (image, key) in mine {
        if images.iter().any(|i| i.id == image) {
            continue;
        }
        let pool = app.pool.clone();
        let id = image.clone();
        tokio::task::spawn_blocking(move || pool.delete_image(&id))
            .await
            .map_err(|e| Error::internal_with("delete task", e))??;
        app.kv().delete(&key).await.map_err(store_err)?;
        tracing::info!(image, "copy of a deleted image removed");
    }
    Ok(())
}

/// Run [`tick`] every [`EVERY`] on this server.
pub fn spawn(app: App) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = tick(&app).await {
                tracing::warn!(error = %e, "image replication");
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
