//! Handlers for placement groups and host labels (what the scheduler places by).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kumo_types::{
    CreatePlacementGroupRequest, ErrorBody, Host, Page, PlacementGroup, UpdateHostRequest,
};

use super::extract::ApiJson;
use crate::app::{App, host, placement_group};
use crate::error::ApiResult;

/// Change a host's labels (`{"labels": {"rack": "a", "old": null}}`: a value sets, `null` removes).
#[utoipa::path(patch, path = "/v1/hosts/{id}", params(("id" = String, Path, description = "ID or name")),
    request_body = UpdateHostRequest,
    responses((status = 200, body = Host), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_host(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateHostRequest>,
) -> ApiResult<Json<Host>> {
    Ok(Json(host::update(&app, &id, req).await?))
}

#[utoipa::path(get, path = "/v1/placement-groups", responses((status = 200, body = Page<PlacementGroup>)))]
pub async fn list_placement_groups(
    State(app): State<App>,
) -> ApiResult<Json<Page<PlacementGroup>>> {
    Ok(Json(placement_group::list(&app).await?))
}

#[utoipa::path(post, path = "/v1/placement-groups", request_body = CreatePlacementGroupRequest,
    responses((status = 201, body = PlacementGroup), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_placement_group(
    State(app): State<App>,
    ApiJson(req): ApiJson<CreatePlacementGroupRequest>,
) -> ApiResult<(StatusCode, Json<PlacementGroup>)> {
    Ok((
        StatusCode::CREATED,
        Json(placement_group::create(&app, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/placement-groups/{name}", params(("name" = String, Path)),
    responses((status = 200, body = PlacementGroup), (status = 404, body = ErrorBody)))]
pub async fn get_placement_group(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<PlacementGroup>> {
    Ok(Json(placement_group::get(&app, &name).await?))
}

/// Delete a placement group; 409 while it has members.
#[utoipa::path(delete, path = "/v1/placement-groups/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_placement_group(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    placement_group::delete(&app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
