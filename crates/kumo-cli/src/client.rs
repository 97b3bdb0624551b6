//! The HTTP client for `/v1`.
//!
//! Every response body is kept verbatim next to its typed value ([`Json`]) so that `--json` prints
//! exactly what the API sent. Lists follow `next_token` until exhausted; the merged list is printed as
//! `{"items": [...]}` with each item verbatim.
//!
//! TLS: `https://` URLs (a server's `--tls-listen`) go through rustls. With a CA file
//! (`Config::ca_file`, normally the cluster CA) that CA is the only one trusted; without one, the
//! build's built-in roots (for a server behind a proxy with a public certificate).

use std::time::Duration;

use kumo_types::{ErrorBody, Page};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::CliError;
use crate::config::Config;

/// Connect timeout for every request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default whole-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Page size asked of list endpoints.
pub const PAGE_LIMIT: usize = 500;

/// A decoded response body together with its exact text.
#[derive(Debug, Clone)]
pub struct Json<T> {
    pub value: T,
    pub raw: String,
}

/// All pages of a list, merged.
#[derive(Debug, Clone)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Each item exactly as the API sent it.
    pub raw_items: Vec<Box<RawValue>>,
}

impl<T> List<T> {
    /// `{"items":[...]}` with the items verbatim: the shape of one `Page` without `next_token`.
    pub fn raw(&self) -> String {
        let parts: Vec<&str> = self.raw_items.iter().map(|r| r.get()).collect();
        format!("{{\"items\":[{}]}}", parts.join(","))
    }
}

/// A client bound to one API endpoint and token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Sent as `X-Kumo-Project`.
    project: Option<String>,
    /// The CA file's certificates (PEM), the only roots trusted over https when given.
    ca_pem: Option<Vec<u8>>,
}

