//! The EC2-compatible instance metadata service (IMDS), served at `169.254.169.254:80`.
//!
//! Identity is the TCP peer address and nothing else: the agent registers each local instance under its
//! fixed IPv4 (DHCP gives the guest exactly that address, and the guest reaches the service over its
//! own bridge). Invariants:
//! - A guest is answered only about itself. A source address with no registered instance gets `404`
//!   for every path (and for the token request), so it learns nothing, not even which paths exist.
//! - IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` in 1..=21600 returns a
//!   random token bound to the caller's address. A request that carries `X-aws-ec2-metadata-token`
//!   must present an unexpired token issued to the same address, else `401`. A request without a
//!   token is served (IMDSv1) unless the instance has `imdsv2_required`. A token request carrying
//!   `X-Forwarded-For` is refused (`403`), as on EC2, so a proxy in the guest cannot mint tokens.
//! - Tokens die with their TTL, when the instance is removed, or when another instance takes its
//!   address ([`MetadataRegistry::upsert`] with a new instance ID). At most [`MAX_TOKENS_PER_IP`]
//!   live tokens per address; the oldest is dropped beyond that.
//! - Any version segment is accepted (`latest` or a dated one such as `2009-04-04`), as cloud-init
//!   probes dated versions first.
//!
//! Deciding is pure ([`answer`], the token store with an explicit clock); [`serve`] is the thin axum
//! executor.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Header that asks for a token, with its TTL in seconds.
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Header that presents a token.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Longest token TTL EC2 allows (6 hours).
pub const MAX_TTL_SECS: u64 = 21_600;
/// Live tokens kept per source address.
pub const MAX_TOKENS_PER_IP: usize = 64;

/// What one instance may learn about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMetadata {
    pub instance_id: String,
    pub hostname: String,
    /// The instance's fixed address; also its identity towards this service.
    pub local_ipv4: Ipv4Addr,
    pub public_ipv4: Option<Ipv4Addr>,
    /// `(name, openssh public key)`, served as `public-keys/<index>`.
    pub public_keys: Vec<(String, String)>,
    pub user_data: Option<String>,
    /// e.g. `kumo-1a`; the region is this without its trailing letter(s).
    pub availability_zone: String,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    /// MAC of the first NIC.
    pub mac: Option<String>,
    /// Refuse IMDSv1 (requests without a token).
    pub imdsv2_required: bool,
}

impl InstanceMetadata {
    /// A minimal record; fill in the optional fields as needed.
    pub fn new(
        instance_id: impl Into<String>,
        hostname: impl Into<String>,
        local_ipv4: Ipv4Addr,
    ) -> Self {
        InstanceMetadata {
            instance_id: instance_id.into(),
            hostname: hostname.into(),
            local_ipv4,
            public_ipv4: None,
            public_keys: Vec::new(),
            user_data: None,
            availability_zone: "kumo-1a".into(),
            image_id: None,
            instance_type: None,
            mac: None,
            imdsv2_required: false,
        }
    }

    /// `kumo-1a` → `kumo-1`.
    pub fn region(&self) -> &str {
        let az = self.availability_zone.as_str();
        let trimmed = az.trim_end_matches(|c: char| c.is_ascii_lowercase());
        if trimmed.is_empty() || trimmed.len() == az.len() {
            az
        } else {
            trimmed
        }
    }
}

/// The content of one successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub content_type: &'static str,
    pub body: String,
}

fn text(body: impl Into<String>) -> Option<Answer> {
    Some(Answer {
        content_type: "text/plain",
        body: body.into(),
    })
}

fn listing(items: &[&str]) -> Option<Answer> {
    text(items.join("\n"))
}

/// Strip the version segment: `/latest/meta-data/x` → `Some("meta-data/x")`.
fn strip_version(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let dated = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    (version == "latest" || dated).then_some(rest)
}

