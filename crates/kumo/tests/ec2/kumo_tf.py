"""Replays of what Terraform's AWS provider (hashicorp/aws 5.100) sends to EC2, with boto3.

Each `<resource>_create/_read/_update/_destroy` function makes the calls the provider makes for that
step of that resource, in the provider's order and with its parameters (see
docs/aws-terraform-calls.md, taken from the provider's own debug log), and checks the response
fields the provider reads. Waiters poll like the provider's (same calls, same pending/target
states) but every 0.25 s instead of every 3-10 s. Calls that are checks of ours, not Terraform's,
go through `check_call` and are marked `check` in the trace.

Runs unchanged with PyPI's current boto3 and Debian's python3-boto3 (1.26). Environment:
  KUMO_EC2_ENDPOINT            the kumo server's base URL (EC2 and STS are both served at `/`)
  AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY  an access key (`kumo access-key create --json`)
  AWS_DEFAULT_REGION           kumo's region (default kumo-1)
  KUMO_BIN, KUMO_URL, KUMO_TOKEN   the kumo CLI, for the guest-side checks (serial console)
  KUMO_TF_IMAGE, KUMO_TF_INSTANCE_TYPE  the image name and instance type to launch (tiny, nano)

Every request body is printed as sent (`>`), and every answer's outcome (`<`), so a failing run
shows exactly which call, parameter and error broke.
"""

import base64
import ipaddress
import os
import re
import subprocess
import sys
import time

try:
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError as e:  # the runner names the package; say it here too
    sys.exit(f"boto3 is missing ({e}): install python3-boto3 (Debian) or the venv of scripts/setup.sh")

TIMEOUT = float(os.environ.get("KUMO_TF_TIMEOUT", "240"))
POLL = 0.25

# An OpenSSH public key (its private half is not kept anywhere: nothing logs in with it).
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGuffmeoaz9Pmo+s5eNpd8jOqsO6+v2cEXXlWHf6jj64 kumo-tf-replay"
)
USER_DATA = "#!/bin/sh\necho hello from terraform\n"


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def expect(cond, msg):
    if not cond:
        raise Failure(msg)


def expect_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def _trace_body(request, **_):
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    body = re.sub(r"&?Version=[0-9-]+", "", body or "")
    log(f"  > {body[:600]}")


class Cloud:
    """The clients of one access key."""

    def __init__(self, key_id=None, secret=None, label=""):
        self.endpoint = os.environ["KUMO_EC2_ENDPOINT"]
        self.region = os.environ.get("AWS_DEFAULT_REGION", "kumo-1")
        self.label = label
        session = boto3.session.Session(
            aws_access_key_id=key_id or os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )
        # No client-side retries: a throttled or failed call shows up as what it is.
        cfg = Config(retries={"max_attempts": 0}, connect_timeout=10, read_timeout=60)
        self.ec2 = session.client("ec2", endpoint_url=self.endpoint, config=cfg)
        self.sts = session.client("sts", endpoint_url=self.endpoint, config=cfg)
        for c in (self.ec2, self.sts):
            c.meta.events.register("before-send", _trace_body)
        self._account = None

    def _client(self, action):
        return self.sts if action == "GetCallerIdentity" else self.ec2

    def call(self, action, _mark="tf", **params):
        """One API call by its action name; fails the run on any error."""
        log(f"{self.label}{_mark} {action}")
        fn = getattr(self._client(action), botocore.xform_name(action))
        try:
            out = fn(**params)
        except ClientError as e:
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise Failure(
                f"{action} failed: HTTP {status} {err.get('Code')}: {err.get('Message')}"
            ) from None
        log("  < ok")
        return out

    def check_call(self, action, **params):
        return self.call(action, _mark="check", **params)

    def error(self, action, _mark="tf", **params):
        """A call that may fail: returns (response, None) or (None, error code)."""
        log(f"{self.label}{_mark} {action} (may fail)")
        fn = getattr(self._client(action), botocore.xform_name(action))
        try:
            out = fn(**params)
            log("  < ok")
            return out, None
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            log(f"  < {code}: {e.response.get('Error', {}).get('Message')}")
            return None, code

    def expect_error(self, code, action, **params):
        """A check: the call must fail with `code` (a str or a tuple of acceptable codes)."""
        _, got = self.error(action, _mark="check", **params)
        codes = code if isinstance(code, tuple) else (code,)
        expect(got in codes, f"{action}: expected error {code}, got {got or 'success'}")

    def account(self):
        """STS GetCallerIdentity (the provider's ConfigureProvider call)."""
        if self._account is None:
            ident = self.call("GetCallerIdentity")
            expect(re.fullmatch(r"\d{12}", ident.get("Account", "")), f"Account: {ident}")
            expect(ident.get("Arn", "").startswith("arn:"), f"Arn: {ident}")
            expect(ident.get("UserId"), f"UserId: {ident}")
            self._account = ident["Account"]
        return self._account


# ------------------------------------------------------------------------------------ helpers


def tagspec(kind, **tags):
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def tags_of(obj):
    return {t["Key"]: t["Value"] for t in obj.get("Tags") or []}


