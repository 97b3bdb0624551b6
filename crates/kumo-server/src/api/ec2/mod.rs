//! The EC2 query API (`Version=2016-11-15`) and STS `GetCallerIdentity`, served at `/` (POST and
//! GET) beside `/v1`. SigV4 is the authentication: no bearer token, no `/v1` middleware.
//!
//! A request goes, in order ([`serve`]):
//!
//! 1. [`kumo_ec2::parse_request`]: the signature's parts, the parameters, `Action`, `Version`.
//! 2. The access key's secret and caller ([`crate::identity::access_key::lookup`]; an unknown key
//!    is `AuthFailure` for EC2, `InvalidClientTokenId` for STS), the signature checked with the
//!    server's clock, the credential scope's region checked against `--region`.
//! 3. Authorization by role ([`may_call`]): readers may call `Describe*` and `Get*` only
//!    (`UnauthorizedOperation`).
//! 4. Dispatch: STS → [`sts`]; EC2 → [`compute::handle`], then [`network::handle`], then
//!    [`storage::handle`]; nobody → `InvalidAction`.
//! 5. Every mutating call and every authentication or authorization failure is audited
//!    ([`crate::audit::record`], api `ec2`, the action, the targets the handler named).
//!
//! # Writing an action
//!
//! A module's `handle(ctx, action, params)` returns `None` for actions that are not its own. An
//! action reads every parameter it supports from `params`, validates, then calls
//! [`Ec2Ctx::ready`] — which reports any parameter nobody read (`UnknownParameter`) and answers
//! `DryRun=true` with `DryRunOperation` — and only then acts, through the same app-layer functions
//! as `/v1`, with [`Ec2Ctx::scope`]. App errors become EC2 errors with [`error::from_app`] (or
//! `?` through [`Ec2Result`]'s `From`). Mutating actions name what they touched with
//! [`Ec2Ctx::target`] for the audit log. Answer with [`Ec2Ctx::respond`].
//!
//! Shared machinery: [`ids`] (EC2 ⇄ kumo ids), [`filter`] (filters, pagination),
//! [`crate::app::tags`] (tags), [`crate::app::idempotency`] (`ClientToken`).

pub mod compute;
pub mod error;
pub mod filter;
pub mod ids;
pub mod images;
pub mod instance_attr;
pub mod instances;
pub mod keys;
pub mod meta;
pub mod network;
pub mod render;
pub mod run;
pub mod storage;
pub mod tags;

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kumo_ec2::xml::{self, XmlWriter};
use kumo_ec2::{Ec2Error, Params, Parsed, Service};

use crate::app::App;
use crate::app::scope::Scope;
use crate::audit::{self, AuditEntry};
use crate::identity::{Caller, Role, access_key};

/// What an EC2 action handler returns: the XML body, or the error to answer with.
pub type Ec2Result<T = String> = Result<T, Ec2Error>;

/// Everything an action handler needs about its request.
pub struct Ec2Ctx {
    pub app: App,
    /// Who is calling (from the access key), with the client's address.
    pub caller: Caller,
    /// The caller's project ([`Scope::of`]): what every app-layer call gets.
    pub scope: Scope,
    /// The server's region (`--region`), which the request was signed for.
    pub region: String,
    /// The endpoint the client called (its `Host`), shown by `DescribeRegions`.
    pub endpoint: String,
    pub request_id: String,
    action: String,
    targets: Mutex<Vec<String>>,
    /// The caller's account id and the zone, made once (listings show them on every item).
    account: String,
    zone: String,
}

impl Ec2Ctx {
    pub fn new(app: App, caller: Caller, region: String, action: &str) -> Ec2Ctx {
        Ec2Ctx {
            app,
            scope: Scope::of(&caller),
            account: ids::account_id(&caller.project),
            zone: format!("{region}a"),
            caller,
            region,
            endpoint: String::new(),
            request_id: kumo_ec2::request_id(),
            action: action.to_string(),
            targets: Mutex::new(Vec::new()),
        }
    }

    /// The action being served, e.g. `RunInstances`.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Record that this request touches `id` (the audit log's targets).
    pub fn target(&self, id: impl Into<String>) {
        if let Ok(mut t) = self.targets.lock() {
            t.push(id.into());
        }
    }

