# shellcheck shell=bash disable=SC2034  # the variables are for the sourcing scripts
# Sourced by the scripts in native/cross/: where things are, and what each
# target architecture is called by each tool. Not executable on its own.

cross_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$cross_dir/../.." && pwd)"

# Debian's Node for each target (the smoke runs' runtime) is unpacked here
# (node-<arch>), never installed: the host's own node may be a different
# package named nodejs.
cross_cache="${DMX_CROSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmx-agent/cross}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# cross_target <arm64|armhf>: sets the per-architecture names.
#   triplet     GNU triplet of Debian's cross toolchain (prefix of gcc, readelf)
#   gyp_arch    node-gyp's --arch, which is also Node's process.arch there
#   elf_machine what `readelf -h` prints as Machine
#   qemu        the qemu-user emulator that runs its binaries
cross_target() {
    case "${1:-}" in
        arm64)
            triplet=aarch64-linux-gnu
            gyp_arch=arm64
            elf_machine=AArch64
            qemu="qemu-aarch64"
            ;;
        armhf)
            triplet=arm-linux-gnueabihf
            gyp_arch=arm
            elf_machine=ARM
            qemu="qemu-arm"
            ;;
        *)
            echo "unknown architecture '${1:-}' (expected arm64 or armhf)" >&2
            return 2
            ;;
    esac
}
