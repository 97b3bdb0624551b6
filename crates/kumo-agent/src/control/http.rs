//! [`ControlPlane`] over the server's internal HTTP API, for `kumo agent` running as its own process.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use kumo_types::{
    AssignmentSnapshot, Error, ErrorBody, Host, HostInventory, InstanceStatus, Result,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ControlPlane, EventBody, WatchAnswer};

/// How the agent proves who it is (see [`crate::join`]).
#[derive(Clone)]
pub enum Credentials {
    /// `Authorization: Bearer` (the plain listener: single-host and split mode).
    Bearer(String),
    /// The host's certificate (mTLS to the TLS listener); the server is trusted only if it chains to
    /// `ca_pem`, never to the system's roots.
    Certificate {
        /// The host certificate and its private key, PEM.
        identity_pem: Vec<u8>,
        ca_pem: Vec<u8>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Bearer(_) => "Bearer(..)",
            Credentials::Certificate { .. } => "Certificate { .. }",
        })
    }
}

#[derive(Clone)]
pub struct HttpControlPlane {
    /// The internal API of every server given (`--server a,b,c`); requests go to the current one
    /// and move on to the next when it cannot be reached.
    bases: std::sync::Arc<Vec<String>>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Sent as a bearer token when set.
    token: Option<String>,
    /// Replaced when the host's certificate is renewed ([`HttpControlPlane::set_credentials`]).
    client: std::sync::Arc<std::sync::RwLock<reqwest::Client>>,
}

/// The HTTP client for `creds`, and the bearer token to send (if any).
fn build_client(creds: Credentials) -> Result<(reqwest::Client, Option<String>)> {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    let (builder, token) = match creds {
        Credentials::Bearer(t) => (builder, Some(t)),
        Credentials::Certificate {
            identity_pem,
            ca_pem,
        } => {
            let tls = |what: &str, e: reqwest::Error| Error::internal_with(what.to_string(), e);
            let identity = reqwest::Identity::from_pem(&identity_pem)
                .map_err(|e| tls("reading the host certificate and key", e))?;
            let ca = reqwest::Certificate::from_pem(&ca_pem)
                .map_err(|e| tls("reading the cluster CA", e))?;
            let b = builder
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca)
                .identity(identity)
                .https_only(true);
            (b, None)
        }
    };
    let client = builder
        .build()
        .map_err(|e| Error::internal_with("building the HTTP client", e))?;
    Ok((client, token))
}

impl HttpControlPlane {
    pub fn new(server_url: &str, token: &str) -> Result<Self> {
        Self::with_credentials(server_url, Credentials::Bearer(token.to_string()))
    }

    pub fn with_credentials(server_url: &str, creds: Credentials) -> Result<Self> {
        let (client, token) = build_client(creds)?;
        let bases: Vec<String> = server_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("{}/internal/v1", s.trim_end_matches('/')))
            .collect();
        if bases.is_empty() {
            return Err(Error::invalid("server", "give at least one server URL"));
        }
        Ok(HttpControlPlane {
            bases: std::sync::Arc::new(bases),
            current: std::sync::Arc::default(),
            token,
            client: std::sync::Arc::new(std::sync::RwLock::new(client)),
        })
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Use new credentials from now on (a renewed host certificate). Requests in flight finish with
    /// the old ones.
    pub fn set_credentials(&self, creds: Credentials) -> Result<()> {
        let (client, _) = build_client(creds)?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        Ok(())
    }

    /// Trade a CSR for a new certificate of this host (`POST /hosts/{name}/certificate`, over mTLS
    /// with the current one).
    pub async fn renew_certificate(
        &self,
        host_name: &str,
        csr: &str,
    ) -> Result<kumo_types::JoinResponse> {
        required(
            self.call(
                reqwest::Method::POST,
                &format!("/hosts/{host_name}/certificate"),
                Some(&serde_json::json!({ "csr": csr })),
                Duration::from_secs(30),
            )
            .await?,
        )
    }

    /// The current server's internal API base URL.
    fn base(&self) -> String {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        self.bases[i].clone()
    }

