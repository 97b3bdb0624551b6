//! REST `/v1`: thin handlers. Each one extracts and calls the app layer; no logic lives here.

pub mod audit;
pub mod caller;
pub mod cluster;
pub mod console;
pub mod ec2;
pub mod extract;
pub mod ha;
pub mod identity;
pub mod instance;
pub mod internal;
pub mod network;
pub mod peer;
pub mod placement;
pub mod quota;
pub mod resources;
pub mod volume;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use utoipa::OpenApi;

use crate::app::App;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kumo",
        description = "kumo's native REST API. Every call but `POST /v1/login` needs `Authorization: Bearer <token>`; `X-Kumo-Project: <name>` picks the project a call acts in."
    ),
    paths(
        resources::list_hosts,
        resources::get_host,
        placement::update_host,
        placement::list_placement_groups,
        placement::create_placement_group,
        placement::get_placement_group,
        placement::delete_placement_group,
        resources::list_images,
        resources::import_image,
        resources::get_image,
        resources::update_image,
        resources::delete_image,
        resources::list_instance_types,
        resources::create_instance_type,
        resources::get_instance_type,
        resources::delete_instance_type,
        resources::list_key_pairs,
        resources::import_key_pair,
        resources::get_key_pair,
        resources::delete_key_pair,
        resources::list_networks,
        resources::get_network,
        resources::list_events,
        instance::list_instances,
        instance::run_instance,
        instance::get_instance,
        instance::delete_instance,
        instance::start_instance,
        instance::stop_instance,
        instance::migrate_instance,
        instance::reboot_instance,
        instance::serial_log,
        instance::attach_nic,
        instance::detach_nic,
        console::console,
        ha::set_fencing,
        ha::clear_fencing,
        ha::cluster_status,
        ha::drain,
        ha::remove_host,
        ha::undrain,
        network::create_network,
        network::delete_network,
        network::list_subnets,
        network::create_subnet,
        network::get_subnet,
        network::delete_subnet,
        network::list_ports,
        network::create_port,
        network::get_port,
        network::update_port,
        volume::list_volumes,
        volume::create_volume,
        volume::get_volume,
        volume::update_volume,
        volume::delete_volume,
        volume::attach_volume,
        volume::detach_volume,
        volume::list_pools,
        volume::create_pool,
        volume::list_volume_types,
        volume::create_volume_type,
        volume::get_volume_type,
        volume::delete_volume_type,
        volume::get_pool,
        volume::delete_pool,
        volume::list_snapshots,
        volume::create_snapshot,
        volume::get_snapshot,
        volume::delete_snapshot,
        network::delete_port,
        network::list_routers,
        network::create_router,
        network::get_router,
        network::delete_router,
        network::add_router_interface,
        network::remove_router_interface,
        network::list_security_groups,
        network::create_security_group,
        network::get_security_group,
        network::delete_security_group,
        network::add_rule,
        network::remove_rule,
        network::list_floating_ips,
        network::allocate_floating_ip,
        network::get_floating_ip,
        network::release_floating_ip,
        network::associate_floating_ip,
        network::disassociate_floating_ip,
        cluster::list_join_tokens,
        cluster::create_join_token,
        cluster::get_join_token,
        cluster::delete_join_token,
        identity::whoami,
        identity::login,
        identity::list_projects,
        identity::create_project,
        identity::get_project,
        identity::delete_project,
        identity::list_users,
        identity::create_user,
        identity::get_user,
        identity::delete_user,
        identity::set_role,
        identity::remove_role,
        identity::set_password,
        identity::list_tokens,
        identity::create_token,
        identity::revoke_token,
        identity::list_access_keys,
        identity::create_access_key,
        identity::delete_access_key,
        audit::list_audit,
        audit::export_audit,
        audit::verify_audit,
        audit::prune_audit,
        quota::get_quotas,
        quota::set_quotas,
    ),
    components(schemas(kumo_types::ErrorBody))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (committed as `docs/openapi.json`; a test checks for drift).
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub fn router(app: App) -> Router {
    let v1 = Router::new()
        .route("/hosts", get(resources::list_hosts))
        .route(
            "/hosts/{id}",
            get(resources::get_host)
                .patch(placement::update_host)
                .delete(ha::remove_host),
        )
        .route(
            "/placement-groups",
            get(placement::list_placement_groups).post(placement::create_placement_group),
        )
        .route(
            "/placement-groups/{name}",
            get(placement::get_placement_group).delete(placement::delete_placement_group),
        )
        .route("/cluster/status", get(ha::cluster_status))
        .route("/hosts/{id}/drain", post(ha::drain))
        .route("/hosts/{id}/undrain", post(ha::undrain))
        .route(
            "/hosts/{id}/fencing",
            axum::routing::put(ha::set_fencing).delete(ha::clear_fencing),
        )
        .route(
            "/images",
            get(resources::list_images).post(resources::import_image),
        )
        .route(
            "/images/{id}",
            get(resources::get_image)
                .patch(resources::update_image)
                .delete(resources::delete_image),
        )
        .route(
            "/instance-types",
            get(resources::list_instance_types).post(resources::create_instance_type),
        )
        .route(
            "/instance-types/{name}",
            get(resources::get_instance_type).delete(resources::delete_instance_type),
        )
        .route(
            "/key-pairs",
            get(resources::list_key_pairs).post(resources::import_key_pair),
        )
        .route(
            "/key-pairs/{id}",
            get(resources::get_key_pair).delete(resources::delete_key_pair),
        )
        .route(
            "/networks",
            get(resources::list_networks).post(network::create_network),
        )
        .route(
            "/networks/{id}",
            get(resources::get_network).delete(network::delete_network),
        )
        .route(
            "/subnets",
            get(network::list_subnets).post(network::create_subnet),
        )
        .route(
            "/subnets/{id}",
            get(network::get_subnet).delete(network::delete_subnet),
        )
        .route(
            "/ports",
            get(network::list_ports).post(network::create_port),
        )
        .route(
            "/ports/{id}",
            get(network::get_port)
                .patch(network::update_port)
                .delete(network::delete_port),
        )
        .route(
            "/routers",
            get(network::list_routers).post(network::create_router),
        )
        .route(
            "/routers/{id}",
            get(network::get_router).delete(network::delete_router),
        )
        .route(
            "/routers/{id}/interfaces",
            post(network::add_router_interface),
        )
        .route(
            "/routers/{id}/interfaces/{subnet}",
            axum::routing::delete(network::remove_router_interface),
        )
        .route(
            "/security-groups",
            get(network::list_security_groups).post(network::create_security_group),
        )
        .route(
            "/security-groups/{id}",
            get(network::get_security_group).delete(network::delete_security_group),
        )
        .route("/security-groups/{id}/rules", post(network::add_rule))
        .route(
            "/security-groups/{id}/rules/{rule}",
            axum::routing::delete(network::remove_rule),
        )
        .route(
            "/floating-ips",
            get(network::list_floating_ips).post(network::allocate_floating_ip),
        )
        .route(
            "/floating-ips/{id}",
            get(network::get_floating_ip).delete(network::release_floating_ip),
        )
        .route(
            "/floating-ips/{id}/associate",
            post(network::associate_floating_ip),
        )
        .route(
            "/floating-ips/{id}/disassociate",
            post(network::disassociate_floating_ip),
        )
        .route("/events", get(resources::list_events))
        .route(
            "/instances",
            get(instance::list_instances).post(instance::run_instance),
        )
        .route(
            "/instances/{id}",
            get(instance::get_instance).delete(instance::delete_instance),
        )
        .route("/instances/{id}/start", post(instance::start_instance))
        .route("/instances/{id}/stop", post(instance::stop_instance))
        .route("/instances/{id}/migrate", post(instance::migrate_instance))
        .route("/instances/{id}/reboot", post(instance::reboot_instance))
        .route("/instances/{id}/serial-log", get(instance::serial_log))
        .route("/instances/{id}/nics", post(instance::attach_nic))
        .route(
            "/instances/{id}/nics/{nic}",
            axum::routing::delete(instance::detach_nic),
        )
        .route("/instances/{id}/console", get(console::console))
        .route(
            "/volumes",
            get(volume::list_volumes).post(volume::create_volume),
        )
        .route(
            "/volumes/{id}",
            get(volume::get_volume)
                .patch(volume::update_volume)
                .delete(volume::delete_volume),
        )
        .route("/volumes/{id}/attach", post(volume::attach_volume))
        .route("/volumes/{id}/detach", post(volume::detach_volume))
        .route("/pools", get(volume::list_pools).post(volume::create_pool))
        .route(
            "/volume-types",
            get(volume::list_volume_types).post(volume::create_volume_type),
        )
        .route(
            "/volume-types/{name}",
            get(volume::get_volume_type).delete(volume::delete_volume_type),
        )
        .route(
            "/pools/{name}",
            get(volume::get_pool).delete(volume::delete_pool),
        )
        .route(
            "/snapshots",
            get(volume::list_snapshots).post(volume::create_snapshot),
        )
        .route(
            "/snapshots/{id}",
            get(volume::get_snapshot).delete(volume::delete_snapshot),
        )
        .route(
            "/cluster/join-tokens",
            get(cluster::list_join_tokens).post(cluster::create_join_token),
        )
        .route(
            "/cluster/join-tokens/{id}",
            get(cluster::get_join_token).delete(cluster::delete_join_token),
        )
        .route("/whoami", get(identity::whoami))
        .route("/quotas", get(quota::get_quotas))
        .route(
            "/projects/{name}/quotas",
            axum::routing::put(quota::set_quotas),
        )
        .route(
            "/projects",
            get(identity::list_projects).post(identity::create_project),
        )
        .route(
            "/projects/{name}",
            get(identity::get_project).delete(identity::delete_project),
        )
        .route(
            "/users",
            get(identity::list_users).post(identity::create_user),
        )
        .route(
            "/users/{name}",
            get(identity::get_user).delete(identity::delete_user),
        )
        .route(
            "/users/{name}/roles/{project}",
            axum::routing::put(identity::set_role).delete(identity::remove_role),
        )
        .route(
            "/users/{name}/password",
            axum::routing::put(identity::set_password),
        )
        .route(
            "/tokens",
            get(identity::list_tokens).post(identity::create_token),
        )
        .route(
            "/tokens/{id}",
            axum::routing::delete(identity::revoke_token),
        )
        .route(
            "/access-keys",
            get(identity::list_access_keys).post(identity::create_access_key),
        )
        .route(
            "/access-keys/{id}",
            axum::routing::delete(identity::delete_access_key),
        )
        .route("/audit", get(audit::list_audit))
        .route("/audit/export", get(audit::export_audit))
        .route("/audit/verify", get(audit::verify_audit))
        .route("/audit/prune", post(audit::prune_audit))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            crate::auth::require_token,
        ))
        // Needs no token (and so is added after the authentication layer).
        .route("/login", post(identity::login))
        // Outermost: sees the result of authentication, authorization and the handler.
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            crate::audit::layer,
        ));
    Router::new()
        .nest("/v1", v1)
        .nest("/internal/v1", internal::router(app.clone()))
        .nest("/peer/v1", peer::router(app.clone()))
        // The EC2/STS query API: SigV4 is its authentication (no bearer token, no `/v1` layers).
        .route("/", get(ec2::serve).post(ec2::serve))
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .fallback(|| async {
            crate::error::ApiError(kumo_types::Error::not_found("route", "this path"))
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}
