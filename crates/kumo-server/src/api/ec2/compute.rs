//! The compute actions: instances, instance types, images, key pairs, tags, regions, zones and
//! account attributes. Each action lives in its module; this is the table.

use kumo_ec2::{Ec2Error, Params};

use super::{Ec2Ctx, images, instance_attr, instances, keys, meta, run, tags};

/// Every action this module serves (for docs and tests).
pub const ACTIONS: &[&str] = &[
    "RunInstances",
    "DescribeInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "DescribeInstanceAttribute",
    "ModifyInstanceAttribute",
    "DescribeInstanceCreditSpecifications",
    "DescribeInstanceTypes",
    "DescribeImages",
    "CreateImage",
    "DeregisterImage",
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPair",
    "CreateTags",
    "DeleteTags",
    "DescribeTags",
    "DescribeRegions",
    "DescribeAvailabilityZones",
    "DescribeAccountAttributes",
];

/// Handle `action` if it is a compute action (`None`: not this module's).
pub async fn handle(
    ctx: &Ec2Ctx,
    action: &str,
    params: &mut Params,
) -> Option<Result<String, Ec2Error>> {
    let p = &*params;
    Some(match action {
        "RunInstances" => run::run(ctx, p).await,
        "DescribeInstances" => instances::describe(ctx, p).await,
        "StartInstances" => instances::start(ctx, p).await,
        "StopInstances" => instances::stop(ctx, p).await,
        "RebootInstances" => instances::reboot(ctx, p).await,
        "TerminateInstances" => instances::terminate(ctx, p).await,
        "DescribeInstanceAttribute" => instance_attr::describe(ctx, p).await,
        "ModifyInstanceAttribute" => instance_attr::modify(ctx, p).await,
        "DescribeInstanceCreditSpecifications" => instances::credit_specifications(ctx, p).await,
        "DescribeInstanceTypes" => meta::describe_instance_types(ctx, p).await,
        "DescribeImages" => images::describe(ctx, p).await,
        "CreateImage" => images::create(ctx, p).await,
        "DeregisterImage" => images::deregister(ctx, p).await,
        "CreateKeyPair" => keys::create(ctx, p).await,
        "ImportKeyPair" => keys::import(ctx, p).await,
        "DescribeKeyPairs" => keys::describe(ctx, p).await,
        "DeleteKeyPair" => keys::delete(ctx, p).await,
        "CreateTags" => tags::create(ctx, p).await,
        "DeleteTags" => tags::delete(ctx, p).await,
        "DescribeTags" => tags::describe(ctx, p).await,
        "DescribeRegions" => meta::describe_regions(ctx, p),
        "DescribeAvailabilityZones" => meta::describe_availability_zones(ctx, p),
        "DescribeAccountAttributes" => meta::describe_account_attributes(ctx, p).await,
        _ => return None,
    })
}