def poll(what, fn, pending, target, not_found_ok=0):
    """The provider's StateChangeConf: `fn()` gives (object, state) or (None, None) when not found.
    A state outside pending+target fails; not found fails after `not_found_ok` polls (creates
    tolerate a few: eventual consistency) unless `target` is empty (deletes: gone is the goal)."""
    deadline = time.time() + TIMEOUT
    misses = 0
    while True:
        obj, state = fn()
        if obj is None:
            if not target:
                return None
            misses += 1
            expect(misses <= not_found_ok, f"{what}: not found while waiting")
        elif state in target:
            return obj
        else:
            expect(state in pending, f"{what}: unexpected state {state!r} (pending {pending}, target {target})")
        expect(time.time() < deadline, f"{what}: timed out in state {state!r}")
        time.sleep(POLL)


def one(items, what):
    expect(len(items) == 1, f"{what}: expected exactly one, got {len(items)}: {items}")
    return items[0]


def retry_on(cloud, codes, action, **params):
    """The provider's RetryWhenAWSErrCodeEquals (e.g. DeleteVpc while DependencyViolation)."""
    deadline = time.time() + TIMEOUT
    while True:
        out, code = cloud.error(action, **params)
        if code is None:
            return out
        expect(code in codes, f"{action} failed: {code}")
        expect(time.time() < deadline, f"{action}: still {code} after {TIMEOUT}s")
        time.sleep(1)


def gone(cloud, action, code, **params):
    """Describe by id until it answers the NotFound `code` (or an empty list)."""
    deadline = time.time() + TIMEOUT
    while True:
        out, got = cloud.error(action, **params)
        if got == code:
            return
        expect(got is None, f"{action}: expected {code}, got {got}")
        lists = [v for k, v in out.items() if isinstance(v, list)]
        if lists and all(len(v) == 0 for v in lists):
            return
        expect(time.time() < deadline, f"{action}: still there after {TIMEOUT}s")
        time.sleep(POLL)


def zone(cloud):
    """The first available zone (data "aws_availability_zones" { state = "available" })."""
    azs = cloud.call("DescribeAvailabilityZones", Filters=[{"Name": "state", "Values": ["available"]}])
    zones = azs["AvailabilityZones"]
    expect(zones, "DescribeAvailabilityZones: no zone")
    z = zones[0]
    expect_eq(z.get("State"), "available", "zone state")
    expect_eq(z.get("RegionName"), cloud.region, "zone region")
    expect(z.get("ZoneName", "").startswith(cloud.region), f"zone name {z}")
    return z["ZoneName"]


def image(cloud, name=None):
    """data "aws_ami" { filter { name = "name", values = [name] } } (most_recent)."""
    name = name or os.environ.get("KUMO_TF_IMAGE", "tiny")
    out = cloud.call(
        "DescribeImages",
        Filters=[{"Name": "name", "Values": [name]}],
        IncludeDeprecated=False,
    )
    imgs = [i for i in out["Images"] if i.get("Name") == name]
    expect(imgs, f"DescribeImages: no image named {name}: {out['Images']}")
    img = sorted(imgs, key=lambda i: i.get("CreationDate", ""))[-1]
    expect(img["ImageId"].startswith("ami-"), f"ImageId {img}")
    expect_eq(img.get("State"), "available", "image state")
    expect(img.get("RootDeviceName"), f"RootDeviceName missing: {img}")
    # The provider's aws_ami reader also asks GetInstanceUefiData with the image id and ignores
    # the error (outside issue 6's list): it must at least not break the connection.
    cloud.error("GetInstanceUefiData", InstanceId=img["ImageId"])
    return img["ImageId"]


def instance_type(cloud, name=None):
    """The kumo type the scripts launch: listed by DescribeInstanceTypes, not burstable (so the
    provider never asks DescribeInstanceCreditSpecifications)."""
    name = name or os.environ.get("KUMO_TF_INSTANCE_TYPE", "nano")
    out = cloud.call("DescribeInstanceTypes", InstanceTypes=[name])
    t = one(out["InstanceTypes"], f"DescribeInstanceTypes {name}")
    expect_eq(t.get("InstanceType"), name, "InstanceType")
    expect(not t.get("BurstablePerformanceSupported", False), f"{name} is burstable: {t}")
    expect(t.get("VCpuInfo", {}).get("DefaultVCpus", 0) >= 1, f"VCpuInfo: {t}")
    expect(t.get("MemoryInfo", {}).get("SizeInMiB", 0) >= 1, f"MemoryInfo: {t}")
    return name


# ---------------------------------------------------------------------------------------- VPC


def vpc_create(cloud, cidr, tagv="one", hostnames=True):
    r = cloud.call(
        "CreateVpc",
        AmazonProvidedIpv6CidrBlock=False,
        CidrBlock=cidr,
        InstanceTenancy="default",
        TagSpecifications=tagspec("vpc", Name="kumo-vpc", v=tagv),
    )
    vpc_id = r["Vpc"]["VpcId"]
    expect(vpc_id.startswith("vpc-"), f"VpcId {vpc_id}")

    def state():
        v = cloud.call("DescribeVpcs", VpcIds=[vpc_id])["Vpcs"]
        return (v[0], v[0].get("State")) if v else (None, None)

    poll(f"VPC {vpc_id}", state, ["pending"], ["available"], not_found_ok=3)
    if hostnames:
        cloud.call("ModifyVpcAttribute", EnableDnsHostnames={"Value": True}, VpcId=vpc_id)
        poll(
            "enableDnsHostnames",
            lambda: (True, vpc_attribute(cloud, vpc_id, "enableDnsHostnames")),
            [False],
            [True],
        )
    vpc_read(cloud, vpc_id, cidr, {"Name": "kumo-vpc", "v": tagv}, hostnames)
    return vpc_id


