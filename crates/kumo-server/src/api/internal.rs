//! The internal API agents use when they do not run inside the server (`kumo agent`). It mirrors the
//! [`kumo_agent::control::ControlPlane`] trait one route per method, so the agent's logic is the same
//! in-process and remote. Authentication ([`crate::auth::require_agent`]): a bearer token on the plain
//! listener, a host certificate (mTLS) on the TLS listener. A host certificate acts only for its own
//! host: the routes that name a host (register, heartbeat, assignments, watch, pool status) check it
//! with [`crate::auth::may_act_for`]. `POST /join` and `GET /ca` are open: the join token is the
//! credential, and the CA certificate is public.

use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use futures::StreamExt;
use kumo_agent::control::{ControlPlane, EventBody, WatchAnswer};
use kumo_types::{
    AssignmentSnapshot, CaCertificate, Host, HostInventory, InstanceStatus, JoinRequest,
    JoinResponse,
};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery};
use crate::app::App;
use crate::auth::{AgentCaller, may_act_for};
use crate::control::InProcess;
use crate::error::ApiResult;

/// How long a watch long-poll waits before answering "no change".
pub const WATCH_POLL: Duration = Duration::from_secs(25);

#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    pub revision: i64,
}

pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/hosts/register", post(register))
        .route("/hosts/{id}/heartbeat", post(heartbeat))
        .route("/hosts/{id}/assignments", get(assignments))
        .route("/hosts/{id}/watch", get(watch))
        .route("/instances/{id}/status", post(status))
        .route("/instances/{id}/removed", post(removed))
        .route("/instances/{id}/migration/{host}", post(migration))
        .route("/volumes/{id}/status", post(volume_status))
        .route("/volumes/{id}/removed", post(volume_removed))
        .route("/snapshots/{id}/status", post(snapshot_status))
        .route("/snapshots/{id}/removed", post(snapshot_removed))
        .route("/pools/{pool}/hosts/{host}", post(pool_status))
        .route("/images/{id}/files/{file}", get(image_file))
        .route("/images/{id}/exists", get(image_exists))
        .route("/events", post(event))
        .route("/hosts/{name}/certificate", post(renew_certificate))
        .route("/hosts/{id}/relay", get(relay_requests))
        .route("/hosts/{id}/relay/{request}", post(relay_respond))
        .route("/hosts/{id}/consoles/{session}/input", get(console_input))
        .route(
            "/hosts/{id}/consoles/{session}/output",
            post(console_output),
        )
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            current_certificate,
        ))
        .route_layer(middleware::from_fn_with_state(
            app,
            crate::auth::require_agent,
        ))
        // Open: added after the auth layer, which covers only the routes above.
        .route("/join", post(join))
        .route("/ca", get(ca))
}

/// The hosts that may report on instance `id`: its host, and both ends of its migration (`None`:
/// the instance is gone).
async fn instance_hosts(app: &App, id: &str) -> ApiResult<Option<Vec<String>>> {
    let key = crate::storeutil::keys::instance(id);
    let Some((inst, _)) =
        crate::storeutil::get_json::<kumo_types::Instance>(app.kv(), &key).await?
    else {
        return Ok(None);
    };
    let mut hosts: Vec<String> = inst.host.into_iter().collect();
    if let Some(m) = inst.migration {
        hosts.extend([m.source_host, m.target_host]);
    }
    Ok(Some(hosts))
}

/// The hosts that may report on volume `id`: its home host, and those that may report on the
/// instance it is attached to (`None`: the volume is gone).
async fn volume_hosts(app: &App, id: &str) -> ApiResult<Option<Vec<String>>> {
    let key = crate::storeutil::keys::volume(id);
    let Some((v, _)) = crate::storeutil::get_json::<kumo_types::Volume>(app.kv(), &key).await?
    else {
        return Ok(None);
    };
    let mut hosts = vec![v.host];
    if let Some(a) = v.attachment {
        hosts.extend(
            instance_hosts(app, &a.instance_id)
                .await?
                .unwrap_or_default(),
        );
    }
    Ok(Some(hosts))
}

/// The hosts that may report on snapshot `id`: those of its volume (`None`: either is gone).
async fn snapshot_hosts(app: &App, id: &str) -> ApiResult<Option<Vec<String>>> {
    let key = crate::storeutil::keys::snapshot(id);
    let Some((s, _)) = crate::storeutil::get_json::<kumo_types::Snapshot>(app.kv(), &key).await?
    else {
        return Ok(None);
    };
    volume_hosts(app, &s.volume_id).await
}

