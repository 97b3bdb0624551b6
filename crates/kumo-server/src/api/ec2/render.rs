//! Instances as EC2 shows them: the state codes, and the `instancesSet` item with its network
//! interfaces, groups, block devices and tags, from one read of what they refer to ([`World`]).
//!
//! | kumo (desired, observed) | EC2 state |
//! |---|---|
//! | deleted (a tombstone) | `terminated` (48) |
//! | deleting | `shutting-down` (32) |
//! | running, pending/starting | `pending` (0) |
//! | running, running/rebooting | `running` (16) |
//! | stopped, not yet stopped | `stopping` (64) |
//! | stopped / crashed / failed | `stopped` (80), with a `stateReason` |

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kumo_ec2::xml::XmlWriter;
use kumo_types::{
    DesiredState, FloatingIp, Instance, InstanceState, InstanceStatus, Port, SecurityGroup, Volume,
};

use super::filter::Tags;
use super::{Ec2Ctx, Ec2Result, error, ids};
use crate::app::attrs::{self, Attrs};
use crate::app::instance::extras;
use crate::app::{floating_ip, instance, port, scope, security_group, tags};
use crate::storeutil::keys;

/// The device name EC2 shows for a boot volume (and images' root device).
pub const ROOT_DEVICE: &str = "/dev/xvda";

/// Attribute of an instance: the EC2 instance type it was launched with (an alias of its kumo
/// type, e.g. `t3.micro`).
pub const ATTR_INSTANCE_TYPE: &str = "ec2.instanceType";
/// Attribute of an instance: its reservation (`r-…`) and its index in it.
pub const ATTR_RESERVATION: &str = "ec2.reservationId";
pub const ATTR_LAUNCH_INDEX: &str = "ec2.amiLaunchIndex";
/// Attribute of an instance: the `ClientToken` it was launched with.
pub const ATTR_CLIENT_TOKEN: &str = "ec2.clientToken";
/// Attribute of an instance: the metadata `HttpPutResponseHopLimit` it was launched with (shown,
/// not enforced).
pub const ATTR_HOP_LIMIT: &str = "ec2.httpPutResponseHopLimit";
/// Attributes of a volume: the device name it was attached at, and `<instance>/<slot>` it was
/// given for (set by the storage actions).
pub const ATTR_DEVICE: &str = "device";
pub const ATTR_DEVICE_AT: &str = "device_at";

/// One instance: live, or a tombstone (`deleted_at`).
#[derive(Debug, Clone)]
pub struct Row {
    pub inst: Instance,
    pub status: Option<InstanceStatus>,
    pub deleted_at: Option<String>,
    pub tags: Tags,
    pub attrs: Attrs,
}

impl Row {
    pub fn id(&self) -> &str {
        &self.inst.id
    }

    /// EC2's state code and name (see the module table).
    pub fn state(&self) -> (i64, &'static str) {
        if self.deleted_at.is_some() {
            return (48, "terminated");
        }
        if self.inst.deleting {
            return (32, "shutting-down");
        }
        let observed = self.status.as_ref().map(|s| s.state).unwrap_or_default();
        match (self.inst.desired_state, observed) {
            (_, InstanceState::Deleting) => (32, "shutting-down"),
            (DesiredState::Running, InstanceState::Pending | InstanceState::Starting) => {
                (0, "pending")
            }
            (DesiredState::Running, InstanceState::Running | InstanceState::Rebooting) => {
                (16, "running")
            }
            (_, InstanceState::Stopped | InstanceState::Crashed | InstanceState::Failed) => {
                (80, "stopped")
            }
            (DesiredState::Stopped, _) => (64, "stopping"),
            (DesiredState::Running, InstanceState::Stopping) => (64, "stopping"),
        }
    }

    /// The EC2 instance type: the name it was launched with, else the kumo type's.
    pub fn instance_type(&self) -> String {
        self.attrs
            .value(ATTR_INSTANCE_TYPE)
            .map_or_else(|| self.inst.instance_type.clone(), str::to_string)
    }

    pub fn reservation_id(&self) -> String {
        self.attrs
            .value(ATTR_RESERVATION)
            .map_or_else(|| ids::reservation_of(&self.inst.id), str::to_string)
    }

    pub fn launch_time(&self) -> DateTime<Utc> {
        parse_time(&self.inst.created_at)
    }
}

