//! `RunInstances`: `MaxCount` instances (at least `MinCount` or none) through
//! `app::instance::run_with`, each with its EC2 attributes and tags in its own creation
//! transaction; `ClientToken` makes a retry answer with the first request's instances.
//!
//! Instances are EBS-backed: they boot from a volume made from the image (`BlockDeviceMapping`
//! for the root device sets its size, type and `DeleteOnTermination`). An instance's kumo name is
//! its ID. What kumo cannot honour is refused with a message saying so, never ignored.

use kumo_ec2::{Ec2Error, Node, Params, ResourceKind};
use kumo_types::{NicRequest, RootVolumeRequest, RunInstanceRequest, ids as kumo_ids};

use super::meta::resolve_type;
use super::render::{
    self, ATTR_CLIENT_TOKEN, ATTR_INSTANCE_TYPE, ATTR_LAUNCH_INDEX, ATTR_RESERVATION, World,
};
use super::tags::{TagSpecs, tag_specifications};
use super::{Ec2Ctx, Ec2Result, error, ids};
use crate::app::attrs::{self, Attrs, Extra};
use crate::app::idempotency::{self, Claim};
use crate::app::instance::{self, extras};
use crate::app::{image, key_pair, network, security_group, tags, volume_type};

/// Most instances one request launches.
const MAX_COUNT: i64 = 100;
/// Device names accepted for the root volume.
const ROOT_DEVICES: [&str; 4] = [render::ROOT_DEVICE, "/dev/sda1", "/dev/sda", "/dev/vda"];

/// A request's root volume (`BlockDeviceMapping` for the root device).
#[derive(Debug, Clone, Default, PartialEq)]
struct Root {
    size_gib: Option<u64>,
    /// The EC2 volume type asked for (`gp3`, …).
    volume_type: Option<String>,
    delete_on_termination: Option<bool>,
}

/// One `NetworkInterface.N` (or the top-level `SubnetId`/`SecurityGroupId`/`PrivateIpAddress`).
#[derive(Debug, Clone, Default, PartialEq)]
struct Nic {
    subnet: Option<String>,
    groups: Vec<String>,
    ipv4: Option<String>,
    port: Option<String>,
}

/// Everything `RunInstances` was asked, checked (the `ClientToken` digest is of this).
#[derive(Debug, Clone, PartialEq)]
struct Input {
    image: String,
    instance_type: String,
    min: i64,
    max: i64,
    key_name: Option<String>,
    user_data: Option<String>,
    root: Root,
    nics: Vec<Nic>,
    group_names: Vec<String>,
    placement_group: Option<String>,
    tags: TagSpecs,
    termination_protection: bool,
    stop_protection: bool,
    shutdown: Option<&'static str>,
    hop_limit: Option<i64>,
}

fn invalid(name: &str, value: &str, reason: &str) -> Ec2Error {
    Ec2Error::invalid_parameter_value(name, value, reason)
}

fn unsupported(what: &str) -> Ec2Error {
    Ec2Error::unsupported(what.to_string())
}

/// `false` (or absent) only: a switch kumo cannot turn on.
fn off_only(node: &Node<'_>, member: &str, why: &str) -> Ec2Result<()> {
    if node.opt_bool(member)? == Some(true) {
        return Err(unsupported(&format!("{}=true: {why}", node.path(member))));
    }
    Ok(())
}

/// `value` (or absent) only.
fn only(node: &Node<'_>, member: &str, value: &str, why: &str) -> Ec2Result<()> {
    if let Some(v) = node.opt_str(member)
        && v != value
    {
        return Err(unsupported(&format!("{}={v}: {why}", node.path(member))));
    }
    Ok(())
}

