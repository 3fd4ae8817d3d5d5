"""The one JSON POST both service clients (attestation, evidence verifier) use: each
failure comes back as its own error, naming the service and the URL."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee._service_http import ServiceRefused, post_json


class Answers(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, reply = {
            "/ok": (200, json.dumps({"echo": body}).encode()),
            "/garbage": (200, b"not json"),
            "/busy": (503, b'{"error": "busy"}'),
        }[self.path]
        self.send_response(status)
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_the_answer_is_decoded(url: str) -> None:
    assert post_json("svc", url, "/ok", {"a": 1}, 5) == {"echo": {"a": 1}}


def test_an_http_error_keeps_its_status_and_body(url: str) -> None:
    with pytest.raises(ServiceRefused, match=r"svc at .* failed: HTTP 503") as refused:
        post_json("svc", url, "/busy", {}, 5)
    assert refused.value.status == 503 and json.loads(refused.value.detail) == {"error": "busy"}


def test_garbage_and_silence_are_attestation_errors(url: str) -> None:
    with pytest.raises(AttestationError, match="svc at .* unreachable or answered garbage"):
        post_json("svc", url, "/garbage", {}, 5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(AttestationError, match="unreachable"):
        post_json("svc", closed, "/ok", {}, 5)


def test_only_http_urls_are_asked() -> None:
    with pytest.raises(ConfigError, match="svc URL must be http"):
        post_json("svc", "file:///etc/passwd", "/ok", {}, 5)
