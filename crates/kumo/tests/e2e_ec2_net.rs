//! The EC2 network and storage actions against a real `kumo server` (private netns, real QEMU),
//! with requests signed by `kumo_ec2::sign` as the AWS SDKs sign them: a VPC's lifecycle with its
//! default security group, main route table and default network ACL; subnets inside (and not
//! outside) the VPC's block; security group rules added, duplicated and revoked; the dependency
//! errors of deletes; another project's VPC invisible; quotas refusing VPCs, groups, volumes and
//! addresses; a volume created, attached to a running tiny guest (which sees the disk), snapshotted,
//! detached and deleted; an Elastic IP allocated, associated with the instance and released.

mod common;

use std::time::{Duration, Instant};

use common::{BOOT_TIMEOUT, Cloud, tail};
use kumo_ec2::{Request, SigningParams};
use serde_json::json;

const REGION: &str = "kumo-1";

/// An access key and a way to call EC2 with it.
struct Ec2 {
    url: String,
    host: String,
    key_id: String,
    secret: String,
    rt: tokio::runtime::Runtime,
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Ec2 {
    fn new(cloud: &Cloud, key_id: &str, secret: &str) -> Ec2 {
        Ec2 {
            url: cloud.url(),
            host: cloud.url().trim_start_matches("http://").to_string(),
            key_id: key_id.into(),
            secret: secret.into(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// One signed call: (HTTP status, body).
    fn call(&self, action: &str, params: &[(&str, &str)]) -> (u16, String) {
        let mut body = format!("Action={action}&Version=2016-11-15");
        for (k, v) in params {
            body.push_str(&format!("&{}={}", form_encode(k), form_encode(v)));
        }
        let mut req = Request::new("POST", "/")
            .with_header("Host", &self.host)
            .with_header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .with_body(body.clone().into_bytes());
        kumo_ec2::sign(
            &mut req,
            &SigningParams {
                access_key_id: &self.key_id,
                secret_access_key: &self.secret,
                region: REGION,
                service: "ec2",
                time: chrono::Utc::now(),
            },
        )
        .expect("sign");
        self.rt.block_on(async {
            let mut r = reqwest::Client::new()
                .post(format!("{}/", self.url))
                .timeout(Duration::from_secs(60))
                .body(body);
            for (k, v) in &req.headers {
                if !k.eq_ignore_ascii_case("host") {
                    r = r.header(k, v);
                }
            }
            let resp = r.send().await.expect("send");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    }

    /// A call that must succeed: its body.
    fn ok(&self, action: &str, params: &[(&str, &str)]) -> String {
        let (s, body) = self.call(action, params);
        assert_eq!(s, 200, "{action} {params:?} failed: {body}");
        body
    }

    /// A call that must fail: its error code.
    fn err(&self, action: &str, params: &[(&str, &str)]) -> String {
        let (s, body) = self.call(action, params);
        assert_ne!(s, 200, "{action} {params:?} should have failed: {body}");
        first(&body, "Code").unwrap_or_default()
    }

    /// Call until `pred(body)` holds (a waiter).
    fn wait(
        &self,
        what: &str,
        action: &str,
        params: &[(&str, &str)],
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let (s, body) = self.call(action, params);
            if s == 200 && pred(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still not there:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The text of every `<name>` element.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

fn first(xml: &str, name: &str) -> Option<String> {
    texts(xml, name).into_iter().next()
}

fn must(xml: &str, name: &str) -> String {
    first(xml, name).unwrap_or_else(|| panic!("no <{name}> in {xml}"))
}

/// A project with a member user and the member's access key (through the CLI).
fn tenant(cloud: &Cloud, project: &str) -> Ec2 {
    let (id, secret) = cloud.member_access_key(project);
    Ec2::new(cloud, &id, &secret)
}

fn filter(name: &str, value: &str, n: usize) -> [(String, String); 2] {
    [
        (format!("Filter.{n}.Name"), name.to_string()),
        (format!("Filter.{n}.Value.1"), value.to_string()),
    ]
}

fn borrow(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn vpc_lifecycle_rules_dependencies_and_other_projects() {
    let cloud = Cloud::start();
    let a = tenant(&cloud, "p1");
    let b = tenant(&cloud, "p2");

    // A VPC, tagged, with its default group, main route table and default network ACL.
    assert_eq!(
        a.err("CreateVpc", &[("CidrBlock", "10.0.0.0/8")]),
        "InvalidVpc.Range"
    );
    assert_eq!(
        a.err(
            "CreateVpc",
            &[
                ("CidrBlock", "10.10.0.0/16"),
                ("InstanceTenancy", "dedicated")
            ]
        ),
        "InvalidParameterValue"
    );
    assert_eq!(
        a.err(
            "CreateVpc",
            &[("CidrBlock", "10.10.0.0/16"), ("DryRun", "true")]
        ),
        "DryRunOperation"
    );
    let body = a.ok(
        "CreateVpc",
        &[
            ("CidrBlock", "10.10.0.0/16"),
            ("AmazonProvidedIpv6CidrBlock", "false"),
            ("InstanceTenancy", "default"),
            ("TagSpecification.1.ResourceType", "vpc"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "main"),
        ],
    );
    let vpc = must(&body, "vpcId");
    assert!(vpc.starts_with("vpc-"), "{body}");
    let net = vpc.replacen("vpc-", "net-", 1);
    let (s, n) = cloud.http("GET", &format!("/v1/networks/{net}"), None);
    assert_eq!(s, 200, "{n}");
    assert_eq!(
        (n["kind"].as_str(), n["cidr"].as_str()),
        (Some("bridge"), Some("10.10.0.0/16")),
        "{n}"
    );
    let d = a.ok("DescribeVpcs", &[("VpcId.1", &vpc)]);
    assert_eq!(texts(&d, "cidrBlock")[0], "10.10.0.0/16", "{d}");
    assert_eq!(must(&d, "state"), "available");
    assert_eq!(must(&d, "isDefault"), "false");
    assert!(d.contains("<key>Name</key><value>main</value>"), "{d}");
    let by_vpc = filter("vpc-id", &vpc, 2);
    let mut p = filter("group-name", "default", 1).to_vec();
    p.extend(by_vpc.clone());
    let d = a.ok("DescribeSecurityGroups", &borrow(&p));
    assert_eq!(
        texts(&d, "groupId").len(),
        2,
        "the default group and its own id as peer: {d}"
    );
    let default_sg = must(&d, "groupId");
    assert!(d.contains("<ipProtocol>-1</ipProtocol>"), "{d}");
    assert_eq!(
        texts(&d, "cidrIp"),
        ["0.0.0.0/0"],
        "egress to anywhere only: {d}"
    );
    let mut p = filter("association.main", "true", 1).to_vec();
    p.extend(by_vpc.clone());
    let d = a.ok("DescribeRouteTables", &borrow(&p));
    assert_eq!(must(&d, "routeTableId"), vpc.replacen("vpc-", "rtb-", 1));
    assert_eq!(texts(&d, "destinationCidrBlock"), ["10.10.0.0/16"], "{d}");
    assert_eq!(must(&d, "gatewayId"), "local");
    let mut p = filter("default", "true", 1).to_vec();
    p.extend(by_vpc.clone());
    let d = a.ok("DescribeNetworkAcls", &borrow(&p));
    assert_eq!(
        texts(&d, "ruleNumber"),
        ["100", "32767", "100", "32767"],
        "{d}"
    );

    // Attributes: stored when harmless, refused when kumo cannot honour them.
    let attr = |name: &str| {
        let d = a.ok(
            "DescribeVpcAttribute",
            &[("VpcId", &vpc), ("Attribute", name)],
        );
        must(&d, "value")
    };
    assert_eq!(
        (attr("enableDnsSupport"), attr("enableDnsHostnames")),
        ("true".into(), "false".into())
    );
    a.ok(
        "ModifyVpcAttribute",
        &[("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")],
    );
    assert_eq!(attr("enableDnsHostnames"), "true");
    assert_eq!(
        a.err(
            "ModifyVpcAttribute",
            &[("VpcId", &vpc), ("EnableDnsSupport.Value", "false")]
        ),
        "InvalidParameterValue"
    );

    // Subnets: inside the block, not overlapping.
    let zone = format!("{REGION}a");
    let body = a.ok(
        "CreateSubnet",
        &[
            ("VpcId", &vpc),
            ("CidrBlock", "10.10.1.0/24"),
            ("AvailabilityZone", &zone),
        ],
    );
    let subnet = must(&body, "subnetId");
    assert_eq!(must(&body, "availableIpAddressCount"), "245", "{body}");
    assert_eq!(must(&body, "availabilityZone"), zone);
    assert_eq!(
        a.err(
            "CreateSubnet",
            &[("VpcId", &vpc), ("CidrBlock", "10.20.0.0/24")]
        ),
        "InvalidSubnet.Range"
    );
    assert_eq!(
        a.err(
            "CreateSubnet",
            &[("VpcId", &vpc), ("CidrBlock", "10.10.1.128/25")]
        ),
        "InvalidSubnet.Conflict"
    );
    let d = a.ok("DescribeNetworkAcls", &borrow(&filter("vpc-id", &vpc, 1)));
    assert_eq!(
        must(&d, "subnetId"),
        subnet,
        "the ACL is associated with the subnet: {d}"
    );

    // A group: a duplicate name, rules added, duplicated, revoked.
    let body = a.ok(
        "CreateSecurityGroup",
        &[
            ("GroupName", "web servers"),
            ("GroupDescription", "web"),
            ("VpcId", &vpc),
        ],
    );
    let web = must(&body, "groupId");
    assert_eq!(
        a.err(
            "CreateSecurityGroup",
            &[
                ("GroupName", "web servers"),
                ("GroupDescription", "again"),
                ("VpcId", &vpc)
            ]
        ),
        "InvalidGroup.Duplicate"
    );
    let ssh = [
        ("GroupId", web.as_str()),
        ("IpPermissions.1.IpProtocol", "tcp"),
        ("IpPermissions.1.FromPort", "22"),
        ("IpPermissions.1.ToPort", "22"),
        ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
        ("IpPermissions.1.IpRanges.1.Description", "ssh"),
        ("IpPermissions.1.Groups.1.GroupId", default_sg.as_str()),
    ];
    let body = a.ok("AuthorizeSecurityGroupIngress", &ssh);
    assert_eq!(texts(&body, "securityGroupRuleId").len(), 2, "{body}");
    assert_eq!(
        a.err("AuthorizeSecurityGroupIngress", &ssh),
        "InvalidPermission.Duplicate"
    );
    let dns = [
        ("GroupId", web.as_str()),
        ("IpProtocol", "udp"),
        ("FromPort", "53"),
        ("ToPort", "53"),
        ("CidrIp", "10.10.0.0/16"),
    ];
    a.ok("AuthorizeSecurityGroupIngress", &dns);
    assert_eq!(
        a.err(
            "AuthorizeSecurityGroupIngress",
            &[
                ("GroupId", &web),
                ("IpPermissions.1.IpProtocol", "icmp"),
                ("IpPermissions.1.FromPort", "8"),
                ("IpPermissions.1.ToPort", "0"),
                ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
            ]
        ),
        "InvalidParameterValue"
    );
    let d = a.ok("DescribeSecurityGroups", &[("GroupId.1", &web)]);
    assert_eq!(must(&d, "groupName"), "web servers");
    assert_eq!(must(&d, "vpcId"), vpc);
    assert_eq!(texts(&d, "fromPort"), ["22", "53"], "{d}");
    assert!(
        d.contains("<cidrIp>10.0.0.0/8</cidrIp><description>ssh</description>"),
        "{d}"
    );
    assert!(
        d.contains(&format!("<groupId>{default_sg}</groupId>")),
        "{d}"
    );
    a.ok("RevokeSecurityGroupIngress", &dns);
    assert_eq!(
        a.err("RevokeSecurityGroupIngress", &dns),
        "InvalidPermission.NotFound"
    );
    let all_egress = [
        ("GroupId", web.as_str()),
        ("IpPermissions.1.IpProtocol", "-1"),
        ("IpPermissions.1.FromPort", "0"),
        ("IpPermissions.1.ToPort", "0"),
        ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
    ];
    a.ok("RevokeSecurityGroupEgress", &all_egress);
    let d = a.ok("DescribeSecurityGroups", &[("GroupId.1", &web)]);
    assert!(d.contains("<ipPermissionsEgress/>"), "{d}");

    // Another project sees none of it.
    assert_eq!(
        b.err("DescribeVpcs", &[("VpcId.1", &vpc)]),
        "InvalidVpcID.NotFound"
    );
    assert!(!b.ok("DescribeVpcs", &[]).contains(&vpc));
    assert_eq!(
        b.err("DescribeSubnets", &[("SubnetId.1", &subnet)]),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(
        b.err("DescribeSecurityGroups", &[("GroupId.1", &web)]),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        b.err(
            "CreateSubnet",
            &[("VpcId", &vpc), ("CidrBlock", "10.10.2.0/24")]
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        b.err("DeleteVpc", &[("VpcId", &vpc)]),
        "InvalidVpcID.NotFound"
    );

    // Deletes wait for their dependents.
    assert_eq!(
        a.err("DeleteVpc", &[("VpcId", &vpc)]),
        "DependencyViolation"
    );
    a.ok("DeleteSubnet", &[("SubnetId", &subnet)]);
    assert_eq!(
        a.err("DeleteVpc", &[("VpcId", &vpc)]),
        "DependencyViolation"
    );
    assert_eq!(
        a.err("DeleteSecurityGroup", &[("GroupId", &default_sg)]),
        "CannotDelete"
    );
    a.ok("DeleteSecurityGroup", &[("GroupId", &web)]);
    a.ok("DeleteVpc", &[("VpcId", &vpc)]);
    assert_eq!(
        a.err("DescribeVpcs", &[("VpcId.1", &vpc)]),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        a.err("DescribeSecurityGroups", &[("GroupId.1", &default_sg)]),
        "InvalidGroup.NotFound"
    );
    let (s, n) = cloud.http("GET", &format!("/v1/networks/{net}"), None);
    assert_eq!(s, 404, "{n}");
}

#[test]
fn quotas_refuse_vpcs_groups_volumes_and_addresses() {
    let cloud = Cloud::start();
    cloud.external_network();
    let a = tenant(&cloud, "p1");
    let (s, v) = cloud.http(
        "PUT",
        "/v1/projects/p1/quotas",
        Some(
            &json!({"networks": 1, "security_groups": 2, "volume_gib": 1, "floating_ips": 0})
                .to_string(),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let vpc = must(
        &a.ok("CreateVpc", &[("CidrBlock", "10.30.0.0/16")]),
        "vpcId",
    );
    assert_eq!(
        a.err("CreateVpc", &[("CidrBlock", "10.31.0.0/16")]),
        "VpcLimitExceeded"
    );
    // The VPC's own default group counts, but is never refused: one more group fits, not two.
    a.ok(
        "CreateSecurityGroup",
        &[
            ("GroupName", "one"),
            ("GroupDescription", "one"),
            ("VpcId", &vpc),
        ],
    );
    assert_eq!(
        a.err(
            "CreateSecurityGroup",
            &[
                ("GroupName", "two"),
                ("GroupDescription", "two"),
                ("VpcId", &vpc)
            ]
        ),
        "SecurityGroupLimitExceeded"
    );
    let zone = format!("{REGION}a");
    assert_eq!(
        a.err(
            "CreateVolume",
            &[("AvailabilityZone", &zone), ("Size", "2")]
        ),
        "VolumeLimitExceeded"
    );
    assert_eq!(
        a.err("AllocateAddress", &[("Domain", "vpc")]),
        "AddressLimitExceeded"
    );
    let d = a.ok("DescribeVolumes", &[]);
    assert!(d.contains("<volumeSet/>"), "nothing was made: {d}");
    assert!(a.ok("DescribeAddresses", &[]).contains("<addressesSet/>"));
}

#[test]
fn volume_on_a_running_instance_and_an_elastic_ip() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    cloud.external_network();
    let a = tenant(&cloud, "default");
    cloud.ok(&[
        "instance", "run", "--name", "vm", "--image", "tiny", "--type", "nano", "--wait",
    ]);
    let inst = cloud.json(&["instance", "show", "vm"]);
    let iid = inst["id"].as_str().unwrap_or_default().to_string();
    cloud.wait_console("vm", "KUMO-READY");

    // Create, wait for `available`, attach at /dev/sdg, wait for `attached`.
    let zone = format!("{REGION}a");
    let create = [
        ("AvailabilityZone", zone.as_str()),
        ("Size", "1"),
        ("VolumeType", "gp3"),
        ("ClientToken", "vol-token-1"),
        ("TagSpecification.1.ResourceType", "volume"),
        ("TagSpecification.1.Tag.1.Key", "Name"),
        ("TagSpecification.1.Tag.1.Value", "data"),
    ];
    let body = a.ok("CreateVolume", &create);
    let vol = must(&body, "volumeId");
    assert_eq!(must(&body, "volumeType"), "gp3");
    assert_eq!(
        must(&a.ok("CreateVolume", &create), "volumeId"),
        vol,
        "the same ClientToken"
    );
    assert_eq!(
        a.err(
            "CreateVolume",
            &[("AvailabilityZone", &zone), ("Size", "1"), ("Iops", "5000")]
        ),
        "InvalidParameterValue"
    );
    let by_id = [("VolumeId.1", vol.as_str())];
    a.wait("volume available", "DescribeVolumes", &by_id, |b| {
        b.contains("<status>available</status>")
    });
    assert_eq!(
        a.err(
            "AttachVolume",
            &[
                ("VolumeId", &vol),
                ("InstanceId", &iid),
                ("Device", "/dev/sdz")
            ]
        ),
        "InvalidParameterValue"
    );
    let body = a.ok(
        "AttachVolume",
        &[
            ("VolumeId", &vol),
            ("InstanceId", &iid),
            ("Device", "/dev/sdg"),
        ],
    );
    assert_eq!(must(&body, "device"), "/dev/sdg");
    let mut att = filter("attachment.device", "/dev/sdg", 1).to_vec();
    att.extend(filter("attachment.instance-id", &iid, 2));
    att.push(("VolumeId.1".into(), vol.clone()));
    let d = a.wait("volume attached", "DescribeVolumes", &borrow(&att), |b| {
        b.contains("<status>attached</status>")
    });
    assert_eq!(must(&d, "instanceId"), iid, "{d}");
    assert_eq!(texts(&d, "status"), ["in-use", "attached"], "{d}");
    let serial: String = vol.chars().take(20).collect();
    cloud.console_until(
        "vm",
        "cat /sys/block/vd*/serial; echo",
        "the volume's disk",
        |out| out.contains(&serial),
    );
    assert_eq!(a.err("DeleteVolume", &[("VolumeId", &vol)]), "VolumeInUse");
    assert_eq!(
        a.err(
            "AttachVolume",
            &[
                ("VolumeId", &vol),
                ("InstanceId", &iid),
                ("Device", "/dev/sdh")
            ]
        ),
        "VolumeInUse"
    );

    // A snapshot of the attached volume (online), listed by owner `self`.
    let snap = must(
        &a.ok(
            "CreateSnapshot",
            &[("VolumeId", &vol), ("Description", "before")],
        ),
        "snapshotId",
    );
    let d = a.wait(
        "snapshot completed",
        "DescribeSnapshots",
        &[("SnapshotId.1", &snap)],
        |b| b.contains("<status>completed</status>"),
    );
    assert_eq!(must(&d, "description"), "before");
    assert!(
        a.ok("DescribeSnapshots", &[("Owner.1", "self")])
            .contains(&snap)
    );
    assert!(
        !a.ok("DescribeSnapshots", &[("Owner.1", "amazon")])
            .contains(&snap)
    );

    // Detach (Force is refused), wait until the guest let go, delete.
    assert_eq!(
        a.err("DetachVolume", &[("VolumeId", &vol), ("Force", "true")]),
        "InvalidParameterValue"
    );
    let body = a.ok(
        "DetachVolume",
        &[
            ("VolumeId", &vol),
            ("InstanceId", &iid),
            ("Device", "/dev/sdg"),
            ("Force", "false"),
        ],
    );
    assert_eq!(must(&body, "status"), "detaching");
    a.wait("volume detached", "DescribeVolumes", &borrow(&att), |b| {
        b.contains("<volumeSet/>")
    });
    a.wait("volume available again", "DescribeVolumes", &by_id, |b| {
        b.contains("<status>available</status>")
    });
    assert_eq!(
        a.err("DeleteVolume", &[("VolumeId", &vol)]),
        "VolumeInUse",
        "it has a snapshot"
    );
    a.ok("DeleteSnapshot", &[("SnapshotId", &snap)]);
    assert_eq!(
        a.err("DescribeSnapshots", &[("SnapshotId.1", &snap)]),
        "InvalidSnapshot.NotFound"
    );
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while a.call("DeleteVolume", &[("VolumeId", &vol)]).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the volume never became deletable:\n{}",
            tail(&cloud.server_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while a.call("DescribeVolumes", &by_id).0 == 200 {
        assert!(Instant::now() < deadline, "the volume was never deleted");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(a.err("DescribeVolumes", &by_id), "InvalidVolume.NotFound");

    // An Elastic IP: allocated from the external network, associated, released.
    let body = a.ok("AllocateAddress", &[("Domain", "vpc")]);
    let alloc = must(&body, "allocationId");
    let ip = must(&body, "publicIp");
    assert!(ip.starts_with("198.19.200."), "{body}");
    assert_eq!(must(&body, "publicIpv4Pool"), "public");
    let body = a.ok(
        "AssociateAddress",
        &[("AllocationId", &alloc), ("InstanceId", &iid)],
    );
    let assoc = must(&body, "associationId");
    assert_eq!(assoc, alloc.replacen("eipalloc-", "eipassoc-", 1));
    let d = a.ok(
        "DescribeAddresses",
        &borrow(&filter("association-id", &assoc, 1)),
    );
    assert_eq!(
        (must(&d, "instanceId"), must(&d, "publicIp")),
        (iid.clone(), ip.clone()),
        "{d}"
    );
    let d = a.ok(
        "DescribeNetworkInterfaces",
        &borrow(&filter("attachment.instance-id", &iid, 1)),
    );
    assert_eq!(must(&d, "status"), "in-use");
    assert_eq!(must(&d, "deviceIndex"), "0");
    assert!(d.contains(&format!("<publicIp>{ip}</publicIp>")), "{d}");
    let d = a.ok(
        "DescribeAddressesAttribute",
        &[("AllocationId.1", &alloc), ("Attribute", "domain-name")],
    );
    assert_eq!(must(&d, "allocationId"), alloc);
    assert_eq!(
        a.err("ReleaseAddress", &[("AllocationId", &alloc)]),
        "InvalidIPAddress.InUse"
    );
    a.ok("DisassociateAddress", &[("AssociationId", &assoc)]);
    assert_eq!(
        a.err("DisassociateAddress", &[("AssociationId", &assoc)]),
        "InvalidAssociationID.NotFound"
    );
    a.ok("ReleaseAddress", &[("AllocationId", &alloc)]);
    assert_eq!(
        a.err("DescribeAddresses", &[("AllocationId.1", &alloc)]),
        "InvalidAllocationID.NotFound"
    );
}
