#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UBSan (native/asan/binding.gyp,
# into native/asan/build) and runs the host suites against it: the
# conformance suite on the simulation and the native unit tests.
#
# Node itself is not instrumented, so the ASan runtime is preloaded; leak
# detection is off because V8 keeps allocations alive until exit by design
# (our own fd and mapping leaks are caught by the suite's fd/maps counts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

npx --no-install node-gyp rebuild --loglevel=warn --directory native/asan >/dev/null
addon="$PWD/native/asan/build/Release/dmx_native.node"
asan_rt="$(${CXX:-g++} -print-file-name=libasan.so)"
ubsan_rt="$(${CXX:-g++} -print-file-name=libubsan.so)"

export DMX_NATIVE_ADDON="$addon"
export LD_PRELOAD="$asan_rt $ubsan_rt"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:verify_asan_link_order=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
exec npx --no-install vitest run --project conformance-sim --project unit test/conformance test/native
