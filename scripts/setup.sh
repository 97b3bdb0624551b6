#!/usr/bin/env bash
# Install everything kumo needs to build, run and test on Debian 12 (bookworm). Idempotent.
# Usage: sudo scripts/setup.sh
set -euo pipefail

need_root() { [ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo)" >&2; exit 1; }; }
need_root

PKGS=(
  qemu-system-x86        # the hypervisor (KVM when usable, TCG otherwise)
  qemu-utils             # qemu-img: overlays, image import
  dnsmasq-base           # per-network DHCP
  dnsmasq-utils          # dhcp_release: leases are released when an instance is deleted
  nftables               # NAT and (later) security groups
  iproute2               # bridges, taps, network namespaces
  busybox-static         # the tiny guest's userland (and udhcpc in tests)
  etcd-server etcd-client # the distributed store backend (tests start their own etcd)
  genisoimage            # NoCloud seed ISOs
  cpio zstd socat jq curl ca-certificates
  iperf3                 # the datapath benchmark (bench/)
  openssh-client         # ssh-keygen in tests
  gcc pkg-config         # building bundled SQLite
  protobuf-compiler
  ceph-mon ceph-osd ceph-mgr ceph-common # a real single-node Ceph for the rbd pool tests (scripts/ceph-cluster.sh)
  debootstrap e2fsprogs fdisk grub-pc-bin # the real Debian cloud image of the tests (scripts/build-debian-image.sh)
  python3-boto3 python3-venv # AWS clients of the EC2 tests: Debian's older boto3, and a venv for PyPI's current one
)

stamp=/var/lib/kumo-setup.stamp
want="$(printf '%s\n' "${PKGS[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! command -v qemu-system-x86_64 >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Some images ship a newer qemu-utils from backports that conflicts with bookworm's qemu-system;
  # pin both to the bookworm release so they match.
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "${PKGS[@]/qemu-utils/qemu-utils/bookworm}" qemu-block-extra/bookworm >/dev/null
  mkdir -p "$(dirname "$stamp")" && echo "$want" > "$stamp"
fi

# Current boto3 and aws CLI from PyPI (pinned in scripts/aws-requirements.txt) in a venv on Debian's
# python3, for the EC2 compatibility tests (crates/kumo/tests/e2e_aws_clients.rs). Reinstalled only
# when the pins change.
aws_venv=/opt/kumo-aws-venv
aws_req="$(dirname "$0")/aws-requirements.txt"
aws_want="$(sha256sum < "$aws_req" | cut -c1-16)"
if [ "$(cat "$aws_venv/.kumo-requirements" 2>/dev/null)" != "$aws_want" ] \
  || ! "$aws_venv/bin/aws" --version >/dev/null 2>&1; then
  echo "setup.sh: installing boto3 and awscli into $aws_venv" >&2
  rm -rf "$aws_venv"
  /usr/bin/python3 -m venv "$aws_venv"
  "$aws_venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check -r "$aws_req"
  echo "$aws_want" > "$aws_venv/.kumo-requirements"
fi

# Rust toolchain (rust-version 1.95) and cargo-nextest.
if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; else
    echo "setup.sh: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95.0
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
echo "setup.sh: ok ($(qemu-system-x86_64 --version | head -1); $(cargo --version))"
