#!/usr/bin/env python3
"""aws_instance as Terraform drives it, with the aws_vpc, aws_subnet, aws_security_group and
aws_key_pair it needs: create → refresh → update (a tag; then disable_api_stop and
instance_initiated_shutdown_behavior) → destroy. The instance really boots: its guest prints its
own address on the serial console, and it must be the PrivateIpAddress EC2 reports."""

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
    inst = tf.instance_read(c, iid, want)
    tf.wait_guest_ready(iid, inst["PrivateIpAddress"])
    tf.instance_read(c, iid, want)  # refresh
    tf.instance_update_tags(c, iid, want, "two")
    tf.instance_update_attributes(c, iid, want)
    # Our checks of what the attributes mean: stop protection refuses StopInstances, termination
    # protection refuses TerminateInstances.
    c.expect_error("OperationNotPermitted", "StopInstances", InstanceIds=[iid])
    c.check_call("ModifyInstanceAttribute", DisableApiTermination={"Value": True}, InstanceId=iid)
    c.expect_error("OperationNotPermitted", "TerminateInstances", InstanceIds=[iid])
    want["term_protect"] = True
    # Terraform's destroy turns termination protection off first.
    for _ in range(5):
        stack.pop()


tf.main(body)
