//! REST `/v1`: thin handlers. Each one extracts and calls the app layer; no logic lives here.

pub mod console;
pub mod extract;
pub mod instance;
pub mod internal;
pub mod resources;

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
        description = "kumo's native REST API. Every call needs `Authorization: Bearer <token>`."
    ),
    paths(
        resources::list_hosts,
        resources::get_host,
        resources::list_images,
        resources::import_image,
        resources::get_image,
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
        instance::reboot_instance,
        instance::serial_log,
        console::console,
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
        .route("/hosts/{id}", get(resources::get_host))
        .route(
            "/images",
            get(resources::list_images).post(resources::import_image),
        )
        .route(
            "/images/{id}",
            get(resources::get_image).delete(resources::delete_image),
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
        .route("/networks", get(resources::list_networks))
        .route("/networks/{id}", get(resources::get_network))
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
        .route("/instances/{id}/reboot", post(instance::reboot_instance))
        .route("/instances/{id}/serial-log", get(instance::serial_log))
        .route("/instances/{id}/console", get(console::console))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            crate::auth::require_token,
        ));
    Router::new()
        .nest("/v1", v1)
        .nest("/internal/v1", internal::router(app.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .fallback(|| async {
            crate::error::ApiError(kumo_types::Error::not_found("route", "this path"))
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}