/// A stored RFC 3339 time (the Unix epoch if it does not parse).
pub fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// What instances refer to, read once per request: ports, groups, floating IPs, volumes and
/// every resource's attributes.
pub struct World {
    pub ports: HashMap<String, Port>,
    pub groups: HashMap<String, SecurityGroup>,
    /// Floating IPs by the port they are associated with.
    pub floating: HashMap<String, FloatingIp>,
    /// Volumes by the instance they are attached to.
    pub volumes: HashMap<String, Vec<Volume>>,
    pub attrs: HashMap<String, Attrs>,
}

impl World {
    /// Everything the caller lists (for listings: a few range reads).
    pub async fn load(ctx: &Ec2Ctx) -> Ec2Result<World> {
        let (app, s) = (&ctx.app, &ctx.scope);
        let ports = port::list(app, s, None).await.map_err(error::from_app)?;
        let groups = security_group::list(app, s)
            .await
            .map_err(error::from_app)?;
        let fips = floating_ip::list(app, s).await.map_err(error::from_app)?;
        let vols: Vec<Volume> = scope::list(app, s, keys::VOLUMES)
            .await
            .map_err(error::from_app)?;
        let mut volumes: HashMap<String, Vec<Volume>> = HashMap::new();
        for v in vols {
            if let Some(a) = &v.attachment {
                volumes.entry(a.instance_id.clone()).or_default().push(v);
            }
        }
        Ok(World {
            ports: ports.items.into_iter().map(|p| (p.id.clone(), p)).collect(),
            groups: groups
                .items
                .into_iter()
                .map(|g| (g.id.clone(), g))
                .collect(),
            floating: by_port(fips.items),
            volumes,
            attrs: attrs::all(app).await.map_err(error::from_app)?,
        })
    }

    /// What `insts` refer to, by point reads (for requests naming a few instances).
    pub async fn for_instances(ctx: &Ec2Ctx, insts: &[&Instance]) -> Ec2Result<World> {
        let (app, s) = (&ctx.app, &ctx.scope);
        let e = error::from_app;
        let mut w = World {
            ports: HashMap::new(),
            groups: HashMap::new(),
            floating: HashMap::new(),
            volumes: HashMap::new(),
            attrs: HashMap::new(),
        };
        let mut attr_ids: Vec<String> = Vec::new();
        for i in insts {
            attr_ids.push(i.id.clone());
            for n in &i.nics {
                if let Ok(p) = port::get(app, s, &n.port_id).await {
                    for g in &p.security_groups {
                        if !w.groups.contains_key(g)
                            && let Ok(sg) = security_group::get(app, s, g).await
                        {
                            attr_ids.push(sg.id.clone());
                            w.groups.insert(sg.id.clone(), sg);
                        }
                    }
                    w.ports.insert(p.id.clone(), p);
                }
            }
            let vols = instance::volumes_of(app, i).await.map_err(e)?;
            attr_ids.extend(vols.iter().map(|v| v.id.clone()));
            w.volumes.insert(i.id.clone(), vols);
        }
        if insts.iter().any(|i| !i.nics.is_empty()) {
            w.floating = by_port(floating_ip::list(app, s).await.map_err(e)?.items);
        }
        for id in attr_ids {
            let a = attrs::get(app, &id).await.map_err(e)?;
            w.attrs.insert(id, a);
        }
        Ok(w)
    }

    /// A group's EC2 name: its EC2 group name if it has one, else its kumo name.
    pub fn group_name(&self, id: &str) -> String {
        if let Some(n) = self.attrs.get(id).and_then(|a| a.group_name.clone()) {
            return n;
        }
        self.groups
            .get(id)
            .map_or_else(|| id.to_string(), |g| g.name.clone())
    }

    /// The security groups of an instance (its first NIC's).
    pub fn instance_groups(&self, inst: &Instance) -> Vec<String> {
        inst.nics
            .first()
            .and_then(|n| self.ports.get(&n.port_id))
            .map(|p| p.security_groups.clone())
            .unwrap_or_default()
    }

    /// The public (floating) address of an instance's first NIC.
    pub fn public_ip(&self, inst: &Instance) -> Option<String> {
        inst.nics
            .first()
            .and_then(|n| self.floating.get(&n.port_id))
            .map(|f| f.address.clone())
    }

