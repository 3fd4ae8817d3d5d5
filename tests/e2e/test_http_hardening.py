"""A hostile HTTP client against the real gateway process of the demo consortium:
every malformed request gets a 4xx with a JSON error naming the field, nothing is
written on chain or charged, no header value reaches the logs, and connections that
never finish their request head are closed."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from enclave_agent.listener import HEADER_TIMEOUT
from enclave_devnet.demo import Demo
from tests.support.http import http_json


def post(demo: Demo, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"X-API-Key": demo.api_key} if headers is None else headers
    return http_json(demo.gateway_url + "/v1/inference", "POST", body, headers)


def ledger(demo: Demo) -> tuple[int, int, list[int]]:
    gateway = demo.c.gateway.functions
    return (
        int(gateway.requestCount().call()),
        int(gateway.balanceOf(demo.client_address).call()),
        [int(v) for v in gateway.quotaOf(demo.client_address).call()],
    )


def signed_body(demo: Demo, row: dict[str, float], **fields: Any) -> bytes:
    base = {
        "model": demo._result.model_id,
        "features": row,
        "client": demo.client_address,
        "nonce": 1,
        "deadline": int(time.time()) + 300,
        "max_fee": "1",
        "signature": "0x" + "11" * 65,
    }
    return json.dumps(base | fields).encode()


CASES = [
    ("deeply nested JSON", lambda d, r: (b"[" * 100_000 + b"]" * 100_000, None), 422, "body"),
    (
        "an integer literal of 10^400",
        lambda d, r: (
            json.dumps({"model": d._result.model_id, "features": dict(r, mean_radius=0)})
            .replace('"mean_radius": 0', '"mean_radius": 1' + "0" * 400)
            .encode(),
            None,
        ),
        422,
        "features.mean_radius",
    ),
    (
        "a low-order encrypt_to key",
        lambda d, r: (
            json.dumps({"model": d._result.model_id, "features": r, "encrypt_to": "0x" + "00" * 32}).encode(),
            None,
        ),
        422,
        "encrypt_to",
    ),
    ("a 2-byte signature", lambda d, r: (signed_body(d, r, signature="0x1234"), {}), 401, None),
    ("a nonce of 2^256", lambda d, r: (signed_body(d, r, nonce=2**256), {}), 401, None),
    ("a deadline of 2^64", lambda d, r: (signed_body(d, r, deadline=2**64), {}), 401, None),
]


@pytest.mark.parametrize(("case", "make", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_malformed_requests_are_4xx_naming_the_field_and_change_nothing(
    demo: Demo, row: dict[str, float], case: str, make, status: int, field: str | None
) -> None:
    before = ledger(demo)
    body, headers = make(demo, row)
    got, answer = post(demo, body, headers)
    assert got == status, (case, answer)
    assert "error" in answer and answer.get("field") == field, (case, answer)
    assert ledger(demo) == before


def raw(demo: Demo, payload: bytes) -> bytes:
    parts = urlsplit(demo.gateway_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_non_utf8_api_key_is_401(demo: Demo, row: dict[str, float]) -> None:
    body = json.dumps({"model": demo._result.model_id, "features": row}).encode()
    request = (
        b"POST /v1/inference HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-Key: \xff\xfe-not-utf8\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    reply = raw(demo, request)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert b'"error"' in reply


def test_a_bare_cr_in_a_header_is_refused_without_logging_the_headers(demo: Demo) -> None:
    marker = "Bearer-" + demo.api_key
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-API-Key: {demo.api_key}\r\nX-Evil: a\rb\r\n"
        f"Authorization: {marker}\r\nConnection: close\r\n\r\n"
    ).encode()
    assert raw(demo, request).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    time.sleep(0.5)
    logs = demo.c.agents["gateway"].logs()
    assert "its bytes are not logged" in logs
    assert demo.api_key not in logs


def test_connections_that_never_finish_their_headers_are_closed(demo: Demo) -> None:
    parts = urlsplit(demo.gateway_url)
    sockets = []
    for _ in range(50):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=HEADER_TIMEOUT + 10)
        sock.sendall(b"POST /v1/inference HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    started = time.monotonic()
    try:
        for sock in sockets:
            assert sock.recv(1) == b""  # closed by the gateway
        assert time.monotonic() - started <= HEADER_TIMEOUT + 5
    finally:
        for sock in sockets:
            sock.close()
    # Meanwhile and afterwards the gateway serves everyone else.
    assert http_json(demo.gateway_url + "/healthz")[0] == 200
