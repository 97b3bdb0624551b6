//! The one place a [`kumo_types::Error`] from the app layer becomes an EC2 error ([`from_app`]).
//!
//! | app error | EC2 code |
//! |---|---|
//! | `NotFound` of an instance, image, key pair, volume, snapshot, network, subnet, security group, floating IP | `InvalidInstanceID.NotFound`, `InvalidAMIID.NotFound`, `InvalidKeyPair.NotFound`, `InvalidVolume.NotFound`, `InvalidSnapshot.NotFound`, `InvalidVpcID.NotFound` (the id shown as `vpc-…`), `InvalidSubnetID.NotFound`, `InvalidGroup.NotFound`, `InvalidAllocationID.NotFound` |
//! | `NotFound` of a port / anything else | `InvalidNetworkInterfaceID.NotFound` / `InvalidParameterValue` |
//! | `Invalid` / `Malformed` | `InvalidParameterValue`, naming the EC2 parameter ([`param_name`]) |
//! | `Conflict`: duplicate name | `InvalidKeyPair.Duplicate`, `InvalidAMIName.Duplicate`, `InvalidGroup.Duplicate`, else `InvalidParameterValue` |
//! | `Conflict`: in use | `DependencyViolation` |
//! | `Conflict`: an instance's state | `IncorrectInstanceState` |
//! | `Conflict`: anything else, `CasFailed` | `IncorrectState` |
//! | `QuotaExceeded` | `InstanceLimitExceeded` (instances, vCPUs, memory), `VolumeLimitExceeded`, `SnapshotLimitExceeded`, `AddressLimitExceeded`, `VpcLimitExceeded`, `SecurityGroupLimitExceeded` |
//! | `InsufficientCapacity` | `InsufficientInstanceCapacity` (500) |
//! | `Unavailable` | `Unavailable` (503: retry) |
//! | `Forbidden` | `UnauthorizedOperation` |
//! | `Unauthenticated` | `AuthFailure` |
//! | `PayloadTooLarge` | `InvalidParameterValue` |
//! | `Internal` | `InternalError` (details logged, never sent) |

use kumo_ec2::{Ec2Error, LimitCode, ResourceKind};
use kumo_types::Error;

use super::ids;

/// The EC2 error for an app-layer error (see the module table).
pub fn from_app(e: Error) -> Ec2Error {
    match e {
        Error::NotFound { kind, id } => not_found(kind, &id),
        Error::Invalid { field, message } => Ec2Error::invalid_parameter_value_message(format!(
            "Invalid value for parameter {}: {message}",
            param_name(&field)
        )),
        Error::Malformed { message } => Ec2Error::invalid_parameter_value_message(message),
        Error::Conflict { message, field } => conflict(message, field.as_deref()),
        Error::CasFailed { key } => Ec2Error::new(
            "IncorrectState",
            format!("The resource changed concurrently ({key}); retry"),
            400,
        ),
        Error::QuotaExceeded { ref resource, .. } => {
            let message = e.to_string();
            match resource.as_str() {
                "instances" | "vcpus" | "memory_mib" => {
                    Ec2Error::limit_exceeded(LimitCode::Instance, message)
                }
                "volume_gib" => Ec2Error::limit_exceeded(LimitCode::Volume, message),
                "floating_ips" => Ec2Error::limit_exceeded(LimitCode::Address, message),
                "networks" => Ec2Error::limit_exceeded(LimitCode::Vpc, message),
                "snapshots" => Ec2Error::new("SnapshotLimitExceeded", message, 400),
                "security_groups" => Ec2Error::new("SecurityGroupLimitExceeded", message, 400),
                _ => Ec2Error::limit_exceeded(LimitCode::Resource, message),
            }
        }
        Error::InsufficientCapacity { resource, message } => Ec2Error::new(
            "InsufficientInstanceCapacity",
            format!("Insufficient capacity ({resource}): {message}"),
            500,
        ),
        Error::Unavailable { message } => Ec2Error::new("Unavailable", message, 503),
        Error::TooManyRequests { message, .. } => {
            Ec2Error::new("RequestLimitExceeded", message, 503)
        }
        Error::Forbidden { message } => Ec2Error::new(
            "UnauthorizedOperation",
            format!("You are not authorized to perform this operation: {message}"),
            403,
        ),
        Error::Unauthenticated { .. } => Ec2Error::auth_failure(),
        Error::PayloadTooLarge { limit } => Ec2Error::invalid_parameter_value_message(format!(
            "The request is larger than {limit} bytes"
        )),
        e @ Error::Internal { .. } => {
            tracing::error!(error = ?e, "EC2 request failed");
            Ec2Error::internal_error()
        }
    }
}

/// `<Kind>.NotFound` for a kumo resource kind (the app's `NotFound.kind`) and id.
pub fn not_found(kind: &str, id: &str) -> Ec2Error {
    let known = match kind {
        "instance" => Some(ResourceKind::Instance),
        "image" => Some(ResourceKind::Image),
        "key pair" => Some(ResourceKind::KeyPair),
        "volume" => Some(ResourceKind::Volume),
        "snapshot" => Some(ResourceKind::Snapshot),
        "network" => Some(ResourceKind::Vpc),
        "subnet" => Some(ResourceKind::Subnet),
        "security group" => Some(ResourceKind::SecurityGroup),
        "floating IP" => Some(ResourceKind::Allocation),
        _ => None,
    };
    match (known, kind) {
        (Some(k), _) => Ec2Error::not_found(k, &ids::ec2_id(id)),
        (None, "port" | "NIC") => Ec2Error::new(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{id}' does not exist"),
            400,
        ),
        (None, "instance type") => Ec2Error::invalid_parameter_value_message(format!(
            "Invalid value '{id}' for InstanceType."
        )),
        (None, _) => {
            Ec2Error::invalid_parameter_value_message(format!("The {kind} '{id}' does not exist"))
        }
    }
}

