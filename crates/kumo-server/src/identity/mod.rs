//! Identity and tenancy (issue 6): callers, projects, users, roles, credentials.
//!
//! - [`caller`]: the [`Caller`] every request acts as (resolved by [`crate::auth::require_token`],
//!   handed to handlers as `axum::Extension<Caller>`).
//! - [`authz`]: the one pure authorization function, [`authz::authorize`].
//! - [`project`], [`user`] (+ [`password`]: argon2id), [`token`] (API tokens), [`access_key`]
//!   (SigV4 keys, secrets encrypted with the [`server_key`]; [`access_key::lookup`] for the EC2
//!   front end), [`resolve`] (token + `X-Kumo-Project` → caller), [`cache`].
//!
//! Store layout: `/projects/<name>`, `/users/<name>`, `/tokens/<sha256 of token>`,
//! `/access-keys/<AKIA…>`, `/cluster/server-key-check`.

pub mod access_key;
pub mod authz;
pub mod cache;
pub mod caller;
pub mod password;
pub mod project;
pub mod resolve;
pub mod server_key;
pub mod throttle;
pub mod token;
pub mod user;

use std::path::Path;

pub use authz::authorize;
pub use caller::{Caller, Role};

use crate::app::App;

/// Start-up (idempotent): the `default` project, the bootstrap user `admin`, and the server key
/// (made on first start; checked against the cluster's).
pub async fn bootstrap(app: &App, data_dir: &Path) -> kumo_types::Result<()> {
    project::ensure_default(app).await?;
    user::ensure_admin(app).await?;
    let key = server_key::load_or_create(data_dir)?;
    let ok = server_key::ensure_check(app, &key).await?;
    if !ok {
        tracing::error!(
            path = %data_dir.join(server_key::FILE).display(),
            "THIS SERVER'S server.key IS NOT THE CLUSTER'S: access keys cannot be created or \
             verified here until the first server's server.key is copied to this path"
        );
    }
    app.auth_cache.set_server_key(key, ok);
    Ok(())
}
