#!/usr/bin/env bash
# Cross-builds the addon for a board with Debian's cross toolchain:
#   native/cross/build.sh <arm64|armhf>
# into native/build-<arch>/build/Release/dmx_native.node (native/build, the
# host's build, is never touched), then checks the result with readelf:
#   - ELF class and machine (AArch64 / ARM), a shared object;
#   - armhf: EABI version 5 with the hard-float ABI (ELF flags) and float
#     arguments in VFP registers (build attributes);
#   - armhf: a 64-bit time_t. The sources refuse to compile otherwise
#     (static_assert in src/sys/sys.h; this script shows that it fires), and
#     the addon must not import any glibc function that has a 64-bit time or
#     offset variant under its plain name (the libc's own symbol table says
#     which ones do: e.g. ioctl -> __ioctl_time64, readdir -> readdir64).
# The last line printed is the summary: "built <arch>: key=value ...".
#
# Node headers: node-gyp's --nodedir is $npm_config_nodedir, else
# `npm config get nodedir`, else the running node's own prefix; the headers
# must be local (nothing is downloaded). Headers of any Node >= 18 do: the
# addon uses Node-API 8 only, so one build loads in Node 18.17+.
#
# Extra flags for the board (e.g. -mcpu=cortex-a7) can be given as CPPFLAGS,
# CFLAGS, CXXFLAGS and LDFLAGS, as a recipe would.
set -euo pipefail
# shellcheck source=native/cross/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

arch="${1:-}"
cross_target "$arch" || { echo "usage: $0 <arm64|armhf>" >&2; exit 2; }
cd "$repo_root"

fail() {
    echo "cross build $arch: $*" >&2
    exit 1
}

for tool in "$triplet-gcc" "$triplet-g++" "$triplet-ar" "$triplet-readelf"; do
    command -v "$tool" >/dev/null || fail "$tool is missing (run native/cross/install-deps.sh)"
done
readelf="$triplet-readelf"

has_node_headers() {
    [ -n "$1" ] && [ -f "$1/include/node/node_api.h" ] && [ -f "$1/include/node/common.gypi" ]
}
nodedir="${npm_config_nodedir:-}"
has_node_headers "$nodedir" || nodedir="$(npm config get nodedir 2>/dev/null || true)"
has_node_headers "$nodedir" || nodedir="$(node -p 'require("path").resolve(process.execPath, "../..")')"
has_node_headers "$nodedir" ||
    fail "no local Node headers (include/node/node_api.h): set npm_config_nodedir to a Node install or headers tarball"

out="native/build-$arch"
addon="$out/build/Release/dmx_native.node"
mkdir -p "$out"
cp native/cross/binding.gyp "$out/binding.gyp"

node_headers_version="$(sed -n 's/^#define NODE_\(MAJOR\|MINOR\|PATCH\)_VERSION \([0-9]*\)$/\2/p' \
    "$nodedir/include/node/node_version.h" | paste -sd.)"
echo "cross build $arch: $triplet-g++ $("$triplet-g++" -dumpfullversion), node $node_headers_version headers, --arch=$gyp_arch"
start=$(date +%s)
# make's progress goes to a log (shown on failure); warnings still show.
log="$out/build.log"
if ! CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar" \
    npx --no-install node-gyp rebuild --directory "$out" --arch="$gyp_arch" --nodedir="$nodedir" \
    --jobs=max --loglevel=warn >"$log"; then
    cat "$log" >&2
    fail "node-gyp failed"
fi
seconds=$(($(date +%s) - start))
[ -f "$addon" ] || fail "node-gyp succeeded but $addon is missing"

# --- what readelf says --------------------------------------------------------
header="$("$readelf" -h "$addon")"
field() { sed -n "s/^ *$1: *//p" <<<"$header"; }
machine="$(field Machine)"
class="$(field Class)"
type="$(field Type)"
flags="$(field Flags)"
case "$type" in DYN*) ;; *) fail "$addon is not a shared object (Type: $type)" ;; esac
case "$arch" in
    arm64) want_class=ELF64 ;;
    armhf) want_class=ELF32 ;;
esac
[ "$machine" = "$elf_machine" ] || fail "machine is '$machine', expected $elf_machine"
[ "$class" = "$want_class" ] || fail "class is '$class', expected $want_class"

abi="lp64"
if [ "$arch" = armhf ]; then
    grep -q 'Version5 EABI' <<<"$flags" || fail "ELF flags '$flags' lack Version5 EABI"
    grep -q 'hard-float ABI' <<<"$flags" || fail "ELF flags '$flags' lack the hard-float ABI"
    vfp_args="$("$readelf" -A "$addon" | sed -n 's/^ *Tag_ABI_VFP_args: *//p')"
    [ "$vfp_args" = "VFP registers" ] || fail "Tag_ABI_VFP_args is '$vfp_args', expected VFP registers"
    cpu_arch="$("$readelf" -A "$addon" | sed -n 's/^ *Tag_CPU_arch: *//p')"
    fpu="$("$readelf" -A "$addon" | sed -n 's/^ *Tag_FP_arch: *//p')"
    abi="eabi5-hard-float,cpu=$cpu_arch,fpu=$fpu"
