//! The cloud itself: `DescribeRegions`, `DescribeAvailabilityZones`, `DescribeAccountAttributes`
//! and `DescribeInstanceTypes` (kumo's instance types, plus AWS-named aliases such as `t3.micro`
//! so that configurations written for AWS run unchanged: see [`alias`]).

use kumo_ec2::{Ec2Error, Params};
use kumo_types::InstanceType;

use super::filter::{Filters, Paging};
use super::{Ec2Ctx, Ec2Result, error};
use crate::app::{instance_type, quota};

/// The burstable AWS families whose sizes name kumo's built-in types.
const ALIAS_FAMILIES: [&str; 3] = ["t2", "t3", "t3a"];
/// The sizes kumo's built-in types are named after.
const SIZES: [&str; 7] = [
    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge",
];

/// The kumo instance type an AWS-named alias stands for: `t2.<size>`, `t3.<size>` and
/// `t3a.<size>` are kumo's built-in `<size>` (kumo's sizes, not AWS's: `micro` is 1 vCPU and
/// 512 MiB). `None` for anything else.
pub fn alias(name: &str) -> Option<&'static str> {
    let (family, size) = name.split_once('.')?;
    if !ALIAS_FAMILIES.contains(&family) {
        return None;
    }
    SIZES.iter().find(|s| **s == size).copied()
}

/// Every alias of built-in type `kumo_name`.
fn aliases_of(kumo_name: &str) -> Vec<String> {
    if !SIZES.contains(&kumo_name) {
        return vec![];
    }
    ALIAS_FAMILIES
        .iter()
        .map(|f| format!("{f}.{kumo_name}"))
        .collect()
}

/// The kumo instance type an EC2 `InstanceType` names (itself or through [`alias`]), or
/// `InvalidParameterValue`.
pub async fn resolve_type(ctx: &Ec2Ctx, name: &str) -> Ec2Result<InstanceType> {
    let kumo = alias(name).unwrap_or(name);
    instance_type::get(&ctx.app, kumo).await.map_err(|e| match e {
        kumo_types::Error::NotFound { .. } => Ec2Error::invalid_parameter_value_message(format!(
            "Invalid value '{name}' for InstanceType. kumo's types: `kumo instance-type list` \
             (or the AWS-style aliases t2.*, t3.*, t3a.* of its built-in sizes)"
        )),
        e => error::from_app(e),
    })
}

pub async fn describe_instance_types(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let names = params.id_list("InstanceType")?;
    let filters = Filters::read(
        params,
        &[
            "instance-type",
            "vcpu-info.default-vcpus",
            "memory-info.size-in-mib",
            "current-generation",
            "burstable-performance-supported",
            "processor-info.supported-architecture",
        ],
    )?;
    let paging = Paging::read(params, 5..=100)?;
    ctx.ready(params)?;
    let types = instance_type::list(&ctx.app)
        .await
        .map_err(error::from_app)?
        .items;
    let mut all: Vec<(String, InstanceType)> = Vec::new();
    for t in types {
        for a in aliases_of(&t.name) {
            all.push((a, t.clone()));
        }
        all.push((t.name.clone(), t));
    }
    if !names.is_empty() {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !all.iter().any(|(name, _)| name == *n))
            .collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(Ec2Error::new(
                "InvalidInstanceType",
                format!(
                    "The following supplied instance types do not exist: [{}]",
                    list.join(", ")
                ),
                400,
            ));
        }
        all.retain(|(n, _)| names.contains(n));
    }
    all.retain(|(name, t)| {
        filters.matches(
            |f| match f {
                "instance-type" => vec![name.clone()],
                "vcpu-info.default-vcpus" => vec![t.vcpus.to_string()],
                "memory-info.size-in-mib" => vec![t.memory_mib.to_string()],
                "current-generation" => vec!["true".into()],
                "burstable-performance-supported" => vec!["false".into()],
                "processor-info.supported-architecture" => vec!["x86_64".into()],
                _ => vec![],
            },
            &Default::default(),
        )
    });
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let page = paging.page(all, |(n, _)| n.clone());
    ctx.respond(|w| {
        w.set("instanceTypeSet", &page.items, |w, (name, t)| {
            write_type(w, name, t);
        });
        w.opt_text("nextToken", page.next_token.as_deref());
    })
}