impl Client {
    pub fn new(cfg: &Config) -> Result<Client, CliError> {
        let mut builder = reqwest::Client::builder();
        let mut ca_pem = None;
        if let (true, Some(path)) = (cfg.url.starts_with("https://"), &cfg.ca_file) {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::usage(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            let not_pem = |why: String| {
                CliError::usage(format!(
                    "{} is not a PEM CA certificate{why}",
                    path.display()
                ))
            };
            let cas = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| not_pem(format!(": {}", chain(&e))))?;
            if cas.is_empty() {
                return Err(not_pem(String::new()));
            }
            builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
            for ca in cas {
                builder = builder.add_root_certificate(ca);
            }
            ca_pem = Some(pem);
        }
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("kumo-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                CliError::Other(anyhow::anyhow!("building the HTTP client: {}", chain(&e)))
            })?;
        Ok(Client {
            http,
            base: cfg.url.trim_end_matches('/').to_string(),
            token: cfg.token.clone(),
            project: None,
            ca_pem,
        })
    }

    /// Act in `project` (`X-Kumo-Project` on every request).
    pub fn with_project(mut self, project: Option<String>) -> Client {
        self.project = project;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The project requests act in (`X-Kumo-Project`), if one was chosen.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The CA certificates (PEM) trusted over https, if a CA file was given.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// `ws://…/v1/<path>` for WebSocket endpoints.
    pub fn ws_url(&self, path: &str) -> String {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{base}/v1/{}", path.trim_start_matches('/'))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.base, path.trim_start_matches('/'))
    }

    fn transport(&self, e: reqwest::Error) -> CliError {
        if e.is_decode() || e.is_builder() {
            CliError::Other(anyhow::anyhow!("{}", chain(&e)))
        } else {
            CliError::Connect {
                url: self.base.clone(),
                message: chain(&e),
            }
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        let req = match &self.project {
            Some(p) => req.header("X-Kumo-Project", p),
            None => req,
        };
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        Err(CliError::Api {
            status,
            body: error_body(status, &text),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Json<T>, CliError> {
        let resp = self.send(req).await?;
        let raw = resp.text().await.map_err(|e| self.transport(e))?;
        let value = serde_json::from_str(&raw).map_err(|e| {
            CliError::Other(anyhow::anyhow!("unexpected response from the API: {e}"))
        })?;
        Ok(Json { value, raw })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Json<T>, CliError> {
        self.json(self.http.get(self.url(path))).await
    }

    /// Like [`Client::get`] but a 404 is `Ok(None)`.
    pub async fn get_opt<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<Json<T>>, CliError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST a JSON body (or none) and decode the JSON answer. `timeout` overrides [`REQUEST_TIMEOUT`].
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<Json<T>, CliError> {
        let mut req = self.http.post(self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        self.json(req).await
    }

    /// PATCH a JSON body and decode the JSON answer.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Json<T>, CliError> {
        self.json(self.http.patch(self.url(path)).json(body)).await
    }

    /// PUT a JSON body and decode the JSON answer.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Json<T>, CliError> {
        self.json(self.http.put(self.url(path)).json(body)).await
    }

    /// DELETE answered with a JSON body (e.g. instances: 202 + the view).
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<Json<T>, CliError> {
        self.json(self.http.delete(self.url(path))).await
    }

    /// DELETE answered with 204 and no body.
    pub async fn delete_empty(&self, path: &str) -> Result<(), CliError> {
        self.send(self.http.delete(self.url(path))).await.map(drop)
    }

    /// GET raw bytes plus one response header's value.
    pub async fn get_bytes(
        &self,
        path: &str,
        header: &str,
    ) -> Result<(Vec<u8>, Option<String>), CliError> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        let h = resp
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        Ok((bytes.to_vec(), h))
    }

    /// GET every page of a list endpoint (`path` may already carry a query string).
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<List<T>, CliError> {
        self.list_max(path, None).await
    }

    /// GET pages of a list endpoint until exhausted or `max` items were collected.
    pub async fn list_max<T: DeserializeOwned>(
        &self,
        path: &str,
        max: Option<usize>,
    ) -> Result<List<T>, CliError> {
        self.pages(path, max, true).await
    }

    /// GET a list endpoint that takes no `limit` (it answers everything at once; a `next_token`, should
    /// one come back, is still followed).
    pub async fn list_unpaged<T: DeserializeOwned>(&self, path: &str) -> Result<List<T>, CliError> {
        self.pages(path, None, false).await
    }

    async fn pages<T: DeserializeOwned>(
        &self,
        path: &str,
        max: Option<usize>,
        send_limit: bool,
    ) -> Result<List<T>, CliError> {
        let mut out = List {
            items: Vec::new(),
            raw_items: Vec::new(),
        };
        let mut token: Option<String> = None;
        loop {
            let want = max.map_or(PAGE_LIMIT, |m| {
                m.saturating_sub(out.items.len()).clamp(1, PAGE_LIMIT)
            });
            let mut url = path.to_string();
            if send_limit {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&format!("limit={want}"));
            }
            if let Some(t) = &token {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("next_token=");
                url.push_str(&encode_query(t));
            }
            let page: Json<Page<Box<RawValue>>> = self.get(&url).await?;
            for raw in page.value.items {
                let item = serde_json::from_str(raw.get()).map_err(|e| {
                    CliError::Other(anyhow::anyhow!("unexpected list item from the API: {e}"))
                })?;
                out.items.push(item);
                out.raw_items.push(raw);
            }
            if let Some(m) = max
                && out.items.len() >= m
            {
                out.items.truncate(m);
                out.raw_items.truncate(m);
                return Ok(out);
            }
            match page.value.next_token {
                Some(t) if Some(&t) != token.as_ref() && !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// Decode an error response: the API's [`ErrorBody`], or a synthesised one for non-JSON answers.
pub fn error_body(status: u16, text: &str) -> ErrorBody {
    if let Ok(b) = serde_json::from_str::<ErrorBody>(text) {
        return b;
    }
    let snippet: String = text.trim().chars().take(300).collect();
    let message = if snippet.is_empty() {
        format!("HTTP status {status}")
    } else {
        snippet
    };
    ErrorBody {
        code: format!("http_{status}"),
        message,
        field: None,
    }
}

/// True for a 404 / `not_found` answer.
pub fn is_not_found(e: &CliError) -> bool {
    matches!(e, CliError::Api { status: 404, .. }) || e.api_code() == Some("not_found")
}

/// Percent-encode a path segment or query value (everything but unreserved characters).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode one path segment (a user-given name or id).
pub fn seg(s: &str) -> String {
    encode_query(s)
}

/// An error and its sources, `: `-joined (reqwest's own message is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
