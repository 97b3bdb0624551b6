#!/usr/bin/env python3
"""aws_security_group as Terraform drives it: create (the default egress rule revoked, one ingress
rule and the allow-all egress rule authorized) → refresh → update (a tag and the ingress port: a
revoke and an authorize) → destroy, inside an aws_vpc."""

import kumo_tf as tf

VPC = "198.19.0.0/17"


def body(c, stack):
    c.account()
    vpc = tf.vpc_create(c, VPC)
    stack.add(tf.vpc_destroy, c, vpc)
    gid = tf.sg_create(c, vpc, port=22)
    stack.add(tf.sg_destroy, c, gid)
    tf.sg_read(c, gid, vpc, 22, {"v": "one", "Name": "web"})  # refresh
    tf.sg_update(c, gid, vpc, 22, 2222, "two")
    c.expect_error(
        "InvalidPermission.Duplicate",
        "AuthorizeSecurityGroupIngress",
        GroupId=gid,
        IpPermissions=[tf.ingress(2222)],
    )
    tf.sg_read(c, gid, vpc, 2222, {"v": "two", "Name": "web"})  # destroy's refresh
    stack.pop()
    stack.pop()


tf.main(body)