/// What `meta` sees at `path` (a request path such as `/latest/meta-data/instance-id`); `None` is 404.
pub fn answer(meta: &InstanceMetadata, path: &str) -> Option<Answer> {
    if path == "/" || path.is_empty() {
        return text("latest");
    }
    let rest = strip_version(path)?;
    let rest = rest.trim_end_matches('/');
    if let Some(md) = rest.strip_prefix("meta-data") {
        return meta_data(meta, md.trim_start_matches('/'));
    }
    match rest {
        "" => {
            let mut items = vec!["dynamic", "meta-data"];
            if meta.user_data.is_some() {
                items.push("user-data");
            }
            listing(&items)
        }
        "user-data" => meta.user_data.as_ref().map(|u| Answer {
            content_type: "application/octet-stream",
            body: u.clone(),
        }),
        "dynamic" => text("instance-identity/"),
        "dynamic/instance-identity" => text("document"),
        "dynamic/instance-identity/document" => Some(Answer {
            content_type: "application/json",
            body: identity_document(meta),
        }),
        _ => None,
    }
}

fn meta_data(meta: &InstanceMetadata, p: &str) -> Option<Answer> {
    match p {
        "" => {
            let mut items = Vec::new();
            if meta.image_id.is_some() {
                items.push("ami-id");
            }
            items.extend(["hostname", "instance-id"]);
            if meta.instance_type.is_some() {
                items.push("instance-type");
            }
            items.extend(["local-hostname", "local-ipv4"]);
            if meta.mac.is_some() {
                items.push("mac");
            }
            items.push("placement/");
            if meta.public_ipv4.is_some() {
                items.push("public-ipv4");
            }
            if !meta.public_keys.is_empty() {
                items.push("public-keys/");
            }
            listing(&items)
        }
        "ami-id" => meta.image_id.as_deref().and_then(text),
        "instance-id" => text(meta.instance_id.as_str()),
        "instance-type" => meta.instance_type.as_deref().and_then(text),
        "hostname" | "local-hostname" => text(meta.hostname.as_str()),
        "local-ipv4" => text(meta.local_ipv4.to_string()),
        "mac" => meta.mac.as_deref().and_then(text),
        "public-ipv4" => meta.public_ipv4.map(|ip| ip.to_string()).and_then(text),
        "placement" => listing(&["availability-zone", "region"]),
        "placement/availability-zone" => text(meta.availability_zone.as_str()),
        "placement/region" => text(meta.region()),
        "public-keys" if !meta.public_keys.is_empty() => {
            let lines: Vec<String> = meta
                .public_keys
                .iter()
                .enumerate()
                .map(|(i, (n, _))| format!("{i}={n}"))
                .collect();
            text(lines.join("\n"))
        }
        _ => public_key(meta, p.strip_prefix("public-keys/")?),
    }
}

fn public_key(meta: &InstanceMetadata, p: &str) -> Option<Answer> {
    let (idx, leaf) = p.split_once('/').unwrap_or((p, ""));
    // Only canonical indexes ("0", "1", …), so "00" or "+0" are not aliases.
    if idx.is_empty()
        || (idx.len() > 1 && idx.starts_with('0'))
        || !idx.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (_, key) = meta.public_keys.get(idx.parse::<usize>().ok()?)?;
    match leaf {
        "" => text("openssh-key"),
        "openssh-key" => text(key.as_str()),
        _ => None,
    }
}

