//! Instance handlers.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use kumo_types::{Error, ErrorBody, InstanceView, Page, RunInstanceRequest, StopInstanceRequest};
use serde::Deserialize;

use super::caller::Who;
use super::extract::{ApiJson, ApiQuery, parse_json};
use crate::app::{App, instance};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub next_token: Option<String>,
    /// Every project's, not only the caller's project's (cloud admins only).
    pub all_projects: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Byte offset to read from.
    pub offset: Option<u64>,
}

/// Most bytes of serial log returned per request.
const LOG_CHUNK: u64 = 1 << 20;

#[utoipa::path(get, path = "/v1/instances", params(ListQuery), responses((status = 200, body = Page<InstanceView>)))]
pub async fn list_instances(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<InstanceView>>> {
    Ok(Json(
        instance::list(
            &app,
            &who.listing(q.all_projects)?,
            q.limit,
            q.next_token.as_deref(),
        )
        .await?,
    ))
}

#[utoipa::path(post, path = "/v1/instances", request_body = RunInstanceRequest, responses(
    (status = 202, body = InstanceView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 503, description = "insufficient capacity", body = ErrorBody)))]
pub async fn run_instance(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<RunInstanceRequest>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::run(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/instances/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = InstanceView), (status = 404, body = ErrorBody)))]
pub async fn get_instance(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(instance::get_in(&app, &who.scope(), &id).await?))
}

#[utoipa::path(delete, path = "/v1/instances/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody)))]
pub async fn delete_instance(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::delete(&app, &who.scope(), &id).await?),
    ))
}

#[utoipa::path(post, path = "/v1/instances/{id}/start", params(("id" = String, Path, description = "ID or name")),
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start_instance(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::start_in(&app, &who.scope(), &id).await?),
    ))
}

/// Move the instance to another host: live (the default for a running instance) or cold.
#[utoipa::path(post, path = "/v1/instances/{id}/migrate", params(("id" = String, Path, description = "ID or name")),
    request_body(content = Option<kumo_types::MigrateRequest>, description = "optional: target host, kind"),
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn migrate_instance(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    let req: kumo_types::MigrateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        kumo_types::MigrateRequest::default()
    } else {
        parse_json(&body)?
    };
    let (inst, _) = instance::find_in(&app, &who.scope(), &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::app::migration::migrate(&app, &inst.id, req).await?),
    ))
}

#[utoipa::path(post, path = "/v1/instances/{id}/stop", params(("id" = String, Path, description = "ID or name")),
    request_body(content = Option<StopInstanceRequest>, description = "optional"),
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop_instance(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    let req: StopInstanceRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StopInstanceRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::stop_in(&app, &who.scope(), &id, req).await?),
    ))
}

#[utoipa::path(post, path = "/v1/instances/{id}/reboot", params(("id" = String, Path, description = "ID or name")),
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reboot_instance(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::reboot(&app, &who.scope(), &id).await?),
    ))
}

#[utoipa::path(post, path = "/v1/instances/{id}/nics", params(("id" = String, Path, description = "ID or name")),
    request_body = kumo_types::NicRequest,
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn attach_nic(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<kumo_types::NicRequest>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::attach_nic(&app, &who.scope(), &id, req).await?),
    ))
}

#[utoipa::path(delete, path = "/v1/instances/{id}/nics/{nic}", params(("id" = String, Path, description = "ID or name"), ("nic" = String, Path, description = "port ID or IPv4")),
    responses((status = 202, body = InstanceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn detach_nic(
    State(app): State<App>,
    who: Who,
    Path((id, nic)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(instance::detach_nic(&app, &who.scope(), &id, &nic).await?),
    ))
}

/// Serial console output from `offset` (at most 1 MiB per call). Header `x-kumo-log-size` gives the
/// total size so far.
#[utoipa::path(get, path = "/v1/instances/{id}/serial-log", params(("id" = String, Path, description = "ID or name"), LogQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn serial_log(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Response> {
    let (inst, _) = instance::find_in(&app, &who.scope(), &id).await?;
    let path = kumo_agent::paths::serial_log(&app.cfg.data_dir, &inst.id);
    let offset = q.offset.unwrap_or(0);
    // On this server's own host the file is here; otherwise its host's agent reads it for us.
    let (data, size) = if path.exists() {
        tokio::task::spawn_blocking(move || {
            kumo_agent::paths::read_log_chunk(&path, offset, LOG_CHUNK).map_err(Error::from)
        })
        .await
        .map_err(|e| Error::internal_with("log task", e))??
    } else {
        crate::app::relay::serial_log(&app, &inst, offset, LOG_CHUNK).await?
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-kumo-log-size", size.to_string())
        .body(Body::from(data))
        .map_err(|e| ApiError(Error::internal_with("building response", e)))
}
