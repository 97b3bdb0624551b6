//! Handlers for networks, subnets, ports, routers, security groups and floating IPs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kumo_types::{
    AllocateFloatingIpRequest, AssociateFloatingIpRequest, CreateNetworkRequest, CreatePortRequest,
    CreateRouterRequest, CreateSecurityGroupRequest, CreateSubnetRequest, ErrorBody, FloatingIp,
    Network, Page, Port, Router, RouterInterfaceRequest, RuleRequest, SecurityGroup, Subnet,
    UpdatePortRequest,
};
use serde::Deserialize;

use super::caller::{AllProjects, Who};
use super::extract::{ApiJson, ApiQuery};
use crate::app::{App, floating_ip, network, port, router, security_group};
use crate::error::ApiResult;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NetworkFilter {
    /// Only items of this network (ID or name).
    pub network: Option<String>,
    /// Page size (1 to 1000; default 100).
    pub limit: Option<usize>,
    /// The `next_token` of the previous page.
    pub next_token: Option<String>,
    /// Every project's, not only the caller's project's (cloud admins only).
    pub all_projects: Option<bool>,
}

type Created<T> = ApiResult<(StatusCode, Json<T>)>;

#[utoipa::path(post, path = "/v1/networks", request_body = CreateNetworkRequest,
    responses((status = 201, body = Network), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_network(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreateNetworkRequest>,
) -> Created<Network> {
    Ok((
        StatusCode::CREATED,
        Json(network::create(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(delete, path = "/v1/networks/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_network(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    network::delete(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/subnets", params(NetworkFilter), responses((status = 200, body = Page<Subnet>)))]
pub async fn list_subnets(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<NetworkFilter>,
) -> ApiResult<Json<Page<Subnet>>> {
    let net = match &q.network {
        Some(n) => Some(network::get(&app, &who.scope(), n).await?.id),
        None => None,
    };
    let all = network::list_subnets(&app, &who.listing(q.all_projects)?, net.as_deref())
        .await?
        .items;
    Ok(Json(crate::app::paginate(
        all,
        |s| s.id.clone(),
        q.limit,
        q.next_token.as_deref(),
    )?))
}

#[utoipa::path(post, path = "/v1/subnets", request_body = CreateSubnetRequest,
    responses((status = 201, body = Subnet), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_subnet(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreateSubnetRequest>,
) -> Created<Subnet> {
    Ok((
        StatusCode::CREATED,
        Json(network::create_subnet(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/subnets/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Subnet), (status = 404, body = ErrorBody)))]
pub async fn get_subnet(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<Subnet>> {
    Ok(Json(network::get_subnet(&app, &who.scope(), &id).await?))
}

#[utoipa::path(delete, path = "/v1/subnets/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_subnet(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    network::delete_subnet(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/ports", params(NetworkFilter), responses((status = 200, body = Page<Port>)))]
pub async fn list_ports(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<NetworkFilter>,
) -> ApiResult<Json<Page<Port>>> {
    let net = match &q.network {
        Some(n) => Some(network::get(&app, &who.scope(), n).await?.id),
        None => None,
    };
    let all = port::list(&app, &who.listing(q.all_projects)?, net.as_deref())
        .await?
        .items;
    Ok(Json(crate::app::paginate(
        all,
        |p| p.id.clone(),
        q.limit,
        q.next_token.as_deref(),
    )?))
}

#[utoipa::path(post, path = "/v1/ports", request_body = CreatePortRequest,
    responses((status = 201, body = Port), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_port(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreatePortRequest>,
) -> Created<Port> {
    Ok((
        StatusCode::CREATED,
        Json(port::create(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/ports/{id}", params(("id" = String, Path)), responses((status = 200, body = Port), (status = 404, body = ErrorBody)))]
pub async fn get_port(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<Port>> {
    Ok(Json(port::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(patch, path = "/v1/ports/{id}", params(("id" = String, Path, description = "ID or name")),
    request_body = UpdatePortRequest,
    responses((status = 200, body = Port), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_port(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdatePortRequest>,
) -> ApiResult<Json<Port>> {
    Ok(Json(port::update(&app, &who.scope(), &id, req).await?))
}

#[utoipa::path(delete, path = "/v1/ports/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_port(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    port::delete(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/routers", params(AllProjects), responses((status = 200, body = Page<Router>)))]
pub async fn list_routers(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<AllProjects>,
) -> ApiResult<Json<Page<Router>>> {
    Ok(Json(
        router::list(&app, &who.listing(q.all_projects)?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/routers", request_body = CreateRouterRequest,
    responses((status = 201, body = Router), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_router(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreateRouterRequest>,
) -> Created<Router> {
    Ok((
        StatusCode::CREATED,
        Json(router::create(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/routers/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Router), (status = 404, body = ErrorBody)))]
pub async fn get_router(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<Router>> {
    Ok(Json(router::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(delete, path = "/v1/routers/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_router(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    router::delete(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/routers/{id}/interfaces", params(("id" = String, Path, description = "ID or name")),
    request_body = RouterInterfaceRequest,
    responses((status = 200, body = Router), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_router_interface(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RouterInterfaceRequest>,
) -> ApiResult<Json<Router>> {
    Ok(Json(
        router::add_interface(&app, &who.scope(), &id, &req.subnet).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/routers/{id}/interfaces/{subnet}", params(("id" = String, Path), ("subnet" = String, Path)),
    responses((status = 200, body = Router), (status = 404, body = ErrorBody)))]
pub async fn remove_router_interface(
    State(app): State<App>,
    who: Who,
    Path((id, subnet)): Path<(String, String)>,
) -> ApiResult<Json<Router>> {
    Ok(Json(
        router::remove_interface(&app, &who.scope(), &id, &subnet).await?,
    ))
}

#[utoipa::path(get, path = "/v1/security-groups", params(AllProjects), responses((status = 200, body = Page<SecurityGroup>)))]
pub async fn list_security_groups(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<AllProjects>,
) -> ApiResult<Json<Page<SecurityGroup>>> {
    Ok(Json(
        security_group::list(&app, &who.listing(q.all_projects)?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/security-groups", request_body = CreateSecurityGroupRequest,
    responses((status = 201, body = SecurityGroup), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_security_group(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<CreateSecurityGroupRequest>,
) -> Created<SecurityGroup> {
    Ok((
        StatusCode::CREATED,
        Json(security_group::create(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/security-groups/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = SecurityGroup), (status = 404, body = ErrorBody)))]
pub async fn get_security_group(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<SecurityGroup>> {
    Ok(Json(security_group::get(&app, &who.scope(), &id).await?))
}

#[utoipa::path(delete, path = "/v1/security-groups/{id}", params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_security_group(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    security_group::delete(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/security-groups/{id}/rules", params(("id" = String, Path, description = "ID or name")),
    request_body = RuleRequest,
    responses((status = 201, body = SecurityGroup), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_rule(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RuleRequest>,
) -> Created<SecurityGroup> {
    Ok((
        StatusCode::CREATED,
        Json(security_group::add_rule(&app, &who.scope(), &id, req).await?),
    ))
}

#[utoipa::path(delete, path = "/v1/security-groups/{id}/rules/{rule}", params(("id" = String, Path), ("rule" = String, Path)),
    responses((status = 200, body = SecurityGroup), (status = 404, body = ErrorBody)))]
pub async fn remove_rule(
    State(app): State<App>,
    who: Who,
    Path((id, rule)): Path<(String, String)>,
) -> ApiResult<Json<SecurityGroup>> {
    Ok(Json(
        security_group::remove_rule(&app, &who.scope(), &id, &rule).await?,
    ))
}

#[utoipa::path(get, path = "/v1/floating-ips", params(AllProjects), responses((status = 200, body = Page<FloatingIp>)))]
pub async fn list_floating_ips(
    State(app): State<App>,
    who: Who,
    ApiQuery(q): ApiQuery<AllProjects>,
) -> ApiResult<Json<Page<FloatingIp>>> {
    Ok(Json(
        floating_ip::list(&app, &who.listing(q.all_projects)?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/floating-ips", request_body = AllocateFloatingIpRequest,
    responses((status = 201, body = FloatingIp), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn allocate_floating_ip(
    State(app): State<App>,
    who: Who,
    ApiJson(req): ApiJson<AllocateFloatingIpRequest>,
) -> Created<FloatingIp> {
    Ok((
        StatusCode::CREATED,
        Json(floating_ip::allocate(&app, &who.scope(), req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/floating-ips/{id}", params(("id" = String, Path, description = "ID or address")),
    responses((status = 200, body = FloatingIp), (status = 404, body = ErrorBody)))]
pub async fn get_floating_ip(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<FloatingIp>> {
    Ok(Json(floating_ip::get(&app, &who.scope(), &id).await?.0))
}

#[utoipa::path(delete, path = "/v1/floating-ips/{id}", params(("id" = String, Path, description = "ID or address")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn release_floating_ip(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    floating_ip::release(&app, &who.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/floating-ips/{id}/associate", params(("id" = String, Path, description = "ID or address")),
    request_body = AssociateFloatingIpRequest,
    responses((status = 200, body = FloatingIp), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn associate_floating_ip(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssociateFloatingIpRequest>,
) -> ApiResult<Json<FloatingIp>> {
    Ok(Json(
        floating_ip::associate(&app, &who.scope(), &id, req).await?,
    ))
}

#[utoipa::path(post, path = "/v1/floating-ips/{id}/disassociate", params(("id" = String, Path, description = "ID or address")),
    responses((status = 200, body = FloatingIp), (status = 404, body = ErrorBody)))]
pub async fn disassociate_floating_ip(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
) -> ApiResult<Json<FloatingIp>> {
    Ok(Json(
        floating_ip::disassociate(&app, &who.scope(), &id).await?,
    ))
}
