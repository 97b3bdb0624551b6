//! AWS Signature Version 4: verifying (and, for kumo's own clients and tests,
//! producing) `AWS4-HMAC-SHA256` signatures.
//!
//! # The protocol
//!
//! A client proves it holds the secret of an access key by signing a
//! *canonical* rendering of the request:
//!
//! ```text
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
//!                    \n SignedHeaders \n HexSHA256(payload)
//! StringToSign     = "AWS4-HMAC-SHA256" \n RequestTime(YYYYMMDDTHHMMSSZ) \n Scope \n
//!                    HexSHA256(CanonicalRequest)
//! Scope            = YYYYMMDD/region/service/aws4_request
//! SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, YYYYMMDD), region), service), "aws4_request")
//! Signature        = Hex(HMAC(SigningKey, StringToSign))
//! ```
//!
//! * **Canonical URI** — the path with `.`/`..` segments and empty segments
//!   (`//`) removed, then URI-encoded (RFC 3986 unreserved characters kept,
//!   `/` kept). For every service but S3 the path is encoded *twice*: once on
//!   the wire and once here, so a wire path `/a%20b` canonicalises to
//!   `/a%2520b`. This is exactly what botocore does (`quote(normalize(path),
//!   safe='/~')`). EC2 and STS always use `/`.
//! * **Canonical query** — every `name=value` pair decoded, re-encoded with the
//!   RFC 3986 unreserved set (`A-Z a-z 0-9 - _ . ~`, upper-case hex, space as
//!   `%20`), sorted by name then value, joined with `&`. For presigned URLs
//!   `X-Amz-Signature` is left out. A `+` in the raw query is decoded as a
//!   space, the same as the parameter parser does (form encoding), so a
//!   signature can never cover a different parameter value than the handler
//!   reads.
//! * **Canonical headers** — for each name in `SignedHeaders`, in that order:
//!   `name:value\n`, where repeated headers are joined with `,` and each value
//!   is trimmed with inner runs of whitespace collapsed to one space. `host`
//!   must be signed.
//! * **Payload** — hex SHA-256 of the body, or the value of
//!   `x-amz-content-sha256` when the client sent one. kumo honours that header
//!   only when it *is* the body's hash: the EC2 parameters travel in the body,
//!   so an unsigned payload (`UNSIGNED-PAYLOAD`) would leave them forgeable.
//!
//! # Where the signature travels
//!
//! * `Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/ec2/aws4_request,
//!   SignedHeaders=content-type;host;x-amz-date, Signature=<64 hex>` with the
//!   request time in `X-Amz-Date` (basic ISO 8601) or, failing that, `Date`
//!   (RFC 1123). The time must be within 15 minutes of the server's clock.
//! * Presigned URLs: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
//!   `X-Amz-Expires` (1..=604800 s), `X-Amz-SignedHeaders`, `X-Amz-Signature`
//!   in the query string. Valid from 15 minutes before `X-Amz-Date` until
//!   `X-Amz-Date + X-Amz-Expires`.
//!
//! # Errors, as AWS words them
//!
//! Malformed parts are `IncompleteSignature` ("Credential must have exactly 5
//! slash-delimited elements, …", "'x' not a valid key=value pair (missing
//! equal-sign) in Authorization header: '…'.", "Authorization header requires
//! 'Signature' parameter. …"); no authentication at all is
//! `MissingAuthenticationToken`; a wrong signature is `SignatureDoesNotMatch`.
//! A request time outside the window is `RequestExpired` ("Request has
//! expired.") for EC2, and `SignatureDoesNotMatch` ("Signature expired: … is
//! now earlier than … (… - 15 min.)" / "Signature not yet current: … is still
//! later than … (… + 15 min.)") for the awsquery services such as STS. For a
//! time too far in the *future* EC2's own wording is not known; kumo answers
//! `RequestExpired` with the "Signature not yet current" message. A presigned
//! URL past `X-Amz-Date + X-Amz-Expires` is `RequestExpired` for every service.
//!
//! The final comparison is constant-time (`hmac`'s `verify_slice`).

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::Request;
use crate::error::Ec2Error;
use crate::query::{decode_component, raw_pairs};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every credential scope.
pub const TERMINATOR: &str = "aws4_request";
/// How far the request time may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::minutes(15);
/// The longest `X-Amz-Expires` AWS accepts: seven days.
pub const MAX_EXPIRES_SECS: u64 = 604_800;