fn read_root(params: &Params) -> Ec2Result<Root> {
    let mut root = Root::default();
    for m in params.root().list("BlockDeviceMapping")? {
        let device = m.str("DeviceName")?;
        if m.has("VirtualName") || m.has("NoDevice") {
            return Err(unsupported(&format!(
                "{}: kumo has no instance-store or suppressed devices",
                m.name()
            )));
        }
        if !ROOT_DEVICES.contains(&device.as_str()) {
            return Err(unsupported(&format!(
                "{}.DeviceName={device}: only the root device ({}) can be given at launch; \
                 attach more volumes with CreateVolume and AttachVolume",
                m.name(),
                render::ROOT_DEVICE
            )));
        }
        let ebs = m.child("Ebs");
        root.size_gib = ebs
            .opt_i64("VolumeSize", 1..=65536)?
            .map(|n| n.unsigned_abs());
        root.volume_type = ebs.opt_str("VolumeType");
        root.delete_on_termination = ebs.opt_bool("DeleteOnTermination")?;
        off_only(&ebs, "Encrypted", "kumo volumes are not encrypted")?;
        for m in ["Iops", "Throughput", "SnapshotId", "KmsKeyId", "OutpostArn"] {
            if ebs.has(m) {
                return Err(unsupported(&format!(
                    "{}: kumo volumes have no provisioned performance, snapshots at launch or \
                     keys",
                    ebs.path(m)
                )));
            }
        }
    }
    Ok(root)
}

fn read_nics(params: &Params) -> Ec2Result<Vec<Nic>> {
    let root = params.root();
    let top = Nic {
        subnet: root.opt_str("SubnetId"),
        groups: params.id_list("SecurityGroupId")?,
        ipv4: root.opt_str("PrivateIpAddress"),
        port: None,
    };
    let list = root.list("NetworkInterface")?;
    if list.is_empty() {
        return Ok(vec![top]);
    }
    if top != Nic::default() {
        return Err(Ec2Error::invalid_parameter_combination_message(
            "Network interfaces and an instance-level subnet, security groups or private IP \
             address may not be specified on the same request",
        ));
    }
    let mut nics = Vec::new();
    for (k, n) in list.iter().enumerate() {
        let index = n.opt_i64("DeviceIndex", 0..=7)?;
        if index.is_some_and(|i| i != k as i64) {
            return Err(invalid(
                &n.path("DeviceIndex"),
                &index.unwrap_or_default().to_string(),
                "give interfaces in order, from DeviceIndex 0",
            ));
        }
        off_only(
            n,
            "AssociatePublicIpAddress",
            "allocate an address with AllocateAddress and AssociateAddress it after launch",
        )?;
        if n.opt_bool("DeleteOnTermination")? == Some(false) && !n.has("NetworkInterfaceId") {
            return Err(unsupported(&format!(
                "{}=false: an interface made at launch goes with its instance; create one with \
                 CreateNetworkInterface to keep it",
                n.path("DeleteOnTermination")
            )));
        }
        if n.opt_i64("Ipv6AddressCount", 0..=0)?.is_some() || n.has("Ipv6Address") {
            return Err(unsupported("IPv6 addresses: kumo networks are IPv4"));
        }
        let _ = n.opt_str("Description");
        let _ = n.opt_i64("SecondaryPrivateIpAddressCount", 0..=0)?;
        nics.push(Nic {
            subnet: n.opt_str("SubnetId"),
            groups: n.strings("SecurityGroupId")?,
            ipv4: n.opt_str("PrivateIpAddress"),
            port: n.opt_str("NetworkInterfaceId"),
        });
    }
    Ok(nics)
}

