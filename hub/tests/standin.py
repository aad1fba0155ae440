"""A JSON HTTP server that stands in for an API the code under test asks (the hub's for a
user's lab, the Docker Engine's for the hub), started in a thread on a free loopback port."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def json_server(answer: Callable[[BaseHTTPRequestHandler], object]) -> ThreadingHTTPServer:
    """A running server that answers every GET with 200 and the JSON of answer(request);
    the caller shuts it down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer(self)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