/// The query parameters that carry a presigned URL's signature. They are
/// authentication, not operation parameters.
pub const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Headers never signed (hop-by-hop or rewritten by proxies); the same list
/// botocore uses.
const UNSIGNABLE_HEADERS: [&str; 11] = [
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// RFC 3986 unreserved characters stay; everything else is `%XX`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// As [`UNRESERVED`], but `/` stays too (paths).
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// `AKID/date/region/service/aws4_request`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    /// The access key id the client signed with.
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// e.g. `us-east-1`.
    pub region: String,
    /// e.g. `ec2` or `sts`: what the client thinks it is talking to.
    pub service: String,
}

impl CredentialScope {
    /// `date/region/service/aws4_request`, the scope line of the string to sign.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }

    fn parse(credential: &str) -> Result<Self, Ec2Error> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = parts.as_slice() else {
            return Err(Ec2Error::incomplete_signature(format!(
                "Credential must have exactly 5 slash-delimited elements, \
                 e.g. keyid/date/region/service/term, got '{credential}'"
            )));
        };
        if *terminator != TERMINATOR {
            return Err(Ec2Error::signature_does_not_match_message(format!(
                "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'."
            )));
        }
        if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
            return Err(Ec2Error::incomplete_signature(format!(
                "Credential has an empty access key id, region or service: '{credential}'"
            )));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Ec2Error::incomplete_signature(format!(
                "Credential date must be YYYYMMDD, got '{date}'"
            )));
        }
        Ok(Self {
            access_key_id: (*access_key_id).to_owned(),
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
        })
    }
}

/// Where the signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLocation {
    /// The `Authorization` header.
    Header,
    /// Presigned URL; valid for this many seconds after the request time.
    Query {
        /// `X-Amz-Expires`.
        expires_secs: u64,
    },
}

/// A SigV4 signature and what it claims, parsed before any secret is known so
/// that the server can look the secret up by [`CredentialScope::access_key_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Who signed, for which date, region and service.
    pub credential: CredentialScope,
    /// Lower-case header names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// The signature as sent (hex).
    pub signature: String,
    /// The request time the client signed.
    pub request_time: DateTime<Utc>,
    /// Which header or parameter the time came from (`x-amz-date`, `date`,
    /// or `X-Amz-Date` for presigned URLs), for error messages.
    pub time_source: &'static str,
    /// Header or query string.
    pub location: AuthLocation,
}

impl Authorization {
    /// Find and parse the request's SigV4 authentication.
    ///
    /// Errors: `MissingAuthenticationToken` when there is none;
    /// `IncompleteSignature` for malformed parts; `SignatureDoesNotMatch` for a
    /// credential scope that cannot match (bad terminator, scope date not the
    /// request date).
    pub fn from_request(req: &Request) -> Result<Self, Ec2Error> {
        let header = req.header("authorization");
        let query = query_map(&req.query)?;
        let presigned = query.iter().any(|(k, _)| k == "X-Amz-Algorithm");
        match (header, presigned) {
            (Some(_), true) => Err(Ec2Error::incomplete_signature(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter \
                 or the Authorization header should be specified",
            )),
            (Some(value), false) => Self::from_header(req, value),
            (None, true) => Self::from_query(&query),
            (None, false) => Err(Ec2Error::missing_authentication_token()),
        }
    }