fn identity_document(meta: &InstanceMetadata) -> String {
    let doc = serde_json::json!({
        "architecture": "x86_64",
        "availabilityZone": meta.availability_zone,
        "imageId": meta.image_id,
        "instanceId": meta.instance_id,
        "instanceType": meta.instance_type,
        "privateIp": meta.local_ipv4.to_string(),
        "region": meta.region(),
        "version": "2017-09-30",
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Tokens issued to source addresses, with an explicit clock so expiry is testable without sleeping.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: HashMap<String, (Ipv4Addr, Instant)>,
}

impl TokenStore {
    /// Remember `token` for `ip` until `now + ttl`; drops expired tokens and, beyond
    /// [`MAX_TOKENS_PER_IP`], the ones of `ip` closest to expiry.
    pub fn insert(&mut self, token: String, ip: Ipv4Addr, ttl: Duration, now: Instant) {
        self.tokens.retain(|_, (_, exp)| *exp > now);
        let mut mine: Vec<(Instant, String)> = self
            .tokens
            .iter()
            .filter(|(_, (i, _))| *i == ip)
            .map(|(t, (_, e))| (*e, t.clone()))
            .collect();
        if mine.len() >= MAX_TOKENS_PER_IP {
            mine.sort();
            let excess = mine.len() + 1 - MAX_TOKENS_PER_IP;
            for (_, t) in mine.into_iter().take(excess) {
                self.tokens.remove(&t);
            }
        }
        self.tokens.insert(token, (ip, now + ttl));
    }
    /// True if `token` was issued to `ip` and has not expired at `now`.
    pub fn valid(&self, token: &str, ip: Ipv4Addr, now: Instant) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|(i, exp)| *i == ip && *exp > now)
    }
    /// Forget every token of `ip`.
    pub fn revoke_ip(&mut self, ip: Ipv4Addr) {
        self.tokens.retain(|_, (i, _)| *i != ip);
    }
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The instances this host serves, by source address, and their tokens. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct MetadataRegistry {
    instances: Arc<RwLock<HashMap<Ipv4Addr, Arc<InstanceMetadata>>>>,
    tokens: Arc<Mutex<TokenStore>>,
}

impl MetadataRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register or update the instance that talks to the service from `ip` (its fixed address,
    /// normally `meta.local_ipv4`). If another instance held that address, its tokens are revoked; an
    /// instance registered at another address before is no longer served there.
    pub fn upsert(&self, ip: Ipv4Addr, meta: InstanceMetadata) {
        self.upsert_addrs(&[ip], meta);
    }

    /// Like [`MetadataRegistry::upsert`] for an instance known by several addresses (one per NIC):
    /// afterwards it is served at exactly `ips`.
    pub fn upsert_addrs(&self, ips: &[Ipv4Addr], meta: InstanceMetadata) {
        let mut map = self.instances.write().unwrap_or_else(|e| e.into_inner());
        let mut revoke: Vec<Ipv4Addr> = map
            .iter()
            .filter(|(addr, m)| {
                let mine = m.instance_id == meta.instance_id;
                (mine && !ips.contains(addr)) || (!mine && ips.contains(addr))
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in &revoke {
            if !ips.contains(addr) {
                map.remove(addr);
            }
        }
        let meta = Arc::new(meta);
        for ip in ips {
            map.insert(*ip, meta.clone());
        }
        drop(map);
        revoke.dedup();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        for addr in revoke {
            tokens.revoke_ip(addr);
        }
    }

    /// Keep only the instances whose address satisfies `keep` (the agent passes the live set after
    /// reading its assignments); the tokens of the others are revoked.
    pub fn retain(&self, mut keep: impl FnMut(&Ipv4Addr) -> bool) {
        let mut map = self.instances.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<Ipv4Addr> = map.keys().filter(|ip| !keep(ip)).copied().collect();
        for ip in &gone {
            map.remove(ip);
        }
        drop(map);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        for ip in gone {
            tokens.revoke_ip(ip);
        }
    }

    /// Forget the instance at `ip` and its tokens.
    pub fn remove(&self, ip: Ipv4Addr) -> Option<InstanceMetadata> {
        let old = self
            .instances
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .revoke_ip(ip);
        old.map(Arc::unwrap_or_clone)
    }

    /// Forget an instance by ID (at every address it is registered at).
    pub fn remove_instance(&self, instance_id: &str) -> Option<InstanceMetadata> {
        let ips: Vec<Ipv4Addr> = self
            .instances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, m)| m.instance_id == instance_id)
            .map(|(ip, _)| *ip)
            .collect();
        let mut removed = None;
        for ip in ips {
            removed = self.remove(ip).or(removed);
        }
        removed
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<Arc<InstanceMetadata>> {
        self.instances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.instances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn issue_token(&self, ip: Ipv4Addr, ttl: Duration) -> String {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), ip, ttl, Instant::now());
        token
    }

    fn token_valid(&self, token: &str, ip: Ipv4Addr) -> bool {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .valid(token, ip, Instant::now())
    }
}

/// The axum router (needs `ConnectInfo<SocketAddr>`; use [`serve`] or
/// `into_make_service_with_connect_info::<SocketAddr>()`).
pub fn router(registry: MetadataRegistry) -> Router {
    Router::new().fallback(handle).with_state(registry)
}

/// Serve the metadata service on `listener` until the future is dropped or the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: MetadataRegistry,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(registry).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

fn status(code: StatusCode) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain")],
        code.canonical_reason().unwrap_or(""),
    )
        .into_response()
}

/// Parse the TTL header: 1..=21600 seconds.
pub fn parse_ttl(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    (1..=MAX_TTL_SECS)
        .contains(&secs)
        .then(|| Duration::from_secs(secs))
}

