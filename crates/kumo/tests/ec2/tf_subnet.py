#!/usr/bin/env python3
"""aws_subnet as Terraform drives it: create → refresh → update (a tag, then
map_public_ip_on_launch = true) → destroy, inside an aws_vpc."""

import kumo_tf as tf

VPC, SUBNET = "198.19.0.0/16", "198.19.1.0/24"


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
    c.call("ModifySubnetAttribute", MapPublicIpOnLaunch={"Value": True}, SubnetId=sid)

    def public():
        s = c.call("DescribeSubnets", SubnetIds=[sid])["Subnets"]
        return (s[0], s[0].get("MapPublicIpOnLaunch")) if s else (None, None)

    tf.poll("MapPublicIpOnLaunch", public, [False], [True])
    tf.subnet_read(c, sid, vpc, SUBNET, az, tags, public=True)
    tf.subnet_read(c, sid, vpc, SUBNET, az, tags, public=True)  # destroy's refresh
    stack.pop()
    stack.pop()


tf.main(body)
