#!/usr/bin/env bash
# A local fleet on loopback: Redis (Debian's redis-server, installed if missing), the sample
# origin, one shield and two edges, all from the command line. Prints how to watch a purge
# travel; Ctrl-C stops everything.
#
#   bash samples/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (Debian package)…"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }
fi
cargo build --release -q -p tessera
T=target/release/tessera
REDIS=16379 ORIGIN=19000 SHIELD=18100 EDGE1=18101 EDGE2=18102
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
redis-server --bind 127.0.0.1 --port "$REDIS" --save '' --appendonly no >/dev/null & pids+=($!)
python3 bench/load/origin.py samples/site "$ORIGIN" & pids+=($!)
common=(--origin "http://127.0.0.1:$ORIGIN" --redis "redis://127.0.0.1:$REDIS")
TESSERA_LOG=warn $T serve "${common[@]}" --name shield --listen "127.0.0.1:$SHIELD" --admin "127.0.0.1:19100" & pids+=($!)
for n in 1 2; do
  port=$((18100 + n))
  TESSERA_LOG=warn $T serve "${common[@]}" --shield "http://127.0.0.1:$SHIELD" --name "edge-$n" \
    --listen "127.0.0.1:$port" --admin "127.0.0.1:$((19100 + n))" & pids+=($!)
done
sleep 1
cat <<TXT

fleet up: origin :$ORIGIN, shield :$SHIELD, edges :$EDGE1 and :$EDGE2, Redis :$REDIS

  curl -si -H 'Host: shop.example' http://127.0.0.1:$EDGE1/products/123 | grep -iE 'x-cache|x-served-by'
      # X-Cache: MISS, MISS   X-Served-By: shield, edge-1   (the origin is asked once)
  curl -si -H 'Host: shop.example' http://127.0.0.1:$EDGE2/products/123 | grep -iE 'x-cache|x-served-by'
      # X-Cache: HIT, MISS    X-Served-By: shield, edge-2   (from the shield)
  $T purge --admin http://127.0.0.1:$((19100 + 1)) --url http://shop.example/products/123
      # applied on edge-1, in the stream, applied by the shield and edge-2 within moments:
  curl -si -H 'Host: shop.example' http://127.0.0.1:$EDGE2/products/123 | grep -i x-cache
      # X-Cache: MISS, MISS
  redis-cli -p $REDIS XRANGE tessera:purges - +    # the stream itself

Ctrl-C stops the fleet.
TXT
wait
