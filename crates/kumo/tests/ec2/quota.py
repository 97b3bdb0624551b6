#!/usr/bin/env python3
"""Quotas through the EC2 API, in two phases around the runner lowering the project's quotas to
what it already uses (usage = limit):

  quota.py setup   make a VPC, subnet, security group, volume and instance (within the defaults) and
                   print their ids as the last line, `IDS vpc subnet sg vol ami type`
  quota.py check IDS…   every create beyond the quota fails with EC2's limit code (HTTP 400) and
                   makes nothing; then everything is deleted

Environment as kumo_tf.py."""

import sys

import kumo_tf as tf

VPC, SUBNET = "198.19.0.0/17", "198.19.1.0/24"


def setup(c, stack):
    az = tf.zone(c)
    ami = tf.image(c)
    itype = tf.instance_type(c)
    vpc = tf.vpc_create(c, VPC)
    sid = tf.subnet_create(c, vpc, SUBNET, az)
    gid = tf.sg_create(c, vpc)
    vol = tf.volume_create(c, az)
    tf.log(f"IDS {vpc} {sid} {gid} {vol} {ami} {itype} {az}")


ID = {"Vpcs": "VpcId", "SecurityGroups": "GroupId", "Volumes": "VolumeId", "Addresses": "AllocationId", "Snapshots": "SnapshotId"}


def count(c, action, key, **kw):
    """The ids a listing shows (reservations: their instances)."""
    items = c.check_call(action, **kw)[key]
    if key == "Reservations":
        return sorted(i["InstanceId"] for r in items for i in r["Instances"])
    return sorted(x[ID[key]] for x in items)


def check(c, stack):
    vpc, sid, gid, vol, ami, itype, az = sys.argv[2:9]
    stack.add(tf.vpc_destroy, c, vpc)
    stack.add(tf.subnet_destroy, c, sid)
    stack.add(tf.sg_destroy, c, gid)
    stack.add(tf.volume_destroy, c, vol)
    before = {
        "vpcs": count(c, "DescribeVpcs", "Vpcs"),
        "groups": count(c, "DescribeSecurityGroups", "SecurityGroups"),
        "volumes": count(c, "DescribeVolumes", "Volumes"),
        "addresses": count(c, "DescribeAddresses", "Addresses"),
        "snapshots": count(c, "DescribeSnapshots", "Snapshots", OwnerIds=["self"]),
        "reservations": count(c, "DescribeInstances", "Reservations"),
    }
    c.expect_error("VpcLimitExceeded", "CreateVpc", CidrBlock="198.19.128.0/18")
    c.expect_error("SecurityGroupLimitExceeded", "CreateSecurityGroup", GroupName="over", Description="over quota", VpcId=vpc)
    c.expect_error("VolumeLimitExceeded", "CreateVolume", AvailabilityZone=az, Size=1)
    c.expect_error("AddressLimitExceeded", "AllocateAddress", Domain="vpc")
    c.expect_error("SnapshotLimitExceeded", "CreateSnapshot", VolumeId=vol)
    c.expect_error(
        ("InstanceLimitExceeded", "VcpuLimitExceeded"),
        "RunInstances", ImageId=ami, InstanceType=itype, MinCount=1, MaxCount=1, SubnetId=sid, SecurityGroupIds=[gid],
    )
    after = {
        "vpcs": count(c, "DescribeVpcs", "Vpcs"),
        "groups": count(c, "DescribeSecurityGroups", "SecurityGroups"),
        "volumes": count(c, "DescribeVolumes", "Volumes"),
        "addresses": count(c, "DescribeAddresses", "Addresses"),
        "snapshots": count(c, "DescribeSnapshots", "Snapshots", OwnerIds=["self"]),
        "reservations": count(c, "DescribeInstances", "Reservations"),
    }
    new_groups = sorted(set(after["groups"]) - set(before["groups"]))
    if new_groups:
        for g in c.check_call("DescribeSecurityGroups", GroupIds=new_groups)["SecurityGroups"]:
            tf.log(f"new group after the refused creates: {g}")
    tf.expect_eq(after, before, "resources after the refused creates")
    for _ in range(4):
        stack.pop()


tf.main({"setup": setup, "check": check}[sys.argv[1]])