def vpc_attribute(cloud, vpc_id, name):
    out = cloud.call("DescribeVpcAttribute", Attribute=name, VpcId=vpc_id)
    key = name[0].upper() + name[1:]
    expect_eq(out.get("VpcId"), vpc_id, f"DescribeVpcAttribute {name} VpcId")
    expect(key in out, f"DescribeVpcAttribute {name}: no {key} in {out}")
    return out[key].get("Value")


def vpc_read(cloud, vpc_id, cidr, tags, hostnames):
    v = one(cloud.call("DescribeVpcs", VpcIds=[vpc_id])["Vpcs"], "DescribeVpcs")
    expect_eq(v["VpcId"], vpc_id, "VpcId")
    expect_eq(v.get("State"), "available", "VPC state")
    expect_eq(v.get("CidrBlock"), cidr, "VPC CidrBlock")
    expect_eq(v.get("InstanceTenancy"), "default", "VPC InstanceTenancy")
    expect_eq(v.get("IsDefault"), False, "VPC IsDefault")
    expect_eq(v.get("OwnerId"), cloud.account(), "VPC OwnerId")
    expect_eq(tags_of(v), tags, "VPC tags")
    expect_eq(vpc_attribute(cloud, vpc_id, "enableDnsHostnames"), hostnames, "enableDnsHostnames")
    expect_eq(vpc_attribute(cloud, vpc_id, "enableDnsSupport"), True, "enableDnsSupport")
    expect_eq(
        vpc_attribute(cloud, vpc_id, "enableNetworkAddressUsageMetrics"),
        False,
        "enableNetworkAddressUsageMetrics",
    )
    by_vpc = {"Name": "vpc-id", "Values": [vpc_id]}
    acl = one(
        cloud.call("DescribeNetworkAcls", Filters=[{"Name": "default", "Values": ["true"]}, by_vpc])[
            "NetworkAcls"
        ],
        "default network ACL",
    )
    expect(acl["NetworkAclId"].startswith("acl-"), f"NetworkAclId {acl}")
    expect_eq(acl.get("VpcId"), vpc_id, "ACL VpcId")
    expect_eq(acl.get("IsDefault"), True, "ACL IsDefault")
    rtb = one(
        cloud.call(
            "DescribeRouteTables", Filters=[{"Name": "association.main", "Values": ["true"]}, by_vpc]
        )["RouteTables"],
        "main route table",
    )
    expect(rtb["RouteTableId"].startswith("rtb-"), f"RouteTableId {rtb}")
    expect_eq(rtb.get("VpcId"), vpc_id, "route table VpcId")
    expect(any(a.get("Main") for a in rtb.get("Associations", [])), f"main association: {rtb}")
    sg = one(
        cloud.call(
            "DescribeSecurityGroups", Filters=[{"Name": "group-name", "Values": ["default"]}, by_vpc]
        )["SecurityGroups"],
        "default security group",
    )
    expect(sg["GroupId"].startswith("sg-"), f"default GroupId {sg}")
    expect_eq(sg.get("VpcId"), vpc_id, "default SG VpcId")
    return v


def vpc_update_tags(cloud, vpc_id, cidr, tagv, hostnames=True):
    cloud.call("CreateTags", Resources=[vpc_id], Tags=[{"Key": "v", "Value": tagv}])
    vpc_read(cloud, vpc_id, cidr, {"Name": "kumo-vpc", "v": tagv}, hostnames)


def vpc_destroy(cloud, vpc_id):
    retry_on(cloud, ("DependencyViolation",), "DeleteVpc", VpcId=vpc_id)
    gone(cloud, "DescribeVpcs", "InvalidVpcID.NotFound", VpcIds=[vpc_id])


# ------------------------------------------------------------------------------------- subnet


def subnet_create(cloud, vpc_id, cidr, az, tagv="one"):
    r = cloud.call(
        "CreateSubnet",
        AvailabilityZone=az,
        CidrBlock=cidr,
        TagSpecifications=tagspec("subnet", Name="kumo-subnet", v=tagv),
        VpcId=vpc_id,
    )
    sid = r["Subnet"]["SubnetId"]
    expect(sid.startswith("subnet-"), f"SubnetId {sid}")

    def state():
        s = cloud.call("DescribeSubnets", SubnetIds=[sid])["Subnets"]
        return (s[0], s[0].get("State")) if s else (None, None)

    poll(f"subnet {sid}", state, ["pending"], ["available"], not_found_ok=3)
    subnet_read(cloud, sid, vpc_id, cidr, az, {"Name": "kumo-subnet", "v": tagv})
    return sid


def subnet_read(cloud, sid, vpc_id, cidr, az, tags, public=False):
    s = one(cloud.call("DescribeSubnets", SubnetIds=[sid])["Subnets"], "DescribeSubnets")
    expect_eq(s["SubnetId"], sid, "SubnetId")
    expect_eq(s.get("State"), "available", "subnet state")
    expect_eq(s.get("VpcId"), vpc_id, "subnet VpcId")
    expect_eq(s.get("CidrBlock"), cidr, "subnet CidrBlock")
    expect_eq(s.get("AvailabilityZone"), az, "subnet AvailabilityZone")
    expect_eq(s.get("MapPublicIpOnLaunch"), public, "MapPublicIpOnLaunch")
    expect_eq(s.get("AssignIpv6AddressOnCreation", False), False, "AssignIpv6AddressOnCreation")
    expect_eq(s.get("OwnerId"), cloud.account(), "subnet OwnerId")
    expect(isinstance(s.get("AvailableIpAddressCount"), int), f"AvailableIpAddressCount: {s}")
    expect_eq(tags_of(s), tags, "subnet tags")
    return s