fi

# Undefined dynamic symbols of an ELF file, as name@version.
imports_of() { "$readelf" --dyn-syms -W "$1" | awk '$7 == "UND" && $8 != "" { print $8 }'; }

# The highest symbol versions the addon needs: the board's glibc and
# libstdc++ must be at least that new.
imports="$(imports_of "$addon")"
max_version() { grep -o "@$1_[0-9.]*" <<<"$imports" | sed "s/^@$1_//" | sort -uV | tail -1; }
glibc_min="$(max_version GLIBC)"
glibcxx_min="$(max_version GLIBCXX)"

time_t_check="8(lp64)"
if [ "$arch" = armhf ]; then
    # The source guard fires without the flags and passes with them.
    guard_probe() {
        echo '#include "sys/sys.h"' | "$triplet-g++" -std=c++17 -fsyntax-only -I native/src -x c++ "$@" - 2>&1
    }
    if guard_output="$(guard_probe)" ||
        ! grep -q 'static assertion failed.*_TIME_BITS=64' <<<"$guard_output"; then
        fail "src/sys/sys.h compiles for $arch with a 32-bit time_t: its static_assert is gone"
    fi
    guard_probe -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 >/dev/null ||
        fail "src/sys/sys.h does not compile with -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64"

    libc="$("$triplet-gcc" -print-file-name=libc.so.6)"
    [ -f "$libc" ] || fail "no target libc.so.6 at '$libc'"
    libc_names="$("$readelf" --dyn-syms -W "$libc" |
        awk '$7 != "UND" && $8 != "" { sub(/@.*/, "", $8); print $8 }' | sort -u)"
    # narrow_imports <elf>: its plain-named imports that glibc also offers as
    # a 64-bit time or offset variant (ioctl: __ioctl_time64, readdir:
    # readdir64); each is a call compiled with a 32-bit time_t or off_t.
    # Prints name->variant lines.
    narrow_imports() {
        local name wide
        for name in $(imports_of "$1" | sed 's/@.*//' | sort -u); do
            for wide in "__${name}64" "__${name}_time64" "__${name}64_time64" "${name}64" "__${name%_r}64_r"; do
                if grep -qxF "$wide" <<<"$libc_names"; then
                    echo "$name->$wide"
                    break
                fi
            done
        done
    }
    # The check itself, on a probe built both ways: it must see the narrow
    # calls of a 32-bit time build and none in a 64-bit one.
    probe_dir="$(mktemp -d)"
    trap 'rm -rf "$probe_dir"' EXIT
    printf '%s\n' '#include <sys/ioctl.h>' '#include <time.h>' \
        'int probe(int fd, void *arg) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);' \
        '  return ioctl(fd, 0, arg) + (int)ts.tv_nsec; }' >"$probe_dir/probe.c"
    "$triplet-gcc" -shared -fPIC -o "$probe_dir/time32.so" "$probe_dir/probe.c"
    "$triplet-gcc" -shared -fPIC -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 -o "$probe_dir/time64.so" "$probe_dir/probe.c"
    [ "$(narrow_imports "$probe_dir/time32.so" | sort | paste -sd' ')" = \
        "clock_gettime->__clock_gettime64 ioctl->__ioctl_time64" ] ||
        fail "the 32-bit time import check misses the narrow calls of a 32-bit time probe"
    [ -z "$(narrow_imports "$probe_dir/time64.so")" ] ||
        fail "the 32-bit time import check flags a 64-bit time probe"

    narrow="$(narrow_imports "$addon" | paste -sd' ')"
    [ -z "$narrow" ] ||
        fail "imports 32-bit time/offset functions: $narrow (built without -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64?)"
    names="$(cut -d@ -f1 <<<"$imports" | sort -u)"
    grep -qx '__ioctl_time64' <<<"$names" ||
        fail "does not import __ioctl_time64: its ioctls would use the 32-bit time layouts"
    wide="$({ grep -xF -f <(grep -x '.*64' <<<"$names" || true) <<<"$libc_names" || true; } | paste -sd' ')"
    echo "cross build $arch: 64-bit time/offset imports: $wide; none narrow"
    time_t_check="8(static_assert,__ioctl_time64,no-32bit-time-imports)"
fi

size=$(stat -c %s "$addon")
echo "built $arch: file=$addon machine=$machine class=$class abi=$abi size=$size" \
    "time_t=$time_t_check needs=GLIBC_$glibc_min,GLIBCXX_$glibcxx_min build_s=$seconds"
