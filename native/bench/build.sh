#!/usr/bin/env bash
# Builds the C baselines of benchmark rows 1 and 2 into build/bench-tools/
# (relative to the repo root), each only when one of its sources is newer.
# Runs from any directory. Prints the paths of the binaries, one per line:
#
#   dmx-loop      dmx-loop.c on the real kernel (plain C, libc only), run in
#                 the VM against vidtv + vim2m
#   dmx-loop-sim  the same loop against the agent's simulated kernel: linked
#                 with native/src/sim/ and built with the addon's flags
#                 (native/common.gypi, node-gyp's Release -O3), so the
#                 simulated kernel costs here what it costs under the pump
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bench="$root/native/bench"
out_dir="$root/build/bench-tools"
cc=${CC:-cc}
cxx=${CXX:-c++}
mkdir -p "$out_dir"

# True when $1 is missing or older than any of the other arguments.
stale() {
  local out=$1
  shift
  [[ -x "$out" ]] || return 0
  [[ -n "$(find "$@" -newer "$out" -print -quit)" ]]
}

# Build to a temporary name so a failed or concurrent build never leaves a
# half-written binary behind.
install_bin() {
  mv -f "$1" "$2"
}

kernel_bin="$out_dir/dmx-loop"
if stale "$kernel_bin" "$bench/dmx-loop.c" "$bench/bench-sys-kernel.c" "$bench/bench-sys.h" "$0"; then
  tmp="$kernel_bin.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  "$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -o "$tmp" "$bench/dmx-loop.c" "$bench/bench-sys-kernel.c"
  install_bin "$tmp" "$kernel_bin"
  trap - EXIT
fi

sim_bin="$out_dir/dmx-loop-sim"
sim_sources=("$root"/native/src/sim/*.cc)
if stale "$sim_bin" "$bench/dmx-loop.c" "$bench/bench-sys-sim.cc" "$bench/bench-sys.h" "$0" \
  "$root/native/src/sim" "$root/native/src/sys/sys.h"; then
  obj="$out_dir/obj-sim.$$"
  mkdir -p "$obj"
  trap 'rm -rf "$obj"' EXIT
  flags=(-O3 -fno-omit-frame-pointer -pthread -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
  # One compiler per source, as many at a time as there are CPUs.
  jobs=()
  for src in "${sim_sources[@]}" "$bench/bench-sys-sim.cc"; do
    "$cxx" -std=c++17 "${flags[@]}" -c -o "$obj/$(basename "$src").o" "$src" &
    jobs+=($!)
    if ((${#jobs[@]} >= $(nproc))); then
      wait "${jobs[0]}"
      jobs=("${jobs[@]:1}")
    fi
  done
  for job in "${jobs[@]}"; do wait "$job"; done
  "$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -c -o "$obj/dmx-loop.o" "$bench/dmx-loop.c"
  "$cxx" -pthread -o "$obj/dmx-loop-sim" "$obj"/*.o
  install_bin "$obj/dmx-loop-sim" "$sim_bin"
  rm -rf "$obj"
  trap - EXIT
fi

echo "$kernel_bin"
echo "$sim_bin"
