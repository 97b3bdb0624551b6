#!/usr/bin/env python3
"""aws_key_pair as Terraform drives it: ImportKeyPair → refresh → update (a tag, by the key pair's
id) → destroy."""

import kumo_tf as tf


def body(c, stack):
    c.account()
    key_id = tf.key_create(c, "kumo-key")
    stack.add(tf.key_destroy, c, "kumo-key")
    tf.key_read(c, "kumo-key", {"v": "one"})  # refresh
    c.expect_error("InvalidKeyPair.Duplicate", "ImportKeyPair", KeyName="kumo-key", PublicKeyMaterial=tf.PUBLIC_KEY.encode())
    tf.key_update_tags(c, "kumo-key", key_id, "two")
    stack.pop()


tf.main(body)
