#!/usr/bin/env bash
# Build (or reuse) the kernel image the conformance VM boots.
#
#   test/kernel/build-kernel.sh            # progress on stderr, image path on stdout
#
# Source: Debian's linux-source-6.1 package (/usr/src/linux-source-6.1.tar.xz),
# unpacked once into a cache directory outside the repo:
#   ${DMX_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmx-agent/kernel}
# Config: `make tinyconfig`, then test/kernel/kernel.config merged over it, then
# `make olddefconfig`; every option of the fragment must survive (checked).
# Cache key: hash of the fragment and the source package's version. A cached
# image is reused as is and never rebuilt; to force a build, delete
# <cache>/images/<key> (or the whole cache directory).
#
# Environment:
#   DMX_KERNEL_CACHE   cache directory (see above)
#   DMX_KERNEL_SOURCE  source tarball (default /usr/src/linux-source-6.1.tar.xz)
#   DMX_KERNEL_JOBS    make -j value (default: number of CPUs + 1)
#   DMX_KERNEL_VERBOSE=1  show make's output instead of a heartbeat
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/kernel.config
src_pkg=linux-source-6.1
src_tar=${DMX_KERNEL_SOURCE:-/usr/src/$src_pkg.tar.xz}
cache=${DMX_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmx-agent/kernel}
jobs=${DMX_KERNEL_JOBS:-$(($(nproc) + 1))}
# Bump when this script changes how an image is built, so old images stop matching.
recipe=1

log() { printf '[build-kernel] %s\n' "$*" >&2; }
die() { printf '[build-kernel] ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { local s=$(($(date +%s) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

start=$(date +%s)

[ -f "$fragment" ] || die "missing fragment $fragment"
[ -f "$src_tar" ] || die "kernel source $src_tar not found: apt-get install $src_pkg (or set DMX_KERNEL_SOURCE)"

# The package version names the source exactly; without a package (a tarball
# given by DMX_KERNEL_SOURCE) fall back to the tarball's own hash.
if src_ver=$(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null) && [ -n "$src_ver" ] &&
    [ "$src_tar" = "/usr/src/$src_pkg.tar.xz" ]; then
    src_id="$src_pkg $src_ver"
else
    src_id="$(basename "$src_tar") sha256:$(sha256sum "$src_tar" | cut -d' ' -f1)"
fi
key=$({ printf 'recipe %s\nsource %s\n' "$recipe" "$src_id"; cat "$fragment"; } | sha256sum | cut -c1-16)
image_dir=$cache/images/$key
image=$image_dir/bzImage

if [ -f "$image" ]; then
    log "cached image for $src_id (key $key): $image"
    printf '%s\n' "$image"
    exit 0
fi

missing=()
for tool in make gcc bc flex bison xz perl tar sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -e /usr/include/libelf.h ] || [ -e /usr/include/gelf.h ] || missing+=("libelf-dev")
[ -e /usr/include/openssl/ssl.h ] || missing+=("libssl-dev")
[ ${#missing[@]} -eq 0 ] || die "missing build tools: ${missing[*]} (apt-get install bc flex bison libelf-dev libssl-dev make gcc xz-utils)"

mkdir -p "$cache/images" "$cache/src" "$cache/build"

# One build per cache at a time; a second caller waits, then finds the image.
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then
    flock -n 9 || { log "another build holds $cache/.lock, waiting"; flock 9; }
    if [ -f "$image" ]; then
        log "image built meanwhile by another run: $image"
        printf '%s\n' "$image"
        exit 0
    fi
fi

src=$cache/src/${src_id//[^A-Za-z0-9._-]/_}
if [ ! -f "$src/Makefile" ]; then
    log "unpacking $src_tar into $src"
    t=$(date +%s)
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    tar -xJf "$src_tar" -C "$src.tmp"
    top=$(find "$src.tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [ -f "$top/Makefile" ] || die "unexpected layout in $src_tar"
    mv "$top" "$src"
    rm -rf "$src.tmp"
    log "unpacked in $(elapsed "$t")"
else
    log "using unpacked source $src"
fi

build=$cache/build/$key
mkdir -p "$build"
buildlog=$build/build.log
: >"$buildlog"
mk() { make -C "$src" O="$build" "$@"; }

log "configuring (tinyconfig + $(basename "$fragment") + olddefconfig) in $build"
{
    mk tinyconfig
    "$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment"
    mk olddefconfig
} >>"$buildlog" 2>&1 || { tail -n 40 "$buildlog" >&2; die "configuration failed (log: $buildlog)"; }

# olddefconfig drops options whose dependencies are not met without a word;
# compare every line of the fragment with the result.
bad=()
while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
        opt=${BASH_REMATCH[1]}
        grep -qxF -- "$line" "$build/.config" || {
            got=$(grep -E "^$opt=|^# $opt is not set" "$build/.config" || true)
            bad+=("$opt: wanted ${BASH_REMATCH[2]}, got ${got:-nothing (dependencies not met or no such option)}")
        }
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
        opt=${BASH_REMATCH[1]}
        got=$(grep -E "^$opt=" "$build/.config" || true)
        [ -z "$got" ] || bad+=("$opt: wanted not set, got $got")
    fi
done <"$fragment"
if [ ${#bad[@]} -gt 0 ]; then
    log "these options of $fragment did not survive olddefconfig:"
    for b in "${bad[@]}"; do log "  $b"; done
    die "fix the fragment (add the missing dependencies); .config is in $build"
fi
log "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$fragment") fragment options are set as written"

log "building bzImage with make -j$jobs (log: $buildlog)"
t=$(date +%s)
if [ "${DMX_KERNEL_VERBOSE:-0}" = 1 ]; then
    mk -j"$jobs" bzImage 2>&1 | tee -a "$buildlog" >&2
else
    mk -j"$jobs" bzImage >>"$buildlog" 2>&1 &
    make_pid=$!
    trap 'kill "$make_pid" 2>/dev/null || true' EXIT INT TERM
    while kill -0 "$make_pid" 2>/dev/null; do
        for _ in $(seq 30); do
            kill -0 "$make_pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$make_pid" 2>/dev/null; then
            log "  ... $(elapsed "$t"), $(grep -c '^  CC ' "$buildlog" || true) files compiled"
        fi
    done
    wait "$make_pid" || { tail -n 60 "$buildlog" >&2; die "kernel build failed (log: $buildlog)"; }
    trap - EXIT INT TERM
fi
build_time=$(elapsed "$t")

tmp_dir=$image_dir.tmp.$$
rm -rf "$tmp_dir"
mkdir -p "$tmp_dir"
cp "$build/arch/x86/boot/bzImage" "$tmp_dir/bzImage"
cp "$build/.config" "$tmp_dir/config"
cp "$fragment" "$tmp_dir/kernel.config"
printf 'key %s\nsource %s\nbuilt %s\njobs %s\nbuild_time %s\n' \
    "$key" "$src_id" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$jobs" "$build_time" >"$tmp_dir/info"
rm -rf "$image_dir"
mv "$tmp_dir" "$image_dir"
# The objects are of no further use: a cached image is never rebuilt.
rm -rf "$build"

log "built $image ($(du -k "$image" | cut -f1) KiB): make $build_time, total $(elapsed "$start")"
printf '%s\n' "$image"
