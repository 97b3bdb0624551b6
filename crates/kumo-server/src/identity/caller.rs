//! Who is calling: resolved once per request by the authentication middleware and handed to the
//! handlers as a request extension; the app layer scopes and authorizes with it. The same type serves
//! `/v1` (API tokens) and the EC2 API (SigV4 access keys), so both fronts get the same authorization,
//! quotas and audit trail.

use serde::{Deserialize, Serialize};

/// A role in a project. `CloudAdmin` is cluster-wide (hosts, pools, projects, every project's
/// resources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read the project's resources.
    Reader,
    /// Create, change and delete the project's resources.
    Member,
    /// A member who also manages the project's users and access keys.
    Admin,
    /// Everything, in every project.
    CloudAdmin,
}

/// The authenticated principal of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User name (unique in the cloud).
    pub user: String,
    /// The project the request acts in (its resources are the only ones it sees).
    pub project: String,
    pub role: Role,
    /// The access key or token ID used (for the audit log), if any.
    pub credential: Option<String>,
    /// The client's address, as the server saw it.
    pub source: Option<std::net::IpAddr>,
}

impl Caller {
    /// The bootstrap administrator, acting in the default project (also what in-process callers
    /// such as reconcilers use).
    pub fn system() -> Caller {
        Caller {
            user: "admin".into(),
            project: kumo_types::DEFAULT_PROJECT.into(),
            role: Role::CloudAdmin,
            credential: None,
            source: None,
        }
    }

    pub fn may_write(&self) -> bool {
        self.role >= Role::Member
    }

    pub fn is_cloud_admin(&self) -> bool {
        self.role == Role::CloudAdmin
    }
}

impl Role {
    /// The wire name: `reader`, `member`, `admin`, `cloud-admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::CloudAdmin => "cloud-admin",
        }
    }
}

impl From<kumo_types::ProjectRole> for Role {
    fn from(r: kumo_types::ProjectRole) -> Role {
        match r {
            kumo_types::ProjectRole::Reader => Role::Reader,
            kumo_types::ProjectRole::Member => Role::Member,
            kumo_types::ProjectRole::Admin => Role::Admin,
        }
    }
}