/// Options with a default kumo has and nothing else: accepted at the default, refused otherwise.
fn read_fixed_options(ctx: &Ec2Ctx, params: &Params) -> Ec2Result<Option<String>> {
    let root = params.root();
    off_only(
        &root.child("Monitoring"),
        "Enabled",
        "kumo has no detailed monitoring",
    )?;
    off_only(
        &root,
        "EbsOptimized",
        "kumo volumes have no dedicated bandwidth",
    )?;
    off_only(
        &root.child("HibernationOptions"),
        "Configured",
        "kumo does not hibernate",
    )?;
    off_only(
        &root.child("EnclaveOptions"),
        "Enabled",
        "kumo has no enclaves",
    )?;
    only(
        &root.child("CapacityReservationSpecification"),
        "CapacityReservationPreference",
        "open",
        "kumo has no capacity reservations",
    )?;
    only(
        &root.child("MaintenanceOptions"),
        "AutoRecovery",
        "default",
        "use kumo's HA instead",
    )?;
    let placement = root.child("Placement");
    // Terraform sends `Placement.AvailabilityZone=` (empty) when no zone is configured.
    if let Some(z) = placement.opt_str("AvailabilityZone")
        && !z.is_empty()
        && z != ctx.zone()
    {
        return Err(Ec2Error::invalid_parameter_value_message(format!(
            "Invalid availability zone: [{z}] (this region has one zone, {})",
            ctx.zone()
        )));
    }
    only(
        &placement,
        "Tenancy",
        "default",
        "kumo has no dedicated tenancy",
    )?;
    Ok(placement.opt_str("GroupName").filter(|g| !g.is_empty()))
}

fn read_metadata_options(params: &Params) -> Ec2Result<Option<i64>> {
    let m = params.root().child("MetadataOptions");
    only(
        &m,
        "HttpEndpoint",
        "enabled",
        "kumo's metadata service is always on",
    )?;
    only(
        &m,
        "HttpTokens",
        "optional",
        "kumo's metadata service accepts IMDSv2 tokens but does not require them",
    )?;
    only(&m, "HttpProtocolIpv6", "disabled", "kumo networks are IPv4")?;
    only(
        &m,
        "InstanceMetadataTags",
        "disabled",
        "kumo's metadata service does not serve tags",
    )?;
    m.opt_i64("HttpPutResponseHopLimit", 1..=64)
}

fn read(ctx: &Ec2Ctx, params: &Params) -> Ec2Result<Input> {
    let root = params.root();
    let image = root.str("ImageId")?;
    if !ids::is("ami", &image) {
        return Err(Ec2Error::new(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{image}\" (expecting \"ami-...\")"),
            400,
        ));
    }
    let min = root.i64("MinCount", 1..=MAX_COUNT)?;
    let max = root.i64("MaxCount", 1..=MAX_COUNT)?;
    if min > max {
        return Err(invalid(
            "MinCount",
            &min.to_string(),
            "MinCount may not be greater than MaxCount",
        ));
    }
    let user_data = match root.opt_blob("UserData")? {
        None => None,
        Some(b) => Some(String::from_utf8(b).map_err(|_| {
            unsupported(
                "UserData that is not UTF-8 text (e.g. gzip): kumo serves user data as text",
            )
        })?),
    };
    let placement_group = read_fixed_options(ctx, params)?;
    let hop_limit = read_metadata_options(params)?;
    // kumo never throttles a vCPU for lack of credits: `unlimited` is what every instance gets.
    only(
        &root.child("CreditSpecification"),
        "CpuCredits",
        "unlimited",
        "kumo has no CPU credits; every instance runs unthrottled (unlimited)",
    )?;
    for m in [
        "IamInstanceProfile",
        "InstanceMarketOptions",
        "LaunchTemplate",
        "ElasticGpuSpecification",
        "LicenseSpecification",
    ] {
        if root.has(m) {
            return Err(unsupported(&format!("{m}: kumo does not support it")));
        }
    }
    let _ = root.opt_str("AdditionalInfo");
    Ok(Input {
        image,
        instance_type: root
            .opt_str("InstanceType")
            .unwrap_or_else(|| "t3.micro".into()),
        min,
        max,
        key_name: root.opt_str("KeyName"),
        user_data,
        root: read_root(params)?,
        nics: read_nics(params)?,
        group_names: params.id_list("SecurityGroup")?,
        placement_group,
        tags: tag_specifications(params, &["instance", "volume", "network-interface"])?,
        termination_protection: root.opt_bool("DisableApiTermination")?.unwrap_or(false),
        stop_protection: root.opt_bool("DisableApiStop")?.unwrap_or(false),
        shutdown: root.opt_enum("InstanceInitiatedShutdownBehavior", &["stop", "terminate"])?,
        hop_limit,
    })
}

