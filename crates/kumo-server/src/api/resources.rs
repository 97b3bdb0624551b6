//! Handlers for hosts, images, instance types, key pairs, networks and events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kumo_types::{
    CreateInstanceTypeRequest, ErrorBody, Event, Host, Image, ImageState, ImportImageRequest,
    ImportKeyPairRequest, InstanceType, KeyPair, Network, Page, UpdateImageRequest,
};
use serde::Deserialize;

use super::caller::{AllProjects, Who};
use super::extract::{ApiJson, ApiQuery};
use crate::app::{App, event, host, image, instance_type, key_pair, network};
use crate::error::ApiResult;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events about this resource ID.
    pub resource: Option<String>,
    pub limit: Option<usize>,
    pub next_token: Option<String>,
    /// Every project's events, not only the caller's project's (cloud admins only).
    pub all_projects: Option<bool>,
}

#[utoipa::path(get, path = "/v1/hosts", responses((status = 200, body = Page<Host>)))]
pub async fn list_hosts(State(app): State<App>) -> ApiResult<Json<Page<Host>>> {
    Ok(Json(host::list(&app).await?))
}

#[utoipa::path(get, path = "/v1/hosts/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Host), (status = 404, body = ErrorBody)))]
pub async fn get_host(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Host>> {
    Ok(Json(host::get(&app, &id).await?))
}

#[utoipa::path(get, path = "/v1/images", params(AllProjects), responses((status = 200, body = Page<Image>)))]
pub async fn list_images(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<AllProjects>,
) -> ApiResult<Json<Page<Image>>> {
    Ok(Json(
        image::list(&app, &who.listing(q.all_projects)?).await?,
    ))
}

/// Import an image. A URL import answers `202` with the image `importing` (poll it for `progress`
/// and the final `available` or `error`); the other sources are imported before the answer (`201`).
#[utoipa::path(post, path = "/v1/images", request_body = ImportImageRequest,
    responses((status = 201, body = Image, description = "Imported from a file, volume or snapshot: `available`"),
        (status = 202, body = Image, description = "URL import accepted: `importing`, continues in the background"),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_image(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<ImportImageRequest>,
) -> ApiResult<(StatusCode, Json<Image>)> {
    let img = image::import(&app, &who.scope(), req).await?;
    let status = match img.state {
        ImageState::Importing => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    Ok((status, Json(img)))
}

#[utoipa::path(get, path = "/v1/images/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Image), (status = 404, body = ErrorBody)))]
pub async fn get_image(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<Image>> {
    Ok(Json(image::get(&app, &who.scope(), &id).await?))
}

/// Change an image: its visibility (`public` needs a cloud admin).
#[utoipa::path(patch, path = "/v1/images/{id}", params(("id" = String, Path, description = "ID or name")),
    request_body = UpdateImageRequest,
    responses((status = 200, body = Image), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_image(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateImageRequest>,
) -> ApiResult<Json<Image>> {
    Ok(Json(image::update(&app, &who.scope(), &id, req).await?))
}

/// Delete an image (cancels an import that is running); 409 while instances or volumes use it.
#[utoipa::path(delete, path = "/v1/images/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_image(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    image::delete(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/instance-types", responses((status = 200, body = Page<InstanceType>)))]
pub async fn list_instance_types(State(app): State<App>) -> ApiResult<Json<Page<InstanceType>>> {
    Ok(Json(instance_type::list(&app).await?))
}

#[utoipa::path(post, path = "/v1/instance-types", request_body = CreateInstanceTypeRequest,
    responses((status = 201, body = InstanceType), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_instance_type(
    State(app): State<App>,
    ApiJson(req): ApiJson<CreateInstanceTypeRequest>,
) -> ApiResult<(StatusCode, Json<InstanceType>)> {
    Ok((
        StatusCode::CREATED,
        Json(instance_type::create(&app, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/instance-types/{name}", params(("name" = String, Path)),
    responses((status = 200, body = InstanceType), (status = 404, body = ErrorBody)))]
pub async fn get_instance_type(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<InstanceType>> {
    Ok(Json(instance_type::get(&app, &name).await?))
}

#[utoipa::path(delete, path = "/v1/instance-types/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_instance_type(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    instance_type::delete(&app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/key-pairs", params(AllProjects), responses((status = 200, body = Page<KeyPair>)))]
pub async fn list_key_pairs(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<AllProjects>,
) -> ApiResult<Json<Page<KeyPair>>> {
    Ok(Json(
        key_pair::list(&app, &who.listing(q.all_projects)?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/key-pairs", request_body = ImportKeyPairRequest,
    responses((status = 201, body = KeyPair), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_key_pair(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<ImportKeyPairRequest>,
) -> ApiResult<(StatusCode, Json<KeyPair>)> {
    Ok((
        StatusCode::CREATED,
        Json(key_pair::import(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/key-pairs/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = KeyPair), (status = 404, body = ErrorBody)))]
pub async fn get_key_pair(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyPair>> {
    Ok(Json(key_pair::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(delete, path = "/v1/key-pairs/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_key_pair(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    key_pair::delete(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/networks", params(AllProjects), responses((status = 200, body = Page<Network>)))]
pub async fn list_networks(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<AllProjects>,
) -> ApiResult<Json<Page<Network>>> {
    Ok(Json(
        network::list(&app, &who.listing(q.all_projects)?).await?,
    ))
}

#[utoipa::path(get, path = "/v1/networks/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Network), (status = 404, body = ErrorBody)))]
pub async fn get_network(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<Network>> {
    Ok(Json(network::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(get, path = "/v1/events", params(EventsQuery), responses((status = 200, body = Page<Event>)))]
pub async fn list_events(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Page<Event>>> {
    Ok(Json(
        event::list(
            &app,
            &who.listing(q.all_projects)?,
            q.resource.as_deref(),
            q.limit,
            q.next_token.as_deref(),
        )
        .await?,
    ))
}