    /// The device name of a volume attached to an instance: the root device for a boot volume,
    /// the name the client attached it at (the storage actions keep it, with the instance and
    /// slot it was given for), else the slot's `/dev/sdf` … `/dev/sdm`.
    pub fn device(&self, v: &Volume) -> String {
        let Some(att) = &v.attachment else {
            return String::new();
        };
        if att.boot {
            return ROOT_DEVICE.to_string();
        }
        let given = self.attrs.get(&v.id).and_then(|a| {
            (a.value(ATTR_DEVICE_AT) == Some(format!("{}/{}", att.instance_id, att.slot).as_str()))
                .then(|| a.value(ATTR_DEVICE))
                .flatten()
        });
        given.map_or_else(
            || format!("/dev/sd{}", char::from(b'f' + att.slot.min(20))),
            str::to_string,
        )
    }
}

/// Floating IPs by the port they are associated with.
fn by_port(fips: Vec<FloatingIp>) -> HashMap<String, FloatingIp> {
    fips.into_iter()
        .filter_map(|f| Some((f.port_id.clone()?, f)))
        .collect()
}

/// The instances of `ids` the caller sees (live, or tombstones), by point reads, in `ids`' order;
/// and the ids not found.
pub async fn rows_of(ctx: &Ec2Ctx, ids: &[String]) -> Ec2Result<(Vec<Row>, Vec<String>)> {
    let (app, s) = (&ctx.app, &ctx.scope);
    let e = error::from_app;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        if rows.iter().any(|r: &Row| r.id() == id) {
            continue;
        }
        match instance::find_in(app, s, id).await {
            Ok((inst, _)) => rows.push(Row {
                status: instance::status(app, &inst.id).await.map_err(e)?,
                tags: tags::get(app, s, &inst.id).await.map_err(e)?,
                attrs: attrs::get(app, &inst.id).await.map_err(e)?,
                inst,
                deleted_at: None,
            }),
            Err(kumo_types::Error::NotFound { .. }) => {
                match extras::tombstone(app, s, id).await.map_err(e)? {
                    Some(t) => rows.push(Row {
                        inst: t.instance,
                        status: None,
                        deleted_at: Some(t.deleted_at),
                        tags: t.tags,
                        attrs: t.attrs,
                    }),
                    None => missing.push(id.clone()),
                }
            }
            Err(err) => return Err(e(err)),
        }
    }
    Ok((rows, missing))
}

/// Every instance `ctx` lists, with the tombstones of those deleted in the last hour (live first
/// when both exist), sorted by ID.
pub async fn rows(ctx: &Ec2Ctx, world: &World) -> Ec2Result<Vec<Row>> {
    let live = instance::list_all(&ctx.app, &ctx.scope)
        .await
        .map_err(error::from_app)?;
    let gone = extras::tombstones(&ctx.app, &ctx.scope)
        .await
        .map_err(error::from_app)?;
    let mut ids: Vec<&str> = live.iter().map(|(i, _)| i.id.as_str()).collect();
    ids.sort_unstable();
    let mut tags = tags::for_ids(&ctx.app, &ctx.scope, &ids)
        .await
        .map_err(error::from_app)?;
    let mut out: Vec<Row> = Vec::with_capacity(live.len() + gone.len());
    for (inst, status) in live {
        out.push(Row {
            tags: tags.remove(&inst.id).unwrap_or_default(),
            attrs: world.attrs.get(&inst.id).cloned().unwrap_or_default(),
            inst,
            status,
            deleted_at: None,
        });
    }
    let live_ids: std::collections::HashSet<String> =
        out.iter().map(|r| r.inst.id.clone()).collect();
    for t in gone {
        if !live_ids.contains(&t.instance.id) {
            out.push(Row {
                inst: t.instance,
                status: None,
                deleted_at: Some(t.deleted_at),
                tags: t.tags,
                attrs: t.attrs,
            });
        }
    }
    out.sort_by(|a, b| a.inst.id.cmp(&b.inst.id));
    Ok(out)
}