    fn from_header(req: &Request, value: &str) -> Result<Self, Ec2Error> {
        let value = value.trim();
        let (algorithm, rest) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((value, ""));
        if algorithm != ALGORITHM {
            return Err(Ec2Error::incomplete_signature(format!(
                "Unsupported Authorization algorithm '{algorithm}': sign requests with {ALGORITHM}"
            )));
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, val)) = part.split_once('=') else {
                return Err(Ec2Error::incomplete_signature(format!(
                    "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
                )));
            };
            match key.trim() {
                "Credential" => credential = Some(val.trim()),
                "SignedHeaders" => signed = Some(val.trim()),
                "Signature" => signature = Some(val.trim()),
                _ => {}
            }
        }
        let date = match req.header("x-amz-date") {
            Some(v) => Some((parse_amz_date(v)?, "x-amz-date")),
            None => match req.header("date") {
                Some(v) => Some((parse_http_date(v)?, "date")),
                None => None,
            },
        };
        let mut missing = String::new();
        for (name, present) in [
            ("Credential", credential.is_some()),
            ("Signature", signature.is_some()),
            ("SignedHeaders", signed.is_some()),
        ] {
            if !present {
                missing.push_str(&format!(
                    "Authorization header requires '{name}' parameter. "
                ));
            }
        }
        if date.is_none() {
            missing.push_str(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
            );
        }
        let (Some(credential), Some(signed), Some(signature), Some((time, source))) =
            (credential, signed, signature, date)
        else {
            return Err(Ec2Error::incomplete_signature(format!(
                "{missing}Authorization={value}"
            )));
        };
        Self::build(
            credential,
            signed,
            signature,
            time,
            source,
            AuthLocation::Header,
        )
    }

    fn from_query(query: &[(String, String)]) -> Result<Self, Ec2Error> {
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (
            Some(algorithm),
            Some(credential),
            Some(date),
            Some(expires),
            Some(signed),
            Some(signature),
        ) = (
            get("X-Amz-Algorithm"),
            get("X-Amz-Credential"),
            get("X-Amz-Date"),
            get("X-Amz-Expires"),
            get("X-Amz-SignedHeaders"),
            get("X-Amz-Signature"),
        )
        else {
            return Err(Ec2Error::incomplete_signature(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, \
                 X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, \
                 and X-Amz-Expires parameters.",
            ));
        };
        if algorithm != ALGORITHM {
            return Err(Ec2Error::incomplete_signature(format!(
                "X-Amz-Algorithm only supports \"{ALGORITHM}\", got '{algorithm}'"
            )));
        }
        let expires_secs = expires
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_EXPIRES_SECS).contains(s))
            .ok_or_else(|| {
                Ec2Error::incomplete_signature(format!(
                    "X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES_SECS}, got '{expires}'"
                ))
            })?;
        let time = parse_amz_date(date)?;
        Self::build(
            credential,
            signed,
            signature,
            time,
            "X-Amz-Date",
            AuthLocation::Query { expires_secs },
        )
    }

    fn build(
        credential: &str,
        signed: &str,
        signature: &str,
        request_time: DateTime<Utc>,
        time_source: &'static str,
        location: AuthLocation,
    ) -> Result<Self, Ec2Error> {
        let credential = CredentialScope::parse(credential)?;
        let request_date = request_time.format("%Y%m%d").to_string();
        if credential.date != request_date {
            return Err(Ec2Error::signature_does_not_match_message(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{request_date}', from '{time_source}'.",
                credential.date
            )));
        }
        let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
        if signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(Ec2Error::incomplete_signature(format!(
                "SignedHeaders must be lower-case header names separated by ';', got '{signed}'"
            )));
        }
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(Ec2Error::incomplete_signature(
                "'Host' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        Ok(Self {
            credential,
            signed_headers,
            signature: signature.to_owned(),
            request_time,
            time_source,
            location,
        })
    }

    /// The request time in SigV4's basic ISO 8601 form, `20261125T190000Z`.
    pub fn amz_date(&self) -> String {
        format_amz_date(&self.request_time)
    }
}

/// Check `auth` (from [`Authorization::from_request`]) against the request
/// with the access key's secret, at server time `now`.
///
/// Order: the request time first (so a client with a wrong clock learns that
/// rather than "signature does not match"), then the payload hash, then the
/// signature itself in constant time.
pub fn verify(
    req: &Request,
    auth: &Authorization,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), Ec2Error> {
    check_time(auth, now)?;
    let canonical = canonical_request(req, auth)?;
    let sts = string_to_sign(&auth.amz_date(), &auth.credential.scope(), &canonical);
    let key = signing_key(
        secret,
        &auth.credential.date,
        &auth.credential.region,
        &auth.credential.service,
    );
    let provided = decode_hex(&auth.signature).ok_or_else(Ec2Error::signature_does_not_match)?;
    let mut mac = new_mac(&key);
    mac.update(sts.as_bytes());
    mac.verify_slice(&provided)
        .map_err(|_| Ec2Error::signature_does_not_match())
}

