#!/usr/bin/env bash
# Installs what native/cross/ needs, and only what is missing:
#   - on the host (apt, root or passwordless sudo): Debian's cross toolchains
#     g++-aarch64-linux-gnu and g++-arm-linux-gnueabihf (with their binutils,
#     readelf included, and the target glibc and kernel headers), qemu-user
#     for the smoke runs, make and python3 for node-gyp, and Debian's archive
#     keyring (the private apt below checks signatures with it);
#   - in the cache ($DMX_CROSS_CACHE, default ~/.cache/dmx-agent/cross; no
#     root): Debian bookworm's Node 18 for arm64 and for armhf (nodejs,
#     libnode108 and what they need at run time), downloaded by a private
#     apt (its own sources, lists and architecture, under the cache) and
#     unpacked with dpkg-deb -x into one sysroot per architecture, for
#     qemu-user's -L.
# Nothing foreign is installed, and the host's dpkg architectures, apt
# sources and lists are left as they are: `apt-get install nodejs:arm64`
# would replace the host's own node (one package name, nodejs, whoever built
# it), and a foreign architecture would make every later apt-get update on
# the host depend on that architecture's indices too.
# DMX_DEBIAN_MIRROR / DMX_DEBIAN_SECURITY_MIRROR override the archive URLs.
set -euo pipefail
exec </dev/null
# shellcheck source=native/cross/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export DEBIAN_FRONTEND=noninteractive

host_packages=(g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user make python3 debian-archive-keyring)
debian_keyring=/usr/share/keyrings/debian-archive-keyring.gpg

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_host_packages() {
    local missing=() p
    for p in "${host_packages[@]}"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "host packages: all present"
        return 0
    fi
    echo "host packages: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >/dev/null
}

# --- a private apt for one Debian bookworm architecture -----------------------
# use_private_apt <deb_arch>: sets apt_root and apt_options for it.
use_private_apt() {
    apt_root="$cross_cache/apt-$1"
    apt_options=(
        -o APT::Architecture="$1" -o APT::Architectures::="$1"
        -o Dir::State="$apt_root" -o Dir::State::Lists="$apt_root/lists"
        -o Dir::State::status="$apt_root/status"
        -o Dir::Cache="$apt_root" -o Dir::Cache::Archives="$apt_root/archives"
        -o Dir::Cache::pkgcache="$apt_root/pkgcache.bin" -o Dir::Cache::srcpkgcache="$apt_root/srcpkgcache.bin"
        -o Dir::Etc::SourceList="$apt_root/sources.list" -o Dir::Etc::SourceParts="$apt_root/sources.list.d"
        -o Dir::Etc::Preferences="$apt_root/preferences" -o Dir::Etc::PreferencesParts="$apt_root/preferences.d"
        -o Acquire::Languages=none
        # The lists and downloads live in the cache, which the unprivileged
        # _apt user may not reach (a private home): fetch as whoever runs this.
        -o APT::Sandbox::User="$(id -un)"
    )
}

