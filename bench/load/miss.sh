#!/usr/bin/env bash
# Time to first byte and total time of a 10 MiB cache miss, straight from the origin and
# through Tessera (and, with TESSERA_BEFORE=path/to/old/tessera, through an older build),
# side by side in one run. The origin sends 1 MiB every 50 ms (bench/load/origin.py,
# /stream/): a proxy that streams misses answers its first byte with the origin's first MiB.
#
#   bash bench/load/miss.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
cargo build --release -p tessera >/dev/null 2>&1
ORIGIN_PORT=18301 NOW_PORT=18302 BEFORE_PORT=18303
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
python3 bench/load/origin.py samples/site "$ORIGIN_PORT" & pids+=($!)
target/release/tessera serve --origin "http://127.0.0.1:$ORIGIN_PORT" --listen "127.0.0.1:$NOW_PORT" 2>/dev/null & pids+=($!)
if [ -n "${TESSERA_BEFORE:-}" ]; then
  "$TESSERA_BEFORE" serve --origin "http://127.0.0.1:$ORIGIN_PORT" --listen "127.0.0.1:$BEFORE_PORT" 2>/dev/null & pids+=($!)
fi
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$NOW_PORT/" && break; sleep 0.1; done
sleep 0.5
measure() { # name port
  local ttfb=() total=()
  for r in $(seq "$ROUNDS"); do
    read -r a b < <(curl -s -o /dev/null -w '%{time_starttransfer} %{time_total}\n' \
      "http://127.0.0.1:$2/stream/$1-$r-$RANDOM")
    ttfb+=("$a") total+=("$b")
  done
  printf '%-16s TTFB median %6.3f s   total median %6.3f s\n' "$1" \
    "$(printf '%s\n' "${ttfb[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")" \
    "$(printf '%s\n' "${total[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")"
}
measure origin "$ORIGIN_PORT"
measure tessera "$NOW_PORT"
[ -n "${TESSERA_BEFORE:-}" ] && measure tessera-before "$BEFORE_PORT"
exit 0
