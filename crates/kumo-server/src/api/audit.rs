//! Handlers for `/v1/audit`: list, export (JSON lines), verify and prune. The app layer is
//! [`crate::audit`].

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kumo_types::{AuditPruneRequest, AuditPruned, AuditRecord, AuditVerification, ErrorBody, Page};

use super::extract::{ApiJson, ApiQuery};
use crate::app::App;
use crate::audit::{self, AuditQuery, Filter};
use crate::error::ApiResult;
use crate::identity::Caller;

/// Audit records in chain order (cloud admins: all; project admins: their project's).
#[utoipa::path(get, path = "/v1/audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditRecord>), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    Ok(Json(audit::list(&app, &c, &q).await?))
}

/// Every matching record as JSON lines (`application/x-ndjson`), streamed.
#[utoipa::path(get, path = "/v1/audit/export", params(AuditQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String)))]
pub async fn export_audit(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    if q.limit.is_some() {
        return Err(kumo_types::Error::invalid("limit", "export takes no limit").into());
    }
    let f = Filter::new(&c, &q)?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(audit::export(app, f)),
    )
        .into_response())
}

/// Recompute the hash chain; `first_broken_seq` names the first record that does not check out.
#[utoipa::path(get, path = "/v1/audit/verify",
    responses((status = 200, body = AuditVerification)))]
pub async fn verify_audit(State(app): State<App>) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(audit::verify(&app).await?))
}

/// Remove the oldest records (cloud admins; export them first). What remains is verified from the
/// last removed record's hash; a stretch that does not verify is not removed (409).
#[utoipa::path(post, path = "/v1/audit/prune", request_body = AuditPruneRequest,
    responses((status = 200, body = AuditPruned), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn prune_audit(
    State(app): State<App>,
    ApiJson(req): ApiJson<AuditPruneRequest>,
) -> ApiResult<Json<AuditPruned>> {
    Ok(Json(audit::prune(&app, &req).await?))
}
