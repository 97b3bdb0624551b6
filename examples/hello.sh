#!/bin/sh
# User data for the quick start: runs inside the tiny guest at boot.
echo "hello from $(hostname): kumo user-data ran at boot"
