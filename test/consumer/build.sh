#!/usr/bin/env bash
# Builds the reference consumer into build/test-tools/reference-consumer
# (relative to the repo root), only when the source is newer. Runs from any
# directory. Prints the path of the binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/test/consumer/reference-consumer.c"
out="$root/build/test-tools/reference-consumer"

if [[ ! -x "$out" || "$src" -nt "$out" ]]; then
  mkdir -p "$(dirname "$out")"
  # Build to a temporary name so a failed or concurrent build never leaves a
  # half-written binary behind.
  tmp="$out.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  ${CC:-cc} -O2 -Wall -Wextra -Werror -o "$tmp" "$src"
  mv -f "$tmp" "$out"
fi
echo "$out"
