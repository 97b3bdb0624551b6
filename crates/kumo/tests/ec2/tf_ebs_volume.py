#!/usr/bin/env python3
"""aws_ebs_volume + aws_volume_attachment (and an aws_ebs_snapshot of the volume) as Terraform
drives them, attached to an aws_instance: create → refresh → update (tags; then the size, grown
online while attached to the running instance) → destroy."""

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
    vol = tf.volume_create(c, az, size=1)
    stack.add(tf.volume_destroy, c, vol)
    iid = tf.instance_create(c, ami, itype, sid, gid, "kumo-key")
    want = dict(ami=ami, type=itype, az=az, subnet=sid, vpc=vpc, key="kumo-key", sg=gid, cidr=SUBNET, tags={"Name": "web", "v": "one"})
    stack.add(tf.instance_destroy, c, iid, want)
    tf.instance_read(c, iid, want)
    tf.attachment_create(c, vol, iid, "/dev/sdf")
    stack.add(tf.attachment_destroy, c, vol, iid, "/dev/sdf")
    v = tf.volume_read(c, vol, az, 1, {"Name": "data", "v": "one"}, state="in-use")  # refresh
    att = tf.one(v.get("Attachments", []), "volume attachments")
    tf.expect_eq((att.get("InstanceId"), att.get("Device"), att.get("State")), (iid, "/dev/sdf", "attached"), "attachment")
    i = tf.instance_read(c, iid, want)  # refresh: the instance now lists the volume too
    devices = {m["DeviceName"]: m.get("Ebs", {}).get("VolumeId") for m in i.get("BlockDeviceMappings", [])}
    tf.expect_eq(devices.get("/dev/sdf"), vol, "the instance's block device mapping of /dev/sdf")
    tf.attachment_state(c, vol, "/dev/sdf", iid)
    snap = tf.snapshot_create(c, vol)
    stack.add(tf.snapshot_destroy, c, snap)
    tf.volume_update_tags(c, vol, az, 1, "two", state="in-use")
    tf.snapshot_update_tags(c, snap, vol, "two")
    tf.volume_update_size(c, vol, az, 2, {"Name": "data", "v": "two"}, state="in-use")
    c.expect_error("VolumeInUse", "DeleteVolume", VolumeId=vol)
    stack.pop()  # snapshot
    stack.pop()  # attachment
    # Our check: once the attachment is gone the volume becomes available again (EC2 flips both
    # together; a short lag is tolerated, the provider's DeleteVolume retries VolumeInUse anyway).
    tf.poll(f"volume {vol} available after the detach", lambda: tf.volume_state(c, vol), ["in-use"], ["available"])
    tf.volume_read(c, vol, az, 2, {"Name": "data", "v": "two"})
    for _ in range(6):  # instance, volume, security group, subnet, key pair, VPC
        stack.pop()


tf.main(body)
