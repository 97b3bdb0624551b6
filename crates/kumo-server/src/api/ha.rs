//! Handlers for HA settings of hosts.

use axum::Json;
use axum::extract::{Path, State};
use kumo_types::{ErrorBody, Fencing, Host};

use super::extract::ApiJson;
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
