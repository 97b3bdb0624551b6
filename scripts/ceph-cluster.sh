#!/usr/bin/env bash
# Start and stop a real, throw-away, single-node Ceph cluster (pacific 16.2, Debian 12) for the tests of
# kumo's `rbd` storage driver. Nothing is mocked: these are the distribution's ceph-mon/ceph-osd/ceph-mgr.
#
# Usage (as root):
#   scripts/ceph-cluster.sh install       install the Ceph packages if missing (idempotent; start does it too)
#   scripts/ceph-cluster.sh start DIR     create a fresh cluster in DIR, wait until it serves RBD, print env
#   scripts/ceph-cluster.sh stop DIR      kill the daemons recorded in DIR (by PID), wait, remove DIR
#   scripts/ceph-cluster.sh status DIR    `ceph -s` against the cluster in DIR
#
# What start runs: one monitor (mon.a), one manager (mgr.x; `ceph df`/pool usage and HEALTH_OK need it) and
# one OSD (osd.0, BlueStore on a sparse regular file DIR/osd.0/block, no block device, no loop device).
# Cephx is on; the client.admin keyring is DIR/ceph.client.admin.keyring and ceph.conf names it in [global]
# (`keyring = ...`), so librbd users that cannot pass a keyring (QEMU -blockdev driver=rbd) work too.
# The monitor listens on 127.0.0.1 only, messenger v2 only, on a free port (or $CEPH_MON_PORT).
# Single replica (size 1, min_size 1), RBD pool `kumo` (8 PGs, autoscaler off) initialised with `rbd pool init`.
# Start waits (bounded by $CEPH_START_TIMEOUT, default 120 s) for HEALTH_OK and for a probe image to be
# created and removed, then prints and writes to DIR/env:
#   CEPH_CONF=DIR/ceph.conf  CEPH_KEYRING=DIR/ceph.client.admin.keyring  CEPH_USER=admin  CEPH_POOL=kumo
# (plus CEPH_MON_HOST and CEPH_FSID for information).
#
# Everything lives in DIR: ceph.conf, keyrings, mon.a/ (mon store), mgr.x/, osd.0/ (BlueStore file, default
# 4 GiB sparse, $CEPH_OSD_SIZE in bytes or with G/M suffix), log/ (daemon logs and stdout/stderr), run/
# (admin sockets), crash/, env, and the PID files mon.a.pid, mgr.x.pid, osd.0.pid. Daemons run in the
# foreground (-f) as background children in their own session, stdio redirected to log/, so they survive
# the calling shell and hold no pipe of the caller open.
#
# Re-running start: if DIR holds a cluster whose daemons are alive, start fails (run stop first). If DIR holds
# a dead cluster made by this script (marker file DIR/.kumo-ceph-cluster) it is wiped and recreated. A DIR that
# exists, is not empty and has no marker is refused (this script never deletes what it did not create).
# stop only ever signals PIDs recorded in DIR whose command line still names DIR/ceph.conf.
#
# Timings on the 2-core CI container: install 29 s (86 packages incl. deps, once), start 14 s (mon 1 s,
# osd up 7 s, HEALTH_OK + probe image 14 s), stop 4 s. RSS: mon ~45 MiB, mgr ~155 MiB (only always-on
# modules loaded), osd ~50 MiB idle, ~100 MiB after 1 GiB of 4M writes, ~400 MiB peak under rbd bench with
# 4K random writes. Disk: the sparse BlueStore file only grows with written data.
#
# Use from a test: eval "$(scripts/ceph-cluster.sh start DIR)" (progress goes to stderr, env lines to
# stdout), or `set -a; . DIR/env; set +a`.
set -euo pipefail

POOL=kumo
MARKER=.kumo-ceph-cluster
DAEMONS=(mon.a mgr.x osd.0)

die() { echo "ceph-cluster: $*" >&2; exit 1; }
log() { echo "ceph-cluster: $*" >&2; }

install_pkgs() {
  local missing=()
  command -v ceph-mon >/dev/null || missing+=(ceph-mon)
  command -v ceph-osd >/dev/null || missing+=(ceph-osd)
  command -v ceph-mgr >/dev/null || missing+=(ceph-mgr)
  { command -v ceph >/dev/null && command -v rbd >/dev/null && command -v ceph-authtool >/dev/null \
    && command -v monmaptool >/dev/null; } || missing+=(ceph-common)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root to install them"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
}

