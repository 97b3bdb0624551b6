//! The AWS EC2 and STS query wire protocol, without I/O.
//!
//! kumo serves an EC2-compatible API (`Version=2016-11-15`) and STS
//! `GetCallerIdentity` so the aws CLI, boto3 and Terraform's AWS provider work
//! against it with `endpoint_url=<kumo URL>`. This crate is the protocol layer
//! only; routing and mapping actions onto kumo resources is the server's job.
//!
//! A handler does, in order:
//!
//! 1. Build a [`Request`] from the HTTP method, raw path, raw query string,
//!    headers and body bytes.
//! 2. [`parse_request`] — find the SigV4 authentication (header or presigned
//!    query), decode the parameters, and check `Action` and `Version`. The
//!    result names the [`Service`] (from the credential scope: `ec2` or
//!    `sts`), the region and the access key id.
//! 3. Look the secret up by [`Parsed::access_key_id`] (unknown key:
//!    [`Ec2Error::auth_failure`] for EC2, [`Ec2Error::invalid_client_token_id`]
//!    for STS), then [`Parsed::verify`] with the server's clock.
//! 4. Dispatch on [`Parsed::action`]; read parameters through
//!    [`Parsed::params`] ([`query::Params`] and [`query::Node`] getters), call
//!    [`query::Params::finish`] to reject anything unread, act, and answer
//!    with [`xml::ec2_response`] / [`xml::sts_response`] — or, for any error,
//!    [`xml::ec2_error`] / [`xml::sts_error`] with [`Ec2Error::http_status`]
//!    and [`xml::CONTENT_TYPE`].
//!
//! Modules: [`sigv4`] (signatures), [`query`] (parameters), [`xml`]
//! (responses), [`error`] (the one error type and request ids).

pub mod error;
pub mod query;
pub mod sigv4;
pub mod xml;

use chrono::{DateTime, Utc};

pub use error::{Ec2Error, LimitCode, ResourceKind, request_id};
pub use query::{Filter, Node, Params, Tag, TagSpecification};
pub use sigv4::{Authorization, CredentialScope, SigningParams, presign, sign};

/// The EC2 API version kumo speaks.
pub const EC2_API_VERSION: &str = "2016-11-15";
/// The STS API version kumo speaks.
pub const STS_API_VERSION: &str = "2011-06-15";

/// An HTTP request as received, before any decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, … (upper case).
    pub method: String,
    /// The raw, still percent-encoded path, e.g. `/`.
    pub path: String,
    /// The raw query string without the `?`, still percent-encoded.
    pub query: String,
    /// Every header in arrival order; names in any case, repeats allowed.
    /// A header whose value is not valid UTF-8 should be left out (if it was
    /// signed, the signature then fails, as it should). Over HTTP/2, put the
    /// `:authority` here as `Host`: SigV4 always signs `host`.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with `method` and a `path?query` target.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..Self::default()
        }
    }

    /// Add a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The services this protocol layer understands, told apart by the service
/// in the SigV4 credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `ec2`: the `ec2` protocol, EC2 XML.
    Ec2,
    /// `sts`: the `query` protocol, awsquery XML.
    Sts,
}

impl Service {
    /// From the credential scope's service name.
    pub fn from_scope(name: &str) -> Option<Self> {
        match name {
            "ec2" => Some(Self::Ec2),
            "sts" => Some(Self::Sts),
            _ => None,
        }
    }

    /// The scope name, `ec2` or `sts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ec2 => "ec2",
            Self::Sts => "sts",
        }
    }

    /// The one `Version` kumo accepts for this service.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Ec2 => EC2_API_VERSION,
            Self::Sts => STS_API_VERSION,
        }
    }

    /// AWS's internal service name, as it appears in `NoSuchVersion`.
    fn aws_name(self) -> &'static str {
        match self {
            Self::Ec2 => "AmazonEC2",
            Self::Sts => "AWSSecurityTokenService",
        }
    }

    /// This service's error document for `err`.
    pub fn error_xml(self, err: &Ec2Error, request_id: &str) -> String {
        match self {
            Self::Ec2 => xml::ec2_error(err, request_id),
            Self::Sts => xml::sts_error(err, request_id),
        }
    }
}

/// A request whose authentication and parameters have been parsed, but whose
/// signature has not yet been checked.
#[derive(Debug)]
pub struct Parsed {
    /// Which API the client is calling.
    pub service: Service,
    /// The region the client signed for. Whether kumo accepts it is the
    /// server's decision ([`Ec2Error::credential_scope_region`] if not).
    pub region: String,
    /// The access key id to look the secret up by.
    pub access_key_id: String,
    /// `Action`, e.g. `DescribeInstances`. Whether it exists is the
    /// dispatcher's decision ([`Ec2Error::invalid_action`]).
    pub action: String,
    /// `Version`, already checked against [`Service::api_version`].
    pub version: String,
    /// Everything else.
    pub params: Params,
    /// The parsed signature.
    pub auth: Authorization,
}

impl Parsed {
    /// Check the signature with the access key's secret at server time `now`.
    pub fn verify(&self, req: &Request, secret: &str, now: DateTime<Utc>) -> Result<(), Ec2Error> {
        sigv4::verify(req, &self.auth, secret, now)
    }
}

/// Parse a request: authentication first (so an unauthenticated caller gets
/// an authentication error, not a parameter error), then parameters, then
/// `Action` and `Version`.
///
/// Errors: `MissingAuthenticationToken`, `IncompleteSignature`,
/// `SignatureDoesNotMatch` (unknown service or impossible scope),
/// `MalformedQueryString`, `InvalidParameterValue` (duplicate parameter),
/// `MissingAction`, `MissingParameter` (`Version`), `NoSuchVersion`.
pub fn parse_request(req: &Request) -> Result<Parsed, Ec2Error> {
    let auth = Authorization::from_request(req)?;
    let service = Service::from_scope(&auth.credential.service).ok_or_else(|| {
        Ec2Error::signature_does_not_match_message(format!(
            "Credential should be scoped to correct service: 'ec2' or 'sts', not '{}'.",
            auth.credential.service
        ))
    })?;
    let mut params = Params::from_request(req)?;
    let action = params
        .take("Action")
        .filter(|a| !a.is_empty())
        .ok_or_else(Ec2Error::missing_action)?;
    let version = params
        .take("Version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Ec2Error::missing_parameter("Version"))?;
    if version != service.api_version() {
        return Err(Ec2Error::no_such_version(&version, service.aws_name()));
    }
    Ok(Parsed {
        service,
        region: auth.credential.region.clone(),
        access_key_id: auth.credential.access_key_id.clone(),
        action,
        version,
        params,
        auth,
    })
}

/// Verify a request's signature in one step (parse its authentication again
/// and check it). [`Parsed::verify`] avoids the second parse.
pub fn verify(req: &Request, secret: &str, now: DateTime<Utc>) -> Result<(), Ec2Error> {
    let auth = Authorization::from_request(req)?;
    sigv4::verify(req, &auth, secret, now)
}
