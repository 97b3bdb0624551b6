//! Extractors that turn every malformed input into the one error body.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use kumo_types::Error;
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use crate::error::ApiError;

/// JSON body: 400 for syntax errors, 422 naming the field for type/shape errors, 413 when too large.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (ct, bytes) = body_of(req, state).await?;
        json_body(&ct, &bytes).map(ApiJson).map_err(ApiError)
    }
}

/// A JSON body that may be left out (an empty body means `T::default()`); otherwise as [`ApiJson`].
pub struct ApiJsonOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (ct, bytes) = body_of(req, state).await?;
        if bytes.is_empty() {
            return Ok(ApiJsonOrDefault(T::default()));
        }
        json_body(&ct, &bytes)
            .map(ApiJsonOrDefault)
            .map_err(ApiError)
    }
}

/// The request's Content-Type and body (413 when too large).
async fn body_of<S: Send + Sync>(req: Request, state: &S) -> Result<(String, Bytes), ApiError> {
    let ct = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                Error::Malformed {
                    message: e.body_text(),
                }
            }
        })?;
    Ok((ct, bytes))
}

/// A JSON body: its Content-Type must say so.
fn json_body<T: DeserializeOwned>(ct: &str, bytes: &[u8]) -> Result<T, Error> {
    if !ct.starts_with("application/json") {
        return Err(Error::Malformed {
            message: format!("Content-Type must be application/json (got {ct:?})"),
        });
    }
    parse_json(bytes)
}

/// Parse a JSON body, naming the offending field when the shape is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                let msg = inner.to_string();
                // serde says "missing field `x`" at the parent path: name the field itself.
                let field = msg
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                    .map(|f| {
                        if field == "body" {
                            f.to_string()
                        } else {
                            format!("{field}.{f}")
                        }
                    })
                    .unwrap_or(field);
                Error::invalid(field, strip_position(&msg))
            }
            _ => Error::Malformed {
                message: format!("invalid JSON: {inner}"),
            },
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Query string with precise errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError(Error::invalid("query", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_types::RunInstanceRequest;

    #[test]
    fn names_fields() {
        let e = parse_json::<RunInstanceRequest>(br#"{"name":"a","image":"x"}"#).unwrap_err();
        assert_eq!(e.field(), Some("instance_type"), "{e}");
        let e = parse_json::<RunInstanceRequest>(
            br#"{"name":"a","image":"x","instance_type":"t","root_disk_gib":"big"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("root_disk_gib"), "{e}");
        let e = parse_json::<RunInstanceRequest>(
            br#"{"name":"a","image":"x","instance_type":"t","bogus":1}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = parse_json::<RunInstanceRequest>(b"{nope").unwrap_err();
        assert_eq!(e.code(), "malformed_request");
    }
}