/// A host certificate may only report on what its host looks after (`hosts`, host IDs, from
/// [`instance_hosts`] or [`volume_hosts`]). Reports about what is gone (`None`) are let through:
/// the app layer ignores them.
async fn check_reporter(
    app: &App,
    caller: &AgentCaller,
    what: &str,
    hosts: Option<Vec<String>>,
) -> ApiResult<()> {
    let (AgentCaller::Host(me), Some(hosts)) = (caller, hosts) else {
        return Ok(());
    };
    for h in hosts {
        if crate::app::host::get(app, &h)
            .await
            .is_ok_and(|h| &h.name == me)
        {
            return Ok(());
        }
    }
    Err(kumo_types::Error::Forbidden {
        message: format!("host {me:?} does not look after {what}"),
    }
    .into())
}

/// A host certificate may only act for its own host (`id` is the host's ID or name).
async fn check_host(app: &App, caller: &AgentCaller, id: &str) -> ApiResult<()> {
    if let AgentCaller::Host(_) = caller {
        let host = crate::app::host::get(app, id).await?;
        may_act_for(caller, &host.name)?;
    }
    Ok(())
}

/// Long-poll: requests for what only this host has (serial logs).
async fn relay_requests(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<kumo_types::RelayRequest>>> {
    check_host(&app, &caller, &id).await?;
    Ok(Json(cp(app).relay_requests(&id).await?))
}

async fn relay_respond(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path((id, request)): Path<(String, String)>,
    ApiJson(resp): ApiJson<kumo_types::RelayResponse>,
) -> ApiResult<StatusCode> {
    check_host(&app, &caller, &id).await?;
    cp(app).relay_respond(&id, &request, resp).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether an image still exists (hosts drop cached copies of deleted ones).
async fn image_exists(
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<Json<kumo_types::ImageExists>> {
    let exists = cp(app).image_exists(&id).await?;
    Ok(Json(kumo_types::ImageExists { exists }))
}

/// Which server holds a console session's user end.
#[derive(Debug, Deserialize)]
struct ConsoleServer {
    server: String,
}

/// What the user of a console session types, streamed to the agent of host `id`.
async fn console_input(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path((id, session)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ConsoleServer>,
) -> ApiResult<axum::response::Response> {
    check_host(&app, &caller, &id).await?;
    let host = crate::app::host::get(&app, &id).await?;
    let stream = crate::app::console::input_stream(&app, &host.id, &session, &q.server).await?;
    Ok(stream_response(stream))
}

/// What the guest prints, streamed by the agent of host `id` (until the body ends).
async fn console_output(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path((id, session)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ConsoleServer>,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    check_host(&app, &caller, &id).await?;
    let host = crate::app::host::get(&app, &id).await?;
    crate::app::console::feed_output(&app, &host.id, &session, &q.server, body_stream(body))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A request body as a byte stream.
pub fn body_stream(body: axum::body::Body) -> crate::app::console::ByteStream {
    body.into_data_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .boxed()
}

/// A byte stream as a 200 answer's body.
pub fn stream_response(stream: crate::app::console::ByteStream) -> axum::response::Response {
    axum::response::Response::new(axum::body::Body::from_stream(stream))
}

/// Over mTLS, only a host's current certificate (or the one a renewal just replaced) is accepted; a
/// removed host's are revoked. Runs after `require_agent` has authenticated the caller.
async fn current_certificate(
    State(app): State<App>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Result<axum::response::Response, crate::error::ApiError> {
    use crate::auth::TlsPeer;
    use crate::tls::identity::{PeerIdentity, PeerSerial};
    if let Some(TlsPeer(Some(PeerIdentity::Host(name)))) = req.extensions().get::<TlsPeer>() {
        let serial = req
            .extensions()
            .get::<PeerSerial>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        crate::app::host_cert::check(&app, name, &serial).await?;
    }
    Ok(next.run(req).await)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    /// PEM PKCS#10 request for the host's new key.
    csr: String,
}

/// A host trades a CSR for a new certificate (it authenticated with its current one).
async fn renew_certificate(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<RenewRequest>,
) -> ApiResult<Json<JoinResponse>> {
    may_act_for(&caller, &name)?;
    Ok(Json(
        crate::app::host_cert::renew(&app, &name, &req.csr).await?,
    ))
}

async fn join(
    State(app): State<App>,
    ApiJson(req): ApiJson<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    Ok(Json(crate::app::join_token::join(&app, req).await?))
}

async fn ca(State(app): State<App>) -> ApiResult<Json<CaCertificate>> {
    let ca = crate::tls::ensure_ca(&app, None).await?;
    Ok(Json(CaCertificate {
        fingerprint: ca.fingerprint(),
        certificate: ca.cert_pem,
    }))
}

fn cp(app: App) -> InProcess {
    InProcess { app }
}

async fn register(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    ApiJson(inv): ApiJson<HostInventory>,
) -> ApiResult<Json<Host>> {
    may_act_for(&caller, &inv.hostname)?;
    Ok(Json(cp(app).register_host(inv).await?))
}

async fn heartbeat(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_host(&app, &caller, &id).await?;
    cp(app).heartbeat(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn assignments(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
) -> ApiResult<Json<AssignmentSnapshot>> {
    check_host(&app, &caller, &id).await?;
    Ok(Json(cp(app).assignments(&id).await?))
}

/// Long-poll: answers as soon as something changed after `revision`, or after [`WATCH_POLL`].
async fn watch(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WatchQuery>,
) -> ApiResult<Json<WatchAnswer>> {
    check_host(&app, &caller, &id).await?;
    let mut stream = cp(app).watch_assignments(&id, q.revision).await?;
    let changed = matches!(
        tokio::time::timeout(WATCH_POLL, stream.next()).await,
        Ok(Some(()))
    );
    Ok(Json(WatchAnswer { changed }))
}

async fn status(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
    ApiJson(st): ApiJson<InstanceStatus>,
) -> ApiResult<StatusCode> {
    let hosts = instance_hosts(&app, &id).await?;
    check_reporter(&app, &caller, &format!("instance {id}"), hosts).await?;
    cp(app).report_status(&id, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn migration(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path((id, host)): Path<(String, String)>,
    ApiJson(report): ApiJson<kumo_types::MigrationReport>,
) -> ApiResult<StatusCode> {
    check_host(&app, &caller, &host).await?;
    cp(app).report_migration(&id, &host, report).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn removed(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let hosts = instance_hosts(&app, &id).await?;
    check_reporter(&app, &caller, &format!("instance {id}"), hosts).await?;
    cp(app).instance_removed(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn volume_status(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
    ApiJson(st): ApiJson<kumo_types::VolumeStatus>,
) -> ApiResult<StatusCode> {
    let hosts = volume_hosts(&app, &id).await?;
    check_reporter(&app, &caller, &format!("volume {id}"), hosts).await?;
    cp(app).report_volume_status(&id, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn volume_removed(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let hosts = volume_hosts(&app, &id).await?;
    check_reporter(&app, &caller, &format!("volume {id}"), hosts).await?;
    cp(app).volume_removed(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshot_status(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
    ApiJson(st): ApiJson<kumo_types::SnapshotStatus>,
) -> ApiResult<StatusCode> {
    let hosts = snapshot_hosts(&app, &id).await?;
    check_reporter(&app, &caller, &format!("snapshot {id}"), hosts).await?;
    cp(app).report_snapshot_status(&id, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshot_removed(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let hosts = snapshot_hosts(&app, &id).await?;
    check_reporter(&app, &caller, &format!("snapshot {id}"), hosts).await?;
    cp(app).snapshot_removed(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pool_status(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    Path((pool, host)): Path<(String, String)>,
    ApiJson(st): ApiJson<kumo_types::PoolHostStatus>,
) -> ApiResult<StatusCode> {
    check_host(&app, &caller, &host).await?;
    cp(app).report_pool_status(&pool, &host, st).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A stored image's file, streamed (hosts fetch images on first use); copied from another server
/// first if this one does not hold it yet.
async fn image_file(
    State(app): State<App>,
    Path((id, file)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let path = crate::app::image::local_file(&app, &id, &file).await?;
    file_response(&path, &id, &file).await
}

/// A file as the body of a 200 answer.
pub async fn file_response(
    path: &std::path::Path,
    id: &str,
    file: &str,
) -> ApiResult<axum::response::Response> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| kumo_types::Error::not_found("image file", format!("{id}/{file}: {e}")))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f));
    Ok(axum::response::Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .body(body)
        .map_err(|e| kumo_types::Error::internal_with("image file response", e))?)
}

/// An agent's event. About an instance, only from a host that may report on it; about anything
/// else (a network as one host sees it), from any host.
async fn event(
    State(app): State<App>,
    Extension(caller): Extension<AgentCaller>,
    ApiJson(ev): ApiJson<EventBody>,
) -> ApiResult<StatusCode> {
    if kumo_types::ids::is_id(kumo_types::ids::INSTANCE, &ev.resource) {
        let hosts = instance_hosts(&app, &ev.resource).await?;
        check_reporter(&app, &caller, &format!("instance {}", ev.resource), hosts).await?;
    }
    cp(app).event(&ev.resource, &ev.kind, &ev.message).await?;
    Ok(StatusCode::NO_CONTENT)
}