fn check_time(auth: &Authorization, now: DateTime<Utc>) -> Result<(), Ec2Error> {
    let t = auth.request_time;
    let ec2 = auth.credential.service == "ec2";
    if t > now + MAX_SKEW {
        let message = format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            format_amz_date(&t),
            format_amz_date(&(now + MAX_SKEW)),
            format_amz_date(&now)
        );
        return Err(if ec2 {
            Ec2Error::request_expired_message(message)
        } else {
            Ec2Error::signature_does_not_match_message(message)
        });
    }
    match auth.location {
        AuthLocation::Header if t < now - MAX_SKEW => Err(if ec2 {
            Ec2Error::request_expired()
        } else {
            Ec2Error::signature_does_not_match_message(format!(
                "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                format_amz_date(&t),
                format_amz_date(&(now - MAX_SKEW)),
                format_amz_date(&now)
            ))
        }),
        AuthLocation::Query { expires_secs } => {
            let secs = i64::try_from(expires_secs).unwrap_or(i64::MAX);
            if now > t + Duration::seconds(secs) {
                Err(Ec2Error::request_expired())
            } else {
                Ok(())
            }
        }
        AuthLocation::Header => Ok(()),
    }
}

/// The canonical request for `req` as `auth` says it was signed.
pub fn canonical_request(req: &Request, auth: &Authorization) -> Result<String, Ec2Error> {
    let exclude_signature = matches!(auth.location, AuthLocation::Query { .. });
    let mut out = String::new();
    out.push_str(&req.method);
    out.push('\n');
    out.push_str(&canonical_uri(&req.path));
    out.push('\n');
    out.push_str(&canonical_query_string(&req.query, exclude_signature)?);
    out.push('\n');
    for name in &auth.signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_all(v))
            .collect();
        if values.is_empty() {
            return Err(Ec2Error::signature_does_not_match_message(format!(
                "The header '{name}' is listed in SignedHeaders but is not in the request."
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&auth.signed_headers.join(";"));
    out.push('\n');
    out.push_str(&payload_hash(req)?);
    Ok(out)
}

/// The payload line: the body's hex SHA-256, or `x-amz-content-sha256` when
/// present — which must then equal that hash.
fn payload_hash(req: &Request) -> Result<String, Ec2Error> {
    let computed = hex(&Sha256::digest(&req.body));
    match req.header("x-amz-content-sha256") {
        None => Ok(computed),
        Some(claimed) if claimed.trim().eq_ignore_ascii_case(&computed) => {
            Ok(claimed.trim().to_owned())
        }
        Some(_) => Err(Ec2Error::signature_does_not_match_message(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )),
    }
}

/// `AWS4-HMAC-SHA256\n<time>\n<scope>\n<hex sha256 of canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The HMAC-SHA256 chain `"AWS4"+secret → date → region → service → "aws4_request"`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, TERMINATOR] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    key
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length; `new_from_slice` cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The canonical URI: dot segments and empty segments removed, then
/// URI-encoded with `/` kept. An empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::new();
    if path.starts_with('/') {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    utf8_percent_encode(&normalized, UNRESERVED_AND_SLASH).to_string()
}

/// The canonical query string of a raw (still encoded) query.
pub fn canonical_query_string(raw: &str, exclude_signature: bool) -> Result<String, Ec2Error> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in raw_pairs(raw) {
        let key = uri_encode_bytes(&decode_component(key)?);
        if exclude_signature && key == "X-Amz-Signature" {
            continue;
        }
        pairs.push((key, uri_encode_bytes(&decode_component(value)?)));
    }
    pairs.sort();
    Ok(pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&"))
}

/// RFC 3986 encoding of a query component: unreserved characters kept,
/// everything else `%XX` (upper-case hex).
pub fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn uri_encode_bytes(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, UNRESERVED).to_string()
}

/// Trimall: trim, and collapse inner runs of whitespace to one space.
fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The query decoded into (name, value) pairs, for reading `X-Amz-*`.
fn query_map(raw: &str) -> Result<Vec<(String, String)>, Ec2Error> {
    raw_pairs(raw)
        .map(|(k, v)| {
            let k = String::from_utf8_lossy(&decode_component(k)?).into_owned();
            let v = String::from_utf8_lossy(&decode_component(v)?).into_owned();
            Ok((k, v))
        })
        .collect()
}

/// Parse `20261125T190000Z`.
pub fn parse_amz_date(value: &str) -> Result<DateTime<Utc>, Ec2Error> {
    let v = value.trim();
    let b = v.as_bytes();
    let shape_ok = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    let parsed = if shape_ok {
        NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%SZ").ok()
    } else {
        None
    };
    parsed.map(|t| t.and_utc()).ok_or_else(|| {
        Ec2Error::incomplete_signature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{value}'."
        ))
    })
}

