//! Identity and tenancy (issue 6): projects, users, roles, API tokens, access keys and the audit log.
//!
//! Invariants:
//! - A project is the tenant: resources belong to exactly one. `default` always exists.
//! - A user is cloud-wide (unique name) and has one role per project it belongs to; `cloud_admin`
//!   users may act in every project and on cluster-wide resources.
//! - Secrets (token text, access-key secrets, passwords) appear in exactly one answer each — the one
//!   that creates them — and never in a list, a show or the audit log.
//! - Audit records form a hash chain: `hash = SHA-256(prev_hash || canonical JSON of the record
//!   without its hash)`; the first record's `prev_hash` is 64 zeros.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's role in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectRole {
    /// Reads the project's resources.
    Reader,
    /// Creates, changes and deletes the project's resources.
    Member,
    /// A member who also manages the project's users' roles and credentials.
    Admin,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Reader => "reader",
            ProjectRole::Member => "member",
            ProjectRole::Admin => "admin",
        }
    }
}

/// A project (the tenant; AWS's account).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Project {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub created_at: String,
}

/// `POST /v1/projects`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A user as listed (never with its password hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct User {
    pub name: String,
    pub created_at: String,
    /// Project name → role.
    #[serde(default)]
    pub memberships: BTreeMap<String, ProjectRole>,
    #[serde(default)]
    pub cloud_admin: bool,
    /// Whether the user can log in with a password (`POST /v1/login`).
    #[serde(default)]
    pub has_password: bool,
}

/// `POST /v1/users` (cloud-admin only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub name: String,
    /// Initial roles: project name → role.
    #[serde(default)]
    pub memberships: BTreeMap<String, ProjectRole>,
    #[serde(default)]
    pub cloud_admin: bool,
    /// Optional password (at least 8 characters) for `POST /v1/login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `PUT /v1/users/{name}/roles/{project}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    pub role: ProjectRole,
}

/// `PUT /v1/users/{name}/password`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    pub password: String,
}

/// An API token as listed (its secret is shown once, when it is created).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ApiToken {
    /// `tok-…`: names the token (list, revoke, audit); not secret.
    pub id: String,
    pub user: String,
    /// The project requests act in unless they say otherwise (`X-Kumo-Project`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A pinned token acts only in `project` (tokens made for another user are pinned).
    #[serde(default)]
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// For whom (default: the caller). Another user needs cloud-admin, or admin of the project the
    /// token is then pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The token's project (default: the caller's current project for another user, none for
    /// oneself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds until the token stops working (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// The answer to a token's creation or a login: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TokenCreated {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub api_token: ApiToken,
}

/// `POST /v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Seconds the new token lives (default 12 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// An access key as listed (no secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AccessKey {
    /// `AKIA` + 16 characters of the base32 alphabet.
    pub access_key_id: String,
    pub user: String,
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// `POST /v1/access-keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessKeyRequest {
    /// For whom (default: the caller); see [`CreateTokenRequest::user`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The key's project (default: the caller's current project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer to an access key's creation: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AccessKeyCreated {
    pub access_key_id: String,
    /// 40 characters; for `aws configure` / `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    pub user: String,
    pub project: String,
    pub created_at: String,
}

/// Who a request authenticated as (`GET /v1/whoami`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Whoami {
    pub user: String,
    pub project: String,
    /// `reader`, `member`, `admin` or `cloud-admin`.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// One audit record: who did what to which resource, from where, with what result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// The authenticated user; `None` when authentication failed.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    /// The token or access key ID used (for an unknown token: `sha256:` and 12 hex digits of its
    /// hash, so repeated attempts can be correlated without storing the secret).
    #[serde(default)]
    pub credential: Option<String>,
    /// The client's address.
    #[serde(default)]
    pub source: Option<String>,
    /// Which front end: `rest` or `ec2`.
    pub api: String,
    pub method: String,
    pub path: String,
    /// What was asked, e.g. `instances.create`, `instances.stop`, `RunInstances`.
    pub action: String,
    /// IDs or names named in the path (the target resource first).
    #[serde(default)]
    pub target: Vec<String>,
    /// HTTP status of the answer.
    pub status: u16,
    /// The error code of a failed call (`forbidden`, `unauthenticated`, …).
    #[serde(default)]
    pub error_code: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of `GET /v1/audit/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditVerification {
    /// True when every record's hash and link is intact and the head names the last record.
    pub ok: bool,
    /// Records checked.
    pub checked: u64,
    /// The head's sequence number (the last record).
    pub head_seq: u64,
    pub head_hash: String,
    /// The first record whose hash or link is wrong (or that is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Records 1 to this were pruned (`POST /v1/audit/prune`); the chain is verified from the hash
    /// of the last pruned record, kept as the anchor. 0: nothing was pruned.
    #[serde(default)]
    pub pruned_through: u64,
}

/// `POST /v1/audit/prune`: remove the oldest records — those at or below `through_seq` and older
/// than `before`, whichever are given (at least one), as one unbroken run from the oldest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditPruneRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_seq: Option<u64>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// What a prune removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditPruned {
    /// Records removed by this call.
    pub pruned: u64,
    /// Every record up to this one is gone now (0: none ever was).
    pub pruned_through: u64,
    /// The hash of record `pruned_through`: the first remaining record's `prev_hash`, and the last
    /// hash of an export of the pruned records.
    pub anchor_hash: String,
}

/// Prefix of API token IDs (`tok-…`).
pub const TOKEN_ID_PREFIX: &str = "tok";
/// Prefix of access key IDs, as AWS's long-term keys have.
pub const ACCESS_KEY_PREFIX: &str = "AKIA";
