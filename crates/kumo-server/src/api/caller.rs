//! The caller of a `/v1` request, for handlers: the [`Caller`] the authentication middleware put on
//! the request, or — where no middleware ran — the bootstrap administrator in the default project
//! ([`Caller::system`]), which is what every request was before projects existed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::app::scope::Scope;
use crate::error::ApiError;
use crate::identity::Caller;

/// `Who(caller)`: extract it in a handler and pass `Scope::of(&caller)` (or `who.scope()`) to the
/// app layer.
#[derive(Debug, Clone)]
pub struct Who(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Who(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::system)))
    }
}

impl Who {
    /// The caller's own project.
    pub fn scope(&self) -> Scope {
        Scope::of(&self.0)
    }

    /// For lists: every project when a cloud admin asks (`?all_projects=true`).
    pub fn listing(&self, all_projects: Option<bool>) -> kumo_types::Result<Scope> {
        Scope::listing(&self.0, all_projects.unwrap_or(false))
    }
}

/// `?all_projects=true`: a cloud admin's list of every project's resources (for the lists that answer
/// everything at once; other parameters are ignored there, as they always were).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllProjects {
    /// Every project's resources, not only the caller's project's (cloud admins only).
    pub all_projects: Option<bool>,
}
