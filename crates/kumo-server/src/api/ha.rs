//! Handlers for HA settings of hosts.

use axum::Json;
use axum::extract::{Path, State};
use kumo_types::{ClusterStatus, DrainRequest, ErrorBody, Fencing, Host};

use super::extract::{ApiJson, ApiJsonOrDefault};
use crate::app::App;
use crate::error::ApiResult;

/// Power the host off through this Redfish BMC when it fails, before its HA instances restart
/// elsewhere.
#[utoipa::path(put, path = "/v1/hosts/{id}/fencing", params(("id" = String, Path, description = "ID or name")),
    request_body = Fencing,
    responses((status = 200, body = Host), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_fencing(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiJson(f): ApiJson<Fencing>,
) -> ApiResult<Json<Host>> {
    Ok(Json(crate::app::ha::set_fencing(&app, &id, Some(f)).await?))
}

/// Forget the host's BMC: it is fenced by its agent only (self-fencing and the fencing wait).
#[utoipa::path(delete, path = "/v1/hosts/{id}/fencing", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody)))]
pub async fn clear_fencing(
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<Json<Host>> {
    Ok(Json(crate::app::ha::set_fencing(&app, &id, None).await?))
}

#[utoipa::path(get, path = "/v1/cluster/status", responses((status = 200, body = ClusterStatus)))]
pub async fn cluster_status(State(app): State<App>) -> ApiResult<Json<ClusterStatus>> {
    let leader = crate::leader::current(app.kv())
        .await
        .map_err(crate::storeutil::store_err)?;
    Ok(Json(ClusterStatus {
        server: app.leader.server_id.clone(),
        leader,
        is_leader: app.leader.is_leader(),
        servers: crate::peers::live(app.kv()).await?,
    }))
}

/// Remove a drained (or down) host with nothing on it; its certificates are revoked.
#[utoipa::path(delete, path = "/v1/hosts/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_host(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Host>> {
    Ok(Json(crate::app::host::remove(&app, &id).await?))
}

/// Drain a host: running instances whose disks every host reaches are live-migrated (cold if that
/// fails); the others are stopped, or cold-migrated with their root disk (`local_disks: migrate`);
/// then the host is in `maintenance`. The body is optional.
#[utoipa::path(post, path = "/v1/hosts/{id}/drain", params(("id" = String, Path, description = "ID or name")),
    request_body(content = DrainRequest, description = "optional"),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn drain(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiJsonOrDefault(req): ApiJsonOrDefault<DrainRequest>,
) -> ApiResult<Json<Host>> {
    Ok(Json(crate::app::drain::drain(&app, &id, req).await?))
}

/// Out of maintenance: the host is `ready` again and the instances the drain stopped start.
#[utoipa::path(post, path = "/v1/hosts/{id}/undrain", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn undrain(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Host>> {
    Ok(Json(crate::app::drain::undrain(&app, &id).await?))
}
