//! The one place where [`kumo_types::Error`] becomes an HTTP status and JSON body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kumo_types::Error;

pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Malformed { .. } => StatusCode::BAD_REQUEST,
        Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Conflict { .. } | Error::CasFailed { .. } => StatusCode::CONFLICT,
        Error::InsufficientCapacity { .. } | Error::Unavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Error::Forbidden { .. } | Error::QuotaExceeded { .. } => StatusCode::FORBIDDEN,
        Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Response extension on every error answer: its stable code (the audit log records it).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Newtype so handlers can `?` app-layer errors straight into responses.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = ?self.0, "request failed");
        }
        let mut resp = (status, Json(self.0.body())).into_response();
        if let Error::TooManyRequests {
            retry_after_secs, ..
        } = &self.0
        {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_secs),
            );
        }
        resp.extensions_mut().insert(ErrorCode(self.0.code()));
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