/// Parse an HTTP `Date` header (RFC 1123, e.g. `Wed, 25 Nov 2026 19:00:00 GMT`).
pub fn parse_http_date(value: &str) -> Result<DateTime<Utc>, Ec2Error> {
    DateTime::parse_from_rfc2822(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Ec2Error::incomplete_signature(format!(
                "Date header must be an RFC 1123 date. Got '{value}'."
            ))
        })
}

/// `20261125T190000Z`.
pub fn format_amz_date(t: &DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

// ----------------------------------------------------------------------- signing

/// What to sign with.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// Its secret.
    pub secret_access_key: &'a str,
    /// The region of the credential scope.
    pub region: &'a str,
    /// The service of the credential scope (`ec2`, `sts`).
    pub service: &'a str,
    /// The request time.
    pub time: DateTime<Utc>,
}

impl SigningParams<'_> {
    fn credential(&self) -> CredentialScope {
        CredentialScope {
            access_key_id: self.access_key_id.to_owned(),
            date: self.time.format("%Y%m%d").to_string(),
            region: self.region.to_owned(),
            service: self.service.to_owned(),
        }
    }
}

/// Sign `req` in place with an `Authorization` header, as botocore does: it
/// sets `X-Amz-Date` and signs every header present except the hop-by-hop ones
/// and `user-agent`. The request must already have its `Host` header and its
/// final body.
pub fn sign(req: &mut Request, params: &SigningParams<'_>) -> Result<(), Ec2Error> {
    req.headers.retain(|(n, _)| {
        !n.eq_ignore_ascii_case("authorization") && !n.eq_ignore_ascii_case("x-amz-date")
    });
    if req.header("host").is_none() {
        return Err(Ec2Error::incomplete_signature(
            "a Host header is needed to sign a request",
        ));
    }
    req.headers
        .push(("X-Amz-Date".to_owned(), format_amz_date(&params.time)));
    let mut signed_headers: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| !UNSIGNABLE_HEADERS.contains(&n.as_str()))
        .collect();
    signed_headers.sort();
    signed_headers.dedup();
    let auth = Authorization {
        credential: params.credential(),
        signed_headers,
        signature: String::new(),
        request_time: params.time,
        time_source: "x-amz-date",
        location: AuthLocation::Header,
    };
    let signature = compute_signature(req, &auth, params.secret_access_key)?;
    let value = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={signature}",
        auth.credential.access_key_id,
        auth.credential.scope(),
        auth.signed_headers.join(";")
    );
    req.headers.push(("Authorization".to_owned(), value));
    Ok(())
}

