#!/usr/bin/env python3
"""Hit throughput and herd of nginx, Varnish and Tessera, driven by bench/load/hits.sh.

    hits.py WORKDIR SECONDS ROUNDS

Starts the origin (bench/load/origin.py) and the proxies, checks that each one keys
the same way (tracking variants collapse, device classes split, bodies intact), warms every
object, then runs interleaved rounds per object size. A round counts only if the origin saw
no request during it (every answer a hit) and the machine was otherwise idle (CPU used by
anything but the proxy and wrk under 10% of a core); a disturbed round is run again, up to
three times. Prints req/s, p50 and p99 per proxy as the median of the rounds (min-max), the
ratios Tessera/nginx, Tessera/Varnish and scripted/unscripted Tessera, and the herd: 200
concurrent requests for a cold key behind a 300 ms origin (bench/herd.rs, HERD_ROUNDS times
per proxy, default 5), how many reached the origin and the clients' p50. ROUNDS 0 runs only
the correctness checks and the herd.
"""
import atexit
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

WORK, SECS, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HERD_ROUNDS = int(os.environ.get("HERD_ROUNDS", "5"))
HERD = os.environ.get("HERD", "")
if HERD_ROUNDS < 1 or not os.access(HERD, os.X_OK):
    sys.exit("HERD must name the built bench/herd.rs (hits.sh does) and HERD_ROUNDS be >= 1")
# The load never sends `ref` (nginx, Varnish and normalize-key drop it, but Tessera's default
# key keeps it: `ref` names content on some sites), so that the unscripted run is all hits.
ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))
TESSERA = os.path.join(REPO, "target", "release", "tessera")
OBJECTS = 100
SIZES = {"2k": (2_000, "json"), "20k": (20_000, "html"), "100k": (100_000, "html")}
UAS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Firefox/125.0",
]
PROCS = []


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(cmd, log, env=None):
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    PROCS.append(p)
    return p


def kill_all():
    for p in PROCS:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def stop_all(*_):
    kill_all()
    sys.exit(1 if _ else 0)


# Also when a step fails with an exception: the proxies run in sessions of their own.
atexit.register(kill_all)
signal.signal(signal.SIGINT, stop_all)
signal.signal(signal.SIGTERM, stop_all)


def get(port_, path, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port_, timeout=timeout)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def origin_count(path=None):
    q = f"?path={path}" if path else ""
    return int(get(ORIGIN, "/__count" + q)[2])


def wait_up(p):
    for _ in range(200):
        try:
            get(p, "/__none")
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {p}")