fn write_type(w: &mut kumo_ec2::xml::XmlWriter, name: &str, t: &InstanceType) {
    w.text("instanceType", name)
        .bool("currentGeneration", true)
        .bool("freeTierEligible", false)
        .node("supportedUsageClasses", |w| strings(w, &["on-demand"]))
        .node("supportedRootDeviceTypes", |w| strings(w, &["ebs"]))
        .node("supportedVirtualizationTypes", |w| strings(w, &["hvm"]))
        .bool("bareMetal", false)
        .text("hypervisor", "xen")
        .node("processorInfo", |w| {
            w.node("supportedArchitectures", |w| strings(w, &["x86_64"]));
        })
        .node("vCpuInfo", |w| {
            w.int("defaultVCpus", i64::from(t.vcpus))
                .int("defaultCores", i64::from(t.vcpus))
                .int("defaultThreadsPerCore", 1);
        })
        .node("memoryInfo", |w| {
            w.int("sizeInMiB", t.memory_mib as i64);
        })
        .bool("instanceStorageSupported", false)
        .node("ebsInfo", |w| {
            w.text("ebsOptimizedSupport", "unsupported")
                .text("encryptionSupport", "unsupported")
                .text("nvmeSupport", "unsupported");
        })
        .node("networkInfo", |w| {
            w.text("networkPerformance", "Up to 10 Gigabit")
                .int("maximumNetworkInterfaces", 8)
                .int("maximumNetworkCards", 1)
                .int("defaultNetworkCardIndex", 0)
                .int("ipv4AddressesPerInterface", 1)
                .int("ipv6AddressesPerInterface", 0)
                .bool("ipv6Supported", false)
                .text("enaSupport", "supported")
                .bool("efaSupported", false)
                .bool("encryptionInTransitSupported", false);
        })
        .node("placementGroupInfo", |w| {
            w.node("supportedStrategies", |w| {
                strings(w, &["cluster", "spread"])
            });
        })
        .bool("hibernationSupported", false)
        .bool("burstablePerformanceSupported", false)
        .bool("dedicatedHostsSupported", false)
        .bool("autoRecoverySupported", false)
        .node("supportedBootModes", |w| strings(w, &["legacy-bios"]));
    if let Some(g) = &t.gpus {
        w.node("gpuInfo", |w| {
            w.set("gpus", [g], |w, g| {
                w.text("name", &g.model)
                    .text("manufacturer", "")
                    .int("count", i64::from(g.count));
            });
        });
    }
}

/// The items of a list of plain strings: `<item>x</item>…`.
fn strings(w: &mut kumo_ec2::xml::XmlWriter, values: &[&str]) {
    for v in values {
        w.text("item", v);
    }
}

pub fn describe_regions(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let names = params.id_list("RegionName")?;
    let _all = params.root().opt_bool("AllRegions")?;
    let filters = Filters::read(params, &["endpoint", "region-name", "opt-in-status"])?;
    ctx.ready(params)?;
    if let Some(bad) = names.iter().find(|n| **n != ctx.region) {
        return Err(Ec2Error::invalid_parameter_value_message(format!(
            "Invalid region: {bad}"
        )));
    }
    let region = ctx.region.clone();
    let endpoint = ctx.endpoint.clone();
    let shown = filters.matches(
        |f| match f {
            "endpoint" => vec![endpoint.clone()],
            "region-name" => vec![region.clone()],
            "opt-in-status" => vec!["opt-in-not-required".into()],
            _ => vec![],
        },
        &Default::default(),
    );
    ctx.respond(|w| {
        w.set("regionInfo", shown.then_some(()), |w, ()| {
            w.text("regionName", &region)
                .text("regionEndpoint", &endpoint)
                .text("optInStatus", "opt-in-not-required");
        });
    })
}

