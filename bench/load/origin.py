#!/usr/bin/env python3
"""Benchmark origin: serves files below a directory with fixed caching headers (loopback only).

    origin.py ROOT PORT

Every response: Cache-Control: max-age=300; content type from the extension (.html, .json).
Files are read once and kept in memory; the origin is hit only on cache misses.
"""
import http.server
import os
import sys

ROOT, PORT = sys.argv[1], int(sys.argv[2])
CACHE = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0].lstrip("/")
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
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=300")
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