# --- the site ---------------------------------------------------------------------------
site = os.path.join(WORK, "site")
for name, (size, ext) in SIZES.items():
    os.makedirs(os.path.join(site, name), exist_ok=True)
    for i in range(OBJECTS):
        head = f"object {name}/{i} "
        body = (head + "lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
        if ext == "json":
            body = '{"v":"' + body[:size - 8] + '"}'
        with open(os.path.join(site, name, f"{i}.{ext}"), "w") as f:
            f.write(body)

ORIGIN = port()
# On the client's core, away from the proxies': it stands for another machine. Unpinned, the
# herd's one origin request waited 2-3 ms for a core while the proxy read 200 requests on
# one and the client wrote them on the other (during the hit rounds it serves nothing).
start(["taskset", "-c", "1", "python3", os.path.join(ROOT, "origin.py"), site, str(ORIGIN)],
      f"{WORK}/origin.log")
wait_up(ORIGIN)

# --- the proxies ------------------------------------------------------------------------
NGINX, VARNISH, T_PLAIN, T_KEY, T_REUSE, T_MEMO, T_EMPTY = (port() for _ in range(7))
os.makedirs(f"{WORK}/nginx-cache", exist_ok=True)
with open(f"{WORK}/nginx.conf", "w") as f:
    f.write(f"""
worker_processes 1;
daemon off;
user root;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush off;   # on: hits over 64 KB stall ~40 ms on loopback
  tcp_nodelay on;
  keepalive_requests 1000000;
  proxy_temp_path {WORK}/nginx-tmp;
  client_body_temp_path {WORK}/nginx-body;
  proxy_cache_path {WORK}/nginx-cache levels=1:2 keys_zone=c:64m max_size=2g inactive=3600s
                   use_temp_path=off;
  map $http_user_agent $device {{
    default desktop;
    ~*(ipad|tablet) tablet;
    ~*(mobi|iphone|ipod|android) mobile;
  }}
  upstream origin {{ server 127.0.0.1:{ORIGIN}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{NGINX};
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      # Only `a` and `b` name content on this site: keying on them drops every tracking
      # parameter and fixes their order, the effect of strip-and-sort for this workload.
      proxy_cache_key "$host$uri?a=$arg_a&b=$arg_b#$device";
      proxy_cache_valid 200 300s;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503;
      proxy_cache_background_update on;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      add_header X-Cache $upstream_cache_status;
    }}
  }}
}}
""")
start(["taskset", "-c", "0", "nginx", "-p", WORK, "-c", f"{WORK}/nginx.conf", "-e", f"{WORK}/nginx.err"],
      f"{WORK}/nginx.log")

with open(f"{WORK}/hits.vcl", "w") as f:
    f.write(f"""vcl 4.1;
import std;
backend origin {{ .host = "127.0.0.1"; .port = "{ORIGIN}"; }}
sub vcl_recv {{
  unset req.http.cookie;
  set req.url = regsuball(req.url, "([?&])(utm_[^&=]*|fbclid|gclid|ref)(=[^&]*)?", "\\1");
  set req.url = regsuball(req.url, "&&+", "&");
  set req.url = regsub(req.url, "\\?&", "?");
  set req.url = regsub(req.url, "[?&]$", "");
  set req.url = std.querysort(req.url);
  if (req.http.user-agent ~ "(?i)ipad|tablet") {{
    set req.http.x-device = "tablet";
  }} elsif (req.http.user-agent ~ "(?i)mobi|iphone|ipod|android") {{
    set req.http.x-device = "mobile";
  }} else {{
    set req.http.x-device = "desktop";
  }}
}}
sub vcl_hash {{ hash_data(req.http.x-device); }}
sub vcl_backend_response {{
  set beresp.ttl = 300s;
  set beresp.grace = 3600s;
  if (bereq.url ~ "^/esi/") {{ set beresp.do_esi = true; }}
}}
sub vcl_deliver {{
  if (obj.hits > 0) {{ set resp.http.X-Cache = "HIT"; }} else {{ set resp.http.X-Cache = "MISS"; }}
}}
""")
os.makedirs(f"{WORK}/varnish", exist_ok=True)
start(["taskset", "-c", "0", "varnishd", "-F", "-j", "none", "-n", f"{WORK}/varnish",
       "-a", f"127.0.0.1:{VARNISH}", "-f", f"{WORK}/hits.vcl", "-s", "malloc,1g",
       "-p", "thread_pools=1"], f"{WORK}/varnish.log")


def tessera_config(p, script):
    path = f"{WORK}/tessera-{p}.toml"
    with open(path, "w") as f:
        f.write(f"""listen = "127.0.0.1:{p}"
node_name = "bench"
compiled_dir = "{WORK}/compiled"
[server]
workers = 1
[cache]
max_size = "1GiB"
[[site]]
name = "bench"
origin = "http://127.0.0.1:{ORIGIN}"
{script}
[site.esi]
paths = ["/esi/"]
""")
    return path


env = dict(os.environ, TESSERA_LOG="error")
start(["taskset", "-c", "0", TESSERA, "serve", "--config", tessera_config(T_PLAIN, "")],
      f"{WORK}/tessera-plain.log", env)
start(["taskset", "-c", "0", TESSERA, "serve", "--config",
       tessera_config(T_KEY, f'script = "{WORK}/normalize-key.wasm"')],
      f"{WORK}/tessera-key.log", env)
# The same script with instance_reuse: an instance serves up to 10,000 requests in turn.
start(["taskset", "-c", "0", TESSERA, "serve", "--config",
       tessera_config(T_REUSE, f'script = "{WORK}/normalize-key.wasm"\n'
                               '[site.limits]\ninstance_reuse = 10000')],
      f"{WORK}/tessera-reuse.log", env)
# The same script with its keys memoised (key_memo_kib; fresh instances on memo misses).
# Three in five URLs carry a random tracking value, which normalize-key reads (the query):
# those never repeat, and at most the other two in five can be answered from the memo.
# 16 MiB holds one size's keys when URLs repeat (TRACKING_VALUES=10: 38,400 keys of ~240 B).
start(["taskset", "-c", "0", TESSERA, "serve", "--config",
       tessera_config(T_MEMO, f'script = "{WORK}/normalize-key.wasm"\n'
                              '[site.limits]\nkey_memo_kib = 16384')],
      f"{WORK}/tessera-memo.log", env)
# A script that returns the default key it is handed (bench/guests/default-key): what a fresh
# instance costs under load whatever the script does. It keys as the unscripted Tessera does.
start(["taskset", "-c", "0", TESSERA, "serve", "--config",
       tessera_config(T_EMPTY, f'script = "{WORK}/default-key.wasm"')],
      f"{WORK}/tessera-empty.log", env)

PROXIES = {"nginx": NGINX, "varnish": VARNISH, "tessera": T_PLAIN, "tessera+script": T_KEY,
           "tessera+reuse": T_REUSE, "tessera+memo": T_MEMO, "tessera+empty": T_EMPTY}
# TESSERA_BEFORE=/path/to/an/older/tessera adds that build, without and with the script, for
# before/after ratios from the same run. A build from before a change of the WIT contract
# needs normalize-key built with its own SDK: BEFORE_SCRIPT=/path/to/that/normalize-key.wasm.
BEFORE = os.environ.get("TESSERA_BEFORE")
if BEFORE:
    T_BEFORE = port()
    before_script = os.environ.get("BEFORE_SCRIPT", f"{WORK}/normalize-key.wasm")
    start(["taskset", "-c", "0", BEFORE, "serve", "--config",
           tessera_config(T_BEFORE, f'script = "{before_script}"')],
          f"{WORK}/tessera-before.log", env)
    PROXIES["before+script"] = T_BEFORE
    T_BEFORE_PLAIN = port()
    start(["taskset", "-c", "0", BEFORE, "serve", "--config", tessera_config(T_BEFORE_PLAIN, "")],
          f"{WORK}/tessera-before-plain.log", env)
    PROXIES["before"] = T_BEFORE_PLAIN
for p in PROXIES.values():
    wait_up(p)
PIDS = {name: proc.pid for name, proc in zip(PROXIES, PROCS[1:])}


# --- correctness before load ------------------------------------------------------------
def hit(headers):
    return headers.get("x-cache", "").upper().startswith("HIT")


for name, p in PROXIES.items():
    expected = open(os.path.join(site, "2k", "0.json"), "rb").read()
    ua = {"User-Agent": UAS[2]}
    s1, h1, b1 = get(p, "/2k/0?b=2&utm_source=mail&a=1", ua)
    s2, h2, b2 = get(p, "/2k/0?a=1&fbclid=123&b=2", ua)
    s3, h3, _ = get(p, "/2k/0?gclid=x&a=1&b=2", {"User-Agent": UAS[0]})
    assert s1 == s2 == s3 == 200 and b1 == b2 == expected, f"{name}: wrong answer"
    assert hit(h2), f"{name}: tracking variants did not collapse ({h2.get('x-cache')})"
    # Tessera without a script keys on the URL alone (its default key drops tracking
    # parameters and sorts the query, but knows no device classes).
    if name not in ("tessera", "before", "tessera+empty"):
        assert not hit(h3), f"{name}: the mobile variant was served the desktop entry"
print("correctness: every proxy collapses tracking variants, splits device classes, "
      "and serves the origin's bytes", file=sys.stderr)


def warm(size):
    """Every object of a size, in both device classes, through every proxy; done just
    before that size's rounds so that no entry reaches its 300 s TTL during them."""
    for name, p in PROXIES.items():
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=10)
        for i in range(OBJECTS):
            for ua in (UAS[0], UAS[2]):
                c.request("GET", f"/{size}/{i}?a=1&b=2", headers={"User-Agent": ua})
                r = c.getresponse()
                r.read()
                assert r.status == 200, f"{name}: /{size}/{i} → {r.status}"
        c.close()