    /// The ids recorded with [`Ec2Ctx::target`].
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Call after reading every supported parameter and validating, before acting: fails with
    /// `UnknownParameter` for any parameter nobody read, and with `DryRunOperation` (412) when the
    /// request asked for a dry run.
    pub fn ready(&self, params: &Params) -> Ec2Result<()> {
        let dry = params.dry_run()?;
        params.finish()?;
        if dry {
            return Err(Ec2Error::dry_run_operation());
        }
        Ok(())
    }

    /// The success document of this action, with the request id.
    pub fn respond(&self, body: impl FnOnce(&mut XmlWriter)) -> Ec2Result {
        Ok(xml::ec2_response(&self.action, &self.request_id, body))
    }

    /// The caller's account id (12 digits, from the project name).
    pub fn account_id(&self) -> String {
        self.account.clone()
    }

    /// The one availability zone: `<region>a`.
    pub fn zone(&self) -> String {
        self.zone.clone()
    }
}

/// Whether a role may call an action: readers only `Describe*` and `Get*`; members and above
/// everything (pure).
pub fn may_call(role: Role, action: &str) -> bool {
    role >= Role::Member || is_read_only(action)
}

/// `Describe*` and `Get*` actions change nothing (and are not audited).
pub fn is_read_only(action: &str) -> bool {
    action.starts_with("Describe") || action.starts_with("Get")
}

/// The handler of `/` (POST and GET): see the module documentation.
pub async fn serve(State(app): State<App>, req: Request) -> Response {
    let source = crate::auth::source_of(&req);
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, super::BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            let e = Ec2Error::new(
                "RequestEntityTooLarge",
                format!(
                    "The request body is larger than {} bytes",
                    super::BODY_LIMIT
                ),
                413,
            );
            return answer(Service::Ec2, &kumo_ec2::request_id(), Err(e));
        }
    };
    let mut wire = kumo_ec2::Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    if wire.header("host").is_none()
        && let Some(a) = parts.uri.authority()
    {
        wire.headers.push(("Host".into(), a.to_string()));
    }
    let region = app.cfg.region.clone();
    let mut parsed = match kumo_ec2::parse_request(&wire) {
        Ok(p) => p,
        Err(e) => {
            let rid = kumo_ec2::request_id();
            audit_failure(&app, &wire, source, None, "", &e).await;
            return answer(guess_service(&wire), &rid, Err(e));
        }
    };
    let service = parsed.service;
    let caller = match authenticate(&app, &wire, &parsed, &region).await {
        Ok(mut c) => {
            c.source = source;
            c
        }
        Err(e) => {
            let rid = kumo_ec2::request_id();
            let akid = Some(parsed.access_key_id.as_str());
            audit_failure(&app, &wire, source, akid, &parsed.action, &e).await;
            return answer(service, &rid, Err(e));
        }
    };
    let mut ctx = Ec2Ctx::new(app, caller, region, &parsed.action);
    ctx.endpoint = wire.header("host").unwrap_or_default().to_string();
    let result = if may_call(ctx.caller.role, &parsed.action) {
        dispatch(&ctx, service, &mut parsed.params).await
    } else {
        Err(Ec2Error::new(
            "UnauthorizedOperation",
            format!(
                "You are not authorized to perform this operation: {} needs the `member` role in \
                 project `{}`; user `{}` is `{}` there",
                parsed.action,
                ctx.caller.project,
                ctx.caller.user,
                ctx.caller.role.as_str()
            ),
            403,
        ))
    };
    let mutating = !is_read_only(&parsed.action);
    let denied = matches!(&result, Err(e) if e.http_status() == 401 || e.http_status() == 403);
    if mutating || denied {
        let mut entry =
            AuditEntry::for_caller(&ctx.caller, "ec2", &wire.method, &wire.path, &parsed.action);
        entry.target = ctx.targets();
        match &result {
            Ok(_) => entry.status = 200,
            Err(e) => {
                entry.status = e.http_status();
                entry.error_code = Some(e.code().to_string());
            }
        }
        if let Err(e) = audit::record(&ctx.app, &entry).await {
            tracing::error!(error = %e, ?entry, "AUDIT RECORD LOST: could not append to the audit log");
        }
    }
    answer(service, &ctx.request_id, result)
}

