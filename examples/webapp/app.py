"""The demo's web app: serves index.html from the folder it runs in, read afresh on every
request, so an edit synced from the laptop shows on the next reload.

Standard library only, so any image with Python 3 runs it: `python3 app.py [PORT]`.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = Path(__file__).with_name("index.html")


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            body = PAGE.read_bytes()
            status = 200
        except OSError as error:
            body = f"cannot read {PAGE.name}: {error.strerror}\n".encode()
            status = 500
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/html; charset=utf-8" if status == 200 else "text/plain"
        )
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    print(f"serving {PAGE} on port {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Page).serve_forever()  # noqa: S104 - the pod's port
