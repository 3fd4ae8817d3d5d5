"""A real HTTP hop between the agent and Anvil that can lose messages on purpose.

Not a mock: every request that is let through reaches the real node. Faults are
scheduled per JSON-RPC method: ``drop_request`` closes the connection without
forwarding, ``drop_response`` forwards and then closes without answering (the node
acted, the client cannot know), ``http503`` answers Service Unavailable and
``rpc_error`` answers a JSON-RPC error such as a provider's "range too large".
While ``down`` is set every request is dropped: an outage of the node. A node that
lies: ``rewrite[method]`` changes the node's result before it is answered.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.seen: dict[str, int] = defaultdict(int)
        self.rewrite: dict[str, Callable[[Any], Any]] = {}
        self.down = False
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                method = json.loads(body).get("method", "?")
                with proxy._lock:
                    proxy.seen[method] += 1
                    fault = proxy.faults[method].pop(0) if proxy.faults[method] else None
                if fault == "drop_request" or proxy.down:
                    self.close_connection = True
                    return
                if fault == "http503":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "rpc_error":
                    reply = json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": json.loads(body).get("id"),
                            "error": {"code": -32005, "message": "query exceeds limit"},
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                request = urllib.request.Request(
                    proxy.upstream, data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    reply = response.read()
                if fault == "drop_response":
                    self.close_connection = True
                    return
                rewrite = proxy.rewrite.get(method)
                if rewrite is not None:
                    answer = json.loads(reply)
                    answer["result"] = rewrite(answer.get("result"))
                    reply = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def inject(self, method: str, *faults: str) -> None:
        with self._lock:
            self.faults[method].extend(faults)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