pub fn describe_availability_zones(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let names = params.id_list("ZoneName")?;
    let zone_ids = params.id_list("ZoneId")?;
    let _all = params.root().opt_bool("AllAvailabilityZones")?;
    let filters = Filters::read(
        params,
        &[
            "zone-name",
            "zone-id",
            "state",
            "region-name",
            "zone-type",
            "opt-in-status",
            "group-name",
        ],
    )?;
    ctx.ready(params)?;
    let zone = ctx.zone();
    let zone_id = format!("{}-az1", ctx.region);
    if let Some(bad) = names
        .iter()
        .find(|n| **n != zone)
        .or_else(|| zone_ids.iter().find(|n| **n != zone_id))
    {
        return Err(Ec2Error::invalid_parameter_value_message(format!(
            "Invalid availability zone: [{bad}]"
        )));
    }
    let shown = filters.matches(
        |f| match f {
            "zone-name" => vec![zone.clone()],
            "zone-id" => vec![zone_id.clone()],
            "state" => vec!["available".into()],
            "region-name" | "group-name" => vec![ctx.region.clone()],
            "zone-type" => vec!["availability-zone".into()],
            "opt-in-status" => vec!["opt-in-not-required".into()],
            _ => vec![],
        },
        &Default::default(),
    );
    ctx.respond(|w| {
        w.set("availabilityZoneInfo", shown.then_some(()), |w, ()| {
            w.text("zoneName", &zone)
                .text("zoneState", "available")
                .text("regionName", &ctx.region)
                .empty("messageSet")
                .text("zoneId", &zone_id)
                .text("zoneType", "availability-zone")
                .text("optInStatus", "opt-in-not-required")
                .text("groupName", &ctx.region)
                .text("networkBorderGroup", &ctx.region);
        });
    })
}

pub async fn describe_account_attributes(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let wanted = params.id_list("AttributeName")?;
    ctx.ready(params)?;
    let q = quota::show(&ctx.app, &ctx.scope, None)
        .await
        .map_err(error::from_app)?;
    let limit = |n: Option<u64>| n.map_or_else(|| "1000000".to_string(), |n| n.to_string());
    let all: Vec<(&str, Vec<String>)> = vec![
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec!["none".into()]),
        ("max-instances", vec![limit(q.limits.instances)]),
        ("vpc-max-security-groups-per-interface", vec!["5".into()]),
        ("max-elastic-ips", vec![limit(q.limits.floating_ips)]),
        ("vpc-max-elastic-ips", vec![limit(q.limits.floating_ips)]),
    ];
    if let Some(bad) = wanted.iter().find(|n| !all.iter().any(|(a, _)| a == n)) {
        return Err(Ec2Error::invalid_parameter_value_message(format!(
            "Value ({bad}) for parameter attributeName is invalid. Known: {}",
            all.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
        )));
    }
    let shown: Vec<&(&str, Vec<String>)> = all
        .iter()
        .filter(|(a, _)| wanted.is_empty() || wanted.iter().any(|w| w == a))
        .collect();
    ctx.respond(|w| {
        w.set("accountAttributeSet", shown, |w, (name, values)| {
            w.text("attributeName", name)
                .set("attributeValueSet", values, |w, v| {
                    w.text("attributeValue", v);
                });
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_the_built_in_sizes() {
        assert_eq!(alias("t3.micro"), Some("micro"));
        assert_eq!(alias("t2.2xlarge"), Some("2xlarge"));
        assert_eq!(alias("t3a.nano"), Some("nano"));
        assert_eq!(alias("m5.large"), None);
        assert_eq!(alias("t3.huge"), None);
        assert_eq!(alias("micro"), None);
        assert_eq!(aliases_of("micro"), ["t2.micro", "t3.micro", "t3a.micro"]);
        assert!(aliases_of("gpu-big").is_empty());
    }
}
