#!/usr/bin/env python3
"""aws_subnet as Terraform drives it: create → refresh → update (a tag; map_public_ip_on_launch
on, then off) → destroy, inside an aws_vpc."""

import kumo_tf as tf

VPC, SUBNET = "198.19.0.0/17", "198.19.1.0/24"


def body(c, stack):
    c.account()
    az = tf.zone(c)
    vpc = tf.vpc_create(c, VPC)
    stack.add(tf.vpc_destroy, c, vpc)
    sid = tf.subnet_create(c, vpc, SUBNET, az)
    stack.add(tf.subnet_destroy, c, sid)
    tags = {"Name": "kumo-subnet", "v": "one"}
    tf.subnet_read(c, sid, vpc, SUBNET, az, tags)  # refresh
    c.call("CreateTags", Resources=[sid], Tags=[{"Key": "v", "Value": "two"}])
    tags["v"] = "two"
    tf.subnet_read(c, sid, vpc, SUBNET, az, tags)
    # map_public_ip_on_launch = true is ModifySubnetAttribute MapPublicIpOnLaunch.Value=true, then
    # a DescribeSubnets waiter. kumo may refuse it (public addresses come from Elastic IPs), but only
    # with a clear InvalidParameterValue; if it accepts, the subnet must read back as public.
    _, code = c.error("ModifySubnetAttribute", MapPublicIpOnLaunch={"Value": True}, SubnetId=sid)
    tf.expect(code in (None, "InvalidParameterValue"), f"ModifySubnetAttribute MapPublicIpOnLaunch=true: {code}")
    if code is None:

        def public():
            s = c.call("DescribeSubnets", SubnetIds=[sid])["Subnets"]
            return (s[0], s[0].get("MapPublicIpOnLaunch")) if s else (None, None)

        tf.poll("MapPublicIpOnLaunch", public, [False], [True])
        tf.subnet_read(c, sid, vpc, SUBNET, az, tags, public=True)
    c.call("ModifySubnetAttribute", MapPublicIpOnLaunch={"Value": False}, SubnetId=sid)
    tf.subnet_read(c, sid, vpc, SUBNET, az, tags)
    tf.subnet_read(c, sid, vpc, SUBNET, az, tags)  # destroy's refresh
    stack.pop()
    stack.pop()


tf.main(body)
