//! Quota handlers: a project's limits and usage, and a cloud admin's changes to them.

use axum::Json;
use axum::extract::{Path, State};
use kumo_types::{ErrorBody, ProjectQuotas, UpdateQuotasRequest};
use serde::Deserialize;

use super::caller::Who;
use super::extract::{ApiJson, ApiQuery};
use crate::app::{App, quota};
use crate::error::ApiResult;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QuotaQuery {
    /// Another project's quotas (cloud admins only); the caller's project by default.
    pub project: Option<String>,
}

/// The limits and usage of the caller's project (or, for a cloud admin, of `project`).
#[utoipa::path(get, path = "/v1/quotas", params(QuotaQuery),
    responses((status = 200, body = ProjectQuotas), (status = 403, body = ErrorBody)))]
pub async fn get_quotas(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<QuotaQuery>,
) -> ApiResult<Json<ProjectQuotas>> {
    Ok(Json(
        quota::show(&app, &who.scope(), q.project.as_deref()).await?,
    ))
}

/// Change a project's limits (cloud admins only): a number sets a limit, `-1` makes it unlimited,
/// absent fields keep theirs.
#[utoipa::path(put, path = "/v1/projects/{name}/quotas", params(("name" = String, Path, description = "the project")),
    request_body = UpdateQuotasRequest,
    responses((status = 200, body = ProjectQuotas), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_quotas(
    State(app): State<App>,
    who: Who,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<UpdateQuotasRequest>,
) -> ApiResult<Json<ProjectQuotas>> {
    Ok(Json(quota::set(&app, &who.scope(), &project, req).await?))
}