/// The values of DescribeInstances filter `name` for `row`.
pub fn field(ctx: &Ec2Ctx, world: &World, row: &Row, name: &str) -> Vec<String> {
    let i = &row.inst;
    let nic = i.nics.first();
    let one = |s: String| vec![s];
    match name {
        "instance-id" => one(i.id.clone()),
        "instance-state-name" => one(row.state().1.to_string()),
        "instance-state-code" => one(row.state().0.to_string()),
        "instance-type" => one(row.instance_type()),
        "image-id" => one(i.image_id.clone()),
        "key-name" => i.key_name.clone().into_iter().collect(),
        "reservation-id" => one(row.reservation_id()),
        "availability-zone" => one(ctx.zone()),
        "architecture" => one("x86_64".into()),
        "root-device-type" => one(root_device_type(i).into()),
        "client-token" => row
            .attrs
            .value(ATTR_CLIENT_TOKEN)
            .map(str::to_string)
            .into_iter()
            .collect(),
        "owner-id" => one(ctx.account_id()),
        "private-dns-name" => one(i.name.clone()),
        "launch-time" => one(kumo_ec2::xml::format_timestamp(&row.launch_time())),
        "vpc-id" => i
            .nics
            .iter()
            .filter_map(|n| ids::vpc_of_network(&n.network_id))
            .collect(),
        "subnet-id" => i.nics.iter().map(|n| n.subnet_id.clone()).collect(),
        "private-ip-address" => nic.map(|n| n.ipv4.clone()).into_iter().collect(),
        "ip-address" => world.public_ip(i).into_iter().collect(),
        "network-interface.network-interface-id" => {
            i.nics.iter().map(|n| n.port_id.clone()).collect()
        }
        "network-interface.addresses.private-ip-address" => {
            i.nics.iter().map(|n| n.ipv4.clone()).collect()
        }
        "instance.group-id" | "group-id" => world.instance_groups(i),
        "instance.group-name" | "group-name" => world
            .instance_groups(i)
            .iter()
            .map(|g| world.group_name(g))
            .collect(),
        _ => vec![],
    }
}

/// The filter names DescribeInstances supports.
pub const FILTERS: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "image-id",
    "key-name",
    "reservation-id",
    "availability-zone",
    "architecture",
    "root-device-type",
    "client-token",
    "owner-id",
    "private-dns-name",
    "launch-time",
    "vpc-id",
    "subnet-id",
    "private-ip-address",
    "ip-address",
    "network-interface.network-interface-id",
    "network-interface.addresses.private-ip-address",
    "instance.group-id",
    "instance.group-name",
    "group-id",
    "group-name",
    "tag:*",
];

/// `ebs` for an instance booting from a volume, else `instance-store` (a root disk file).
pub fn root_device_type(i: &Instance) -> &'static str {
    if i.boot_volume_id.is_some() {
        "ebs"
    } else {
        "instance-store"
    }
}

/// `<tagSet>`.
pub fn tag_set(w: &mut XmlWriter, tags: &Tags) {
    w.set("tagSet", tags, |w, (k, v)| {
        w.text("key", k).text("value", v);
    });
}

/// `<groupSet>` of group ids.
fn group_set(w: &mut XmlWriter, world: &World, groups: &[String]) {
    w.set("groupSet", groups, |w, g| {
        w.text("groupId", g).text("groupName", &world.group_name(g));
    });
}