/// Resolve what the request names, with EC2's error codes, into the kumo request (name filled
/// per instance).
async fn plan(ctx: &Ec2Ctx, inp: &Input) -> Ec2Result<RunInstanceRequest> {
    let (app, s) = (&ctx.app, &ctx.scope);
    let not_found = |e: kumo_types::Error, kind: ResourceKind, id: &str| match e {
        kumo_types::Error::NotFound { .. } => Ec2Error::not_found(kind, id),
        e => error::from_app(e),
    };
    image::get(app, s, &inp.image)
        .await
        .map_err(|e| not_found(e, ResourceKind::Image, &inp.image))?;
    let itype = resolve_type(ctx, &inp.instance_type).await?;
    if let Some(k) = &inp.key_name {
        key_pair::get(app, s, k)
            .await
            .map_err(|e| not_found(e, ResourceKind::KeyPair, k))?;
    }
    let mut nics = Vec::new();
    for n in &inp.nics {
        let subnet = match &n.subnet {
            Some(id) => Some(
                network::get_subnet(app, s, id)
                    .await
                    .map_err(|e| not_found(e, ResourceKind::Subnet, id))?,
            ),
            None => None,
        };
        let mut groups = Vec::new();
        for g in &n.groups {
            let id = security_group::get(app, s, g)
                .await
                .map_err(|e| not_found(e, ResourceKind::SecurityGroup, g))?
                .id;
            same_vpc(ctx, &id, subnet.as_ref()).await?;
            groups.push(id);
        }
        for name in &inp.group_names {
            groups.push(group_by_name(ctx, name, subnet.as_ref()).await?);
        }
        if groups.is_empty()
            && n.port.is_none()
            && let Some(sub) = &subnet
            && let Some(g) = vpc_default_group(ctx, &sub.network_id).await?
        {
            groups.push(g);
        }
        if subnet.is_none() && n.port.is_none() {
            let within = crate::app::scope::Scope::within(&s.project);
            if network::get(app, &within, network::DEFAULT_NAME)
                .await
                .is_err()
            {
                return Err(Ec2Error::new(
                    "VPCIdNotSpecified",
                    format!(
                        "No default VPC for this user: project `{}` has no `default` network; \
                         give SubnetId",
                        s.project
                    ),
                    400,
                ));
            }
        }
        nics.push(NicRequest {
            network: None,
            subnet: subnet.map(|x| x.id),
            ipv4: n.ipv4.clone(),
            security_groups: (!groups.is_empty()).then_some(groups),
            port: n.port.clone(),
        });
    }
    let root_type = match &inp.root.volume_type {
        // A kumo volume type of that name, else the default type (the EC2 name is kept).
        Some(t) if volume_type::get(app, t).await.is_ok() => Some(t.clone()),
        _ => None,
    };
    Ok(RunInstanceRequest {
        name: String::new(),
        image: inp.image.clone(),
        instance_type: itype.name,
        key_name: inp.key_name.clone(),
        user_data: inp.user_data.clone(),
        root_disk_gib: None,
        restart_policy: None,
        network: None,
        nics: Some(nics),
        security_groups: None,
        start: None,
        ha: None,
        ha_priority: None,
        root_volume: Some(RootVolumeRequest {
            volume_type: root_type,
            size_gib: inp.root.size_gib,
            delete_on_termination: inp.root.delete_on_termination,
        }),
        placement_group: inp.placement_group.clone(),
        host_selector: None,
    })
}