/// Presign `req` in place: append the `X-Amz-*` parameters (signing the `host`
/// header only) and `X-Amz-Signature` to its query string, valid for
/// `expires_secs` seconds after `params.time`.
pub fn presign(
    req: &mut Request,
    params: &SigningParams<'_>,
    expires_secs: u64,
) -> Result<(), Ec2Error> {
    if req.header("host").is_none() {
        return Err(Ec2Error::incomplete_signature(
            "a Host header is needed to sign a request",
        ));
    }
    let credential = params.credential();
    let additions = [
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        (
            "X-Amz-Credential",
            format!("{}/{}", credential.access_key_id, credential.scope()),
        ),
        ("X-Amz-Date", format_amz_date(&params.time)),
        ("X-Amz-Expires", expires_secs.to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    for (name, value) in additions {
        if !req.query.is_empty() {
            req.query.push('&');
        }
        req.query.push_str(name);
        req.query.push('=');
        req.query.push_str(&uri_encode(&value));
    }
    let auth = Authorization {
        credential,
        signed_headers: vec!["host".to_owned()],
        signature: String::new(),
        request_time: params.time,
        time_source: "X-Amz-Date",
        location: AuthLocation::Query { expires_secs },
    };
    let signature = compute_signature(req, &auth, params.secret_access_key)?;
    req.query.push_str("&X-Amz-Signature=");
    req.query.push_str(&signature);
    Ok(())
}

fn compute_signature(
    req: &Request,
    auth: &Authorization,
    secret: &str,
) -> Result<String, Ec2Error> {
    let canonical = canonical_request(req, auth)?;
    let sts = string_to_sign(&auth.amz_date(), &auth.credential.scope(), &canonical);
    let key = signing_key(
        secret,
        &auth.credential.date,
        &auth.credential.region,
        &auth.credential.service,
    );
    Ok(hex(&hmac_sha256(&key, sts.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_normalises_like_aws() {
        // From AWS's SigV4 test suite (normalize-path) and botocore's rules.
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/example1/example2/../.."), "/");
        assert_eq!(canonical_uri("/example/.."), "/");
        assert_eq!(canonical_uri("//example//"), "/example/");
        assert_eq!(canonical_uri("/./"), "/");
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("/\u{1234}"), "/%E1%88%B4");
        // A wire path is already encoded once; non-S3 services encode again.
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        let unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        assert_eq!(canonical_uri(unreserved), unreserved);
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(
            canonical_query_string("Param2=value2&Param1=value1", false).unwrap(),
            "Param1=value1&Param2=value2"
        );
        // Same key: sorted by value.
        assert_eq!(
            canonical_query_string("a=z&b=2&a=a", false).unwrap(),
            "a=a&a=z&b=2"
        );
        // Keys without '=' get an empty value; empty pieces are skipped.
        assert_eq!(canonical_query_string("b&&a=", false).unwrap(), "a=&b=");
        // '+' and %20 are both a space; reserved characters are %-encoded
        // with upper-case hex; unreserved ones are decoded.
        assert_eq!(
            canonical_query_string("k=a+b%20c%2fd%7E%2A", false).unwrap(),
            "k=a%20b%20c%2Fd~%2A"
        );
        assert_eq!(
            canonical_query_string("%E1%88%B4=bar", false).unwrap(),
            "%E1%88%B4=bar"
        );
        assert_eq!(
            canonical_query_string("X-Amz-Signature=abc&A=1", true).unwrap(),
            "A=1"
        );
        assert_eq!(
            canonical_query_string("bad=%zz", false).unwrap_err().code(),
            "MalformedQueryString"
        );
    }

    #[test]
    fn trim_all_collapses_whitespace() {
        assert_eq!(trim_all("  a   b\t c  "), "a b c");
        assert_eq!(trim_all(""), "");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex("00abFF"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn signing_key_matches_the_documented_example() {
        // AWS documentation: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
        // 20150830/us-east-1/iam gives this signing key.
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn dates_parse_strictly() {
        let t = parse_amz_date("20261125T190000Z").unwrap();
        assert_eq!(format_amz_date(&t), "20261125T190000Z");
        for bad in [
            "2026-11-25T19:00:00Z",
            "20261125T190000",
            "20261325T190000Z",
            "",
        ] {
            assert_eq!(
                parse_amz_date(bad).unwrap_err().code(),
                "IncompleteSignature",
                "{bad}"
            );
        }
        let d = parse_http_date("Wed, 25 Nov 2026 19:00:00 GMT").unwrap();
        assert_eq!(d, t);
        assert!(parse_http_date("yesterday").is_err());
    }
}
