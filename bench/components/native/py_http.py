"""The Python test service (test-cluster/components/python/http/app.py) on CPython's own
HTTP server: what bench/components.sh runs under runc against the componentize-py build.
usage: python3 py_http.py PORT"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 65536


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as hyper serves the component; HTTP/1.0 would reconnect per request.
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/":
            self.respond(200, b"hello from componentize-py\n")
        else:
            self.respond(404, b"not found\n")

    def do_POST(self):
        if self.path != "/echo":
            self.respond(404, b"not found\n")
            return
        left = int(self.headers.get("content-length", "0"))
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(left))
        self.end_headers()
        while left > 0:
            chunk = self.rfile.read(min(CHUNK, left))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)

    def respond(self, status, text):
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format, *args):
        # The component logs nothing per request either.
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
