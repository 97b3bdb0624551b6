//! The internal API agents use when they do not run inside the server (`kumo agent`). It mirrors the
//! [`kumo_agent::control::ControlPlane`] trait one route per method, so the agent's logic is the same
//! in-process and remote. Authenticated with a bearer token for now; per-host certificates (mTLS) and
//! join tokens come with multi-host clusters.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use futures::StreamExt;
use kumo_agent::control::{ControlPlane, EventBody, WatchAnswer};
use kumo_types::{AssignmentSnapshot, Host, HostInventory, InstanceStatus};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery};
use crate::app::App;
use crate::control::InProcess;
use crate::error::ApiResult;

/// How long a watch long-poll waits before answering "no change".
pub const WATCH_POLL: Duration = Duration::from_secs(25);

#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    pub revision: i64,
}

pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/hosts/register", post(register))
        .route("/hosts/{id}/heartbeat", post(heartbeat))
        .route("/hosts/{id}/assignments", get(assignments))
        .route("/hosts/{id}/watch", get(watch))
        .route("/instances/{id}/status", post(status))
        .route("/instances/{id}/removed", post(removed))
        .route("/volumes/{id}/status", post(volume_status))
        .route("/volumes/{id}/removed", post(volume_removed))
        .route("/snapshots/{id}/status", post(snapshot_status))
        .route("/snapshots/{id}/removed", post(snapshot_removed))
        .route("/pools/{pool}/hosts/{host}", post(pool_status))
        .route("/events", post(event))
        .route_layer(middleware::from_fn_with_state(
            app,
            crate::auth::require_token,
        ))
}

fn cp(app: App) -> InProcess {
    InProcess { app }
}

async fn register(
    State(app): State<App>,
    ApiJson(inv): ApiJson<HostInventory>,
) -> ApiResult<Json<Host>> {
    Ok(Json(cp(app).register_host(inv).await?))
}

async fn heartbeat(State(app): State<App>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cp(app).heartbeat(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn assignments(
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<Json<AssignmentSnapshot>> {
    Ok(Json(cp(app).assignments(&id).await?))
}

/// Long-poll: answers as soon as something changed after `revision`, or after [`WATCH_POLL`].
async fn watch(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WatchQuery>,
) -> ApiResult<Json<WatchAnswer>> {
    let mut stream = cp(app).watch_assignments(&id, q.revision).await?;
    let changed = matches!(
        tokio::time::timeout(WATCH_POLL, stream.next()).await,
        Ok(Some(()))
    );
    Ok(Json(WatchAnswer { changed }))
}

async fn status(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiJson(st): ApiJson<InstanceStatus>,
) -> ApiResult<StatusCode> {
    cp(app).report_status(&id, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn removed(State(app): State<App>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cp(app).instance_removed(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn volume_status(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiJson(st): ApiJson<kumo_types::VolumeStatus>,
) -> ApiResult<StatusCode> {
    cp(app).report_volume_status(&id, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn volume_removed(State(app): State<App>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cp(app).volume_removed(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshot_status(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiJson(st): ApiJson<kumo_types::SnapshotStatus>,
) -> ApiResult<StatusCode> {
    cp(app).report_snapshot_status(&id, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshot_removed(State(app): State<App>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cp(app).snapshot_removed(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pool_status(
    State(app): State<App>,
    Path((pool, host)): Path<(String, String)>,
    ApiJson(st): ApiJson<kumo_types::PoolHostStatus>,
) -> ApiResult<StatusCode> {
    cp(app).report_pool_status(&pool, &host, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn event(State(app): State<App>, ApiJson(ev): ApiJson<EventBody>) -> ApiResult<StatusCode> {
    cp(app).event(&ev.resource, &ev.kind, &ev.message).await?;
    Ok(StatusCode::NO_CONTENT)
}