with open(f"{WORK}/urls.lua", "w") as f:
    f.write("""
local uas = {%s}
local track = {"utm_source=news", "utm_medium=mail", "utm_campaign=", "fbclid=", "gclid="}
local values = tonumber(os.getenv("TRACKING_VALUES") or "1000000000")
local prefix = os.getenv("PREFIX")
local n = tonumber(os.getenv("OBJECTS"))
request = function()
  local t = track[math.random(#track)]
  if t:sub(-1) == "=" then t = t .. math.random(1, values) end
  local q
  local order = math.random(6)
  if order == 1 then q = "a=1&b=2&" .. t
  elseif order == 2 then q = "b=2&a=1&" .. t
  elseif order == 3 then q = t .. "&a=1&b=2"
  elseif order == 4 then q = t .. "&b=2&a=1"
  elseif order == 5 then q = "a=1&" .. t .. "&b=2"
  else q = "b=2&" .. t .. "&a=1" end
  local path = prefix .. math.random(0, n - 1) .. "?" .. q
  return wrk.format("GET", path, {["User-Agent"] = uas[math.random(#uas)]})
end
""" % ", ".join('"%s"' % u for u in UAS))


# --- load -------------------------------------------------------------------------------
def cpu_busy():
    """Jiffies the whole machine spent busy so far."""
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    return sum(v) - v[3] - v[4]


