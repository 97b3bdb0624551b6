#!/usr/bin/env bash
# The aws CLI against kumo, unchanged: only AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_STS point it at
# the server. The stack of examples/terraform/main.tf done by hand the way an operator would (a
# VPC, subnet, security group, key pair, instance, volume, Elastic IP), with the CLI's own waiters,
# then stop/start/reboot, tags and filters, and a teardown that leaves nothing behind.
#
# Environment: AWS_CLI (the aws binary), AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_STS,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; KUMO_TF_IMAGE / KUMO_TF_INSTANCE_TYPE
# (default tiny / nano). Needs jq.
set -euo pipefail

AWS_CLI="${AWS_CLI:-aws}"
IMAGE="${KUMO_TF_IMAGE:-tiny}"
TYPE="${KUMO_TF_INSTANCE_TYPE:-nano}"
REGION="${AWS_DEFAULT_REGION:-kumo-1}"
command -v jq >/dev/null || { echo "FAILED: jq is missing (Debian package jq)"; exit 1; }
"$AWS_CLI" --version

fail() { echo "FAILED: $*" >&2; exit 1; }

# aws ARGS…: run, print the command and its output; fail the script on a non-zero exit.
aws() {
  echo "> aws $*" >&2
  local out
  if ! out=$("$AWS_CLI" --output json "$@" 2>/tmp/aws-cli-err.$$); then
    echo "  < $(cat /tmp/aws-cli-err.$$)" >&2
    fail "aws $1 $2 failed: $(cat /tmp/aws-cli-err.$$)"
  fi
  echo "  < ${out:0:400}" >&2
  printf '%s' "$out"
}

# aws_error CODE ARGS…: the command must fail with CODE.
aws_error() {
  local code="$1"
  shift
  echo "> aws $* (must fail with $code)" >&2
  if "$AWS_CLI" --output json "$@" >/dev/null 2>/tmp/aws-cli-err.$$; then
    fail "aws $1 $2 succeeded, expected $code"
  fi
  grep -q "($code)" /tmp/aws-cli-err.$$ || fail "aws $1 $2: expected $code, got: $(cat /tmp/aws-cli-err.$$)"
  echo "  < $code" >&2
}

want() { # want WHAT GOT EXPECTED
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

account=$(aws sts get-caller-identity | jq -r .Account)
[[ "$account" =~ ^[0-9]{12}$ ]] || fail "Account '$account'"
aws ec2 describe-regions | jq -e --arg r "$REGION" '.Regions | map(.RegionName) | index($r)' >/dev/null ||
  fail "describe-regions does not list $REGION"
aws ec2 describe-account-attributes >/dev/null
az=$(aws ec2 describe-availability-zones --filters Name=state,Values=available | jq -r '.AvailabilityZones[0].ZoneName')
[[ "$az" == "$REGION"* ]] || fail "zone '$az'"

# Network.
vpc=$(aws ec2 create-vpc --cidr-block 198.19.0.0/17 \
  --tag-specifications 'ResourceType=vpc,Tags=[{Key=Name,Value=cli-vpc}]' | jq -r .Vpc.VpcId)
aws ec2 wait vpc-available --vpc-ids "$vpc" >/dev/null
aws ec2 modify-vpc-attribute --vpc-id "$vpc" --enable-dns-hostnames '{"Value":true}' >/dev/null
want enableDnsHostnames "$(aws ec2 describe-vpc-attribute --vpc-id "$vpc" --attribute enableDnsHostnames |
  jq -r .EnableDnsHostnames.Value)" true
subnet=$(aws ec2 create-subnet --vpc-id "$vpc" --cidr-block 198.19.1.0/24 --availability-zone "$az" |
  jq -r .Subnet.SubnetId)
aws ec2 wait subnet-available --subnet-ids "$subnet" >/dev/null
sg=$(aws ec2 create-security-group --group-name web --description "web servers" --vpc-id "$vpc" | jq -r .GroupId)
aws ec2 authorize-security-group-ingress --group-id "$sg" --protocol tcp --port 22 --cidr 0.0.0.0/0 >/dev/null
want "ingress rule" "$(aws ec2 describe-security-groups --group-ids "$sg" |
  jq -c '.SecurityGroups[0].IpPermissions | map([.IpProtocol, .FromPort, .ToPort, .IpRanges[0].CidrIp])')" \
  '[["tcp",22,22,"0.0.0.0/0"]]'

# A key pair made by kumo: the private key comes back once.
aws ec2 create-key-pair --key-name cli-key --key-type ed25519 | jq -r .KeyMaterial | grep -q "BEGIN OPENSSH PRIVATE KEY" ||
  fail "create-key-pair returned no OpenSSH private key"
want "key pair" "$(aws ec2 describe-key-pairs --key-names cli-key | jq -r '.KeyPairs[0].KeyName')" cli-key
aws_error InvalidKeyPair.Duplicate ec2 create-key-pair --key-name cli-key