/// One `instancesSet` item.
pub fn write_instance(w: &mut XmlWriter, ctx: &Ec2Ctx, world: &World, row: &Row) {
    let i = &row.inst;
    let (code, name) = row.state();
    let launch = row.launch_time();
    let nic = i.nics.first();
    let groups = world.instance_groups(i);
    let public = if row.deleted_at.is_none() {
        world.public_ip(i)
    } else {
        None
    };
    w.text("instanceId", &i.id)
        .text("imageId", &i.image_id)
        .node("instanceState", |w| {
            w.int("code", code).text("name", name);
        })
        .text(
            "privateDnsName",
            if row.deleted_at.is_some() {
                ""
            } else {
                &i.name
            },
        )
        .text("dnsName", "")
        .text("reason", &transition_reason(row))
        .opt_text("keyName", i.key_name.as_deref())
        .text(
            "amiLaunchIndex",
            row.attrs.value(ATTR_LAUNCH_INDEX).unwrap_or("0"),
        )
        .empty("productCodes")
        .text("instanceType", &row.instance_type())
        .timestamp("launchTime", &launch)
        .node("placement", |w| {
            w.text("availabilityZone", &ctx.zone())
                .text("groupName", "")
                .text("tenancy", "default");
        })
        .node("monitoring", |w| {
            w.text("state", "disabled");
        });
    if row.deleted_at.is_none() {
        if let Some(n) = nic {
            w.text("subnetId", &n.subnet_id)
                .opt_text("vpcId", ids::vpc_of_network(&n.network_id).as_deref())
                .text("privateIpAddress", &n.ipv4);
        }
        w.opt_text("ipAddress", public.as_deref());
    }
    w.bool("sourceDestCheck", true);
    group_set(w, world, &groups);
    if let Some(reason) = state_reason(row) {
        w.node("stateReason", |w| {
            w.text("code", reason.0).text("message", &reason.1);
        });
    }
    w.text("architecture", "x86_64")
        .text("rootDeviceType", root_device_type(i))
        .text("rootDeviceName", ROOT_DEVICE);
    let vols = world.volumes.get(&i.id).cloned().unwrap_or_default();
    let mut vols: Vec<&Volume> = vols.iter().collect();
    vols.sort_by_key(|v| {
        (
            v.attachment.as_ref().map(|a| (!a.boot, a.slot)),
            v.id.clone(),
        )
    });
    w.set("blockDeviceMapping", vols, |w, v| {
        let dot = v
            .attachment
            .as_ref()
            .is_some_and(|a| a.delete_on_termination);
        w.text("deviceName", &world.device(v)).node("ebs", |w| {
            w.text("volumeId", &v.id)
                .text("status", "attached")
                .timestamp("attachTime", &launch)
                .bool("deleteOnTermination", dot);
        });
    });
    w.text("virtualizationType", "hvm").text(
        "clientToken",
        row.attrs.value(ATTR_CLIENT_TOKEN).unwrap_or_default(),
    );
    tag_set(w, &row.tags);
    w.text("hypervisor", "xen");
    if row.deleted_at.is_none() {
        write_nics(w, ctx, world, row);
    } else {
        w.empty("networkInterfaceSet");
    }
    w.bool("ebsOptimized", false)
        .bool("enaSupport", true)
        .node("cpuOptions", |w| {
            w.int("coreCount", i64::from(i.vcpus))
                .int("threadsPerCore", 1);
        })
        .node("capacityReservationSpecification", |w| {
            w.text("capacityReservationPreference", "open");
        })
        .node("hibernationOptions", |w| {
            w.bool("configured", false);
        })
        .node("metadataOptions", |w| {
            w.text("state", "applied")
                .text("httpTokens", "optional")
                .int(
                    "httpPutResponseHopLimit",
                    row.attrs
                        .value(ATTR_HOP_LIMIT)
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(1),
                )
                .text("httpEndpoint", "enabled")
                .text("httpProtocolIpv6", "disabled")
                .text("instanceMetadataTags", "disabled");
        })
        .node("enclaveOptions", |w| {
            w.bool("enabled", false);
        })
        .text("platformDetails", "Linux/UNIX")
        .text("usageOperation", "RunInstances")
        .node("privateDnsNameOptions", |w| {
            w.text("hostnameType", "resource-name")
                .bool("enableResourceNameDnsARecord", true)
                .bool("enableResourceNameDnsAAAARecord", false);
        })
        .node("maintenanceOptions", |w| {
            w.text("autoRecovery", "default");
        })
        .text("currentInstanceBootMode", "legacy-bios");
}

fn write_nics(w: &mut XmlWriter, ctx: &Ec2Ctx, world: &World, row: &Row) {
    let i = &row.inst;
    let account = ctx.account_id();
    let launch = row.launch_time();
    let mut nics: Vec<_> = i.nics.iter().enumerate().collect();
    nics.sort_by_key(|(_, n)| n.slot);
    w.set("networkInterfaceSet", nics, |w, (index, n)| {
        let groups = world
            .ports
            .get(&n.port_id)
            .map(|p| p.security_groups.clone())
            .unwrap_or_default();
        let public = world.floating.get(&n.port_id);
        let association = |w: &mut XmlWriter| {
            if let Some(f) = public {
                w.node("association", |w| {
                    w.text("publicIp", &f.address)
                        .text("publicDnsName", "")
                        .text("ipOwnerId", &account);
                });
            }
        };
        w.text("networkInterfaceId", &n.port_id)
            .text("subnetId", &n.subnet_id)
            .opt_text("vpcId", ids::vpc_of_network(&n.network_id).as_deref())
            .text("description", "")
            .text("ownerId", &account)
            .text("status", "in-use")
            .text("macAddress", &n.mac)
            .text("privateIpAddress", &n.ipv4)
            .bool("sourceDestCheck", true);
        group_set(w, world, &groups);
        w.node("attachment", |w| {
            w.text("attachmentId", &attachment_id(&n.port_id))
                .int("deviceIndex", index as i64)
                .text("status", "attached")
                .timestamp("attachTime", &launch)
                .bool("deleteOnTermination", !n.keep_port)
                .int("networkCardIndex", 0);
        });
        association(w);
        w.set("privateIpAddressesSet", [n], |w, n| {
            w.text("privateIpAddress", &n.ipv4).bool("primary", true);
            association(w);
        })
        .empty("ipv6AddressesSet")
        .text("interfaceType", "interface");
    });
}

