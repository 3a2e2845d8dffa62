#!/usr/bin/env bash
# ESI assembly and HTML rewrite throughput: Tessera vs Varnish on the same page, side by side.
#
#   bench/load/esi.sh [SECONDS_PER_RUN] [ROUNDS]      (defaults: 10 s, 3 rounds)
#
# A 100 KB page with 5 cached 1 KB fragments, served by each proxy pinned to core 0 while wrk
# (pinned to core 1, one thread, 64 connections) asks for it over loopback:
#   varnish         Varnish 7 with beresp.do_esi (cookies removed so that it caches at all)
#   tessera-esi     Tessera assembling the same page (no script)
#   tessera-rewrite Tessera assembling it and personalising it per request (personalize.wasm,
#                   with the visitor's cookies)
# Correctness is checked before load: Varnish's and Tessera's assembled pages must be
# byte-identical to the page assembled by hand, and the rewritten one must greet the visitor.
# Installs varnish and wrk from Debian packages if missing. Run by hand; only loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-10}"
ROUNDS="${2:-3}"
WORK="$(mktemp -d /tmp/tessera-esi-bench.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "installing $2…" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }; }
need varnishd varnish
need wrk wrk
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }

cargo build --release -q -p tessera
TESSERA=target/release/tessera
"$TESSERA" build guest-examples/personalize -o "$WORK/personalize.wasm" >/dev/null

# --- the site: a 100 KB page, 5 fragments of 1 KB, and the page assembled by hand --------
python3 - "$WORK" <<'PY'
import os, sys
root = os.path.join(sys.argv[1], "site", "esi")
os.makedirs(os.path.join(root, "frag"), exist_ok=True)
frags = {}
for i in range(1, 6):
    body = f'<aside id="f{i}">' + (f"fragment {i} " * 80)[:980] + "</aside>"
    if i == 1:
        body = '<header><span data-greeting>Welcome!</span> <b data-cart-count hidden>0</b></header>' + body[:900]
    frags[i] = body
    open(os.path.join(root, "frag", str(i)), "w").write(body)
para = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 17 + "</p>\n"
parts, expected = [], []
for i in range(1, 6):
    tag = f'<esi:include src="/esi/frag/{i}"/>'
    chunk = para * 20 + f'<section data-segment="pro">offer {i}</section>'
    parts += [chunk, tag]
    expected += [chunk, frags[i]]
page = "<!doctype html><html><body>" + "".join(parts) + "</body></html>"
done = "<!doctype html><html><body>" + "".join(expected) + "</body></html>"
open(os.path.join(root, "page"), "w").write(page)
open(os.path.join(sys.argv[1], "expected.html"), "w").write(done)
print(f"page {len(page)} bytes, assembled {len(done)} bytes", file=sys.stderr)
PY

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(port); VARNISH=$(port); T_ESI=$(port); T_RW=$(port)
python3 bench/load/origin.py "$WORK/site" "$ORIGIN" & PIDS+=($!)

cat > "$WORK/esi.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN"; }
sub vcl_recv { unset req.http.cookie; }
sub vcl_backend_response {
  if (bereq.url ~ "^/esi/page") { set beresp.do_esi = true; }
  set beresp.ttl = 300s;
  set beresp.grace = 3600s;
}
VCL
mkdir -p "$WORK/varnish"
taskset -c 0 varnishd -F -j none -n "$WORK/varnish" -a "127.0.0.1:$VARNISH" -f "$WORK/esi.vcl" \
  -s malloc,256m -p thread_pools=1 >"$WORK/varnish.log" 2>&1 & PIDS+=($!)

site() {
  cat <<TOML
listen = "127.0.0.1:$1"
node_name = "bench"
compiled_dir = "$WORK/compiled"
[server]
workers = 1
[[site]]
name = "bench"
origin = "http://127.0.0.1:$ORIGIN"
$2
[site.esi]
paths = ["/esi/"]
TOML
}
site "$T_ESI" "" > "$WORK/esi.toml"
site "$T_RW" "script = \"$WORK/personalize.wasm\"" > "$WORK/rewrite.toml"
TESSERA_LOG=error taskset -c 0 "$TESSERA" serve --config "$WORK/esi.toml" >/dev/null 2>&1 & PIDS+=($!)
TESSERA_LOG=error taskset -c 0 "$TESSERA" serve --config "$WORK/rewrite.toml" >/dev/null 2>&1 & PIDS+=($!)

COOKIE='user=Ann; segment=pro; cart=3'
for p in "$VARNISH" "$T_ESI" "$T_RW"; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$p/esi/page" && break; sleep 0.2; done
done
curl -s "http://127.0.0.1:$VARNISH/esi/page" > "$WORK/varnish.html"
curl -s "http://127.0.0.1:$T_ESI/esi/page" > "$WORK/tessera.html"
curl -s -b "$COOKIE" "http://127.0.0.1:$T_RW/esi/page" > "$WORK/rewrite.html"
cmp -s "$WORK/varnish.html" "$WORK/expected.html" || { echo "varnish's page differs from the expected assembly" >&2; exit 1; }
cmp -s "$WORK/tessera.html" "$WORK/expected.html" || { echo "tessera's page differs from the expected assembly" >&2; exit 1; }
grep -q 'Hello, Ann' "$WORK/rewrite.html" || { echo "the rewrite did not personalise the page" >&2; exit 1; }
echo "correctness: assembled pages byte-identical ($(wc -c < "$WORK/expected.html") bytes); rewrite greets the visitor" >&2

run() { # name port [header]
  local args=(-t1 -c64 -d"${SECS}s" --latency)
  [[ -n "${3:-}" ]] && args+=(-H "$3")
  taskset -c 1 wrk "${args[@]}" "http://127.0.0.1:$2/esi/page" > "$WORK/$1.$r.wrk"
  awk '/Requests\/sec/ {print $2}' "$WORK/$1.$r.wrk" >> "$WORK/$1.rps"
}
for r in $(seq 1 "$ROUNDS"); do
  run varnish "$VARNISH"
  run tessera-esi "$T_ESI"
  run tessera-rewrite "$T_RW" "Cookie: $COOKIE"
  echo "round $r done" >&2
done
python3 - "$WORK" <<'PY'
import statistics, sys
w = sys.argv[1]
rps = {n: [float(x) for x in open(f"{w}/{n}.rps")] for n in ("varnish", "tessera-esi", "tessera-rewrite")}
med = {n: statistics.median(v) for n, v in rps.items()}
for n, v in rps.items():
    print(f"{n:16} req/s median {med[n]:9.0f}  (min {min(v):.0f}, max {max(v):.0f}, {len(v)} rounds)")
for n in ("tessera-esi", "tessera-rewrite"):
    ratios = [t / v for t, v in zip(rps[n], rps["varnish"])]
    print(f"{n} / varnish: {med[n] / med['varnish']:.2f}x (per round {min(ratios):.2f}-{max(ratios):.2f})")
PY