# An instance.
ami=$(aws ec2 describe-images --filters "Name=name,Values=$IMAGE" | jq -r '.Images[0].ImageId')
[[ "$ami" == ami-* ]] || fail "no image named $IMAGE"
printf '#!/bin/sh\necho hello from the aws cli\n' >/tmp/aws-cli-userdata.$$
iid=$(aws ec2 run-instances --image-id "$ami" --instance-type "$TYPE" --subnet-id "$subnet" \
  --security-group-ids "$sg" --key-name cli-key --user-data "file:///tmp/aws-cli-userdata.$$" \
  --tag-specifications 'ResourceType=instance,Tags=[{Key=Name,Value=cli-web}]' | jq -r '.Instances[0].InstanceId')
rm -f /tmp/aws-cli-userdata.$$
aws ec2 wait instance-running --instance-ids "$iid" >/dev/null
ip=$(aws ec2 describe-instances --instance-ids "$iid" | jq -r '.Reservations[0].Instances[0].PrivateIpAddress')
[[ "$ip" == 198.19.1.* ]] || fail "PrivateIpAddress '$ip'"
want "user data" "$(aws ec2 describe-instance-attribute --instance-id "$iid" --attribute userData |
  jq -r .UserData.Value | base64 -d)" "$(printf '#!/bin/sh\necho hello from the aws cli')"

# A volume, attached.
vol=$(aws ec2 create-volume --availability-zone "$az" --size 1 | jq -r .VolumeId)
aws ec2 wait volume-available --volume-ids "$vol" >/dev/null
aws ec2 attach-volume --volume-id "$vol" --instance-id "$iid" --device /dev/sdf >/dev/null
aws ec2 wait volume-in-use --volume-ids "$vol" \
  --filters Name=attachment.status,Values=attached >/dev/null

# An Elastic IP.
eip=$(aws ec2 allocate-address --domain vpc)
alloc=$(jq -r .AllocationId <<<"$eip")
public=$(jq -r .PublicIp <<<"$eip")
assoc=$(aws ec2 associate-address --allocation-id "$alloc" --instance-id "$iid" | jq -r .AssociationId)
want "address association" "$(aws ec2 describe-addresses --allocation-ids "$alloc" |
  jq -r '.Addresses[0] | "\(.InstanceId) \(.AssociationId) \(.PublicIp)"')" "$iid $assoc $public"

# Tags and filters.
aws ec2 create-tags --resources "$iid" "$vol" --tags Key=env,Value=test >/dev/null
want "describe-tags" "$(aws ec2 describe-tags --filters "Name=resource-id,Values=$iid" Name=key,Values=env |
  jq -r '.Tags | map("\(.ResourceType)=\(.Value)") | join(",")')" "instance=test"
want "instances by tag" "$(aws ec2 describe-instances --filters Name=tag:env,Values=test |
  jq -r '[.Reservations[].Instances[].InstanceId] | join(",")')" "$iid"
want "volumes by tag" "$(aws ec2 describe-volumes --filters Name=tag:env,Values=test |
  jq -r '[.Volumes[].VolumeId] | join(",")')" "$vol"
aws ec2 delete-tags --resources "$vol" --tags Key=env >/dev/null
want "volumes by tag after delete-tags" "$(aws ec2 describe-volumes --filters Name=tag:env,Values=test |
  jq -r '[.Volumes[].VolumeId] | join(",")')" ""

# Power.
aws ec2 stop-instances --instance-ids "$iid" >/dev/null
aws ec2 wait instance-stopped --instance-ids "$iid" >/dev/null
aws ec2 start-instances --instance-ids "$iid" >/dev/null
aws ec2 wait instance-running --instance-ids "$iid" >/dev/null
aws ec2 reboot-instances --instance-ids "$iid" >/dev/null

# Teardown, in dependency order.
aws ec2 disassociate-address --association-id "$assoc" >/dev/null
aws ec2 release-address --allocation-id "$alloc" >/dev/null
aws ec2 detach-volume --volume-id "$vol" >/dev/null
aws ec2 wait volume-available --volume-ids "$vol" >/dev/null
aws ec2 delete-volume --volume-id "$vol" >/dev/null
aws ec2 terminate-instances --instance-ids "$iid" >/dev/null
aws ec2 wait instance-terminated --instance-ids "$iid" >/dev/null
aws ec2 delete-key-pair --key-name cli-key >/dev/null
for _ in $(seq 60); do # the terminated instance's port may take a moment to go
  if "$AWS_CLI" ec2 delete-security-group --group-id "$sg" 2>/tmp/aws-cli-err.$$; then break; fi
  grep -q DependencyViolation /tmp/aws-cli-err.$$ || fail "delete-security-group: $(cat /tmp/aws-cli-err.$$)"
  sleep 1
done
aws_error InvalidGroup.NotFound ec2 describe-security-groups --group-ids "$sg"
aws ec2 delete-subnet --subnet-id "$subnet" >/dev/null
aws ec2 delete-vpc --vpc-id "$vpc" >/dev/null
aws_error InvalidVpcID.NotFound ec2 describe-vpcs --vpc-ids "$vpc"
aws_error InvalidVolume.NotFound ec2 describe-volumes --volume-ids "$vol"
rm -f /tmp/aws-cli-err.$$
echo OK
