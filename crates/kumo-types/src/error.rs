//! The one error enum of kumo. It carries no HTTP knowledge; the server maps each variant to a status
//! code in exactly one place (`kumo_server::error`). Causes are wrapped with `#[source]` and never
//! repeated in the message.

use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be parsed at all (malformed JSON, wrong content type).
    #[error("malformed request: {message}")]
    Malformed { message: String },
    /// A field has a value that is not allowed. `field` names it (dotted path), `message` says what is
    /// wrong and what is allowed.
    #[error("invalid value for `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// The named resource does not exist (or is not visible to the caller).
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    /// The request conflicts with current state (duplicate name, resource in use, wrong state).
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
    },
    /// No host can take the request: `resource` names what ran out (vcpus, memory, disk, hosts).
    #[error("insufficient capacity: {resource}: {message}")]
    InsufficientCapacity { resource: String, message: String },
    /// The request body is larger than allowed.
    #[error("request body too large: limit is {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// No or invalid credentials.
    #[error("authentication required: {message}")]
    Unauthenticated { message: String },
    /// Authenticated but not allowed.
    #[error("not allowed: {message}")]
    Forbidden { message: String },
    /// The request would take `project` over its quota of `resource`: `used` of `limit` are in use and
    /// the request needs `requested` more.
    #[error(
        "quota exceeded: project `{project}` may hold {limit} {resource}; {used} in use, {requested} more requested"
    )]
    QuotaExceeded {
        project: String,
        resource: String,
        limit: u64,
        used: u64,
        requested: u64,
    },
    /// Too many attempts (failed logins): retry after `retry_after_secs`.
    #[error("too many requests: {message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// A dependency (store, agent, QEMU) is unavailable; retrying later may succeed.
    #[error("service unavailable: {message}")]
    Unavailable { message: String },
    /// A compare-and-swap lost a race; callers normally retry.
    #[error("concurrent modification of `{key}`")]
    CasFailed { key: String },
    /// Anything else. The cause is kept as the source.
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
            field: None,
        }
    }
    pub fn conflict_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
            field: Some(field.into()),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            source: None,
        }
    }
    pub fn internal_with(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Internal {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
        }
    }

    /// Stable machine-readable code used in the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed_request",
            Error::Invalid { .. } => "invalid_value",
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::InsufficientCapacity { .. } => "insufficient_capacity",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::Forbidden { .. } => "forbidden",
            Error::QuotaExceeded { .. } => "quota_exceeded",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Unavailable { .. } => "unavailable",
            Error::CasFailed { .. } => "conflict",
            Error::Internal { .. } => "internal",
        }
    }

    /// The field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::Conflict { field, .. } => field.as_deref(),
            Error::InsufficientCapacity { resource, .. } => Some(resource),
            _ => None,
        }
    }

    /// The body every front end returns: `{code, message, field}`.
    pub fn body(&self) -> ErrorBody {
        let mut message = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        ErrorBody {
            code: self.code().to_string(),
            message,
            field: self.field().map(str::to_string),
        }
    }
}

/// JSON error body of the REST API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal_with("JSON encoding", e)
    }
}
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal_with("I/O", e)
    }
}
