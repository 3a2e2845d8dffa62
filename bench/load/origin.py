#!/usr/bin/env python3
"""Benchmark origin: serves files below a directory with fixed caching headers (loopback only).

    origin.py ROOT PORT

Every response: Cache-Control: max-age=300; content type from the extension (.html, .json).
Files are read once and kept in memory; the origin is hit only on cache misses.
Paths under /slow/ answer after 300 ms (the thundering-herd test) with a small body.
Paths under /stream/ send 10 MiB in 1 MiB writes 50 ms apart (about half a second in all):
time to first byte of a miss is the time to the first of them when a proxy streams.
GET /__count answers how many requests were served so far (itself not counted), and
/__count?path=/slow/x how many for one path: how the harness checks that the proxies hit.
"""
import collections
import http.server
import os
import sys
import threading
import time

ROOT, PORT = sys.argv[1], int(sys.argv[2])
CACHE = {}
COUNT = collections.Counter()
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm the body waits for the
    # proxy to acknowledge the headers, which a kept-alive connection's delayed ACK holds
    # back for 40 ms (seen in the herd: p50 345 ms instead of 305 once a proxy reused its
    # origin connection).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        bare, _, query = self.path.partition("?")
        if bare == "/__count":
            with LOCK:
                n = COUNT[query[len("path="):]] if query.startswith("path=") else sum(COUNT.values())
            self.reply(str(n).encode(), "text/plain", "no-store")
            return
        with LOCK:
            COUNT[bare] += 1
        if bare.startswith("/slow/"):
            time.sleep(0.3)
            self.reply(b"slow " + bare.encode(), "text/plain", "max-age=300")
            return
        if bare.startswith("/stream/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(10 << 20))
            self.send_header("Cache-Control", "max-age=300")
            self.end_headers()
            chunk = b"x" * (1 << 20)
            for i in range(10):
                if i:
                    time.sleep(0.05)
                self.wfile.write(chunk)
                self.wfile.flush()
            return
        path = bare.lstrip("/")
        if ".." in path:
            self.send_error(400)
            return
        full = os.path.join(ROOT, path)
        for candidate in (full, full + ".html", full + ".json"):
            if os.path.isfile(candidate):
                break
        else:
            self.send_error(404)
            return
        body = CACHE.get(candidate)
        if body is None:
            with open(candidate, "rb") as f:
                body = CACHE[candidate] = f.read()
        ctype = "application/json" if candidate.endswith(".json") else "text/html; charset=utf-8"
        self.reply(body, ctype, "max-age=300")

    def reply(self, body, ctype, cache_control):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache_control)
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


Server(("127.0.0.1", PORT), Handler).serve_forever()