def subnet_destroy(cloud, sid):
    # The provider deletes lingering *available* ENIs it finds here; kumo has none to offer (a
    # terminated instance's port goes with it), so DeleteSubnet's DependencyViolation retry covers
    # a port still being cleaned up.
    enis = cloud.call(
        "DescribeNetworkInterfaces", Filters=[{"Name": "subnet-id", "Values": [sid]}]
    )["NetworkInterfaces"]
    expect(all(e.get("Status") != "available" for e in enis), f"available ENIs left in {sid}: {enis}")
    retry_on(cloud, ("DependencyViolation",), "DeleteSubnet", SubnetId=sid)


# ----------------------------------------------------------------------------- security group

ALL_EGRESS = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}


def rules(perms):
    """Rules as comparable tuples: (protocol, from, to, cidrs, group ids)."""
    out = []
    for p in perms:
        out.append(
            (
                p.get("IpProtocol"),
                p.get("FromPort"),
                p.get("ToPort"),
                tuple(sorted(r["CidrIp"] for r in p.get("IpRanges", []))),
                tuple(sorted(g["GroupId"] for g in p.get("UserIdGroupPairs", []))),
            )
        )
    return sorted(out, key=repr)


def sg_describe(cloud, gid):
    return one(cloud.call("DescribeSecurityGroups", GroupIds=[gid])["SecurityGroups"], "DescribeSecurityGroups")


def sg_create(cloud, vpc_id, port=22, tagv="one", name="web"):
    r = cloud.call(
        "CreateSecurityGroup",
        Description="web servers",  # GroupDescription on the wire
        GroupName=name,
        TagSpecifications=tagspec("security-group", v=tagv, Name=name),
        VpcId=vpc_id,
    )
    gid = r["GroupId"]
    expect(gid.startswith("sg-"), f"GroupId {gid}")
    sg = sg_describe(cloud, gid)  # the propagation waiter
    # A new group carries the default allow-all egress rule and no ingress.
    expect_eq(rules(sg.get("IpPermissionsEgress", [])), [("-1", None, None, ("0.0.0.0/0",), ())], "default egress")
    expect_eq(sg.get("IpPermissions", []), [], "new group's ingress")
    sg_describe(cloud, gid)
    sg_describe(cloud, gid)
    everywhere = {"IpProtocol": "-1", "FromPort": 0, "ToPort": 0}
    cloud.call(
        "RevokeSecurityGroupEgress",
        GroupId=gid,
        IpPermissions=[dict(everywhere, IpRanges=[{"CidrIp": "0.0.0.0/0"}])],
    )
    _, code = cloud.error(
        "RevokeSecurityGroupEgress",
        GroupId=gid,
        IpPermissions=[dict(everywhere, Ipv6Ranges=[{"CidrIpv6": "::/0"}])],
    )
    # The provider accepts success or InvalidPermission.NotFound here, nothing else.
    expect(code in (None, "InvalidPermission.NotFound"), f"revoking ::/0 egress: {code}")
    sg = sg_describe(cloud, gid)
    expect_eq(sg.get("IpPermissionsEgress", []), [], "egress after revoking the default rule")
    cloud.call("AuthorizeSecurityGroupIngress", GroupId=gid, IpPermissions=[ingress(port)])
    cloud.call("AuthorizeSecurityGroupEgress", GroupId=gid, IpPermissions=[ALL_EGRESS])
    sg_read(cloud, gid, vpc_id, port, {"v": tagv, "Name": name}, name)
    return gid


def ingress(port):
    return {"FromPort": port, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "ToPort": port}


def sg_read(cloud, gid, vpc_id, port, tags, name="web"):
    sg = sg_describe(cloud, gid)
    expect_eq(sg["GroupId"], gid, "GroupId")
    expect_eq(sg.get("GroupName"), name, "GroupName")
    expect_eq(sg.get("Description"), "web servers", "Description")
    expect_eq(sg.get("VpcId"), vpc_id, "SG VpcId")
    expect_eq(sg.get("OwnerId"), cloud.account(), "SG OwnerId")
    expect_eq(tags_of(sg), tags, "SG tags")
    expect_eq(rules(sg.get("IpPermissions", [])), [("tcp", port, port, ("0.0.0.0/0",), ())], "ingress rules")
    expect_eq(rules(sg.get("IpPermissionsEgress", [])), [("-1", None, None, ("0.0.0.0/0",), ())], "egress rules")
    return sg


def sg_update(cloud, gid, vpc_id, old_port, new_port, tagv, name="web"):
    cloud.call("CreateTags", Resources=[gid], Tags=[{"Key": "v", "Value": tagv}])
    sg_describe(cloud, gid)
    cloud.call("RevokeSecurityGroupIngress", GroupId=gid, IpPermissions=[ingress(old_port)])
    cloud.call("AuthorizeSecurityGroupIngress", GroupId=gid, IpPermissions=[ingress(new_port)])
    sg_read(cloud, gid, vpc_id, new_port, {"v": tagv, "Name": name}, name)


