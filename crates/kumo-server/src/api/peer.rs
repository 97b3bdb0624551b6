//! `/peer/v1`: what the control plane's servers fetch from each other: image files, for
//! replication ([`crate::app::image::replica`]), and the streams of console sessions whose user is
//! on the other server ([`crate::app::console`]). Callers present the peer secret
//! ([`crate::peers`]) in [`crate::peers::SECRET_HEADER`].

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use kumo_types::Error;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/images/{id}/files/{file}", get(image_file))
        .route("/consoles/{session}/{host}/input", get(console_input))
        .route("/consoles/{session}/{host}/output", post(console_output))
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

/// A console session of this server's: what its user types (forwarded by the server the host's
/// agent talks to).
async fn console_input(
    State(app): State<App>,
    Path((session, host)): Path<(String, String)>,
) -> ApiResult<Response> {
    let me = app.peers.me.clone();
    let stream = crate::app::console::input_stream(&app, &host, &session, &me).await?;
    Ok(super::internal::stream_response(stream))
}

/// A console session of this server's: what the guest prints.
async fn console_output(
    State(app): State<App>,
    Path((session, host)): Path<(String, String)>,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    let me = app.peers.me.clone();
    let body = super::internal::body_stream(body);
    crate::app::console::feed_output(&app, &host, &session, &me, body).await?;
    Ok(StatusCode::NO_CONTENT)
}