# pid_of DIR NAME: the recorded PID if that process is alive and is ours (its cmdline names DIR/ceph.conf).
pid_of() {
  local dir=$1 name=$2 pid
  [ -f "$dir/$name.pid" ] || return 1
  pid=$(cat "$dir/$name.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/ceph.conf" || return 1
  echo "$pid"
}

# kill_daemons DIR: SIGTERM osd.0 and mgr.x, wait, then mon.a (an OSD stopping after its monitor waits
# 5 s for a mark-down ack); SIGKILL whatever ignores SIGTERM for 20 s. Only our recorded, verified PIDs.
kill_daemons() {
  local dir=$1 group name pid
  for group in "osd.0 mgr.x" "mon.a"; do
    local pids=()
    for name in $group; do
      if pid=$(pid_of "$dir" "$name"); then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
    done
    wait_gone 200 ${pids[@]+"${pids[@]}"} && continue
    log "daemons ${pids[*]} ignored SIGTERM for 20 s; sending SIGKILL"
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait_gone 100 "${pids[@]}" || die "could not kill ${pids[*]}"
  done
}

wait_gone() {   # wait_gone TENTHS PID...: true once none of the PIDs exists
  local n=$1 pid alive; shift
  while :; do
    alive=0
    for pid in "$@"; do [ -d "/proc/$pid" ] && alive=1; done
    [ $alive = 0 ] && return 0
    ((n-- > 0)) || return 1
    sleep 0.1
  done
}

# run_daemon DIR NAME BINARY ARGS...: start in the foreground mode as our background child, new session.
run_daemon() {
  local dir=$1 name=$2 bin=$3; shift 3
  MALLOC_ARENA_MAX=2 setsid "$bin" -f -c "$dir/ceph.conf" "$@" </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo $! >"$dir/$name.pid"
}

on_start_exit() {
  local rc=$?
  [ "$rc" -eq 0 ] && return 0
  log "start failed; killing its daemons; logs kept in $START_DIR/log"
  tail -n 20 "$START_DIR"/log/*.log >&2 2>/dev/null || true
  kill_daemons "$START_DIR" || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd_start() {
  local dir=$1
  install_pkgs
  mkdir -p "$(dirname "$dir")"
  dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")
  if [ -d "$dir" ]; then
    local n
    for n in "${DAEMONS[@]}"; do
      pid_of "$dir" "$n" >/dev/null && die "$dir already has a running cluster ($n); run: $0 stop $dir"
    done
    if [ -e "$dir/$MARKER" ]; then
      log "removing stale cluster in $dir"; rm -rf "$dir"
    elif [ -n "$(ls -A "$dir")" ]; then
      die "$dir exists, is not empty and was not made by this script"
    fi
  fi
  mkdir -p "$dir"/{log,run,crash,mgr.x,osd.0}   # mon.a/ must not exist yet: ceph-mon --mkfs silently
                                               # does nothing (exit 0) if its data dir is not empty
  touch "$dir/$MARKER"

  local t0=$SECONDS deadline=$((SECONDS + ${CEPH_START_TIMEOUT:-120}))
  local port=${CEPH_MON_PORT:-$(free_port)}
  local fsid; fsid=$(cat /proc/sys/kernel/random/uuid)
  local mon_host="v2:127.0.0.1:$port"
  local osd_size=${CEPH_OSD_SIZE:-4G}
  case $osd_size in
    *[Gg]) osd_size=$(( ${osd_size%?} * 1024 * 1024 * 1024 )) ;;
    *[Mm]) osd_size=$(( ${osd_size%?} * 1024 * 1024 )) ;;
  esac
  local conf=$dir/ceph.conf admin_keyring=$dir/ceph.client.admin.keyring

  # On failure after this point: kill what we started, keep DIR (logs) for inspection.
  START_DIR=$dir
  trap on_start_exit EXIT

  cat >"$conf" <<EOF
# Generated by kumo scripts/ceph-cluster.sh: a throw-away single-node test cluster.
[global]
fsid = $fsid
mon_host = $mon_host
public_network = 127.0.0.0/8
ms_bind_msgr1 = false
ms_bind_msgr2 = true
ms_bind_ipv4 = true
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $admin_keyring
auth_allow_insecure_global_id_reclaim = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 0
mon_max_pg_per_osd = 1000
client_mount_timeout = 30
rados_mon_op_timeout = 30
rados_osd_op_timeout = 60

[mon]
mon_data = $dir/\$name
keyring = $dir/\$name/keyring
mon_initial_members = a
mgr_initial_modules =
log_file = $dir/log/\$name.log
mon_cluster_log_file = $dir/log/cluster.log
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.ceph.pid
crash_dir = $dir/crash

[mgr]
# Load only the always-on modules (saves ~150 MiB RSS); always-on ones cannot be left out (MGR_MODULE_ERROR).
mgr_disabled_modules = alerts,diskprediction_local,influx,insights,iostat,localpool,mirroring,nfs,osd_perf_query,osd_support,prometheus,restful,selftest,snap_schedule,stats,telegraf,test_orchestrator,zabbix
mgr_data = $dir/\$name
keyring = $dir/\$name/keyring
log_file = $dir/log/\$name.log
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.ceph.pid
crash_dir = $dir/crash

[osd]
osd_data = $dir/\$name
keyring = $dir/\$name/keyring
log_file = $dir/log/\$name.log
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.ceph.pid
crash_dir = $dir/crash
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $osd_size
bluestore_block_db_create = false
bluestore_block_wal_create = false
bluestore_fsck_on_mount = false
bluestore_fsck_on_mkfs = false
bluestore_cache_autotune = false
bluestore_cache_size = 67108864
bluestore_rocksdb_options = compression=kNoCompression,max_write_buffer_number=2,min_write_buffer_number_to_merge=1,recycle_log_file_num=2,write_buffer_size=33554432,writable_file_max_buffer_size=0,compaction_readahead_size=2097152,max_background_compactions=1,max_total_wal_size=134217728
osd_client_message_size_cap = 134217728
osd_memory_target = 939524096
osd_memory_cache_min = 33554432
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2
osd_class_update_on_start = false
EOF

  log "creating keys and monitor store (mon on $mon_host)"
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$admin_keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  chmod 0644 "$admin_keyring"   # readable by a QEMU running as another user; a test cluster
  ceph-authtool "$dir/mon.keyring" --import-keyring "$admin_keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[$mon_host]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" \
    >>"$dir/log/mon.a.out" 2>&1 || die "ceph-mon --mkfs failed (see $dir/log/mon.a.out)"
  run_daemon "$dir" mon.a ceph-mon -i a

  local C=(ceph -c "$conf" --connect-timeout 10)
  until timeout 15 "${C[@]}" mon stat >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || die "monitor did not come up"
    pid_of "$dir" mon.a >/dev/null || die "ceph-mon exited (see $dir/log/mon.a.log)"
    sleep 0.5
  done
  log "monitor up after $((SECONDS - t0)) s; starting mgr and osd"

  timeout 30 "${C[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$dir/mgr.x/keyring" >/dev/null
  run_daemon "$dir" mgr.x ceph-mgr -i x

  local osd_uuid osd_secret osd_id
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_secret=$(ceph-authtool --gen-print-key)
  osd_id=$(echo "{\"cephx_secret\": \"$osd_secret\"}" | timeout 30 "${C[@]}" osd new "$osd_uuid" -i -)
  [ "$osd_id" = 0 ] || die "expected osd id 0, got '$osd_id'"
  ceph-authtool --create-keyring "$dir/osd.0/keyring" --name osd.0 --add-key "$osd_secret" >/dev/null
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/osd.0.out" 2>&1 \
    || die "ceph-osd --mkfs failed (see $dir/log/osd.0.out and osd.0.log)"
  run_daemon "$dir" osd.0 ceph-osd -i 0

  until timeout 15 "${C[@]}" osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; do
    [ $SECONDS -lt "$deadline" ] || die "osd.0 did not come up"
    pid_of "$dir" osd.0 >/dev/null || die "ceph-osd exited (see $dir/log/osd.0.log)"
    sleep 0.5
  done
  log "osd.0 up after $((SECONDS - t0)) s; creating pool $POOL"

  timeout 30 "${C[@]}" osd pool create "$POOL" 8 8 replicated >/dev/null 2>&1
  timeout 30 "${C[@]}" osd pool set "$POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1
  timeout 30 "${C[@]}" osd pool set "$POOL" min_size 1 >/dev/null 2>&1
  timeout 60 rbd -c "$conf" pool init "$POOL" || die "rbd pool init failed"

  local probe="probe-$$" health=""
  while :; do
    health=$(timeout 15 "${C[@]}" health 2>/dev/null || true)
    if [[ $health == HEALTH_OK* ]] && timeout 30 rbd -c "$conf" -p "$POOL" create --size 4M "$probe" 2>/dev/null \
        && timeout 30 rbd -c "$conf" -p "$POOL" rm --no-progress "$probe" 2>/dev/null; then
      break
    fi
    [ $SECONDS -lt "$deadline" ] || { "${C[@]}" -s >&2 || true; die "cluster not healthy/usable in time: $health"; }
    log "waiting: ${health:-no answer}"
    sleep 1
  done
  trap - EXIT

  cat >"$dir/env" <<EOF
CEPH_CONF=$conf
CEPH_KEYRING=$admin_keyring
CEPH_USER=admin
CEPH_POOL=$POOL
CEPH_MON_HOST=$mon_host
CEPH_FSID=$fsid
EOF
  log "cluster ready in $((SECONDS - t0)) s (HEALTH_OK); mon pid $(cat "$dir/mon.a.pid"), mgr pid $(cat "$dir/mgr.x.pid"), osd pid $(cat "$dir/osd.0.pid")"
  cat "$dir/env"
}

cmd_stop() {
  local dir=$1
  [ -d "$dir" ] || { log "$dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/$MARKER" ] || die "$dir was not made by this script (no $MARKER); not touching it"
  kill_daemons "$dir"
  rm -rf "$dir"
  log "stopped and removed $dir"
}

case "${1:-}" in
  install) install_pkgs ;;
  start)   [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
  stop)    [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  status)  [ $# -eq 2 ] || die "usage: $0 status DIR"; ceph -c "$2/ceph.conf" --connect-timeout 10 -s ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
