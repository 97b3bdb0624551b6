//! The one error type of the EC2/STS wire protocol.
//!
//! An AWS query-protocol error is a code (`InvalidParameterValue`,
//! `InvalidInstanceID.NotFound`, …), a human message and an HTTP status. Clients
//! dispatch on the code — botocore raises `ClientError` with `Error.Code`, the
//! Terraform provider matches codes such as `InvalidInstanceID.NotFound` to
//! decide that a resource is gone — so the codes here are AWS's, spelled exactly.
//! Messages follow AWS's wording where it is known (from real responses quoted in
//! public bug reports and from the EC2 API reference); where it is not, they say
//! plainly what was wrong.
//!
//! The HTTP status is decided here, in one place, by the constructors: EC2 uses
//! 400 for client errors, 401 for `AuthFailure`, 403 for the signature and
//! permission errors, 412 for `DryRunOperation` and 500/503 for server errors.
//!
//! Serialising an error is [`crate::xml::ec2_error`] (EC2's
//! `<Response><Errors><Error>` envelope) or [`crate::xml::sts_error`] (the
//! awsquery `<ErrorResponse>` envelope).

use std::borrow::Cow;
use std::fmt;

/// An error to be returned to an EC2 or STS client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    code: Cow<'static, str>,
    message: String,
    http_status: u16,
}

/// The kinds of resource whose absence has its own EC2 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `InvalidInstanceID.NotFound`.
    Instance,
    /// `InvalidVpcID.NotFound`.
    Vpc,
    /// `InvalidGroup.NotFound` (security groups).
    SecurityGroup,
    /// `InvalidSubnetID.NotFound`.
    Subnet,
    /// `InvalidVolume.NotFound`.
    Volume,
    /// `InvalidKeyPair.NotFound`.
    KeyPair,
    /// `InvalidAllocationID.NotFound` (Elastic IP allocations).
    Allocation,
    /// `InvalidSnapshot.NotFound`.
    Snapshot,
    /// `InvalidAMIID.NotFound`.
    Image,
}

impl ResourceKind {
    /// The EC2 error code for "this resource does not exist".
    pub fn not_found_code(self) -> &'static str {
        match self {
            Self::Instance => "InvalidInstanceID.NotFound",
            Self::Vpc => "InvalidVpcID.NotFound",
            Self::SecurityGroup => "InvalidGroup.NotFound",
            Self::Subnet => "InvalidSubnetID.NotFound",
            Self::Volume => "InvalidVolume.NotFound",
            Self::KeyPair => "InvalidKeyPair.NotFound",
            Self::Allocation => "InvalidAllocationID.NotFound",
            Self::Snapshot => "InvalidSnapshot.NotFound",
            Self::Image => "InvalidAMIID.NotFound",
        }
    }

    /// AWS's message for one missing resource. The wording differs per kind
    /// (and is not consistent about the final full stop); these are the
    /// messages EC2 returns.
    fn not_found_message(self, id: &str) -> String {
        match self {
            Self::Instance => format!("The instance ID '{id}' does not exist"),
            Self::Vpc => format!("The vpc ID '{id}' does not exist"),
            Self::SecurityGroup => format!("The security group '{id}' does not exist"),
            Self::Subnet => format!("The subnet ID '{id}' does not exist"),
            Self::Volume => format!("The volume '{id}' does not exist."),
            Self::KeyPair => format!("The key pair '{id}' does not exist"),
            Self::Allocation => format!("The allocation ID '{id}' does not exist"),
            Self::Snapshot => format!("The snapshot '{id}' does not exist."),
            Self::Image => format!("The image id '[{id}]' does not exist"),
        }
    }

    /// AWS's message when several are missing at once. Only the instance form
    /// ("The instance IDs 'i-1, i-2' do not exist") is confirmed from real
    /// responses; the others follow the same pattern.
    fn not_found_many_message(self, ids: &str) -> String {
        match self {
            Self::Instance => format!("The instance IDs '{ids}' do not exist"),
            Self::Vpc => format!("The vpc IDs '{ids}' do not exist"),
            Self::SecurityGroup => format!("The security groups '{ids}' do not exist"),
            Self::Subnet => format!("The subnet IDs '{ids}' do not exist"),
            Self::Volume => format!("The volumes '{ids}' do not exist."),
            Self::KeyPair => format!("The key pairs '{ids}' do not exist"),
            Self::Allocation => format!("The allocation IDs '{ids}' do not exist"),
            Self::Snapshot => format!("The snapshots '{ids}' do not exist."),
            Self::Image => format!("The image ids '[{ids}]' do not exist"),
        }
    }
}