fn conflict(message: String, field: Option<&str>) -> Ec2Error {
    let m = message.as_str();
    if field == Some("name") && m.contains("already exists") {
        if m.starts_with("key pair") {
            return Ec2Error::new(
                "InvalidKeyPair.Duplicate",
                format!("The keypair already exists: {m}"),
                400,
            );
        }
        if m.starts_with("image") {
            return Ec2Error::new("InvalidAMIName.Duplicate", m.to_string(), 400);
        }
        if m.starts_with("security group") {
            return Ec2Error::new("InvalidGroup.Duplicate", m.to_string(), 400);
        }
        return Ec2Error::invalid_parameter_value_message(m.to_string());
    }
    if m.contains("in use") || m.contains("attached") || m.contains("still has") {
        return Ec2Error::dependency_violation(m.to_string());
    }
    if m.starts_with("instance") || m.contains("only a running instance") {
        return Ec2Error::new("IncorrectInstanceState", m.to_string(), 400);
    }
    Ec2Error::new("IncorrectState", m.to_string(), 400)
}

/// The EC2 parameter a kumo request field corresponds to (the field itself when there is none).
pub fn param_name(field: &str) -> String {
    let mapped = match field {
        "image" => "ImageId",
        "instance_type" => "InstanceType",
        "key_name" => "KeyName",
        "user_data" => "UserData",
        "root_disk_gib" | "root_volume.size_gib" => "BlockDeviceMapping.Ebs.VolumeSize",
        "root_volume.volume_type" => "BlockDeviceMapping.Ebs.VolumeType",
        "name" => "Name",
        "public_key" => "PublicKeyMaterial",
        "security_groups" => "SecurityGroupId",
        "network" => "VpcId",
        "subnet" => "SubnetId",
        "cidr" => "CidrBlock",
        "size_gib" => "Size",
        "snapshot" => "SnapshotId",
        "volume" => "VolumeId",
        "instance" => "InstanceId",
        f if f.starts_with("nics[") && f.ends_with(".ipv4") => "PrivateIpAddress",
        f if f.starts_with("nics[") && f.ends_with("security_groups") => "SecurityGroupId",
        f if f.starts_with("nics[") => "SubnetId",
        _ => field,
    };
    mapped.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_aws_code_and_the_ec2_id() {
        let e = from_app(Error::not_found("instance", "i-0123456789abcdef0"));
        assert_eq!(e.code(), "InvalidInstanceID.NotFound");
        assert!(e.message().contains("i-0123456789abcdef0"));
        let e = from_app(Error::not_found("network", "net-0123456789abcdef0"));
        assert_eq!(e.code(), "InvalidVpcID.NotFound");
        assert!(e.message().contains("vpc-0123456789abcdef0"), "{e}");
        assert_eq!(
            from_app(Error::not_found("port", "eni-1")).code(),
            "InvalidNetworkInterfaceID.NotFound"
        );
        assert_eq!(
            from_app(Error::not_found("pool", "x")).code(),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn quotas_conflicts_and_the_rest() {
        let q = |r: &str| Error::QuotaExceeded {
            project: "p".into(),
            resource: r.into(),
            limit: 1,
            used: 1,
            requested: 1,
        };
        assert_eq!(from_app(q("instances")).code(), "InstanceLimitExceeded");
        assert_eq!(from_app(q("vcpus")).code(), "InstanceLimitExceeded");
        assert_eq!(from_app(q("networks")).code(), "VpcLimitExceeded");
        assert_eq!(from_app(q("floating_ips")).code(), "AddressLimitExceeded");
        assert_eq!(from_app(q("volume_gib")).code(), "VolumeLimitExceeded");
        let dup = Error::conflict_field("name", "key pair `k` already exists");
        assert_eq!(from_app(dup).code(), "InvalidKeyPair.Duplicate");
        let dup = Error::conflict_field("name", "image `k` already exists");
        assert_eq!(from_app(dup).code(), "InvalidAMIName.Duplicate");
        let used = Error::conflict("image `tiny` is in use by instance(s) a");
        assert_eq!(from_app(used).code(), "DependencyViolation");
        let st = Error::conflict("instance `a` is being deleted");
        assert_eq!(from_app(st).code(), "IncorrectInstanceState");
        let inv = from_app(Error::invalid("instance_type", "no instance type `x`"));
        assert_eq!(inv.code(), "InvalidParameterValue");
        assert!(inv.message().contains("InstanceType"), "{inv}");
        let f = from_app(Error::Forbidden {
            message: "no".into(),
        });
        assert_eq!((f.code(), f.http_status()), ("UnauthorizedOperation", 403));
        let i = from_app(Error::internal("secret detail"));
        assert_eq!(i.code(), "InternalError");
        assert!(!i.message().contains("secret detail"));
        let c = from_app(Error::InsufficientCapacity {
            resource: "memory".into(),
            message: "no host".into(),
        });
        assert_eq!(c.code(), "InsufficientInstanceCapacity");
    }
}