private_apt_update() {
    [ -f "$debian_keyring" ] || {
        echo "missing $debian_keyring (install debian-archive-keyring)" >&2
        return 1
    }
    mkdir -p "$apt_root/lists/partial" "$apt_root/archives/partial" "$apt_root/sources.list.d" \
        "$apt_root/preferences.d"
    : >"$apt_root/status"
    : >"$apt_root/preferences"
    local mirror="${DMX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    local security="${DMX_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
    cat >"$apt_root/sources.list" <<EOF
deb [signed-by=$debian_keyring] $mirror bookworm main
deb [signed-by=$debian_keyring] $mirror bookworm-updates main
deb [signed-by=$debian_keyring] $security bookworm-security main
EOF
    # A mirror caught mid-sync fails an index now and then (seen for
    # bookworm-security armhf); what matters is whether nodejs can be had,
    # which the caller checks.
    apt-get "${apt_options[@]}" update -qq ||
        echo "apt-get update ($apt_root) reported errors; going on with the indices it got" >&2
}

nodejs_candidate() {
    apt-cache "${apt_options[@]}" policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' || true
}

apt_depends() {
    apt-cache "${apt_options[@]}" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances --no-pre-depends "$@" 2>/dev/null || true
}

# What Debian's node needs at run time, one package per line: nodejs,
# libnode108, the shared libraries they link and the JavaScript Debian keeps
# outside the binary (acorn, cjs-module-lexer, undici: arch "all" packages),
# following Depends. Pre-Depends are not followed: they serve maintainer
# scripts (dpkg, ...), and nothing here is configured, only unpacked. Every
# alternative that is a real package is taken; of a virtual package, the
# first provider apt lists.
node_runtime_packages() {
    local frontier=(nodejs libnode108) seen=" " next=() out pkg dep
    # One apt-cache call per level of the graph, not one per package.
    while [ ${#frontier[@]} -gt 0 ]; do
        out="$(apt_depends "${frontier[@]}")"
        for pkg in "${frontier[@]}"; do
            grep -qx "$pkg" <<<"$out" || {
                echo "apt knows no package $pkg" >&2
                return 1
            }
            seen+="$pkg "
            echo "$pkg"
        done
        next=()
        while read -r pkg dep; do
            case "$seen ${next[*]} " in *" $dep "*) ;; *) next+=("$dep") ;; esac
        done < <(awk '
            /^[^ <]/ { pkg = $1; next }
            /^</ { pkg = ""; next }
            pkg == "" { next }
            /^ *[|]?Depends: </ { virtual = 1; next }
            /^ *[|]?Depends: / { virtual = 0; print pkg, $2; next }
            /^    / && virtual { virtual = 0; print pkg, $1 }' <<<"$out")
        frontier=("${next[@]}")
    done
}

# fetch_node_sysroot <arm64|armhf>: $cross_cache/node-<arch> (a link to
# node-<arch>-<version>), unless an earlier run left it complete.
fetch_node_sysroot() {
    local arch=$1 version sysroot unpack packages=() deb
    local link="$cross_cache/node-$arch"
    # A sysroot from an earlier run is used without asking the network.
    if [ -f "$link/.complete" ]; then
        echo "$arch node: $(readlink "$link") (cached)"
        return 0
    fi
    use_private_apt "$arch"
    private_apt_update
    version="$(nodejs_candidate)"
    [ -n "$version" ] || {
        echo "the $arch apt has no nodejs (see the apt-get update errors above)" >&2
        return 1
    }
    mapfile -t packages < <(node_runtime_packages)
    echo "$arch node $version: fetching ${packages[*]}"
    # apt-get download: exactly these packages, none of their dependencies
    # (the list above is already the closure that matters).
    mkdir -p "$apt_root/debs"
    (cd "$apt_root/debs" && apt-get "${apt_options[@]}" download -qq "${packages[@]}")
    sysroot="$cross_cache/node-$arch-$version"
    unpack="$(mktemp -d "$cross_cache/.unpack.XXXXXX")"
    for deb in "$apt_root/debs/"*.deb; do dpkg-deb -x "$deb" "$unpack"; done
    # The lists are fetched afresh whenever a sysroot is (a stale list names
    # .debs the archive has dropped), so they need not take cache space.
    rm -rf "$apt_root"
    [ -x "$unpack/usr/bin/node" ] || {
        rm -rf "$unpack"
        echo "the $arch packages hold no usr/bin/node" >&2
        return 1
    }
    touch "$unpack/.complete"
    rm -rf "$sysroot"
    mv "$unpack" "$sysroot"
    # smoke.sh runs what the link names; other versions go.
    ln -sfn "node-$arch-$version" "$link"
    find "$cross_cache" -mindepth 1 -maxdepth 1 -name "node-$arch-*" ! -name "node-$arch-$version" -exec rm -rf {} +
    echo "$arch node $version: $sysroot"
}

install_host_packages
mkdir -p "$cross_cache"
fetch_node_sysroot arm64
fetch_node_sysroot armhf
echo "deps ok: cross toolchains, qemu-user; node sysroots $(readlink "$cross_cache/node-arm64"), $(readlink "$cross_cache/node-armhf")"