/// A security group by its EC2 group name (or kumo name), in the subnet's VPC when there is one.
async fn group_by_name(
    ctx: &Ec2Ctx,
    name: &str,
    subnet: Option<&kumo_types::Subnet>,
) -> Ec2Result<String> {
    let groups = security_group::list(&ctx.app, &ctx.scope)
        .await
        .map_err(error::from_app)?
        .items;
    let all = attrs::all(&ctx.app).await.map_err(error::from_app)?;
    groups
        .iter()
        .find(|g| {
            let a = all.get(&g.id);
            let ec2_name = a.and_then(|a| a.group_name.as_deref()).unwrap_or(&g.name);
            let vpc_ok = match (subnet, a.and_then(|a| a.network.as_deref())) {
                (Some(s), Some(net)) => s.network_id == net,
                _ => true,
            };
            ec2_name == name && vpc_ok
        })
        .map(|g| g.id.clone())
        .ok_or_else(|| Ec2Error::not_found(ResourceKind::SecurityGroup, name))
}

/// `InvalidParameter` when group `id` belongs to a VPC other than the one the instance goes into
/// (`subnet`'s, or the `default` network's without one). Groups made through `/v1` belong to no VPC
/// and go anywhere in their project.
async fn same_vpc(ctx: &Ec2Ctx, id: &str, subnet: Option<&kumo_types::Subnet>) -> Ec2Result<()> {
    let a = attrs::get(&ctx.app, id).await.map_err(error::from_app)?;
    let Some(group_net) = a.network else {
        return Ok(());
    };
    let (target_net, target) = match subnet {
        Some(sub) => (sub.network_id.clone(), sub.id.clone()),
        None => {
            let within = crate::app::scope::Scope::within(&ctx.scope.project);
            match network::get(&ctx.app, &within, network::DEFAULT_NAME).await {
                Ok(n) => (n.id, "the default VPC".to_string()),
                Err(_) => return Ok(()),
            }
        }
    };
    if group_net == target_net {
        return Ok(());
    }
    Err(Ec2Error::new(
        "InvalidParameter",
        format!(
            "Security group {id} and subnet {target} belong to different networks (group: {}, \
             subnet: {}).",
            ids::vpc_of_network(&group_net).unwrap_or(group_net.clone()),
            ids::vpc_of_network(&target_net).unwrap_or(target_net.clone()),
        ),
        400,
    ))
}

/// The default security group of a VPC (made with it by the network actions), if it has one.
async fn vpc_default_group(ctx: &Ec2Ctx, network_id: &str) -> Ec2Result<Option<String>> {
    let all = attrs::all(&ctx.app).await.map_err(error::from_app)?;
    Ok(all
        .into_iter()
        .find(|(id, a)| {
            id.starts_with("sg-") && a.network_default && a.network.as_deref() == Some(network_id)
        })
        .map(|(id, _)| id))
}

/// The attributes an instance is written with.
/// (An instance launched alone has none it need not have: its reservation is named after it.)
fn instance_attrs(inp: &Input, reservation: &str, index: usize, token: Option<&str>) -> Attrs {
    let mut a = Attrs::default();
    if inp.max > 1 {
        a.set(ATTR_RESERVATION, reservation);
        a.set(ATTR_LAUNCH_INDEX, index.to_string());
    }
    if crate::api::ec2::meta::alias(&inp.instance_type).is_some() {
        a.set(ATTR_INSTANCE_TYPE, inp.instance_type.clone());
    }
    if let Some(t) = token {
        a.set(ATTR_CLIENT_TOKEN, t);
    }
    if inp.termination_protection {
        a.set(extras::TERMINATION_PROTECTION, "true");
    }
    if inp.stop_protection {
        a.set(extras::STOP_PROTECTION, "true");
    }
    if let Some(b) = inp.shutdown {
        a.set(extras::SHUTDOWN_BEHAVIOR, b);
    }
    if let Some(h) = inp.hop_limit {
        a.set(render::ATTR_HOP_LIMIT, h.to_string());
    }
    a
}

