//! Handlers for identity: `/v1/projects`, `/v1/users`, `/v1/tokens`, `/v1/access-keys`,
//! `/v1/whoami` and `POST /v1/login`. Thin: the app layer is [`crate::identity`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kumo_types::{
    AccessKey, AccessKeyCreated, ApiToken, CreateAccessKeyRequest, CreateProjectRequest,
    CreateTokenRequest, CreateUserRequest, ErrorBody, LoginRequest, Page, Project,
    SetPasswordRequest, SetRoleRequest, TokenCreated, User, Whoami,
};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, access_key, project, token, user};

/// Lists of identity records are short and answered whole.
fn page<T>(items: Vec<T>) -> Json<Page<T>> {
    Json(Page {
        items,
        next_token: None,
    })
}

#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = Whoami)))]
pub async fn whoami(Extension(c): Extension<Caller>) -> Json<Whoami> {
    Json(Whoami {
        user: c.user,
        project: c.project,
        role: c.role.as_str().to_string(),
        credential: c.credential,
    })
}

#[utoipa::path(get, path = "/v1/projects", responses((status = 200, body = Page<Project>)))]
pub async fn list_projects(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Page<Project>>> {
    Ok(page(project::list(&app, &c).await?))
}

#[utoipa::path(post, path = "/v1/projects", request_body = CreateProjectRequest,
    responses((status = 201, body = Project), (status = 409, body = ErrorBody)))]
pub async fn create_project(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiJson(req): ApiJson<CreateProjectRequest>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    Ok((
        StatusCode::CREATED,
        Json(project::create(&app, &c, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/projects/{name}", params(("name" = String, Path)),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Project>> {
    Ok(Json(project::get(&app, &c, &name).await?))
}

/// Delete a project without members or resources.
#[utoipa::path(delete, path = "/v1/projects/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn delete_project(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    project::delete(&app, &c, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/users", responses((status = 200, body = Page<User>)))]
pub async fn list_users(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Page<User>>> {
    Ok(page(user::list(&app, &c).await?))
}

#[utoipa::path(post, path = "/v1/users", request_body = CreateUserRequest,
    responses((status = 201, body = User), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    Ok((
        StatusCode::CREATED,
        Json(user::create(&app, &c, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/users/{name}", params(("name" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(user::get(&app, &c, &name).await?))
}

/// Delete a user with its tokens and access keys.
#[utoipa::path(delete, path = "/v1/users/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    user::delete(&app, &c, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give a user a role in a project (or change it).
#[utoipa::path(put, path = "/v1/users/{name}/roles/{project}", request_body = SetRoleRequest,
    params(("name" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody)))]
pub async fn set_role(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path((name, proj)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetRoleRequest>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        user::set_role(&app, &c, &name, &proj, req.role).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/users/{name}/roles/{project}",
    params(("name" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn remove_role(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path((name, proj)): Path<(String, String)>,
) -> ApiResult<Json<User>> {
    Ok(Json(user::remove_role(&app, &c, &name, &proj).await?))
}

#[utoipa::path(put, path = "/v1/users/{name}/password", request_body = SetPasswordRequest,
    params(("name" = String, Path)),
    responses((status = 200, body = User), (status = 422, body = ErrorBody)))]
pub async fn set_password(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetPasswordRequest>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        user::set_password(&app, &c, &name, req.password).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OwnerQuery {
    /// Only this user's credentials.
    pub user: Option<String>,
}

#[utoipa::path(get, path = "/v1/tokens", params(OwnerQuery),
    responses((status = 200, body = Page<ApiToken>)))]
pub async fn list_tokens(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<OwnerQuery>,
) -> ApiResult<Json<Page<ApiToken>>> {
    Ok(page(token::list(&app, &c, q.user.as_deref()).await?))
}

/// Create an API token (for oneself, or for another user as its admin). The token is in this
/// answer only.
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = TokenCreated), (status = 403, body = ErrorBody)))]
pub async fn create_token(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    Ok((
        StatusCode::CREATED,
        Json(token::create(&app, &c, req).await?),
    ))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    token::revoke(&app, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Trade a user name and password for a new token (12 hours unless `ttl_seconds` says otherwise).
/// Needs no token; every attempt is audited. After five wrong passwords for a name within 15
/// minutes, each further one locks the name (1 s, doubling, at most 60 s): attempts meanwhile get
/// 429 with `Retry-After`.
#[utoipa::path(post, path = "/v1/login", request_body = LoginRequest,
    responses((status = 201, body = TokenCreated), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn login(State(app): State<App>, ApiJson(req): ApiJson<LoginRequest>) -> Response {
    let who = crate::audit::AuditUser(req.user.clone());
    let mut resp = match login_inner(&app, req).await {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(e) => ApiError(e).into_response(),
    };
    resp.extensions_mut().insert(who);
    resp
}

/// A login token's lifetime unless asked otherwise.
pub const LOGIN_TTL_SECS: u64 = 12 * 3600;

async fn login_inner(app: &App, req: LoginRequest) -> kumo_types::Result<TokenCreated> {
    let ttl = token::ttl_of(Some(req.ttl_seconds.unwrap_or(LOGIN_TTL_SECS)))?;
    let u = user::check_password(app, &req.user, req.password).await?;
    if let Some(p) = &req.project
        && u.role_in(p).is_none()
    {
        return Err(kumo_types::Error::Forbidden {
            message: format!("user `{}` is not a member of project `{p}`", u.name),
        });
    }
    token::mint(
        app,
        token::NewToken {
            user: u.name.clone(),
            project: req.project,
            pinned: false,
            description: Some("login".into()),
            ttl_secs: ttl,
            created_by: Some(u.name),
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/access-keys", params(OwnerQuery),
    responses((status = 200, body = Page<AccessKey>)))]
pub async fn list_access_keys(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<OwnerQuery>,
) -> ApiResult<Json<Page<AccessKey>>> {
    Ok(page(access_key::list(&app, &c, q.user.as_deref()).await?))
}

/// Create an access key for SigV4 (the EC2 API). The secret is in this answer only.
#[utoipa::path(post, path = "/v1/access-keys", request_body = CreateAccessKeyRequest,
    responses((status = 201, body = AccessKeyCreated), (status = 403, body = ErrorBody)))]
pub async fn create_access_key(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    ApiJson(req): ApiJson<CreateAccessKeyRequest>,
) -> ApiResult<(StatusCode, Json<AccessKeyCreated>)> {
    Ok((
        StatusCode::CREATED,
        Json(access_key::create(&app, &c, req).await?),
    ))
}

#[utoipa::path(delete, path = "/v1/access-keys/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_access_key(
    State(app): State<App>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    access_key::delete(&app, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
