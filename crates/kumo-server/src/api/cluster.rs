//! Handlers for `/v1/cluster/…`: join tokens (an admin mints one per host to join).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kumo_types::{CreateJoinTokenRequest, ErrorBody, JoinToken, JoinTokenCreated, Page};

use super::extract::ApiJson;
use crate::app::{App, join_token};
use crate::error::ApiResult;

#[utoipa::path(get, path = "/v1/cluster/join-tokens",
    responses((status = 200, body = Page<JoinToken>)))]
pub async fn list_join_tokens(State(app): State<App>) -> ApiResult<Json<Page<JoinToken>>> {
    Ok(Json(join_token::list(&app).await?))
}

/// Create a one-time join token. Its secret (`token`) is in this answer only; the store keeps its
/// SHA-256. `ca_fingerprint` is what the joining agent pins (`--ca-fingerprint`).
#[utoipa::path(post, path = "/v1/cluster/join-tokens", request_body = CreateJoinTokenRequest,
    responses((status = 201, body = JoinTokenCreated), (status = 422, body = ErrorBody)))]
pub async fn create_join_token(
    State(app): State<App>,
    ApiJson(req): ApiJson<CreateJoinTokenRequest>,
) -> ApiResult<(StatusCode, Json<JoinTokenCreated>)> {
    Ok((
        StatusCode::CREATED,
        Json(join_token::create(&app, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/cluster/join-tokens/{id}", params(("id" = String, Path)),
    responses((status = 200, body = JoinToken), (status = 404, body = ErrorBody)))]
pub async fn get_join_token(
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<Json<JoinToken>> {
    Ok(Json(join_token::get(&app, &id).await?))
}

/// Delete a join token (unused ones can then no longer join a host).
#[utoipa::path(delete, path = "/v1/cluster/join-tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_join_token(
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    join_token::delete(&app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
