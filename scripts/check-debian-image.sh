#!/usr/bin/env bash
# Boot a Debian cloud image (from scripts/build-debian-image.sh) under QEMU and check that stock
# cloud-init did its job from a NoCloud seed, as kumo attaches one.
#
# Usage: scripts/check-debian-image.sh IMAGE.qcow2
#   env: KUMO_CHECK_TIMEOUT  seconds to wait for everything (default 600)
#        KUMO_CHECK_SMP      vCPUs (default 2)
#        KUMO_CHECK_ACCEL    tcg (default) or kvm
#        KUMO_CHECK_SSH=0    skip the SSH login over a user-net port forward on 127.0.0.1
#        KUMO_CHECK_KEEP=1   keep the scratch dir (overlay, seed, serial log)
#
# What it does: a qcow2 overlay on IMAGE (4 GiB, so growpart has something to grow), a seed ISO
# (genisoimage -V cidata -J -r; meta-data with instance-id, local-hostname kumo-debian-test and
# public-keys, the way kumo's seed.rs writes it; user-data #cloud-config whose runcmd prints
# markers on ttyS0), an ed25519 key from ssh-keygen; QEMU as kumo runs it (q35, -nodefaults,
# -cpu max, virtio-blk for both disks, seed read-only, virtio-net on user networking), serial to
# a file. Passes when the serial log shows, within the timeout:
#   - `kumo-debian-test login:`                 (hostname from meta-data, getty on ttyS0)
#   - `Cloud-init v. ... finished`               (cloud-final done)
#   - `KUMO-USERDATA-OK`                         (runcmd ran)
#   - `KUMO-AUTHKEYS <our public key>`           (the key landed in ~debian/.ssh/authorized_keys)
# and (unless KUMO_CHECK_SSH=0) `ssh debian@127.0.0.1 -p PORT hostname` answers kumo-debian-test.
# QEMU is killed by its PID at the end. Prints the times to each milestone.
# Timing here (TCG, 2 vCPUs on 2 busy host cores): cloud-init finished ~95-145 s after QEMU
# starts, depending on host load (guest uptime 87-133 s; SeaBIOS+GRUB+loading take ~7-12 s).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 IMAGE.qcow2" >&2; exit 2; }
IMAGE="$(realpath "$1")"
TIMEOUT="${KUMO_CHECK_TIMEOUT:-600}"
SMP="${KUMO_CHECK_SMP:-2}"
ACCEL="${KUMO_CHECK_ACCEL:-tcg}"
HOSTNAME_WANT=kumo-debian-test

for t in qemu-system-x86_64 qemu-img genisoimage ssh-keygen; do
  command -v "$t" >/dev/null || { echo "check-debian-image: $t missing" >&2; exit 1; }
done

