#!/bin/sh
# PID 1 of the conformance VM, started by test/kernel/run-kernel-suite.mjs as
#   init=/bin/sh -- <repo>/test/kernel/vm-init.sh
# The root filesystem is the host's /, shared read-only over 9p, so this
# script, node, node_modules and the built addon are the host's own files.
#
# Shares and paths inside the VM:
#   /run/dmx/results   second 9p share (mount_tag "results"), writable, the
#                      runner's scratch directory: vm.env and cmd.sh come in,
#                      devices, exit-code and vitest.json go out.
#   <repo>             overlayfs: the read-only checkout as lower layer, a tmpfs
#                      as upper, so tools that write next to the code (vitest
#                      and vite caches) work; writes vanish with the VM.
#   /tmp, /run         tmpfs (hides the host's /tmp and /run).
#
# PID 1 must never exit (the kernel would panic): no `set -e` here, and the
# end is always `reboot -f`, which qemu (-no-reboot) turns into its own exit.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

say() { echo "dmx-vm: $*"; }

results=/run/dmx/results

finish() {
    # $1: exit code of the run
    echo "$1" >"$results/exit-code" 2>/dev/null || say "cannot write $results/exit-code"
    sync
    say "exit code $1, powering off"
    reboot -f >/dev/null 2>&1
    # reboot(8) missing or refused: exiting PID 1 panics, and panic=-1 reboots.
    sleep 2
    exit "$1"
}

# Resolve the checkout from this script's location (test/kernel/vm-init.sh).
case "$0" in
/*) script=$0 ;;
*) say "started with a relative path ($0); need an absolute one"; script=/$0 ;;
esac
repo=${script%/test/kernel/*}

# --- Pseudo filesystems ---------------------------------------------------------
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
# CONFIG_DEVTMPFS_MOUNT mounts /dev after the root; mount it if that did not happen.
grep -q '^devtmpfs /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs /run
mkdir -p "$results" /run/dmx/lower /run/dmx/ovl

if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results "$results"; then
    say "cannot mount the results share (mount_tag results); results stay in the VM"
fi
# Settings from the runner: node's path, timeout, environment passed through.
# shellcheck disable=SC1091
[ -f "$results/vm.env" ] && . "$results/vm.env"

# --- A writable view of the checkout -------------------------------------------
# The lower layer is reached through a bind mount under /run so that a checkout
# that lives under /tmp on the host is still visible once /tmp is a tmpfs.
# (Checked: overlayfs accepts a 9p directory as lower layer on this kernel.
# Without overlayfs the checkout stays read-only and vitest's cache writes
# fail; the run then goes on and reports what broke.)
overlay=no
if mount --bind "$repo" /run/dmx/lower; then
    mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=755 tmpfs /run/dmx/ovl
    mkdir -p /run/dmx/ovl/upper /run/dmx/ovl/work "$repo" 2>/dev/null
    if mount -t overlay overlay \
        -o lowerdir=/run/dmx/lower,upperdir=/run/dmx/ovl/upper,workdir=/run/dmx/ovl/work "$repo"; then
        overlay=yes
    elif [ ! -d "$repo/test/kernel" ]; then
        # The tmpfs on /tmp hid the checkout and the overlay failed: bind it back.
        mount --bind /run/dmx/lower "$repo"
    fi
else
    mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
fi
say "kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%d MiB", $2 / 1024}' /proc/meminfo), clock $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "checkout $repo (writable overlay: $overlay)"

# --- Loopback only: the VM has no network card -----------------------------------
if command -v ip >/dev/null 2>&1; then
    ip link set lo up || say "ip link set lo up failed"
elif command -v ifconfig >/dev/null 2>&1; then
    ifconfig lo 127.0.0.1 up || say "ifconfig lo up failed"
else
    say "no ip or ifconfig: loopback stays down"
fi

# --- Environment for the tests ---------------------------------------------------
HOME=/tmp/home
TMPDIR=/tmp
USER=root
LOGNAME=root
LANG=C.UTF-8
TERM=${TERM:-linux}
[ -n "${DMX_VM_NODE:-}" ] || DMX_VM_NODE=$(command -v node)
PATH=${DMX_VM_NODE%/*}:$repo/node_modules/.bin:$PATH
DMX_VM_RESULTS=$results
export HOME TMPDIR USER LOGNAME LANG TERM PATH DMX_VM_NODE DMX_VM_RESULTS
mkdir -p "$HOME"
# A serial line has no window size; without one tools wrap at 0 or 80 columns.
stty cols "${DMX_VM_COLS:-160}" rows 50 2>/dev/null

# --- Devices the suite needs -----------------------------------------------------
# All drivers are built in and have probed before init runs; wait a little in
# case a probe was deferred.
need="/dev/dvb/adapter0/frontend0 /dev/dvb/adapter0/demux0 /dev/dvb/adapter0/dvr0"
i=0
while [ $i -lt 50 ]; do
    ok=yes
    for n in $need; do [ -c "$n" ] || ok=no; done
    [ $ok = yes ] && break
    sleep 0.2
    i=$((i + 1))
done
missing=
for n in $need; do
    if [ -c "$n" ]; then say "found $n"; else missing="$missing $n"; fi
done
names=
for d in /sys/class/video4linux/*; do
    [ -f "$d/name" ] || continue
    name=$(cat "$d/name")
    names="$names|$name|"
    say "found /dev/${d##*/}: $name"
done
for want in vim2m stateful-decoder; do
    case "$names" in
    *"|$want|"*) ;;
    *) missing="$missing video4linux:$want" ;;
    esac
done
for n in /dev/udmabuf /dev/dma_heap/system; do
    [ -c "$n" ] && say "found $n"
done
if [ -n "$missing" ]; then
    say "MISSING devices:$missing"
    echo "missing:$missing" >"$results/devices"
else
    echo ok >"$results/devices"
fi

# --- The run -------------------------------------------------------------------------
cd "$repo" || finish 125
if [ "${DMX_VM_SHELL:-0}" = 1 ]; then
    say "interactive shell in $repo; 'exit' powers the VM off"
    # setsid -c makes the console the controlling terminal, so ^C works.
    if command -v setsid >/dev/null 2>&1; then
        setsid -c sh -i </dev/console >/dev/console 2>&1
    else
        sh -i </dev/console >/dev/console 2>&1
    fi
    finish $?
fi

# The test setup must not rebuild dist/ in here: the harness built it on the host.
export DMX_IN_VM=1
if [ -f "$results/cmd.sh" ]; then
    set -- sh "$results/cmd.sh"
else
    set -- "$DMX_VM_NODE" node_modules/vitest/vitest.mjs run --project conformance-kernel \
        --reporter=default --reporter=json --outputFile="$results/vitest.json"
fi
# Second line of defence behind the runner's wall-clock limit.
if [ -n "${DMX_VM_TIMEOUT:-}" ] && command -v timeout >/dev/null 2>&1; then
    set -- timeout -k 10 "$DMX_VM_TIMEOUT" "$@"
fi
say "running: $*"
# Through a pipe, not straight to the serial line: on a terminal vitest redraws
# its status in place, which turns a log into cursor escapes. (The runner sets
# FORCE_COLOR when its own output is a terminal.)
{
    "$@" </dev/null
    echo $? >/run/dmx/rc
} 2>&1 | cat
finish "$(cat /run/dmx/rc 2>/dev/null || echo 125)"