def sg_destroy(cloud, gid):
    sg_describe(cloud, gid)
    enis = cloud.call(
        "DescribeNetworkInterfaces", Filters=[{"Name": "group-id", "Values": [gid]}]
    )["NetworkInterfaces"]
    expect(all(e.get("Status") != "available" for e in enis), f"available ENIs left in {gid}: {enis}")
    retry_on(cloud, ("DependencyViolation", "InvalidGroup.InUse"), "DeleteSecurityGroup", GroupId=gid)
    gone(cloud, "DescribeSecurityGroups", "InvalidGroup.NotFound", GroupIds=[gid])


# ----------------------------------------------------------------------------------- key pair


def key_create(cloud, name="kumo-key", tagv="one"):
    cloud.call(
        "ImportKeyPair",
        KeyName=name,
        PublicKeyMaterial=PUBLIC_KEY.encode(),
        TagSpecifications=tagspec("key-pair", v=tagv),
    )
    return key_read(cloud, name, {"v": tagv})


def key_read(cloud, name, tags):
    k = one(cloud.call("DescribeKeyPairs", KeyNames=[name])["KeyPairs"], "DescribeKeyPairs")
    expect_eq(k.get("KeyName"), name, "KeyName")
    expect(k.get("KeyPairId", "").startswith("key-"), f"KeyPairId: {k}")
    expect(k.get("KeyFingerprint"), f"KeyFingerprint: {k}")
    expect_eq(k.get("KeyType"), "ed25519", "KeyType")
    expect_eq(tags_of(k), tags, "key pair tags")
    return k["KeyPairId"]


def key_update_tags(cloud, name, key_id, tagv):
    cloud.call("CreateTags", Resources=[key_id], Tags=[{"Key": "v", "Value": tagv}])
    key_read(cloud, name, {"v": tagv})


def key_destroy(cloud, name):
    key_read_any(cloud, name)
    cloud.call("DeleteKeyPair", KeyName=name)
    cloud.expect_error("InvalidKeyPair.NotFound", "DescribeKeyPairs", KeyNames=[name])


def key_read_any(cloud, name):
    one(cloud.call("DescribeKeyPairs", KeyNames=[name])["KeyPairs"], "DescribeKeyPairs")


# ----------------------------------------------------------------------------------- instance


def describe_instance(cloud, iid):
    out = cloud.call("DescribeInstances", InstanceIds=[iid])
    insts = [i for r in out["Reservations"] for i in r["Instances"]]
    return one(insts, f"DescribeInstances {iid}")


def instance_create(cloud, ami, itype, subnet_id, sg_id, key_name, tagv="one"):
    r = cloud.call(
        "RunInstances",
        ClientToken=f"terraform-{time.strftime('%Y%m%d%H%M%S')}{int(time.time() * 1e6) % 10**10:010d}",
        DisableApiTermination=False,
        EbsOptimized=False,
        HibernationOptions={"Configured": False},
        ImageId=ami,
        InstanceType=itype,
        KeyName=key_name,
        MaxCount=1,
        MinCount=1,
        Monitoring={"Enabled": False},
        Placement={"AvailabilityZone": ""},
        SecurityGroupIds=[sg_id],
        SubnetId=subnet_id,
        TagSpecifications=tagspec("instance", Name="web", v=tagv),
        UserData=USER_DATA,  # boto3 base64-encodes it, as the provider does
    )
    inst = one(r["Instances"], "RunInstances Instances")
    iid = inst["InstanceId"]
    expect(iid.startswith("i-"), f"InstanceId {iid}")
    expect(r.get("ReservationId", "").startswith("r-"), f"ReservationId: {r.get('ReservationId')}")
    expect_eq(r.get("OwnerId"), cloud.account(), "reservation OwnerId")
    expect(inst.get("State", {}).get("Name") in ("pending", "running"), f"state after RunInstances: {inst.get('State')}")

    def state():
        i = describe_instance(cloud, iid)
        return i, i["State"]["Name"]

    poll(f"instance {iid}", state, ["pending"], ["running"], not_found_ok=3)
    return iid


