#!/usr/bin/env bash
# Runs a cross-built addon (native/cross/build.sh <arch>) on Debian
# bookworm's Node 18 for that architecture under qemu-user:
#   native/cross/smoke.sh <arm64|armhf>
# test/cross/smoke.mjs streams the simulation through the Pump into the
# simulated decoder and checks that buffers flowed and that closing released
# every fd and mapping. Node comes from the sysroot native/cross/install-deps.sh
# unpacks (qemu -L: the guest's /lib, /usr/lib and /usr/share/nodejs are
# looked up there first, everything else, this repository included, on the
# host); the host's own node is not involved.
# The last line printed is the summary: "smoke <arch>: ok|FAILED ...".
set -euo pipefail
exec </dev/null
# shellcheck source=native/cross/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

arch="${1:-}"
cross_target "$arch" || { echo "usage: $0 <arm64|armhf>" >&2; exit 2; }
cd "$repo_root"

addon="$repo_root/native/build-$arch/build/Release/dmx_native.node"
sysroot="$cross_cache/node-$arch"
node="$sysroot/usr/bin/node"

fail() {
    echo "smoke $arch: FAILED $*"
    exit 1
}
command -v "$qemu" >/dev/null || fail "$qemu is missing (run native/cross/install-deps.sh)"
if [ ! -f "$sysroot/.complete" ] || [ ! -x "$node" ]; then
    fail "no $arch node in $sysroot (run native/cross/install-deps.sh)"
fi
[ -f "$addon" ] || fail "no $arch addon at $addon (run native/cross/build.sh $arch)"

start=$(date +%s)
rc=0
# NODE_OPTIONS may carry flags meant for the host's newer node.
output="$(env -u NODE_OPTIONS DMX_NATIVE_ADDON="$addon" \
    "$qemu" -L "$sysroot" "$node" test/cross/smoke.mjs "$gyp_arch" 2>&1)" || rc=$?
seconds=$(($(date +%s) - start))
echo "$output"
[ $rc -eq 0 ] || fail "(exit $rc, ${seconds}s)"
summary="$(sed -n 's/^smoke ok: //p' <<<"$output")"
[ -n "$summary" ] || fail "(no result line, ${seconds}s)"
echo "smoke $arch: ok $summary run_s=$seconds"