pub async fn run(ctx: &Ec2Ctx, params: &Params) -> Ec2Result {
    let inp = read(ctx, params)?;
    let token = params.client_token()?;
    let req = plan(ctx, &inp).await?;
    ctx.ready(params)?;
    let ids: Vec<String> = (0..inp.max)
        .map(|_| kumo_ids::new_id(kumo_ids::INSTANCE))
        .collect();
    if let Some(t) = &token {
        let digest = idempotency::digest(&inp);
        match idempotency::claim(&ctx.app, &ctx.scope, t, ctx.action(), &digest, &ids)
            .await
            .map_err(error::from_app)?
        {
            Claim::Fresh => {}
            Claim::Replay(earlier) => return respond(ctx, &earlier).await,
            Claim::Mismatch => return Err(Ec2Error::idempotent_parameter_mismatch()),
        }
    }
    let reservation = ids::reservation_of(&ids[0]);
    let mut made = Vec::new();
    let mut failure = None;
    for (index, id) in ids.iter().enumerate() {
        match launch(ctx, &inp, &req, id, &reservation, index, token.as_deref()).await {
            Ok(()) => made.push(id.clone()),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failure {
        if (made.len() as i64) < inp.min {
            // Fewer than MinCount: none at all.
            for id in &made {
                let _ = instance::delete_unprotected(&ctx.app, &ctx.scope, id).await;
            }
            if let Some(t) = &token {
                let _ = idempotency::release(&ctx.app, &ctx.scope, t).await;
            }
            return Err(e);
        }
        if let Some(t) = &token {
            idempotency::settle(&ctx.app, &ctx.scope, t, &made)
                .await
                .map_err(error::from_app)?;
        }
    }
    respond(ctx, &made).await
}

/// Launch one instance `id` with its attributes and tags, then tag its boot volume and ports.
async fn launch(
    ctx: &Ec2Ctx,
    inp: &Input,
    req: &RunInstanceRequest,
    id: &str,
    reservation: &str,
    index: usize,
    token: Option<&str>,
) -> Ec2Result<()> {
    let mut extra = Extra::with_attrs(
        id.to_string(),
        &instance_attrs(inp, reservation, index, token),
    )
    .map_err(error::from_app)?;
    let project = &ctx.scope.project;
    if let Some(t) = inp.tags.get("instance")
        && let Some(op) = tags::create_op(project, id, t).map_err(error::from_app)?
    {
        extra.ops.push(op);
    }
    let mut r = req.clone();
    r.name = id.to_string();
    let view = instance::run_with(&ctx.app, &ctx.scope, r, extra)
        .await
        .map_err(error::from_app)?;
    ctx.target(id);
    if let Some(vol) = &view.boot_volume_id {
        if let Some(t) = inp.tags.get("volume") {
            tags::set(&ctx.app, &ctx.scope, project, vol, t)
                .await
                .map_err(error::from_app)?;
        }
        // The EC2 volume type asked for, shown back by DescribeVolumes.
        if let Some(t) = inp.root.volume_type.clone() {
            attrs::update(&ctx.app, vol, |a| {
                a.set("volumeType", t.clone());
                Ok(())
            })
            .await
            .map_err(error::from_app)?;
        }
    }
    if let Some(t) = inp.tags.get("network-interface") {
        for n in &view.nics {
            tags::set(&ctx.app, &ctx.scope, project, &n.port_id, t)
                .await
                .map_err(error::from_app)?;
        }
    }
    Ok(())
}

/// The reservation of instances `ids` (those that still exist or left a tombstone).
async fn respond(ctx: &Ec2Ctx, ids: &[String]) -> Ec2Result {
    let (rows, _gone) = render::rows_of(ctx, ids).await?;
    let insts: Vec<&kumo_types::Instance> = rows.iter().map(|r| &r.inst).collect();
    let world = World::for_instances(ctx, &insts).await?;
    let reservation = rows
        .first()
        .map(|r| r.reservation_id())
        .or_else(|| ids.first().map(|i| ids::reservation_of(i)))
        .unwrap_or_default();
    let owner = ctx.account_id();
    ctx.respond(|w| {
        w.text("reservationId", &reservation)
            .text("ownerId", &owner)
            .empty("groupSet")
            .set("instancesSet", &rows, |w, r| {
                render::write_instance(w, ctx, &world, r);
            });
    })
}