def instance_read(cloud, iid, want):
    """The provider's resourceInstanceRead; `want` holds the expected values."""
    i = describe_instance(cloud, iid)
    expect_eq(i["State"]["Name"], want.get("state", "running"), "instance state")
    expect_eq(i["State"].get("Code"), {"running": 16, "stopped": 80}.get(want.get("state", "running")), "state code")
    expect_eq(i.get("ImageId"), want["ami"], "ImageId")
    expect_eq(i.get("InstanceType"), want["type"], "InstanceType")
    expect_eq(i.get("Placement", {}).get("AvailabilityZone"), want["az"], "Placement.AvailabilityZone")
    expect_eq(i.get("SubnetId"), want["subnet"], "SubnetId")
    expect_eq(i.get("VpcId"), want["vpc"], "VpcId")
    expect_eq(i.get("KeyName"), want["key"], "KeyName")
    expect_eq([g["GroupId"] for g in i.get("SecurityGroups", [])], [want["sg"]], "SecurityGroups")
    ip = i.get("PrivateIpAddress")
    expect(ip and ipaddress.ip_address(ip) in ipaddress.ip_network(want["cidr"]), f"PrivateIpAddress {ip} not in {want['cidr']}")
    expect(i.get("PrivateDnsName"), f"PrivateDnsName missing: {i}")
    expect(i.get("RootDeviceName"), f"RootDeviceName missing: {i}")
    nics = i.get("NetworkInterfaces", [])
    primary = [n for n in nics if n.get("Attachment", {}).get("DeviceIndex") == 0]
    expect(len(primary) == 1, f"primary network interface: {nics}")
    expect(primary[0].get("NetworkInterfaceId", "").startswith("eni-"), f"NetworkInterfaceId: {primary}")
    expect_eq(primary[0].get("PrivateIpAddress"), ip, "primary NIC address")
    expect_eq(tags_of(i), want["tags"], "instance tags")
    cloud.call("DescribeInstanceTypes", InstanceTypes=[i["InstanceType"]])
    lt = cloud.call(
        "DescribeTags",
        Filters=[
            {"Name": "key", "Values": ["aws:ec2launchtemplate:id"]},
            {"Name": "resource-id", "Values": [iid]},
        ],
    )
    expect_eq(lt.get("Tags"), [], "launch template tag")
    cloud.call("DescribeVpcs", VpcIds=[i["VpcId"]])
    attr = lambda name: instance_attribute(cloud, iid, name)
    expect_eq(attr("instanceInitiatedShutdownBehavior"), want.get("shutdown", "stop"), "instanceInitiatedShutdownBehavior")
    vols = [m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", []) if "Ebs" in m]
    if vols:
        got = cloud.call("DescribeVolumes", VolumeIds=vols)["Volumes"]
        expect_eq(sorted(v["VolumeId"] for v in got), sorted(vols), "volumes of the block device mappings")
    expect_eq(attr("disableApiStop"), want.get("stop_protect", False), "disableApiStop")
    expect_eq(attr("disableApiTermination"), want.get("term_protect", False), "disableApiTermination")
    expect_eq(attr("userData"), base64.b64encode(USER_DATA.encode()).decode(), "userData")
    return i


def instance_attribute(cloud, iid, name):
    out = cloud.call("DescribeInstanceAttribute", Attribute=name, InstanceId=iid)
    expect_eq(out.get("InstanceId"), iid, f"DescribeInstanceAttribute {name} InstanceId")
    key = name[0].upper() + name[1:]
    expect(key in out, f"DescribeInstanceAttribute {name}: no {key} in {out}")
    return out[key].get("Value")


def instance_update_tags(cloud, iid, want, tagv):
    cloud.call("CreateTags", Resources=[iid], Tags=[{"Key": "v", "Value": tagv}])
    want["tags"] = dict(want["tags"], v=tagv)
    instance_read(cloud, iid, want)


def instance_update_attributes(cloud, iid, want):
    """disable_api_stop = true, instance_initiated_shutdown_behavior = "terminate"."""
    cloud.call("ModifyInstanceAttribute", DisableApiStop={"Value": True}, InstanceId=iid)
    cloud.call("ModifyInstanceAttribute", InstanceId=iid, InstanceInitiatedShutdownBehavior={"Value": "terminate"})
    want.update(stop_protect=True, shutdown="terminate")
    instance_read(cloud, iid, want)


def instance_destroy(cloud, iid, want):
    instance_read(cloud, iid, want)
    cloud.call("ModifyInstanceAttribute", DisableApiTermination={"Value": False}, InstanceId=iid)
    cloud.call("ModifyInstanceAttribute", DisableApiStop={"Value": want.get("stop_protect", False)}, InstanceId=iid)
    cloud.call("TerminateInstances", InstanceIds=[iid])

    def state():
        i = describe_instance(cloud, iid)
        return i, i["State"]["Name"]

    # A terminated instance stays visible as `terminated`: the provider waits for that state.
    poll(
        f"instance {iid} terminated",
        state,
        ["pending", "running", "shutting-down", "stopping", "stopped"],
        ["terminated"],
    )


def wait_guest_ready(iid, ip):
    """The guest really booted and got `ip`: the tiny image prints `KUMO-READY instance-id=… ip=…`
    on its serial console (read with `kumo instance logs`)."""
    kumo = os.environ.get("KUMO_BIN")
    expect(kumo, "KUMO_BIN is not set (the kumo CLI reads the serial console)")
    deadline = time.time() + TIMEOUT
    last = ""
    while time.time() < deadline:
        out = subprocess.run([kumo, "instance", "logs", iid], capture_output=True, text=True, timeout=60)
        last = out.stdout + out.stderr
        m = re.search(r"KUMO-READY instance-id=(\S+) ip=([0-9.]+)", out.stdout)
        if m:
            expect_eq(m.group(2), ip, "the guest's own address (serial console)")
            log(f"check guest console: {m.group(0)}")
            return
        time.sleep(1)
    raise Failure(f"no KUMO-READY on {iid}'s console after {TIMEOUT}s; last output:\n{last[-2000:]}")


# ------------------------------------------------------------------------------ EBS volume


def volume_create(cloud, az, size=1, tagv="one"):
    r = cloud.call(
        "CreateVolume",
        AvailabilityZone=az,
        ClientToken=f"terraform-{int(time.time() * 1e6)}",
        Size=size,
        TagSpecifications=tagspec("volume", Name="data", v=tagv),
    )
    vid = r["VolumeId"]
    expect(vid.startswith("vol-"), f"VolumeId {vid}")
    poll(f"volume {vid}", lambda: volume_state(cloud, vid), ["creating"], ["available"], not_found_ok=3)
    volume_read(cloud, vid, az, size, {"Name": "data", "v": tagv})
    return vid


def volume_state(cloud, vid):
    v = cloud.call("DescribeVolumes", VolumeIds=[vid])["Volumes"]
    return (v[0], v[0].get("State")) if v else (None, None)


def volume_read(cloud, vid, az, size, tags, state="available"):
    v = one(cloud.call("DescribeVolumes", VolumeIds=[vid])["Volumes"], "DescribeVolumes")
    expect_eq(v["VolumeId"], vid, "VolumeId")
    expect_eq(v.get("State"), state, "volume state")
    expect_eq(v.get("AvailabilityZone"), az, "volume AvailabilityZone")
    expect_eq(v.get("Size"), size, "volume Size")
    expect_eq(v.get("Encrypted"), False, "volume Encrypted")
    expect(v.get("VolumeType"), f"VolumeType missing: {v}")
    expect(v.get("CreateTime"), f"CreateTime missing: {v}")
    expect_eq(v.get("MultiAttachEnabled", False), False, "MultiAttachEnabled")
    expect_eq(tags_of(v), tags, "volume tags")
    return v


def volume_update_tags(cloud, vid, az, size, tagv, state="available"):
    cloud.call("CreateTags", Resources=[vid], Tags=[{"Key": "v", "Value": tagv}])
    volume_read(cloud, vid, az, size, {"Name": "data", "v": tagv}, state)


def volume_update_size(cloud, vid, az, size, tags, state="available"):
    """resourceEBSVolumeUpdate for a new size: ModifyVolume, then waitVolumeModificationComplete
    (DescribeVolumesModifications until `completed` or `optimizing`), then the read."""
    r = cloud.call("ModifyVolume", VolumeId=vid, Size=size)["VolumeModification"]
    expect_eq((r.get("VolumeId"), r.get("TargetSize")), (vid, size), "ModifyVolume answer")

    def modification():
        m = cloud.call("DescribeVolumesModifications", VolumeIds=[vid])["VolumesModifications"]
        return (m[0], m[0].get("ModificationState")) if m else (None, None)

    poll(f"volume {vid} modification", modification, ["modifying"], ["completed", "optimizing"])
    return volume_read(cloud, vid, az, size, tags, state)


def volume_destroy(cloud, vid):
    cloud.call("DescribeVolumes", VolumeIds=[vid])
    # The provider retries while VolumeInUse (a detach or a snapshot deletion still finishing).
    retry_on(cloud, ("VolumeInUse",), "DeleteVolume", VolumeId=vid)
    poll(f"volume {vid} deleted", lambda: volume_state_or_gone(cloud, vid), ["deleting", "available"], [])


def volume_state_or_gone(cloud, vid):
    out, code = cloud.error("DescribeVolumes", VolumeIds=[vid])
    if code == "InvalidVolume.NotFound":
        return None, None
    expect(code is None, f"DescribeVolumes: {code}")
    v = out["Volumes"]
    return (v[0], v[0].get("State")) if v else (None, None)


def attachment_filters(device, iid):
    return [
        {"Name": "attachment.device", "Values": [device]},
        {"Name": "attachment.instance-id", "Values": [iid]},
    ]


def attachment_state(cloud, vid, device, iid):
    v = cloud.call("DescribeVolumes", Filters=attachment_filters(device, iid), VolumeIds=[vid])["Volumes"]
    if not v:
        return None, None
    att = [a for a in v[0].get("Attachments", []) if a.get("InstanceId") == iid and a.get("Device") == device]
    expect(att, f"filtered volume without its attachment: {v[0]}")
    return att[0], att[0].get("State")


def attachment_create(cloud, vid, iid, device="/dev/sdf"):
    obj, _ = attachment_state(cloud, vid, device, iid)
    expect(obj is None, f"{vid} is already attached: {obj}")
    i = describe_instance(cloud, iid)
    expect(i["State"]["Name"] in ("running", "stopped"), f"instance state {i['State']}")
    r = cloud.call("AttachVolume", Device=device, InstanceId=iid, VolumeId=vid)
    expect_eq(r.get("VolumeId"), vid, "AttachVolume VolumeId")
    expect_eq(r.get("Device"), device, "AttachVolume Device")
    att = poll(f"attachment of {vid}", lambda: attachment_state(cloud, vid, device, iid), ["attaching"], ["attached"], not_found_ok=3)
    expect_eq(att.get("VolumeId"), vid, "attachment VolumeId")
    attachment_state(cloud, vid, device, iid)  # the read after create


def attachment_destroy(cloud, vid, iid, device="/dev/sdf"):
    attachment_state(cloud, vid, device, iid)
    cloud.call("DetachVolume", Device=device, Force=False, InstanceId=iid, VolumeId=vid)
    poll(f"detachment of {vid}", lambda: attachment_state(cloud, vid, device, iid), ["detaching", "attached"], [])


# ----------------------------------------------------------------------------------- snapshot


def snapshot_create(cloud, vid, tagv="one"):
    r = cloud.call("CreateSnapshot", TagSpecifications=tagspec("snapshot", v=tagv), VolumeId=vid)
    sid = r["SnapshotId"]
    expect(sid.startswith("snap-"), f"SnapshotId {sid}")

    def state():
        s = cloud.call("DescribeSnapshots", SnapshotIds=[sid])["Snapshots"]
        return (s[0], s[0].get("State")) if s else (None, None)

    poll(f"snapshot {sid}", state, ["pending"], ["completed"], not_found_ok=3)
    snapshot_read(cloud, sid, vid, {"v": tagv})
    return sid


def snapshot_read(cloud, sid, vid, tags):
    s = one(cloud.call("DescribeSnapshots", SnapshotIds=[sid])["Snapshots"], "DescribeSnapshots")
    expect_eq(s.get("SnapshotId"), sid, "SnapshotId")
    expect_eq(s.get("VolumeId"), vid, "snapshot VolumeId")
    expect_eq(s.get("State"), "completed", "snapshot state")
    expect_eq(s.get("OwnerId"), cloud.account(), "snapshot OwnerId")
    expect(s.get("VolumeSize", 0) >= 1, f"VolumeSize: {s}")
    expect_eq(s.get("Encrypted"), False, "snapshot Encrypted")
    expect_eq(tags_of(s), tags, "snapshot tags")


def snapshot_update_tags(cloud, sid, vid, tagv):
    cloud.call("CreateTags", Resources=[sid], Tags=[{"Key": "v", "Value": tagv}])
    snapshot_read(cloud, sid, vid, {"v": tagv})


def snapshot_destroy(cloud, sid):
    cloud.call("DeleteSnapshot", SnapshotId=sid)
    cloud.expect_error("InvalidSnapshot.NotFound", "DescribeSnapshots", SnapshotIds=[sid])


# ---------------------------------------------------------------------------------------- EIP


def eip_create(cloud, iid, tagv="one"):
    r = cloud.call("AllocateAddress", Domain="vpc", TagSpecifications=tagspec("elastic-ip", v=tagv, Name="ip"))
    alloc = r["AllocationId"]
    expect(alloc.startswith("eipalloc-"), f"AllocationId {alloc}")
    ipaddress.ip_address(r["PublicIp"])
    expect_eq(r.get("Domain"), "vpc", "AllocateAddress Domain")
    one(cloud.call("DescribeAddresses", AllocationIds=[alloc])["Addresses"], "DescribeAddresses")
    a = cloud.call("AssociateAddress", AllocationId=alloc, InstanceId=iid)
    assoc = a.get("AssociationId", "")
    expect(assoc.startswith("eipassoc-"), f"AssociationId: {a}")

    def found():
        got = cloud.call("DescribeAddresses", Filters=[{"Name": "association-id", "Values": [assoc]}])["Addresses"]
        return (got[0], "associated") if got else (None, None)

    poll(f"association {assoc}", found, [], ["associated"], not_found_ok=40)
    eip_read(cloud, alloc, iid, assoc, {"v": tagv, "Name": "ip"})
    return alloc, assoc, r["PublicIp"]


def eip_read(cloud, alloc, iid, assoc, tags):
    a = one(cloud.call("DescribeAddresses", AllocationIds=[alloc])["Addresses"], "DescribeAddresses")
    expect_eq(a.get("AllocationId"), alloc, "AllocationId")
    expect_eq(a.get("Domain"), "vpc", "address Domain")
    expect_eq(a.get("InstanceId"), iid, "address InstanceId")
    expect_eq(a.get("AssociationId"), assoc, "address AssociationId")
    expect(a.get("NetworkInterfaceId", "").startswith("eni-"), f"NetworkInterfaceId: {a}")
    ipaddress.ip_address(a.get("PrivateIpAddress", ""))
    expect_eq(tags_of(a), tags, "address tags")
    attr = cloud.call("DescribeAddressesAttribute", AllocationIds=[alloc], Attribute="domain-name")
    item = one(attr.get("Addresses", []), "DescribeAddressesAttribute")
    expect_eq(item.get("AllocationId"), alloc, "DescribeAddressesAttribute AllocationId")
    expect_eq(item.get("PublicIp"), a.get("PublicIp"), "DescribeAddressesAttribute PublicIp")
    return a


def eip_update_tags(cloud, alloc, iid, assoc, tagv):
    cloud.call("CreateTags", Resources=[alloc], Tags=[{"Key": "v", "Value": tagv}])
    eip_read(cloud, alloc, iid, assoc, {"v": tagv, "Name": "ip"})


def eip_destroy(cloud, alloc, assoc):
    cloud.call("DescribeAddresses", AllocationIds=[alloc])
    cloud.call("DescribeAddressesAttribute", AllocationIds=[alloc], Attribute="domain-name")
    cloud.call("DisassociateAddress", AssociationId=assoc)
    cloud.call("ReleaseAddress", AllocationId=alloc)
    cloud.expect_error("InvalidAllocationID.NotFound", "DescribeAddresses", AllocationIds=[alloc])


# ------------------------------------------------------------------------------- running it


class Stack:
    """What a script created, destroyed in reverse (Terraform's destroy order) even on failure,
    so a failed run leaves nothing behind that a later script would trip over."""

    def __init__(self):
        self.undo = []

    def add(self, fn, *args):
        self.undo.append((fn, args))

    def pop(self):
        fn, args = self.undo.pop()
        fn(*args)

    def cleanup(self):
        while self.undo:
            fn, args = self.undo.pop()
            try:
                fn(*args)
            except Exception as e:  # keep tearing down; the first failure is what is reported
                log(f"cleanup: {fn.__name__}{args}: {e}")


def main(body):
    """Run `body(cloud, stack)`; exit 0 on success, 1 with the failure printed."""
    log(f"python {sys.version.split()[0]}, boto3 {boto3.__version__}, botocore {botocore.__version__}")
    cloud = Cloud()
    stack = Stack()
    try:
        body(cloud, stack)
        expect(not stack.undo, f"the script left {len(stack.undo)} resources")
    except Failure as e:
        log(f"FAILED: {e}")
        stack.cleanup()
        sys.exit(1)
    except Exception:
        import traceback

        traceback.print_exc()
        log("FAILED: unexpected exception")
        stack.cleanup()
        sys.exit(1)
    log("OK")
