#!/bin/busybox sh
# /init of kumo's tiny guest (built by kumo-guest, see lib.rs).
#
# Contract with the host, all on the serial console (ttyS0):
#   KUMO-ERROR <what>            something failed; boot goes on with what it has
#   KUMO-USERDATA-EXIT=<code>    a `#!` user-data script ran and exited with <code>
#   KUMO-READY instance-id=<id> ip=<ipv4|none>   printed exactly once, when the guest is up
# Then a root shell runs on the console (respawned when it exits). An ACPI power-button press
# (QMP system_powerdown) powers the guest off.
#
# Only busybox is available. Its `wget` (static glibc) segfaults on name lookups, so metadata is
# fetched with `nc` and hand-written HTTP/1.0 requests.

/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/kumo
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1
hostname -F /etc/hostname

err() { echo "KUMO-ERROR $*"; }

# --- kernel modules, in dependency order (computed at build time) ---
for m in $(cat /etc/kumo/modules); do
    insmod "/lib/modules/$m.ko" || err "insmod $m"
done

# --- network ---
ip link set lo up
ip=none
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 30 ]; do usleep 100000; n=$((n + 1)); done
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    # The script applies the lease (udhcpc itself configures nothing) and records the address.
    if udhcpc -i eth0 -s /etc/udhcpc.script -O mtu -O staticroutes -O domain -t 10 -T 1 -A 1 -n -q >/dev/null 2>&1 \
        && [ -s /run/kumo/ip ]; then
        ip=$(cat /run/kumo/ip)
    else
        err "dhcp eth0"
    fi
else
    err "no eth0"
fi

# nic IFACE: bring up a secondary NIC with DHCP and report it (also used for hot-plugged NICs).
nic() {
    ip link set "$1" up
    if udhcpc -i "$1" -s /etc/udhcpc.script -O mtu -O staticroutes -t 10 -T 1 -A 1 -n -q >/dev/null 2>&1 \
        && [ -s "/run/kumo/ip.$1" ]; then
        echo "KUMO-NIC $1 ip=$(cat "/run/kumo/ip.$1")"
    else
        echo "KUMO-NIC $1 ip=none"
        err "dhcp $1"
    fi
    : >"/run/kumo/nic.$1"
}
: >/run/kumo/nic.eth0
for path in /sys/class/net/eth*; do
    i=${path##*/}
    [ -e "$path" ] && [ ! -e "/run/kumo/nic.$i" ] && nic "$i"
done

# --- instance metadata (EC2 style, 169.254.169.254) ---
# imds METHOD PATH OUT [HEADER]: body to OUT; succeeds only on HTTP 200.
imds() {
    # Values go through %s so a token or path can never act as a printf format.
    # A busy host may answer slowly: retry when nothing at all came back.
    for try in 1 2 3 4; do
        {
            printf '%s %s HTTP/1.0\r\nHost: 169.254.169.254\r\nContent-Length: 0\r\n' "$1" "$2"
            [ -n "$4" ] && printf '%s\r\n' "$4"
            printf '\r\n'
        } | nc -w 3 169.254.169.254 80 >/tmp/imds.resp 2>/dev/null
        [ -s /tmp/imds.resp ] && break
        sleep 1
    done
    [ -s /tmp/imds.resp ] || return 1
    code=$(head -n 1 /tmp/imds.resp | cut -d ' ' -f 2)
    # Byte offset of the body: everything up to and including the first empty (CR)LF line.
    off=$(awk '{ n += length($0) + 1; sub(/\r$/, "") } $0 == "" { print n; exit }' /tmp/imds.resp)
    [ -n "$off" ] || return 1
    tail -c +$((off + 1)) /tmp/imds.resp >"$3"
    [ "$code" = 200 ]
}

iid=
hdr=
if [ "$ip" != none ]; then
    # IMDSv2 token if the service offers one; plain IMDSv1 requests otherwise.
    if imds PUT /latest/api/token /tmp/token "X-aws-ec2-metadata-token-ttl-seconds: 300" \
        && [ -s /tmp/token ]; then
        hdr="X-aws-ec2-metadata-token: $(cat /tmp/token)"
    fi
    n=0
    until imds GET /latest/meta-data/instance-id /tmp/iid "$hdr"; do
        n=$((n + 1))
        [ $n -ge 5 ] && break
        sleep 1
    done
    [ -s /tmp/iid ] && [ $n -lt 5 ] && iid=$(cat /tmp/iid)
    if [ -n "$iid" ]; then
        imds GET /latest/meta-data/hostname /tmp/hostname "$hdr" && hostname "$(cat /tmp/hostname)"
        imds GET /latest/meta-data/local-ipv4 /tmp/local-ipv4 "$hdr" || err "metadata local-ipv4"
        imds GET /latest/user-data /tmp/user-data "$hdr" || rm -f /tmp/user-data
    else
        err "metadata 169.254.169.254"
    fi
fi

# --- NoCloud seed (a virtio disk labelled cidata, ISO 9660), when the metadata service gave nothing ---
if [ -z "$iid" ]; then
    seed=$(findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null)
    if [ -n "$seed" ] && mkdir -p /mnt/seed && mount -o ro "$seed" /mnt/seed 2>/dev/null; then
        iid=$(sed -n 's/^instance-id:[[:space:]]*//p' /mnt/seed/meta-data | tr -d '"\r' | head -n 1)
        h=$(sed -n 's/^local-hostname:[[:space:]]*//p' /mnt/seed/meta-data | tr -d '"\r' | head -n 1)
        [ -n "$h" ] && hostname "$h"
        [ -f /mnt/seed/user-data ] && cp /mnt/seed/user-data /tmp/user-data
        umount /mnt/seed
    fi
fi
[ -n "$iid" ] || iid=unknown
hostname >/etc/hostname

# --- volumes ---
# Mount-on-request of attached volumes goes here (e.g. a metadata key listing device -> mountpoint,
# then `mount /dev/vdX /mnt/...`); not implemented yet: volumes show up as /dev/vd* only.

# --- services: power button, HTTP responder ---
# busybox acpid turns the power-button input event into /etc/acpi/PWRF/00000080 (poweroff -f).
acpid -c /etc/acpi -l /tmp/acpid.log || err "acpid"
mkdir -p /www
echo "$iid" >/www/instance-id
printf '<html><body>kumo tiny guest %s</body></html>\n' "$iid" >/www/index.html
httpd -p 80 -h /www || err "httpd"

# --- user-data ---
if [ -s /tmp/user-data ] && [ "$(head -c 2 /tmp/user-data)" = '#!' ]; then
    chmod +x /tmp/user-data
    /tmp/user-data
    echo "KUMO-USERDATA-EXIT=$?"
fi

echo "KUMO-READY instance-id=$iid ip=$ip"

# --- NIC hot-plug: configure interfaces that appear later (QMP device_add) ---
(
    while :; do
        for path in /sys/class/net/eth*; do
            i=${path##*/}
            [ -e "$path" ] && [ ! -e "/run/kumo/nic.$i" ] && nic "$i"
        done
        sleep 1
    done
) &

# --- console shell, respawned forever (this is PID 1: it must never exit) ---
while :; do
    setsid cttyhack sh -l
    sleep 1
done