impl Ec2Error {
    /// An error with any code. Prefer the named constructors; this exists for
    /// the many resource-specific codes EC2 has (`InvalidSubnet.Conflict`,
    /// `InvalidPermission.Duplicate`, …) that the server will need one at a time.
    pub fn new(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        http_status: u16,
    ) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            http_status,
        }
    }

    fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, message, 400)
    }

    /// The AWS error code, e.g. `InvalidParameterValue`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        self.http_status
    }

    /// Whether the fault is the server's (5xx). STS puts `Receiver` rather
    /// than `Sender` in `<Type>` for these.
    pub fn is_server_fault(&self) -> bool {
        self.http_status >= 500
    }

    // ----------------------------------------------------------------- request shape

    /// `InvalidAction` (400): the action is not one this service implements.
    pub fn invalid_action(action: &str) -> Self {
        Self::client(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )
    }

    /// `MissingAction` (400): the request has no `Action` parameter.
    pub fn missing_action() -> Self {
        Self::client(
            "MissingAction",
            "The request must contain the parameter Action",
        )
    }

    /// `NoSuchVersion` (400): the `Version` parameter names an API version
    /// this endpoint does not serve. `service_name` is AWS's internal name,
    /// e.g. `AmazonEC2`.
    pub fn no_such_version(version: &str, service_name: &str) -> Self {
        Self::client(
            "NoSuchVersion",
            format!("The requested version ({version}) of service {service_name} does not exist"),
        )
    }

    /// `MalformedQueryString` (400): the query string or form body cannot be
    /// decoded (bad percent-escape, not UTF-8, unsupported content type).
    pub fn malformed_query_string(detail: impl Into<String>) -> Self {
        Self::client("MalformedQueryString", detail)
    }

    /// `MissingParameter` (400): a required parameter is absent.
    pub fn missing_parameter(name: &str) -> Self {
        Self::client(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InvalidParameterValue` (400) in EC2's usual form:
    /// "Value (x) for parameter Y is invalid. Reason."
    pub fn invalid_parameter_value(name: &str, value: &str, reason: &str) -> Self {
        let mut message = format!("Value ({value}) for parameter {name} is invalid.");
        if !reason.is_empty() {
            message.push(' ');
            message.push_str(reason);
        }
        Self::client("InvalidParameterValue", message)
    }

    /// `InvalidParameterValue` (400) with a message of the caller's choosing.
    pub fn invalid_parameter_value_message(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterValue", message)
    }

    /// `UnknownParameter` (400): a parameter the action does not take (or that
    /// kumo does not support). EC2's message: "The parameter X is not recognized".
    pub fn unknown_parameter(name: &str) -> Self {
        Self::client(
            "UnknownParameter",
            format!("The parameter {name} is not recognized"),
        )
    }

    /// `InvalidParameterCombination` (400): "The parameter X cannot be used
    /// with the parameter Y".
    pub fn invalid_parameter_combination(first: &str, second: &str) -> Self {
        Self::client(
            "InvalidParameterCombination",
            format!("The parameter {first} cannot be used with the parameter {second}"),
        )
    }

    /// `InvalidParameterCombination` (400) with a message of the caller's choosing.
    pub fn invalid_parameter_combination_message(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterCombination", message)
    }

    /// `DryRunOperation` (412): the request was valid and permitted, but
    /// `DryRun=true` asked not to perform it. Clients treat this code as success.
    pub fn dry_run_operation() -> Self {
        Self::new(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
            412,
        )
    }

    /// `Unsupported` (400): a valid request for something kumo does not do.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::client("Unsupported", message)
    }

    // ----------------------------------------------------------------- authentication

    /// `UnauthorizedOperation` (403): authenticated, but not allowed.
    pub fn unauthorized_operation() -> Self {
        Self::new(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
            403,
        )
    }

    /// `AuthFailure` (401): EC2's answer for credentials it cannot validate,
    /// including an access key id it does not know.
    pub fn auth_failure() -> Self {
        Self::new(
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
            401,
        )
    }

    /// `InvalidClientTokenId` (403): STS's answer for an unknown access key id.
    pub fn invalid_client_token_id() -> Self {
        Self::new(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            403,
        )
    }

    /// `MissingAuthenticationToken` (403): neither an `Authorization` header
    /// nor query-string authentication was present.
    pub fn missing_authentication_token() -> Self {
        Self::new(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
            403,
        )
    }

    /// `IncompleteSignature` (400): the signature parts are malformed or
    /// missing; the message says which.
    pub fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::client("IncompleteSignature", message)
    }

    /// `SignatureDoesNotMatch` (403) with AWS's standard message.
    pub fn signature_does_not_match() -> Self {
        Self::signature_does_not_match_message(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. \
             Consult the service documentation for details.",
        )
    }

    /// `SignatureDoesNotMatch` (403) with a specific message (wrong scope,
    /// expired signature on non-EC2 services, …).
    pub fn signature_does_not_match_message(message: impl Into<String>) -> Self {
        Self::new("SignatureDoesNotMatch", message, 403)
    }

    /// `SignatureDoesNotMatch` (403) for a credential scoped to a region this
    /// endpoint does not serve: "Credential should be scoped to a valid
    /// region, not 'x'."
    pub fn credential_scope_region(region: &str) -> Self {
        Self::signature_does_not_match_message(format!(
            "Credential should be scoped to a valid region, not '{region}'."
        ))
    }

    /// `RequestExpired` (400): EC2's answer for a request time outside the
    /// allowed window, or a presigned URL past its expiry.
    pub fn request_expired() -> Self {
        Self::client("RequestExpired", "Request has expired.")
    }

    /// `RequestExpired` (400) with a specific message.
    pub fn request_expired_message(message: impl Into<String>) -> Self {
        Self::client("RequestExpired", message)
    }

    // ----------------------------------------------------------------- resources

    /// `<Kind>.NotFound` (400) for one id, e.g. `InvalidInstanceID.NotFound`
    /// "The instance ID 'i-0123' does not exist".
    pub fn not_found(kind: ResourceKind, id: &str) -> Self {
        Self::client(kind.not_found_code(), kind.not_found_message(id))
    }

    /// `<Kind>.NotFound` (400) for several ids, as EC2 reports them together.
    pub fn not_found_ids(kind: ResourceKind, ids: &[&str]) -> Self {
        match ids {
            [one] => Self::not_found(kind, one),
            _ => Self::client(
                kind.not_found_code(),
                kind.not_found_many_message(&ids.join(", ")),
            ),
        }
    }

    /// `InvalidKeyPair.Duplicate` (400): "The keypair 'x' already exists."
    pub fn key_pair_duplicate(name: &str) -> Self {
        Self::client(
            "InvalidKeyPair.Duplicate",
            format!("The keypair '{name}' already exists."),
        )
    }

    /// `InvalidGroup.Duplicate` (400): "The security group 'x' already exists
    /// for VPC 'vpc-…'".
    pub fn security_group_duplicate(name: &str, vpc_id: &str) -> Self {
        Self::client(
            "InvalidGroup.Duplicate",
            format!("The security group '{name}' already exists for VPC '{vpc_id}'"),
        )
    }

    /// `DependencyViolation` (400): the resource is still in use.
    pub fn dependency_violation(message: impl Into<String>) -> Self {
        Self::client("DependencyViolation", message)
    }

    /// `IncorrectInstanceState` (400): e.g. `("i-1", "stopped")` gives "The
    /// instance 'i-1' is not in a state from which it can be stopped."
    pub fn incorrect_instance_state(instance_id: &str, wanted: &str) -> Self {
        Self::client(
            "IncorrectInstanceState",
            format!(
                "The instance '{instance_id}' is not in a state from which it can be {wanted}."
            ),
        )
    }

    /// `IdempotentParameterMismatch` (400): a client token reused with
    /// different arguments.
    pub fn idempotent_parameter_mismatch() -> Self {
        Self::client(
            "IdempotentParameterMismatch",
            "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
        )
    }

    /// A quota was reached. `code` is one of EC2's limit codes.
    pub fn limit_exceeded(code: LimitCode, message: impl Into<String>) -> Self {
        Self::client(code.as_str(), message)
    }

    /// `InternalError` (500): the server failed. Never put internal detail in
    /// the message; log it instead.
    pub fn internal_error() -> Self {
        Self::new(
            "InternalError",
            "An internal error has occurred. Try again later.",
            500,
        )
    }
}

/// EC2's quota error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitCode {
    /// `ResourceLimitExceeded`.
    Resource,
    /// `InstanceLimitExceeded`.
    Instance,
    /// `VolumeLimitExceeded`.
    Volume,
    /// `AddressLimitExceeded`.
    Address,
    /// `VpcLimitExceeded`.
    Vpc,
}

impl LimitCode {
    /// The code as EC2 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resource => "ResourceLimitExceeded",
            Self::Instance => "InstanceLimitExceeded",
            Self::Volume => "VolumeLimitExceeded",
            Self::Address => "AddressLimitExceeded",
            Self::Vpc => "VpcLimitExceeded",
        }
    }
}

impl fmt::Display for LimitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fresh request id, a random (version 4) UUID as EC2 and STS use, e.g.
/// `c6512d25-c974-4f58-9b50-ffe70bcb66ea`.
pub fn request_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = crate::sigv4::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_uses_aws_codes_and_wording() {
        let e = Ec2Error::not_found(ResourceKind::Instance, "i-0123");
        assert_eq!(e.code(), "InvalidInstanceID.NotFound");
        assert_eq!(e.message(), "The instance ID 'i-0123' does not exist");
        assert_eq!(e.http_status(), 400);
        let e = Ec2Error::not_found(ResourceKind::Image, "ami-1");
        assert_eq!(e.code(), "InvalidAMIID.NotFound");
        assert_eq!(e.message(), "The image id '[ami-1]' does not exist");
        let e = Ec2Error::not_found(ResourceKind::Volume, "vol-1");
        assert_eq!(e.message(), "The volume 'vol-1' does not exist.");
        let e = Ec2Error::not_found_ids(ResourceKind::Instance, &["i-1", "i-2"]);
        assert_eq!(e.message(), "The instance IDs 'i-1, i-2' do not exist");
        let e = Ec2Error::not_found_ids(ResourceKind::Subnet, &["subnet-1"]);
        assert_eq!(e.message(), "The subnet ID 'subnet-1' does not exist");
    }

    #[test]
    fn statuses_are_decided_by_the_constructors() {
        assert_eq!(Ec2Error::dry_run_operation().http_status(), 412);
        assert_eq!(
            Ec2Error::dry_run_operation().message(),
            "Request would have succeeded, but DryRun flag is set."
        );
        assert_eq!(Ec2Error::auth_failure().http_status(), 401);
        assert_eq!(Ec2Error::signature_does_not_match().http_status(), 403);
        assert_eq!(Ec2Error::unauthorized_operation().http_status(), 403);
        assert_eq!(Ec2Error::request_expired().http_status(), 400);
        assert_eq!(Ec2Error::internal_error().http_status(), 500);
        let e = Ec2Error::credential_scope_region("mars-1");
        assert_eq!(e.code(), "SignatureDoesNotMatch");
        assert_eq!(
            e.message(),
            "Credential should be scoped to a valid region, not 'mars-1'."
        );
        assert!(Ec2Error::internal_error().is_server_fault());
        assert!(!Ec2Error::invalid_action("X").is_server_fault());
        assert_eq!(
            Ec2Error::limit_exceeded(LimitCode::Vpc, "too many").code(),
            "VpcLimitExceeded"
        );
        assert_eq!(
            Ec2Error::invalid_action("Frobnicate").message(),
            "The action Frobnicate is not valid for this web service."
        );
    }

    #[test]
    fn display_is_code_then_message() {
        let e = Ec2Error::missing_parameter("ImageId");
        assert_eq!(
            e.to_string(),
            "MissingParameter: The request must contain the parameter ImageId"
        );
    }

    #[test]
    fn request_ids_are_v4_uuids() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(
            parts[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
