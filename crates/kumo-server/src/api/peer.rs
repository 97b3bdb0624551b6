//! `/peer/v1`: what the control plane's servers fetch from each other (image files, for
//! replication; see [`crate::app::image::replica`]). Callers present the peer secret
//! ([`crate::peers`]) in [`crate::peers::SECRET_HEADER`].

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use kumo_types::Error;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/images/{id}/files/{file}", get(image_file))
        .route_layer(middleware::from_fn_with_state(app, require_peer))
}

async fn require_peer(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(crate::peers::SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !app.peers.accepts(presented) {
        return Err(Error::Unauthenticated {
            message: "the servers' peer API needs the peer secret".into(),
        }
        .into());
    }
    Ok(next.run(req).await)
}

/// A file of an image this server holds (never copied on demand: a peer asks the holders).
async fn image_file(
    State(app): State<App>,
    Path((id, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let path = crate::app::image::stored_file(&app, &id, &file)?;
    super::internal::file_response(&path, &id, &file).await
}
