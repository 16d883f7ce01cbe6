"""A real HTTP server on 127.0.0.1 for fetch tests, serving files from a dict and counting requests."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MirrorServer:
    """Serves ``files[path] = bytes``; ``status[path] = code`` forces a reply code (for that many
    requests when ``status_times[path]`` is set); ``truncate`` paths send half their body."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.status_times: dict[str, int] = {}
        self.truncate: set[str] = set()
        self.delay = 0.0
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests[path] += 1
                    forced = server.status.get(path)
                    if forced is not None and path in server.status_times:
                        server.status_times[path] -= 1
                        if server.status_times[path] <= 0:
                            del server.status[path], server.status_times[path]
                if server.delay:
                    time.sleep(server.delay)
                body = server.files.get(path)
                code = forced or (200 if body is not None else 404)
                if code != 200 or body is None:
                    payload = f"{code}\n".encode()
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in server.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"

    def add(self, path: str, data: bytes) -> None:
        self.files["/" + path.lstrip("/")] = data

    def count(self, path: str) -> int:
        return self.requests["/" + path.lstrip("/")]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@contextlib.contextmanager
def serve() -> Iterator[MirrorServer]:
    server = MirrorServer()
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
