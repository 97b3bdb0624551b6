#!/usr/bin/env python3
"""Tenancy through the EC2 API: what one project's access key creates, another project's key can
neither see nor touch (EC2's `…NotFound` codes, as for ids that never existed), and the owner's
resources come out of it unchanged.

Environment as kumo_tf.py (project A's key in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) plus
KUMO_OTHER_ACCESS_KEY_ID / KUMO_OTHER_SECRET_ACCESS_KEY: project B's key."""

import os

import kumo_tf as tf

VPC, SUBNET = "198.19.0.0/17", "198.19.1.0/24"


def body(a, stack):
    b = tf.Cloud(os.environ["KUMO_OTHER_ACCESS_KEY_ID"], os.environ["KUMO_OTHER_SECRET_ACCESS_KEY"], label="[other project] ")
    tf.expect(a.account() != b.account(), f"both projects have account {a.account()}")
    az = tf.zone(a)
    ami = tf.image(a)
    itype = tf.instance_type(a)
    vpc = tf.vpc_create(a, VPC)
    stack.add(tf.vpc_destroy, a, vpc)
    tf.key_create(a, "a-key")
    stack.add(tf.key_destroy, a, "a-key")
    sid = tf.subnet_create(a, vpc, SUBNET, az)
    stack.add(tf.subnet_destroy, a, sid)
    gid = tf.sg_create(a, vpc)
    stack.add(tf.sg_destroy, a, gid)
    vol = tf.volume_create(a, az)
    stack.add(tf.volume_destroy, a, vol)
    snap = tf.snapshot_create(a, vol)
    stack.add(tf.snapshot_destroy, a, snap)
    iid = tf.instance_create(a, ami, itype, sid, gid, "a-key")
    want = dict(ami=ami, type=itype, az=az, subnet=sid, vpc=vpc, key="a-key", sg=gid, cidr=SUBNET, tags={"Name": "web", "v": "one"})
    stack.add(tf.instance_destroy, a, iid, want)
    alloc, assoc, _ = tf.eip_create(a, iid)
    stack.add(tf.eip_destroy, a, alloc, assoc)
    eni = tf.describe_instance(a, iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]

    # B asks for each by id: not found, as if it never existed.
    b.expect_error("InvalidVpcID.NotFound", "DescribeVpcs", VpcIds=[vpc])
    b.expect_error("InvalidVpcID.NotFound", "DescribeVpcAttribute", VpcId=vpc, Attribute="enableDnsSupport")
    b.expect_error("InvalidSubnetID.NotFound", "DescribeSubnets", SubnetIds=[sid])
    b.expect_error("InvalidGroup.NotFound", "DescribeSecurityGroups", GroupIds=[gid])
    b.expect_error("InvalidKeyPair.NotFound", "DescribeKeyPairs", KeyNames=["a-key"])
    b.expect_error("InvalidVolume.NotFound", "DescribeVolumes", VolumeIds=[vol])
    b.expect_error("InvalidSnapshot.NotFound", "DescribeSnapshots", SnapshotIds=[snap])
    b.expect_error("InvalidInstanceID.NotFound", "DescribeInstances", InstanceIds=[iid])
    b.expect_error("InvalidInstanceID.NotFound", "DescribeInstanceAttribute", InstanceId=iid, Attribute="userData")
    b.expect_error("InvalidAllocationID.NotFound", "DescribeAddresses", AllocationIds=[alloc])
    b.expect_error("InvalidNetworkInterfaceID.NotFound", "DescribeNetworkInterfaces", NetworkInterfaceIds=[eni])
    # … and its listings and filters do not show them.
    mine = lambda action, key, idkey, **kw: [x[idkey] for x in b.check_call(action, **kw)[key]]
    tf.expect(vpc not in mine("DescribeVpcs", "Vpcs", "VpcId"), "B lists A's VPC")
    tf.expect(sid not in mine("DescribeSubnets", "Subnets", "SubnetId"), "B lists A's subnet")
    tf.expect(gid not in mine("DescribeSecurityGroups", "SecurityGroups", "GroupId"), "B lists A's group")
    tf.expect("a-key" not in mine("DescribeKeyPairs", "KeyPairs", "KeyName"), "B lists A's key pair")
    tf.expect(vol not in mine("DescribeVolumes", "Volumes", "VolumeId"), "B lists A's volume")
    tf.expect(snap not in mine("DescribeSnapshots", "Snapshots", "SnapshotId", OwnerIds=["self"]), "B lists A's snapshot")
    tf.expect(alloc not in mine("DescribeAddresses", "Addresses", "AllocationId"), "B lists A's address")
    tf.expect(eni not in mine("DescribeNetworkInterfaces", "NetworkInterfaces", "NetworkInterfaceId"), "B lists A's ENI")
    listed = [i["InstanceId"] for r in b.check_call("DescribeInstances")["Reservations"] for i in r["Instances"]]
    tf.expect(iid not in listed, "B lists A's instance")
    tf.expect_eq(b.check_call("DescribeInstances", Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Reservations"], [], "B filters by A's VPC")
    tf.expect_eq(b.check_call("DescribeTags", Filters=[{"Name": "resource-id", "Values": [iid, vol, vpc]}])["Tags"], [], "B sees A's tags")

    # B cannot change, use or delete them either.
    b.expect_error("InvalidInstanceID.NotFound", "CreateTags", Resources=[iid], Tags=[{"Key": "v", "Value": "stolen"}])
    b.expect_error("InvalidInstanceID.NotFound", "StopInstances", InstanceIds=[iid])
    b.expect_error("InvalidInstanceID.NotFound", "TerminateInstances", InstanceIds=[iid])
    b.expect_error("InvalidInstanceID.NotFound", "ModifyInstanceAttribute", InstanceId=iid, DisableApiTermination={"Value": True})
    b.expect_error("InvalidVolume.NotFound", "DeleteVolume", VolumeId=vol)
    b.expect_error("InvalidSnapshot.NotFound", "DeleteSnapshot", SnapshotId=snap)
    b.expect_error(("InvalidSnapshot.NotFound",), "CreateVolume", AvailabilityZone=az, SnapshotId=snap)
    b.expect_error("InvalidGroup.NotFound", "AuthorizeSecurityGroupIngress", GroupId=gid, IpPermissions=[tf.ingress(80)])
    b.expect_error("InvalidGroup.NotFound", "DeleteSecurityGroup", GroupId=gid)
    b.expect_error("InvalidSubnetID.NotFound", "DeleteSubnet", SubnetId=sid)
    b.expect_error("InvalidVpcID.NotFound", "DeleteVpc", VpcId=vpc)
    b.expect_error("InvalidVpcID.NotFound", "CreateSubnet", VpcId=vpc, CidrBlock="198.19.2.0/24")
    b.expect_error("InvalidVpcID.NotFound", "CreateSecurityGroup", GroupName="x", Description="x", VpcId=vpc)
    b.expect_error("InvalidAllocationID.NotFound", "ReleaseAddress", AllocationId=alloc)
    b.expect_error("InvalidAssociationID.NotFound", "DisassociateAddress", AssociationId=assoc)
    b.expect_error(("InvalidSubnetID.NotFound", "InvalidGroup.NotFound"), "RunInstances", ImageId=ami, InstanceType=itype, MinCount=1, MaxCount=1, SubnetId=sid)
    # EC2 answers success for a key name it does not know; NotFound is as good. A's key stays.
    _, code = b.error("DeleteKeyPair", _mark="check", KeyName="a-key")
    tf.expect(code in (None, "InvalidKeyPair.NotFound"), f"DeleteKeyPair of A's key: {code}")
    tf.key_read(a, "a-key", {"v": "one"})

    # A's resources are as they were.
    tf.instance_read(a, iid, want)
    tf.volume_read(a, vol, az, 1, {"Name": "data", "v": "one"})
    tf.sg_read(a, gid, vpc, 22, {"v": "one", "Name": "web"})
    tf.eip_read(a, alloc, iid, assoc, {"v": "one", "Name": "ip"})
    for _ in range(8):
        stack.pop()


tf.main(body)