def tree_cpu(pid):
    """Jiffies used by a process and its children so far."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Every proxy was started in its own session: its process group is its pid.
        if int(st[2]) == pid:
            total += int(st[11]) + int(st[12])
    return total


def wait_idle():
    for _ in range(60):
        a = cpu_busy()
        time.sleep(1)
        if cpu_busy() - a < 15:  # jiffies are 1/100 s: under 15% of one core
            return
    print("machine never went idle; measuring anyway", file=sys.stderr)


def wrk(name, size):
    p = PROXIES[name]
    env_ = dict(os.environ, PREFIX=f"/{size}/", OBJECTS=str(OBJECTS))
    for attempt in range(3):
        wait_idle()
        before = origin_count()
        busy0, own0 = cpu_busy(), tree_cpu(PIDS[name])
        w = subprocess.Popen(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{SECS}s", "--latency",
                              "-s", f"{WORK}/urls.lua", f"http://127.0.0.1:{p}"],
                             stdout=subprocess.PIPE, text=True, env=env_)
        _, status, usage = os.wait4(w.pid, 0)
        out = w.stdout.read()
        w.returncode = status
        wrk_cpu = (usage.ru_utime + usage.ru_stime) * 100
        other = (cpu_busy() - busy0) - (tree_cpu(PIDS[name]) - own0) - wrk_cpu
        misses = origin_count() - before
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        assert not errors, f"{name}: {errors.group(1)} error responses"
        assert misses == 0, f"{name} /{size}: {misses} requests reached the origin during the run"

        def lat(q):
            m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)\b", out)
            return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
        if other <= 0.10 * SECS * 100:
            return rps, lat(50), lat(99)
        print(f"  {name} /{size}: round disturbed ({other / SECS:.0f}% of a core used by others), again",
              file=sys.stderr)
    return rps, lat(50), lat(99)


results = {(n, s): [] for n in PROXIES for s in SIZES}
names = list(PROXIES)
for size in SIZES if ROUNDS else ():
    warm(size)
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            results[(name, size)].append(wrk(name, size))
        print(f"/{size} round {r + 1} done", file=sys.stderr)

if ROUNDS:
    print(f"\nhits, {SECS} s x {ROUNDS} rounds each, every request a hit (origin count unchanged)")
    print(f"{'size':5} {'proxy':15} {'req/s':>9} {'(min-max)':>17} {'p50 ms':>7} {'p99 ms':>7}")
# ROUNDS 0 measures only the herd.
for size in SIZES if ROUNDS else ():
    for name in names:
        v = results[(name, size)]
        rps = [x[0] for x in v]
        print(f"{size:5} {name:15} {statistics.median(rps):9.0f} ({min(rps):7.0f}-{max(rps):7.0f}) "
              f"{statistics.median(x[1] for x in v):7.2f} {statistics.median(x[2] for x in v):7.2f}")
    for t in ("tessera", "tessera+script", "tessera+reuse", "tessera+memo", "tessera+empty"):
        # An older build is compared like for like: unscripted, or with normalize-key.
        before = {"tessera": ("before",), "tessera+empty": ()}.get(t, ("before+script",))
        # A scripted run against the unscripted one: what the script costs under load.
        plain = ("tessera",) if "+" in t else ()
        for base in ("nginx", "varnish") + plain + (before if BEFORE else ()):
            ratios = [a[0] / b[0] for a, b in zip(results[(t, size)], results[(base, size)])]
            print(f"      {t}/{base}: {statistics.median(ratios):.2f}x "
                  f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")


# --- the herd ---------------------------------------------------------------------------
def herd(name):
    """200 connections opened first, then one request on each at once (bench/herd.rs: each
    timed from its own write until its last byte is read, connections kept open until all
    are in). The p50 is None when the client printed no figures (its complaint is shown)."""
    p = PROXIES.get(name, ORIGIN)
    path = f"/slow/{name}-{time.monotonic_ns()}"
    run = subprocess.run(["taskset", "-c", "1", HERD, str(p), path, "200"],
                         capture_output=True, text=True, timeout=90)
    m = re.search(r"answered (\d+) of \d+, min [\d.]+ ms, p50 ([\d.]+) ms", run.stdout)
    if not m:
        print(f"  {name}: herd client failed: {(run.stdout + run.stderr).strip()}",
              file=sys.stderr)
        return origin_count(path), None, 0
    return origin_count(path), float(m.group(2)), int(m.group(1))


def herd_curl(name):
    """The same herd from curl's event loop, a second opinion; curl opens its connections
    inside the time it reports, so its figures sit a little higher."""
    p = PROXIES.get(name, ORIGIN)
    path = f"/slow/{name}-curl-{time.monotonic_ns()}"
    cfg = "".join(f'url = "http://127.0.0.1:{p}{path}"\noutput = "/dev/null"\n'
                  for _ in range(200))
    out = subprocess.run(["taskset", "-c", "1", "curl", "-s", "--parallel",
                          "--parallel-immediate", "--parallel-max", "200", "-K", "-", "-w",
                          "%{http_code} %{time_total}\\n"],
                         input=cfg, capture_output=True, text=True, timeout=60).stdout
    lat = [float(t) * 1000 for code, t in (line.split() for line in out.splitlines())
           if code == "200"]
    return origin_count(path), statistics.median(lat) if lat else None


print("\nherd: 200 concurrent requests for one cold key, 300 ms origin "
      f"(medians of {HERD_ROUNDS} herds per proxy, interleaved)")
# The origin alone first: this Python origin, sharing the client's core, answers 200
# requests at once only one after another, where a proxy sends it one.
herds = {name: [] for name in ["origin"] + list(names)}
for r in range(HERD_ROUNDS):
    for name in herds:
        herds[name].append((herd(name), herd_curl(name)))
for name, runs in herds.items():
    n = sorted({h[0] for h, _ in runs} | {c[0] for _, c in runs})
    p50s = [h[1] for h, _ in runs if h[1] is not None]
    cp50s = [c[1] for _, c in runs if c[1] is not None]
    failed = len(runs) - len(p50s)
    if not p50s:
        print(f"  {name:15} origin requests per herd {n}; every herd failed")
        continue
    answered = min(h[2] for h, _ in runs if h[1] is not None)
    curl = f"{statistics.median(cp50s):.0f} ms" if cp50s else "failed"
    print(f"  {name:15} origin requests per herd {n}, answered {answered}+ of 200, "
          f"p50 {statistics.median(p50s):.1f} ms ({min(p50s):.1f}-{max(p50s):.1f})"
          f"{f', {failed} herd(s) failed' if failed else ''}; curl p50 {curl}")
stop_all()
