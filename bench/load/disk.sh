#!/usr/bin/env bash
# The disk tier over HTTP. A Zipf workload (s = 0.9) over 20,000 objects of 16 KiB whose
# working set (312 MiB) is 5x the memory tier (62 MiB): Tessera memory-only and Tessera
# memory + disk in one run, each on one core with one worker and wrk on the other; hit
# ratio from the origin's own count, requests per second from wrk. Then the latency of a
# memory hit next to a disk hit (one connection, 2,000 objects in turn; for the disk hit the
# memory tier holds one object at most, and the tier metrics say where hits came from).
#
#   bash bench/load/disk.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
need() { command -v "$1" >/dev/null || { echo "installing $2…" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }; }
need wrk wrk
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
cargo build --release -p tessera >/dev/null 2>&1
WORK=$(mktemp -d /var/tmp/tessera-disk-bench.XXXXXX)
ORIGIN_PORT=18401 MEM_PORT=18402 HYB_PORT=18403 TINY_PORT=18404
export TESSERA_ADMIN_TOKEN=bench-token-0123456789abcdef
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/site/z"
python3 - "$WORK/site/z" <<'EOF'
import sys
for i in range(20000):
    open(f"{sys.argv[1]}/{i}.html", "wb").write((b"%06d " % i) * (16384 // 7) + b"x" * (16384 % 7))
EOF
cat > "$WORK/zipf.lua" <<'EOF'
local n, s, cdf = 20000, 0.9, {}
local sum = 0
for r = 1, n do sum = sum + 1 / r ^ s; cdf[r] = sum end
for r = 1, n do cdf[r] = cdf[r] / sum end
math.randomseed(7)
request = function()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/z/" .. (lo - 1) .. ".html")
end
EOF
config() { # port admin-port memory [disk-dir]
  local disk=""
  [ -n "${4:-}" ] && disk="disk = { path = \"$4\", size = \"1GiB\" }"
  cat > "$WORK/$1.toml" <<EOF
listen = "127.0.0.1:$1"
[cache]
max_size = "$3"
$disk
[admin]
listen = "127.0.0.1:$2"
[[site]]
name = "bench"
origin = "http://127.0.0.1:$ORIGIN_PORT"
EOF
  echo "$WORK/$1.toml"
}
python3 bench/load/origin.py "$WORK/site" "$ORIGIN_PORT" & pids+=($!)
taskset -c 0 target/release/tessera serve --workers 1 --config "$(config $MEM_PORT 18412 62MiB)" >/dev/null 2>&1 & pids+=($!)
taskset -c 0 target/release/tessera serve --workers 1 --config "$(config $HYB_PORT 18413 62MiB "$WORK/disk")" >/dev/null 2>&1 & pids+=($!)
taskset -c 0 target/release/tessera serve --workers 1 --config "$(config $TINY_PORT 18414 16KiB "$WORK/tiny")" >/dev/null 2>&1 & pids+=($!)
for p in $MEM_PORT $HYB_PORT $TINY_PORT; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/z/0.html" && break; sleep 0.1; done
done
origin_count() { curl -s "http://127.0.0.1:$ORIGIN_PORT/__count"; }
metric() { # admin-port series
  curl -s -H "authorization: Bearer $TESSERA_ADMIN_TOKEN" "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 == s { print $2 }'
}
zipf() { # name port
  taskset -c 1 wrk -t1 -c32 -d"$((SECS / 2))"s -s "$WORK/zipf.lua" "http://127.0.0.1:$2" >/dev/null
  local before after out reqs
  before=$(origin_count)
  out=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}"s -s "$WORK/zipf.lua" "http://127.0.0.1:$2")
  after=$(origin_count)
  reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
  printf '%-16s %9s requests  hit ratio %5.1f%%  %8s req/s  p50 %s\n' "$1" "$reqs" \
    "$(echo "scale=4; 100 * (1 - ($after - $before) / $reqs)" | bc)" \
    "$(echo "$out" | awk '/Requests\/sec/ { print $2 }')" \
    "$(echo "$out" | awk '/Latency/ { print $2 }')"
}
echo "Zipf over 20,000 x 16 KiB (312 MiB), memory tier 62 MiB; ${SECS} s after $((SECS / 2)) s of warm-up"
zipf memory-only $MEM_PORT
zipf memory+disk $HYB_PORT
echo "disk hits during the hybrid run: $(metric 18413 'tessera_cache_tier_hits_total{tier="disk"}'), memory hits: $(metric 18413 'tessera_cache_tier_hits_total{tier="memory"}')"

cat > "$WORK/seq.lua" <<'EOF'
local i = 0
request = function()
  i = (i + 1) % 2000
  return wrk.format("GET", "/z/" .. i .. ".html")
end
EOF
hits() { metric "$1" "tessera_cache_tier_hits_total{tier=\"$2\"}" | awk '{ print $1 + 0 } END { if (NR == 0) print 0 }'; }
one() { # name port admin
  for i in $(seq 0 1999); do curl -s -o /dev/null "http://127.0.0.1:$2/z/$i.html"; done
  sleep 2
  local out m0 d0
  m0=$(hits "$3" memory) d0=$(hits "$3" disk)
  out=$(taskset -c 1 wrk -t1 -c1 -d5s --latency -s "$WORK/seq.lua" "http://127.0.0.1:$2")
  printf '%-12s %8s req/s  p50 %-8s p99 %-8s' "$1" \
    "$(echo "$out" | awk '/Requests\/sec/ { print $2 }')" \
    "$(echo "$out" | awk '$1 == "50%" { print $2 }')" "$(echo "$out" | awk '$1 == "99%" { print $2 }')"
  echo "  (hits meanwhile: memory $(( $(hits "$3" memory) - m0 )), disk $(( $(hits "$3" disk) - d0 )))"
}
echo "2,000 objects of 16 KiB asked in turn over one connection:"
one memory-hit $MEM_PORT 18412
one disk-hit $TINY_PORT 18414
