#!/usr/bin/env bash
# Hit throughput and the thundering herd: nginx proxy_cache, Varnish and Tessera (without a
# script; with normalize-key on every request; the same with instance_reuse, and with its
# keys memoised, key_memo_kib; with bench/guests/default-key, a script that returns the key
# it is handed), side by side in one run.
#
#   bench/load/hits.sh [SECONDS_PER_RUN] [ROUNDS]      (defaults: 10 s, 3 rounds; 0 rounds:
#                                                       only the herd)
#
# Each proxy is pinned to core 0 with one worker; wrk (one thread, 64 connections), the
# origin and the herd's clients are pinned to core 1. wrk asks for randomised URLs: 100
# objects per size, the real parameters `a` and `b` in either order plus one tracking
# parameter (utm_*, fbclid, gclid; random values) and one of 5 User-Agents (2 mobile, 3
# desktop). Every proxy applies the same key policy: tracking parameters dropped, the query
# sorted, the device class in the key; TTL 300 s, grace 3600 s. What runs is in
# bench/load/hits.py; ESI is compared in bench/load/esi.sh.
# TESSERA_BEFORE=path/to/older/tessera adds that build (without and with the script) for
# before/after ratios; BEFORE_SCRIPT=path/to/normalize-key.wasm gives it the script built
# with its own SDK (`tessera build` of that build's tree) when the WIT contract changed since.
# HERD_ROUNDS=N runs the herd N times per proxy (default 5; client: bench/herd.rs).
# TRACKING_VALUES=10 draws each random tracking value from 10 instead of 10^9, so URLs repeat
# (what the key memo can answer; by default three in five URLs never repeat).
# Installs nginx, varnish and wrk from Debian packages if missing. Run by hand; loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
need() { command -v "$1" >/dev/null || { echo "installing $2…" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }; }
need nginx nginx
need varnishd varnish
need wrk wrk
need curl curl
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
cargo build --release -q -p tessera
# The herd's client (bench/herd.rs): where cargo put it (cargo's errors still reach stderr).
HERD="$( { cargo bench -q -p tessera --bench herd --no-run --message-format=json || true; } |
  python3 -c 'import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "herd" and m.get("executable"):
        print(m["executable"])' | tail -n 1)"
[ -x "$HERD" ] || { echo "could not build bench/herd.rs" >&2; exit 1; }
export HERD
WORK="$(mktemp -d /tmp/tessera-hits-bench.XXXXXX)"
target/release/tessera build guest-examples/normalize-key -o "$WORK/normalize-key.wasm" >/dev/null
target/release/tessera build bench/guests/default-key -o "$WORK/default-key.wasm" >/dev/null
exec python3 bench/load/hits.py "$WORK" "${1:-10}" "${2:-3}"
