#!/usr/bin/env python3
"""aws_vpc as Terraform drives it: create (with enable_dns_hostnames = true) → refresh → update
(a tag; then enable_dns_hostnames = false) → destroy. See kumo_tf.py for the environment."""

import kumo_tf as tf

CIDR = "198.19.0.0/17"


def body(c, stack):
    c.account()
    c.expect_error("DryRunOperation", "CreateVpc", CidrBlock=CIDR, DryRun=True)
    vpc = tf.vpc_create(c, CIDR)
    stack.add(tf.vpc_destroy, c, vpc)
    tf.vpc_read(c, vpc, CIDR, {"Name": "kumo-vpc", "v": "one"}, True)  # plan: refresh
    tf.vpc_update_tags(c, vpc, CIDR, "two")
    # enable_dns_hostnames = false: ModifyVpcAttribute, the provider's waiter, then the read.
    c.call("ModifyVpcAttribute", EnableDnsHostnames={"Value": False}, VpcId=vpc)
    tf.poll("enableDnsHostnames", lambda: (True, tf.vpc_attribute(c, vpc, "enableDnsHostnames")), [True], [False])
    tf.vpc_read(c, vpc, CIDR, {"Name": "kumo-vpc", "v": "two"}, False)
    # A removed tag is DeleteTags with the key alone.
    c.call("DeleteTags", Resources=[vpc], Tags=[{"Key": "v"}])
    tf.vpc_read(c, vpc, CIDR, {"Name": "kumo-vpc"}, False)
    tf.vpc_read(c, vpc, CIDR, {"Name": "kumo-vpc"}, False)  # destroy's refresh
    stack.pop()


tf.main(body)