async fn handle(
    State(reg): State<MetadataRegistry>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ip = match peer.ip().to_canonical() {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(_) => return status(StatusCode::NOT_FOUND),
    };
    let Some(meta) = reg.get(ip) else {
        return status(StatusCode::NOT_FOUND);
    };
    let path = uri.path();
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        if headers.contains_key("x-forwarded-for") {
            return status(StatusCode::FORBIDDEN);
        }
        let ttl_header = headers.get(TTL_HEADER).and_then(|v| v.to_str().ok());
        let Some(ttl) = parse_ttl(ttl_header) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let token = reg.issue_token(ip, ttl);
        let ttl_s = ttl.as_secs().to_string();
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain".to_string()),
                (header::HeaderName::from_static(TTL_HEADER), ttl_s),
            ],
            token,
        )
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let authorized = match headers.get(TOKEN_HEADER) {
        Some(t) => t.to_str().is_ok_and(|t| reg.token_valid(t, ip)),
        None => !meta.imdsv2_required,
    };
    if !authorized {
        return status(StatusCode::UNAUTHORIZED);
    }
    match answer(&meta, path) {
        Some(a) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, a.content_type)],
            a.body,
        )
            .into_response(),
        None => status(StatusCode::NOT_FOUND),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta() -> InstanceMetadata {
        let mut m = InstanceMetadata::new(
            "i-0123456789abcdef0",
            "web-1",
            Ipv4Addr::new(198, 18, 0, 10),
        );
        m.public_keys = vec![("alice".into(), "ssh-ed25519 AAAA alice".into())];
        m.user_data = Some("#!/bin/sh\necho hi\n".into());
        m
    }

    fn body(m: &InstanceMetadata, p: &str) -> Option<String> {
        answer(m, p).map(|a| a.body)
    }

    #[test]
    fn tree() {
        let m = meta();
        assert_eq!(
            body(&m, "/latest/meta-data/instance-id").as_deref(),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(
            body(&m, "/2009-04-04/meta-data/instance-id").as_deref(),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/local-ipv4").as_deref(),
            Some("198.18.0.10")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/local-hostname").as_deref(),
            Some("web-1")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/").as_deref(),
            Some("hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-keys/")
        );
        assert_eq!(
            body(&m, "/latest/meta-data"),
            body(&m, "/latest/meta-data/")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/public-keys/").as_deref(),
            Some("0=alice")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/public-keys/0/").as_deref(),
            Some("openssh-key")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/public-keys/0/openssh-key").as_deref(),
            Some("ssh-ed25519 AAAA alice")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/public-keys/00/openssh-key"),
            None
        );
        assert_eq!(
            body(&m, "/latest/meta-data/public-keys/1/openssh-key"),
            None
        );
        assert_eq!(
            body(&m, "/latest/meta-data/placement/availability-zone").as_deref(),
            Some("kumo-1a")
        );
        assert_eq!(
            body(&m, "/latest/meta-data/placement/region").as_deref(),
            Some("kumo-1")
        );
        assert_eq!(body(&m, "/latest/meta-data/public-ipv4"), None);
        assert_eq!(
            body(&m, "/latest/user-data").as_deref(),
            Some("#!/bin/sh\necho hi\n")
        );
        assert_eq!(
            body(&m, "/latest/").as_deref(),
            Some("dynamic\nmeta-data\nuser-data")
        );
        assert_eq!(body(&m, "/v1/meta-data/instance-id"), None);
        assert_eq!(body(&m, "/latest/meta-data/nope"), None);
        let doc: serde_json::Value =
            serde_json::from_str(&body(&m, "/latest/dynamic/instance-identity/document").unwrap())
                .unwrap();
        assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
        assert_eq!(doc["privateIp"], "198.18.0.10");
        assert_eq!(doc["region"], "kumo-1");
    }

    #[test]
    fn optional_fields() {
        let mut m = meta();
        m.user_data = None;
        m.public_keys.clear();
        m.public_ipv4 = Some(Ipv4Addr::new(203, 0, 113, 5));
        m.image_id = Some("ami-00000000000000001".into());
        assert_eq!(body(&m, "/latest/user-data"), None);
        assert_eq!(body(&m, "/latest/meta-data/public-keys/"), None);
        assert_eq!(
            body(&m, "/latest/meta-data/public-ipv4").as_deref(),
            Some("203.0.113.5")
        );
        let index = body(&m, "/latest/meta-data/").unwrap();
        assert!(
            index.starts_with("ami-id\n")
                && index.contains("public-ipv4")
                && !index.contains("public-keys")
        );
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(parse_ttl(Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(parse_ttl(Some("21600")), Some(Duration::from_secs(21600)));
        for bad in [None, Some("0"), Some("21601"), Some("-5"), Some("abc")] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_bind_to_address_and_expire() {
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11));
        let now = Instant::now();
        let mut s = TokenStore::default();
        s.insert("t1".into(), a, Duration::from_secs(10), now);
        assert!(s.valid("t1", a, now));
        assert!(!s.valid("t1", b, now));
        assert!(!s.valid("t1", a, now + Duration::from_secs(10)));
        for i in 0..(MAX_TOKENS_PER_IP + 5) {
            s.insert(format!("x{i}"), a, Duration::from_secs(100 + i as u64), now);
        }
        assert_eq!(s.len(), MAX_TOKENS_PER_IP);
        assert!(s.valid(&format!("x{}", MAX_TOKENS_PER_IP + 4), a, now));
        assert!(!s.valid("x0", a, now));
        s.revoke_ip(a);
        assert!(s.is_empty());
    }

    #[test]
    fn registry_moves_and_replacements() {
        let r = MetadataRegistry::new();
        let mut m = meta();
        r.upsert(m.local_ipv4, m.clone());
        let tok = r.issue_token(m.local_ipv4, Duration::from_secs(60));
        assert!(r.token_valid(&tok, m.local_ipv4));
        // Same instance updated: tokens survive.
        m.hostname = "web-2".into();
        r.upsert(m.local_ipv4, m.clone());
        assert!(r.token_valid(&tok, m.local_ipv4));
        // Another instance takes the address: tokens are revoked.
        r.upsert(
            m.local_ipv4,
            InstanceMetadata::new("i-00000000000000002", "other", m.local_ipv4),
        );
        assert!(!r.token_valid(&tok, m.local_ipv4));
        // An instance that moves is no longer served at its old address.
        r.upsert(m.local_ipv4, m.clone());
        m.local_ipv4 = Ipv4Addr::new(198, 18, 0, 99);
        r.upsert(m.local_ipv4, m.clone());
        assert!(r.get(Ipv4Addr::new(198, 18, 0, 10)).is_none());
        assert_eq!(r.len(), 1);
        assert!(r.remove_instance(&m.instance_id).is_some());
        assert!(r.is_empty());
        r.upsert(m.local_ipv4, m.clone());
        let tok = r.issue_token(m.local_ipv4, Duration::from_secs(60));
        r.retain(|ip| *ip != m.local_ipv4);
        assert!(r.is_empty() && !r.token_valid(&tok, m.local_ipv4));
    }

    #[test]
    fn an_instance_is_served_at_every_nic_address() {
        let r = MetadataRegistry::new();
        let m = meta();
        let (a, b, c) = (
            Ipv4Addr::new(198, 18, 0, 10),
            Ipv4Addr::new(198, 18, 40, 10),
            Ipv4Addr::new(198, 18, 50, 10),
        );
        r.upsert_addrs(&[a, b, c], m.clone());
        assert_eq!(r.len(), 3);
        for ip in [a, b, c] {
            assert_eq!(r.get(ip).unwrap().instance_id, m.instance_id);
        }
        let tok_b = r.issue_token(b, Duration::from_secs(60));
        let tok_c = r.issue_token(c, Duration::from_secs(60));
        // A NIC unplugged: no longer served there, its tokens revoked; the others keep theirs.
        r.upsert_addrs(&[a, b], m.clone());
        assert!(r.get(c).is_none());
        assert!(!r.token_valid(&tok_c, c));
        assert!(r.token_valid(&tok_b, b));
        // Another instance takes b: b's tokens are revoked.
        r.upsert_addrs(
            &[b],
            InstanceMetadata::new("i-00000000000000002", "other", b),
        );
        assert!(!r.token_valid(&tok_b, b));
        assert_eq!(r.get(a).unwrap().instance_id, m.instance_id);
        assert!(r.remove_instance(&m.instance_id).is_some());
        assert_eq!(r.len(), 1);
    }
}