    /// Move on to the next server (after `failed` could not be reached).
    fn next_server(&self, failed: &str) {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        if self.bases.len() > 1 && self.bases[i] == failed {
            let _ = self.current.compare_exchange(
                i,
                (i + 1) % self.bases.len(),
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
            tracing::warn!(from = %failed, to = %self.base(), "control plane unreachable; trying the next server");
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// One of a console session's streams (`input` or `output`) on the current server; no
    /// timeout: it lasts as long as the session.
    async fn console_stream(
        &self,
        method: reqwest::Method,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
        which: &str,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let url = format!(
            "{}/hosts/{host_id}/consoles/{}/{which}",
            self.base(),
            console.session
        );
        let mut req = self
            .client()
            .request(method, url)
            .query(&[("server", &console.server)]);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = self
            .authed(req)
            .send()
            .await
            .map_err(|e| Error::unavailable(format!("control plane unreachable: {e}")))?;
        if !resp.status().is_success() {
            return Err(Error::unavailable(format!(
                "console session {} ({which}): control plane answered {}",
                console.session,
                resp.status()
            )));
        }
        Ok(resp)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Option<T>> {
        let mut attempt = 0;
        let resp = loop {
            let base = self.base();
            let mut req = self
                .authed(
                    self.client()
                        .request(method.clone(), format!("{base}{path}")),
                )
                .timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) => break r,
                Err(e) if e.is_connect() && attempt + 1 < self.bases.len() => {
                    self.next_server(&base);
                    attempt += 1;
                }
                Err(e) => {
                    self.next_server(&base);
                    return Err(Error::unavailable(format!(
                        "control plane unreachable: {e}"
                    )));
                }
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::unavailable(format!("reading control plane answer: {e}")))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            let message = format!("control plane answered {status}: {msg}");
            return Err(match status {
                // Credentials the server will not take: retrying does not help.
                reqwest::StatusCode::UNAUTHORIZED => Error::Unauthenticated { message },
                reqwest::StatusCode::FORBIDDEN => Error::Forbidden { message },
                _ => Error::unavailable(message),
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::internal_with("decoding control plane answer", e))
    }

    async fn post_unit<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<()> {
        self.call::<B, serde_json::Value>(
            reqwest::Method::POST,
            path,
            body,
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
    }
}

fn required<T>(v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::internal("control plane sent no body"))
}

#[async_trait]
impl crate::imagecache::FetchFile for HttpControlPlane {
    async fn fetch_image_file(
        &self,
        image_id: &str,
        file: &str,
        dest: &std::path::Path,
    ) -> Result<()> {
        let resp = self
            .authed(
                self.client()
                    .get(format!("{}/images/{image_id}/files/{file}", self.base())),
            )
            .send()
            .await
            .map_err(|e| Error::unavailable(format!("control plane unreachable: {e}")))?;
        if !resp.status().is_success() {
            return Err(Error::unavailable(format!(
                "fetching image {image_id}/{file}: control plane answered {}",
                resp.status()
            )));
        }
        crate::imagecache::write_body(resp, dest, &format!("image {image_id}/{file}")).await
    }
}

#[async_trait]
impl ControlPlane for HttpControlPlane {
    async fn register_host(&self, inventory: HostInventory) -> Result<Host> {
        required(
            self.call(
                reqwest::Method::POST,
                "/hosts/register",
                Some(&inventory),
                Duration::from_secs(30),
            )
            .await?,
        )
    }
    async fn heartbeat(&self, host_id: &str) -> Result<()> {
        self.post_unit::<()>(&format!("/hosts/{host_id}/heartbeat"), None)
            .await
    }
    async fn assignments(&self, host_id: &str) -> Result<AssignmentSnapshot> {
        required(
            self.call::<(), _>(
                reqwest::Method::GET,
                &format!("/hosts/{host_id}/assignments"),
                None,
                Duration::from_secs(30),
            )
            .await?,
        )
    }
    async fn watch_assignments(
        &self,
        host_id: &str,
        revision: i64,
    ) -> Result<BoxStream<'static, ()>> {
        let this = self.clone();
        let host = host_id.to_string();
        // Successive long-polls; each yields once when something changed. A failed poll ends the
        // stream, and the agent re-reads its snapshot and watches again.
        let stream = futures::stream::unfold(Some(revision), move |rev| {
            let (this, host) = (this.clone(), host.clone());
            async move {
                let mut rev = rev?;
                loop {
                    let path = format!("/hosts/{host}/watch?revision={rev}");
                    let ans: Option<WatchAnswer> = this
                        .call::<(), _>(reqwest::Method::GET, &path, None, Duration::from_secs(60))
                        .await
                        .ok()?;
                    if ans.is_some_and(|a| a.changed) {
                        // The agent re-reads everything; from here any newer change counts.
                        rev = match this.assignments(&host).await {
                            Ok(s) => s.revision,
                            Err(_) => return None,
                        };
                        return Some(((), Some(rev)));
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
    async fn report_status(&self, instance_id: &str, status: InstanceStatus) -> Result<()> {
        self.post_unit(&format!("/instances/{instance_id}/status"), Some(&status))
            .await
    }
    async fn report_migration(
        &self,
        instance_id: &str,
        host_id: &str,
        report: kumo_types::MigrationReport,
    ) -> Result<()> {
        self.post_unit(
            &format!("/instances/{instance_id}/migration/{host_id}"),
            Some(&report),
        )
        .await
    }
    async fn relay_requests(&self, host_id: &str) -> Result<Vec<kumo_types::RelayRequest>> {
        Ok(self
            .call::<(), Vec<kumo_types::RelayRequest>>(
                reqwest::Method::GET,
                &format!("/hosts/{host_id}/relay"),
                None,
                Duration::from_secs(40),
            )
            .await?
            .unwrap_or_default())
    }
    async fn relay_respond(
        &self,
        host_id: &str,
        request_id: &str,
        response: kumo_types::RelayResponse,
    ) -> Result<()> {
        self.post_unit(
            &format!("/hosts/{host_id}/relay/{request_id}"),
            Some(&response),
        )
        .await
    }
    async fn console_input(
        &self,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
    ) -> Result<super::ByteStream> {
        use futures::StreamExt;
        let resp = self
            .console_stream(reqwest::Method::GET, host_id, console, "input", None)
            .await?;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed())
    }
    async fn console_output(
        &self,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
        output: super::ByteStream,
    ) -> Result<()> {
        let body = reqwest::Body::wrap_stream(output);
        self.console_stream(
            reqwest::Method::POST,
            host_id,
            console,
            "output",
            Some(body),
        )
        .await?;
        Ok(())
    }
    async fn image_exists(&self, image_id: &str) -> Result<bool> {
        let v: kumo_types::ImageExists = required(
            self.call::<(), _>(
                reqwest::Method::GET,
                &format!("/images/{image_id}/exists"),
                None,
                Duration::from_secs(30),
            )
            .await?,
        )?;
        Ok(v.exists)
    }
    async fn instance_removed(&self, instance_id: &str) -> Result<()> {
        self.post_unit::<()>(&format!("/instances/{instance_id}/removed"), None)
            .await
    }
    async fn report_volume_status(
        &self,
        volume_id: &str,
        status: kumo_types::VolumeStatus,
    ) -> Result<()> {
        self.post_unit(&format!("/volumes/{volume_id}/status"), Some(&status))
            .await
    }
    async fn volume_removed(&self, volume_id: &str) -> Result<()> {
        self.post_unit::<()>(&format!("/volumes/{volume_id}/removed"), None)
            .await
    }
    async fn report_snapshot_status(
        &self,
        snapshot_id: &str,
        status: kumo_types::SnapshotStatus,
    ) -> Result<()> {
        self.post_unit(&format!("/snapshots/{snapshot_id}/status"), Some(&status))
            .await
    }
    async fn snapshot_removed(&self, snapshot_id: &str) -> Result<()> {
        self.post_unit::<()>(&format!("/snapshots/{snapshot_id}/removed"), None)
            .await
    }
    async fn report_pool_status(
        &self,
        pool: &str,
        host_id: &str,
        status: kumo_types::PoolHostStatus,
    ) -> Result<()> {
        self.post_unit(&format!("/pools/{pool}/hosts/{host_id}"), Some(&status))
            .await
    }
    async fn event(&self, resource: &str, kind: &str, message: &str) -> Result<()> {
        let body = EventBody {
            resource: resource.into(),
            kind: kind.into(),
            message: message.into(),
        };
        self.post_unit("/events", Some(&body)).await
    }
}