tmp="$(mktemp -d /var/tmp/kumo-check-debian.XXXXXX)"
qpid=""
cleanup() {
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    kill "$qpid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$qpid" 2>/dev/null || true
  fi
  if [ "${KUMO_CHECK_KEEP:-0}" = 1 ]; then echo "check-debian-image: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE" "$tmp/root.qcow2" 4G
ssh-keygen -q -t ed25519 -N '' -C kumo-check -f "$tmp/id"
pub="$(cat "$tmp/id.pub")"
mkdir "$tmp/seed"
cat > "$tmp/seed/meta-data" <<EOF
instance-id: "i-check-$$-$RANDOM"
local-hostname: "$HOSTNAME_WANT"
public-keys:
  - "$pub"
EOF
cat > "$tmp/seed/user-data" <<'EOF'
#cloud-config
runcmd:
  - [ sh, -c, 'echo KUMO-USERDATA-OK > /dev/ttyS0' ]
  - [ sh, -c, 'echo "KUMO-AUTHKEYS $(cat /home/debian/.ssh/authorized_keys)" > /dev/ttyS0' ]
  - [ sh, -c, 'echo "KUMO-INFO $(uname -r) root=$(df -BM --output=size / | tail -1 | tr -d " ") ip=$(ip -4 -o addr show scope global | awk "{print \$4}" | tr "\n" " ")" > /dev/ttyS0' ]
EOF
genisoimage -quiet -output "$tmp/seed.iso" -volid cidata -joliet -rock "$tmp/seed"

port=""
ssh_check="${KUMO_CHECK_SSH:-1}"
hostfwd=""
if [ "$ssh_check" = 1 ]; then
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then port=$p; break; fi
  done
  [ -n "$port" ] || { echo "check-debian-image: no free port" >&2; exit 1; }
  hostfwd=",hostfwd=tcp:127.0.0.1:$port-:22"
fi

log="$tmp/serial.log"
accel_opt="tcg,thread=multi"; cpu=max
[ "$ACCEL" = kvm ] && { accel_opt=kvm; cpu=host; }
start=$(date +%s.%N)
qemu-system-x86_64 \
  -machine q35 -accel "$accel_opt" -cpu "$cpu" -smp "$SMP" -m 1024M \
  -nodefaults -no-user-config -display none \
  -blockdev "{\"driver\":\"qcow2\",\"node-name\":\"root\",\"file\":{\"driver\":\"file\",\"filename\":\"$tmp/root.qcow2\"}}" \
  -device virtio-blk-pci,drive=root,serial=root,bootindex=0 \
  -blockdev "{\"driver\":\"raw\",\"node-name\":\"seed\",\"read-only\":true,\"file\":{\"driver\":\"file\",\"filename\":\"$tmp/seed.iso\",\"read-only\":true}}" \
  -device virtio-blk-pci,drive=seed,serial=seed \
  -netdev "user,id=n0$hostfwd" -device virtio-net-pci,netdev=n0 \
  -serial "file:$log" &
qpid=$!

elapsed() { awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'; }
declare -A seen=()
want=(login finished userdata authkeys)
pattern() {
  case "$1" in
    login) echo "$HOSTNAME_WANT login:" ;;
    finished) echo "Cloud-init v\. .* finished" ;;
    userdata) echo "KUMO-USERDATA-OK" ;;
    authkeys) echo "KUMO-AUTHKEYS .*${pub#* }" | sed 's/[+/]/./g' ;;
  esac
}
fail() {
  echo "check-debian-image: FAIL: $* (after $(elapsed) s); serial log tail:" >&2
  tail -40 "$log" 2>/dev/null | sed 's/^/  | /' >&2
  exit 1
}
while :; do
  kill -0 "$qpid" 2>/dev/null || fail "QEMU exited"
  for w in "${want[@]}"; do
    [ -n "${seen[$w]:-}" ] && continue
    if grep -aq -- "$(pattern "$w")" "$log" 2>/dev/null; then
      seen[$w]=$(elapsed)
      echo "check-debian-image: $w after ${seen[$w]} s" >&2
    fi
  done
  [ ${#seen[@]} -eq ${#want[@]} ] && break
  grep -aq "Kernel panic" "$log" 2>/dev/null && fail "kernel panic"
  [ "$(awk -v s="$start" -v n="$(date +%s.%N)" -v t="$TIMEOUT" 'BEGIN { print (n - s > t) }')" = 1 ] \
    && fail "timeout, missing: $(for w in "${want[@]}"; do [ -n "${seen[$w]:-}" ] || printf '%s ' "$w"; done)"
  sleep 1
done
grep -a "Cloud-init v\. .* finished" "$log" | tr -d '\r' | sed 's/^/check-debian-image: /' >&2
grep -aq "Cloud-init v\. .* finished.*DataSourceNoCloud" "$log" || fail "cloud-init did not use the NoCloud seed"
grep -a "KUMO-INFO" "$log" | tr -d '\r' | sed 's/^/check-debian-image: /' >&2

if [ "$ssh_check" = 1 ]; then
  got=""
  for _ in $(seq 1 30); do
    got="$(timeout 60 ssh -q -i "$tmp/id" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 debian@127.0.0.1 hostname 2>/dev/null || true)"
    [ "$got" = "$HOSTNAME_WANT" ] && break
    sleep 2
  done
  [ "$got" = "$HOSTNAME_WANT" ] || fail "ssh debian@127.0.0.1:$port hostname gave '$got'"
  echo "check-debian-image: ssh login as debian ok after $(elapsed) s" >&2
fi
echo "check-debian-image: OK ($IMAGE; cloud-init finished after ${seen[finished]} s under $ACCEL)"