/// Find the access key, check the signature and the region: the caller, or the error to answer.
async fn authenticate(
    app: &App,
    wire: &kumo_ec2::Request,
    parsed: &Parsed,
    region: &str,
) -> Ec2Result<Caller> {
    let unknown = || match parsed.service {
        Service::Ec2 => Ec2Error::auth_failure(),
        Service::Sts => Ec2Error::invalid_client_token_id(),
    };
    let (secret, caller) = match access_key::lookup(app, &parsed.access_key_id).await {
        Ok(Some(found)) => found,
        Ok(None) | Err(kumo_types::Error::Forbidden { .. }) => return Err(unknown()),
        Err(e) => return Err(error::from_app(e)),
    };
    parsed.verify(wire, &secret, chrono::Utc::now())?;
    if parsed.region != region {
        return Err(Ec2Error::credential_scope_region(&parsed.region));
    }
    Ok(caller)
}

/// Route an authenticated, authorized request to its service and action.
async fn dispatch(ctx: &Ec2Ctx, service: Service, params: &mut Params) -> Ec2Result {
    let action = ctx.action.clone();
    let result = match service {
        Service::Sts => sts(ctx, &action, params),
        Service::Ec2 => {
            let handled = match compute::handle(ctx, &action, params).await {
                Some(r) => Some(r),
                None => match network::handle(ctx, &action, params).await {
                    Some(r) => Some(r),
                    None => storage::handle(ctx, &action, params).await,
                },
            };
            handled.unwrap_or_else(|| Err(Ec2Error::invalid_action(&action)))
        }
    };
    // Every handler calls `ready` before acting; this catches one that forgot (the parameter is
    // still reported, never silently ignored).
    if result.is_ok()
        && let Err(e) = params.finish()
    {
        tracing::error!(action, error = %e, "EC2 handler left a parameter unread (a bug)");
        return Err(e);
    }
    result
}

/// STS: `GetCallerIdentity` only.
fn sts(ctx: &Ec2Ctx, action: &str, params: &Params) -> Ec2Result {
    if action != "GetCallerIdentity" {
        return Err(Ec2Error::invalid_action(action));
    }
    params.finish()?;
    let account = ctx.account_id();
    Ok(xml::sts_response(action, &ctx.request_id, |w| {
        w.text(
            "Arn",
            &format!("arn:aws:iam::{account}:user/{}", ctx.caller.user),
        )
        .text(
            "UserId",
            ctx.caller.credential.as_deref().unwrap_or_default(),
        )
        .text("Account", &account);
    }))
}

/// The service a request that did not parse meant (for its error's format): STS if its
/// credential scope says so, else EC2.
fn guess_service(wire: &kumo_ec2::Request) -> Service {
    let sts = wire
        .header("authorization")
        .is_some_and(|a| a.contains("/sts/aws4_request"))
        || wire.query.contains("%2Fsts%2Faws4_request");
    if sts { Service::Sts } else { Service::Ec2 }
}

/// Audit an authentication failure (no caller: only the key id, if any, and the address).
async fn audit_failure(
    app: &App,
    wire: &kumo_ec2::Request,
    source: Option<std::net::IpAddr>,
    access_key_id: Option<&str>,
    action: &str,
    e: &Ec2Error,
) {
    let entry = AuditEntry {
        credential: access_key_id.map(str::to_string),
        source: source.map(|s| s.to_string()),
        api: "ec2".into(),
        method: wire.method.clone(),
        path: wire.path.clone(),
        action: action.to_string(),
        status: e.http_status(),
        error_code: Some(e.code().to_string()),
        ..Default::default()
    };
    if let Err(err) = audit::record(app, &entry).await {
        tracing::error!(error = %err, ?entry, "AUDIT RECORD LOST: could not append to the audit log");
    }
}

/// The HTTP response: the body as `text/xml`, or the service's error document.
fn answer(service: Service, request_id: &str, result: Ec2Result) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            service.error_xml(&e, request_id),
        ),
    };
    let mut resp = (status, Body::from(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(xml::CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_describe_members_change() {
        for a in ["DescribeInstances", "GetCallerIdentity", "DescribeTags"] {
            assert!(may_call(Role::Reader, a), "{a}");
        }
        for a in ["RunInstances", "CreateTags", "TerminateInstances"] {
            assert!(!may_call(Role::Reader, a), "{a}");
            assert!(may_call(Role::Member, a), "{a}");
            assert!(may_call(Role::CloudAdmin, a), "{a}");
        }
    }

    #[test]
    fn unparsable_requests_answer_in_their_service_format() {
        let sts = kumo_ec2::Request::new("POST", "/").with_header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIA/20260101/kumo-1/sts/aws4_request",
        );
        assert_eq!(guess_service(&sts), Service::Sts);
        assert_eq!(
            guess_service(&kumo_ec2::Request::new("POST", "/")),
            Service::Ec2
        );
    }
}
