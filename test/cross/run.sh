#!/usr/bin/env bash
# The cross-build check (npm run test:cross), from the repository root:
#   1. native/cross/install-deps.sh   cross toolchains, qemu-user, Debian's
#                                     arm64 and armhf Node 18 sysroots (only
#                                     what is missing)
#   2. native/cross/build.sh arm64    build + readelf checks
#   3. native/cross/build.sh armhf    build + readelf, EABI hard-float and
#                                     64-bit time_t checks
#   4. native/cross/smoke.sh arm64    each addon on Debian's Node 18 for its
#   5. native/cross/smoke.sh armhf    architecture under qemu-user: simulation
#                                     -> Pump -> decoder, fds and mappings
#                                     released at close
# Every step runs (a smoke run needs its build); the script exits non-zero
# if any failed, after a summary of what each produced. The smoke runs load
# the addon through the compiled agent (dist/, from npm install).
set -euo pipefail
exec </dev/null
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

declare -A status seconds result
steps=(deps arm64 armhf smoke-arm64 smoke-armhf)

# run_step <name> <command...>: runs it, keeps its exit status, duration and
# last line (each script's own summary line).
run_step() {
    local name=$1 start rc=0 log
    shift
    echo
    echo "=== cross $name: $* ==="
    log="$(mktemp)"
    start=$(date +%s)
    "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    seconds[$name]=$(($(date +%s) - start))
    result[$name]="$(grep -v '^\s*$' "$log" | tail -1)"
    rm -f "$log"
    if [ "$rc" -eq 0 ]; then status[$name]=ok; else status[$name]="FAILED:$rc"; fi
}

# The value of key=... in a build.sh summary line.
field() { grep -o "\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2-; }

run_step deps native/cross/install-deps.sh
run_step arm64 native/cross/build.sh arm64
run_step armhf native/cross/build.sh armhf
for arch in arm64 armhf; do
    if [ "${status[$arch]}" = ok ]; then
        run_step "smoke-$arch" native/cross/smoke.sh "$arch"
    else
        status[smoke-$arch]=SKIPPED
        seconds[smoke-$arch]=0
        result[smoke-$arch]="no $arch build"
    fi
done

echo
echo "=== cross summary ==="
failed=0
for name in "${steps[@]}"; do
    line="${result[$name]}"
    case "$name" in
        arm64 | armhf)
            if [ "${status[$name]}" = ok ]; then
                detail="$(field machine "$line") $(field class "$line") $(field abi "$line"),"
                detail+=" $(field size "$line") bytes, time_t $(field time_t "$line"),"
                detail+=" needs $(field needs "$line")"
            else
                detail="$line"
            fi
            ;;
        smoke-*)
            detail="${line#smoke *: }"
            detail="${detail#ok }"
            ;;
        *) detail="$line" ;;
    esac
    printf '  %-12s %-9s %4ss  %s\n' "$name" "${status[$name]}" "${seconds[$name]}" "$detail"
    [ "${status[$name]}" = ok ] || failed=1
done
exit $failed
