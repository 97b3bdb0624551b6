//! Handlers for volumes, snapshots, volume types and storage pools.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kumo_types::{
    AttachVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest, ErrorBody, Page, PoolView,
    SnapshotView, UpdateVolumeRequest, VolumeView,
};

use super::caller::Who;
use super::extract::{ApiJson, ApiQuery};
use super::instance::ListQuery;
use crate::app::{App, pool, snapshot, volume, volume_type};
use crate::error::ApiResult;

#[utoipa::path(get, path = "/v1/volumes", params(ListQuery), responses((status = 200, body = Page<VolumeView>)))]
pub async fn list_volumes(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<VolumeView>>> {
    Ok(Json(
        volume::list(
            &app,
            &who.listing(q.all_projects)?,
            q.limit,
            q.next_token.as_deref(),
        )
        .await?,
    ))
}

#[utoipa::path(post, path = "/v1/volumes", request_body = CreateVolumeRequest, responses(
    (status = 202, body = VolumeView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    (status = 503, description = "no host", body = ErrorBody)))]
pub async fn create_volume(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreateVolumeRequest>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(volume::create(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/volumes/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = VolumeView), (status = 404, body = ErrorBody)))]
pub async fn get_volume(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<VolumeView>> {
    Ok(Json(volume::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(patch, path = "/v1/volumes/{id}", params(("id" = String, Path, description = "ID or name")),
    request_body = UpdateVolumeRequest,
    responses((status = 202, body = VolumeView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_volume(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateVolumeRequest>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(volume::resize(&app, &who.scope(), &id, req).await?),
    ))
}

#[utoipa::path(delete, path = "/v1/volumes/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 202, body = VolumeView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_volume(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(volume::delete(&app, &who.scope(), &id).await?),
    ))
}

#[utoipa::path(post, path = "/v1/volumes/{id}/attach", params(("id" = String, Path, description = "ID or name")),
    request_body = AttachVolumeRequest,
    responses((status = 202, body = VolumeView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn attach_volume(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AttachVolumeRequest>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(volume::attach(&app, &who.scope(), &id, req).await?),
    ))
}

#[utoipa::path(post, path = "/v1/volumes/{id}/detach", params(("id" = String, Path, description = "ID or name")),
    responses((status = 202, body = VolumeView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn detach_volume(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(volume::detach(&app, &who.scope(), &id).await?),
    ))
}

#[utoipa::path(get, path = "/v1/snapshots", params(ListQuery), responses((status = 200, body = Page<SnapshotView>)))]
pub async fn list_snapshots(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<SnapshotView>>> {
    Ok(Json(
        snapshot::list(
            &app,
            &who.listing(q.all_projects)?,
            q.limit,
            q.next_token.as_deref(),
        )
        .await?,
    ))
}

#[utoipa::path(post, path = "/v1/snapshots", request_body = CreateSnapshotRequest, responses(
    (status = 202, body = SnapshotView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_snapshot(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreateSnapshotRequest>,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(snapshot::create(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/snapshots/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = SnapshotView), (status = 404, body = ErrorBody)))]
pub async fn get_snapshot(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<SnapshotView>> {
    Ok(Json(snapshot::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(delete, path = "/v1/snapshots/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 202, body = SnapshotView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_snapshot(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(snapshot::delete(&app, &who.scope(), &id).await?),
    ))
}

#[utoipa::path(get, path = "/v1/pools", responses((status = 200, body = Page<PoolView>)))]
pub async fn list_pools(State(app): State<App>) -> ApiResult<Json<Page<PoolView>>> {
    Ok(Json(pool::list(&app).await?))
}

#[utoipa::path(post, path = "/v1/pools", request_body = kumo_types::CreatePoolRequest,
    responses((status = 201, body = PoolView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_pool(
    State(app): State<App>,
    ApiJson(req): ApiJson<kumo_types::CreatePoolRequest>,
) -> ApiResult<(StatusCode, Json<PoolView>)> {
    Ok((StatusCode::CREATED, Json(pool::create(&app, req).await?)))
}

#[utoipa::path(get, path = "/v1/pools/{name}", params(("name" = String, Path)),
    responses((status = 200, body = PoolView), (status = 404, body = ErrorBody)))]
pub async fn get_pool(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<PoolView>> {
    Ok(Json(pool::get(&app, &name).await?))
}

#[utoipa::path(delete, path = "/v1/pools/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_pool(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    pool::delete(&app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/volume-types", responses((status = 200, body = Page<kumo_types::VolumeType>)))]
pub async fn list_volume_types(
    State(app): State<App>,
) -> ApiResult<Json<Page<kumo_types::VolumeType>>> {
    Ok(Json(volume_type::list(&app).await?))
}

#[utoipa::path(post, path = "/v1/volume-types", request_body = kumo_types::CreateVolumeTypeRequest,
    responses((status = 201, body = kumo_types::VolumeType), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_volume_type(
    State(app): State<App>,
    ApiJson(req): ApiJson<kumo_types::CreateVolumeTypeRequest>,
) -> ApiResult<(StatusCode, Json<kumo_types::VolumeType>)> {
    Ok((
        StatusCode::CREATED,
        Json(volume_type::create(&app, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/volume-types/{name}", params(("name" = String, Path)),
    responses((status = 200, body = kumo_types::VolumeType), (status = 404, body = ErrorBody)))]
pub async fn get_volume_type(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<kumo_types::VolumeType>> {
    Ok(Json(volume_type::get(&app, &name).await?))
}

#[utoipa::path(delete, path = "/v1/volume-types/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_volume_type(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    volume_type::delete(&app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