/// The attachment id of a port's attachment: `eni-attach-<hex>`.
pub fn attachment_id(port_id: &str) -> String {
    format!(
        "eni-attach-{}",
        port_id.strip_prefix("eni-").unwrap_or(port_id)
    )
}

fn transition_reason(row: &Row) -> String {
    match (row.state().1, &row.deleted_at) {
        ("terminated", Some(at)) => format!("User initiated ({at})"),
        ("stopped", _) => {
            let at = row
                .status
                .as_ref()
                .map(|s| s.updated_at.clone())
                .unwrap_or_default();
            format!("User initiated ({at})")
        }
        _ => String::new(),
    }
}

fn state_reason(row: &Row) -> Option<(&'static str, String)> {
    let st = row.status.as_ref();
    match row.state().1 {
        "terminated" | "shutting-down" => Some((
            "Client.UserInitiatedShutdown",
            "Client.UserInitiatedShutdown: User initiated shutdown".into(),
        )),
        "stopped" => match st.map(|s| s.state) {
            Some(InstanceState::Crashed | InstanceState::Failed) => Some((
                "Server.InternalError",
                format!(
                    "Server.InternalError: {}",
                    st.and_then(|s| s.message.clone())
                        .unwrap_or_else(|| "the instance failed".into())
                ),
            )),
            _ if row.inst.desired_state == DesiredState::Running => Some((
                "Client.InstanceInitiatedShutdown",
                "Client.InstanceInitiatedShutdown: Instance initiated shutdown".into(),
            )),
            _ => Some((
                "Client.UserInitiatedShutdown",
                "Client.UserInitiatedShutdown: User initiated shutdown".into(),
            )),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(desired: &str, observed: InstanceState, deleting: bool, deleted: bool) -> Row {
        let mut inst: Instance = serde_json::from_value(serde_json::json!({
            "id": "i-00000000000000001", "name": "i-00000000000000001", "project": "p1",
            "image_id": "ami-00000000000000001", "instance_type": "micro", "vcpus": 1,
            "memory_mib": 512, "root_disk_gib": 2, "desired_state": desired,
            "host": "host-1", "nics": [], "created_at": "2026-11-25T19:00:00.000Z"
        }))
        .expect("instance");
        inst.deleting = deleting;
        Row {
            inst,
            status: Some(InstanceStatus {
                state: observed,
                ..Default::default()
            }),
            deleted_at: deleted.then(|| "2026-11-25T20:00:00.000Z".to_string()),
            tags: Tags::new(),
            attrs: Attrs::default(),
        }
    }

    #[test]
    fn states_map_to_ec2_codes() {
        use InstanceState::*;
        let cases = [
            ("running", Pending, false, false, (0, "pending")),
            ("running", Starting, false, false, (0, "pending")),
            ("running", Running, false, false, (16, "running")),
            ("running", Rebooting, false, false, (16, "running")),
            ("stopped", Running, false, false, (64, "stopping")),
            ("stopped", Stopping, false, false, (64, "stopping")),
            ("stopped", Stopped, false, false, (80, "stopped")),
            ("running", Stopped, false, false, (80, "stopped")),
            ("running", Crashed, false, false, (80, "stopped")),
            ("running", Failed, false, false, (80, "stopped")),
            ("stopped", Running, true, false, (32, "shutting-down")),
            ("stopped", Stopped, false, true, (48, "terminated")),
        ];
        for (desired, observed, deleting, deleted, want) in cases {
            let r = row(desired, observed, deleting, deleted);
            assert_eq!(
                r.state(),
                want,
                "{desired} {observed:?} {deleting} {deleted}"
            );
        }
        let r = row("running", Stopped, false, false);
        assert_eq!(
            state_reason(&r).map(|x| x.0),
            Some("Client.InstanceInitiatedShutdown")
        );
        assert_eq!(r.launch_time().to_rfc3339(), "2026-11-25T19:00:00+00:00");
        assert_eq!(r.reservation_id(), "r-00000000000000001");
        assert_eq!(r.instance_type(), "micro");
        assert_eq!(attachment_id("eni-0123"), "eni-attach-0123");
    }
}
