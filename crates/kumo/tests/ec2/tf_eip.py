#!/usr/bin/env python3
"""aws_eip (domain = "vpc", instance = aws_instance.web.id) as Terraform drives it: create (allocate
and associate) → refresh → update (a tag) → destroy (disassociate, release)."""

import kumo_tf as tf

VPC, SUBNET = "198.19.0.0/17", "198.19.1.0/24"


def body(c, stack):
    c.account()
    az = tf.zone(c)
    ami = tf.image(c)
    itype = tf.instance_type(c)
    vpc = tf.vpc_create(c, VPC)
    stack.add(tf.vpc_destroy, c, vpc)
    tf.key_create(c, "kumo-key")
    stack.add(tf.key_destroy, c, "kumo-key")
    sid = tf.subnet_create(c, vpc, SUBNET, az)
    stack.add(tf.subnet_destroy, c, sid)
    gid = tf.sg_create(c, vpc)
    stack.add(tf.sg_destroy, c, gid)
    iid = tf.instance_create(c, ami, itype, sid, gid, "kumo-key")
    want = dict(ami=ami, type=itype, az=az, subnet=sid, vpc=vpc, key="kumo-key", sg=gid, cidr=SUBNET, tags={"Name": "web", "v": "one"})
    stack.add(tf.instance_destroy, c, iid, want)
    tf.instance_read(c, iid, want)
    alloc, assoc, public_ip = tf.eip_create(c, iid)
    stack.add(tf.eip_destroy, c, alloc, assoc)
    tf.eip_read(c, alloc, iid, assoc, {"v": "one", "Name": "ip"})  # refresh
    i = tf.instance_read(c, iid, want)  # the instance's refresh sees its public address
    tf.expect_eq(i.get("PublicIpAddress"), public_ip, "the instance's PublicIpAddress")
    tf.eip_update_tags(c, alloc, iid, assoc, "two")
    for _ in range(6):  # EIP, instance, security group, subnet, key pair, VPC
        stack.pop()


tf.main(body)
