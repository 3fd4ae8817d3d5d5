"""The console's HTTP surface without a chain: the JSON API and its refusals (clear
4xx JSON for bad ids, huge numbers, bad limits, unknown paths and methods), the live
stream's first event, the page's files under the strict CSP, and the error state when
the node does not answer."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from enclave_agent.chain import Manifest
from enclave_agent.gateway import vendor
from enclave_console import Watcher, build_app
from enclave_console import http as console_http
from enclave_console.http import WEB_FILES
from tests.console.test_console_view import _request, consortium, open_round


def _manifest(rpc_url: str = "http://127.0.0.1:9") -> Manifest:
    addresses = {
        n: "0x" + c * 40
        for n, c in (("ConsortiumRegistry", "1"), ("ShareExchange", "2"), ("InferenceGateway", "3"))
    }
    return Manifest(
        chain_id=31337,
        rpc_url=rpc_url,
        deployed_block=0,
        governor="",
        contracts=addresses,
        abi_dir="build/contracts",
    )


def _watcher() -> Watcher:
    w = Watcher(_manifest())
    w.view = consortium()
    for i in (1, 2, 3):
        open_round(w.view, i)
    _request(w.view, 1, 1000)
    w.status.update(reachable=True, error="")
    return w


def run(test: Callable[[TestClient], Awaitable[None]], watcher: Watcher | None = None) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(watcher or _watcher()))) as client:
            await test(client)

    asyncio.run(main())


async def _json(client: TestClient, path: str, method: str = "GET") -> tuple[int, Any, Any]:
    response = await client.request(method, path)
    assert response.headers["Content-Type"].startswith("application/json"), path
    return response.status, await response.json(), response.headers


def test_the_api_answers_each_section() -> None:
    async def check(client: TestClient) -> None:
        status, body, headers = await _json(client, "/api/state")
        assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
        assert [r["id"] for r in body["rounds"]] == [3, 2, 1]
        assert body["chain"]["reachable"] is True and body["chain"]["rpc_url"] == "http://127.0.0.1:9"
        status, body, _ = await _json(client, "/api/rounds?limit=2")
        assert status == 200 and [r["id"] for r in body["rounds"]] == [3, 2]
        status, body, _ = await _json(client, "/api/rounds/2")
        assert status == 200 and body["id"] == 2 and body["participants"][3]["name"] == "Rogue R"
        status, body, _ = await _json(client, "/api/requests/1")
        assert status == 200 and body["rows"] == 2
        status, body, _ = await _json(client, "/api/members")
        assert {m["organisation"] for m in body["members"]} == {"Bank A", "Bank B", "Insurer C", "Rogue R"}
        status, body, _ = await _json(client, "/api/overview")
        assert body["counts"] == {
            "organisations": 4,
            "active_members": 4,
            "rounds": 3,
            "requests": 1,
            "models": 0,
        }
        for path in ("/api/epochs", "/api/usage", "/api/activity", "/healthz"):
            assert (await _json(client, path))[0] == 200, path

    run(check)


def test_hostile_requests_get_a_clear_json_4xx() -> None:
    async def check(client: TestClient) -> None:
        cases = {
            "/api/rounds/abc": (400, "round id must be a decimal number"),
            "/api/rounds/-1": (400, "round id must be a decimal number"),
            "/api/rounds/" + "9" * 79: (400, "below 2**256"),
            "/api/rounds/" + str(2**256): (400, "below 2**256"),
            "/api/rounds/" + str(2**256 - 1): (
                404,
                "round 1157920892373161954235709850086879078532699846656405640394575840079131296",
            ),
            "/api/rounds/99": (404, "never opened, or older than the last 200"),
            "/api/requests/0x10": (400, "request id must be a decimal number"),
            "/api/requests/7": (404, "request 7 is not in the view"),
            "/api/rounds?limit=0": (400, "limit must be a whole number from 1 to 200"),
            "/api/rounds?limit=201": (400, "limit must be"),
            "/api/rounds?limit=" + "9" * 50: (400, "limit must be"),
            "/api/requests?limit=x": (400, "limit must be a whole number from 1 to 1000"),
            "/api/nothing": (404, "Not Found"),
            "/web/../../etc/passwd": (404, ""),
            "/web/nothing.js": (404, "no page file"),
            "/web/vendor/nothing.js": (404, "no vendored file"),
        }
        for path, (want, words) in cases.items():
            status, body, _ = await _json(client, path)
            assert status == want, (path, status, body)
            assert words in body["error"], (path, body)
        status, body, _ = await _json(client, "/api/state", method="POST")
        assert status == 405 and body["error"] == "Method Not Allowed"
        status, body, _ = await _json(client, "/api/rounds/1", method="DELETE")
        assert status == 405

    run(check)


def test_the_stream_sends_the_state_at_once_and_again_on_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_http, "STREAM_ROUNDS", 2)
    watcher = _watcher()

    async def check(client: TestClient) -> None:
        response = await client.get("/api/stream")
        assert response.headers["Content-Type"] == "text/event-stream"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]

        async def event() -> dict[str, Any]:
            lines: list[str] = []
            while True:
                line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
                if line == "" and lines:
                    break
                lines.append(line)
            assert lines[0] == "event: state"
            return json.loads(next(x for x in lines if x.startswith("data: "))[6:])

        first = await event()
        # The page gets the newest STREAM_ROUNDS (2 here) and how many are kept.
        assert [r["id"] for r in first["rounds"]] == [3, 2] and first["kept"]["rounds"] == 3
        with watcher.lock:
            open_round(watcher.view, 4)
            watcher.version += 1
        second = await event()
        assert [r["id"] for r in second["rounds"]] == [4, 3] and second["kept"]["rounds"] == 4
        response.close()

    run(check, watcher)


def test_every_page_file_is_packaged_and_the_page_loads_only_its_own_and_pinned_files() -> None:
    web = resources.files("enclave_console").joinpath("web")
    assert sorted(p.name for p in web.iterdir()) == sorted(WEB_FILES)
    html = web.joinpath("index.html").read_text()
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    scripts = set(re.findall(r'<script[^>]*src="([^"]+)"', html)) | set(
        re.findall(r'<link[^>]*href="([^"]+)"', html)
    )
    for name in WEB_FILES:
        if name.endswith(".js"):
            scripts |= {f"/web/{m}" for m in re.findall(r'from "\./([^"]+)"', web.joinpath(name).read_text())}
            assert ".innerHTML" not in web.joinpath(name).read_text(), name  # chain text is untrusted
    pinned = {f"/web/vendor/{n}" for n in vendor.pins() if n.endswith(".js")}
    assert scripts == {f"/web/{n}" for n in WEB_FILES if n != "index.html"} | pinned

    async def check(client: TestClient) -> None:
        for name, content_type in WEB_FILES.items():
            response = await client.get(f"/web/{name}")
            assert response.status == 200 and response.headers["Content-Type"].startswith(content_type)
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert (await client.get("/")).status == 200

    run(check)


def test_an_unreachable_node_is_an_error_state_not_a_crash() -> None:
    watcher = Watcher(_manifest("http://127.0.0.1:9"), poll_interval=0.1)  # discard port: nothing listens
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while "does not answer" not in watcher.status["error"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watcher.status["reachable"] is False
        assert (
            watcher.status["error"] == "JSON-RPC endpoint http://127.0.0.1:9 does not answer: ConnectionError"
        )

        async def check(client: TestClient) -> None:
            status, body, _ = await _json(client, "/healthz")
            assert status == 503 and "does not answer" in body["error"]
            status, body, _ = await _json(client, "/api/state")
            assert status == 200 and body["chain"]["reachable"] is False and body["rounds"] == []

        run(check, watcher)
    finally:
        watcher.stop()
