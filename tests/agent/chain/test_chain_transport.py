"""The agent's JSON-RPC transport (urllib3 straight, no requests session) against a
real Anvil and against hostile or failing HTTP endpoints: what each failure becomes,
what is retried, and what it read from the environment."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from enclave_agent.chain import connect
from enclave_agent.chain.outage import unreachable
from enclave_agent.chain.sender import _is_transient
from enclave_agent.chain.transport import (
    LeanHTTPProvider,
    NodeHTTPError,
    NodeRefused,
    block_timestamp,
    http_status,
)
from enclave_agent.errors import ChainError
from tests.support.anvil import AnvilProcess, free_port


@dataclass
class Endpoint:
    """An HTTP endpoint that records every request and answers ``status`` (200: a
    JSON-RPC answer echoing the request's id with ``result``)."""

    status: int = 200
    result: Any = "0x7a69"
    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": state.result}).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def fast(url: str, timeout: float = 5) -> Web3:
    """A Web3 over the lean transport whose read retries do not sleep long."""
    provider = LeanHTTPProvider(url, timeout=timeout)
    provider.exception_retry_configuration.backoff_factor = 0.001
    return Web3(provider)


def test_answers_equal_web3s_own_provider(anvil_node: AnvilProcess) -> None:
    lean = connect(anvil_node.url, timeout=5)
    plain = Web3(HTTPProvider(anvil_node.url))
    assert isinstance(lean.provider, LeanHTTPProvider)
    assert lean.eth.chain_id == plain.eth.chain_id == 31337
    block = (RPCEndpoint("eth_getBlockByNumber"), ["0x0", False])
    assert lean.provider.make_request(*block)["result"] == plain.provider.make_request(*block)["result"]
    account = plain.eth.accounts[0]
    assert lean.eth.get_balance(account) == plain.eth.get_balance(account)


def test_threads_sharing_one_provider_each_get_their_own_answer(anvil_node: AnvilProcess) -> None:
    w3 = connect(anvil_node.url, timeout=5)
    accounts = w3.eth.accounts[:8]
    expected = {a: w3.eth.get_balance(a) for a in accounts}
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda a: (a, w3.eth.get_balance(a)), accounts * 25))
    assert len(got) == 200 and all(balance == expected[a] for a, balance in got)


def test_a_refused_connection_is_an_outage_naming_no_secret() -> None:
    w3 = fast(f"http://user:hunter2@127.0.0.1:{free_port()}/v3/0123456789abcdef0123456789abcdef")
    with pytest.raises(ConnectionError) as info:
        w3.eth.block_number
    assert unreachable(info.value) and _is_transient(info.value)
    assert "cannot be connected to" in str(info.value)
    assert "hunter2" not in str(info.value) and "0123456789abcdef" not in str(info.value)


def test_a_node_that_never_answers_is_a_timeout_and_only_what_web3_retries_is_retried() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts into the backlog, never answers
    try:
        w3 = fast(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="did not answer within 0.2 s") as info:
            w3.provider.make_request(RPCEndpoint("debug_traceTransaction"), ["0x00"])
        assert time.monotonic() - started < 1.0  # outside web3's retry list: asked once
        assert unreachable(info.value)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            w3.eth.block_number
        assert (
            time.monotonic() - started >= 5 * 0.2
        )  # on web3's list (reads, and sends: a duplicate is "already known"): five times
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("status", "outage", "transient"),
    [(503, True, True), (502, True, True), (500, True, False), (429, False, True), (401, False, False)],
)
def test_an_http_error_status_is_told_apart(
    endpoint: Endpoint, status: int, outage: bool, transient: bool
) -> None:
    endpoint.status = status
    w3 = fast(endpoint.url)
    with pytest.raises(NodeHTTPError) as info:
        w3.eth.block_number
    assert info.value.status == http_status(info.value) == status
    assert isinstance(info.value, OSError)  # every handler of transport failures takes it
    assert unreachable(info.value) is outage
    assert _is_transient(info.value) is transient
    assert len(endpoint.seen) == 5  # a read: web3's five attempts
    endpoint.seen.clear()
    with pytest.raises(NodeHTTPError):
        w3.provider.make_request(RPCEndpoint("debug_traceTransaction"), ["0x00"])
    assert len(endpoint.seen) == 1  # outside the list: once


def test_a_redirect_is_not_followed(endpoint: Endpoint) -> None:
    endpoint.status = 307
    with pytest.raises(NodeHTTPError, match="HTTP 307"):
        fast(endpoint.url).provider.make_request(RPCEndpoint("debug_traceTransaction"), ["0x00"])
    assert len(endpoint.seen) == 1


def test_user_info_in_the_url_is_basic_auth_and_never_sent_in_the_path(endpoint: Endpoint) -> None:
    url = endpoint.url.replace("http://", "http://alice:s3cret@") + "rpc"
    assert fast(url).eth.chain_id == 31337
    path, headers, body = endpoint.seen[0]
    assert path == "/rpc"
    assert headers["authorization"] == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret
    assert headers["content-type"] == "application/json"
    assert body["method"] == "eth_chainId"


def test_the_proxy_of_the_environment_is_used_unless_the_host_bypasses_it(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", endpoint.url)
    assert fast("http://node.invalid:8545/").eth.chain_id == 31337
    assert endpoint.seen[-1][0] == "http://node.invalid:8545/"  # the proxy got the absolute URL
    monkeypatch.setenv("no_proxy", "node.invalid")
    with pytest.raises(ConnectionError):  # straight to a host that does not exist
        fast("http://node.invalid:8545/").eth.chain_id
    assert len(endpoint.seen) == 1


def test_a_block_timestamp_read_raw_equals_web3s_and_pending_carries_the_clock_offset() -> None:
    with AnvilProcess() as node:  # its own: the clock offset must not reach other tests
        w3 = connect(node.url, timeout=5)
        plain = Web3(HTTPProvider(node.url))
        node.mine()
        latest = plain.eth.get_block("latest")
        assert block_timestamp(w3, "latest") == latest["timestamp"]
        assert block_timestamp(w3, int(latest["number"])) == latest["timestamp"]
        node.rpc("evm_increaseTime", 1000)  # no block mined: only "pending" shows it
        assert block_timestamp(w3, "pending") >= latest["timestamp"] + 1000
        assert block_timestamp(w3, "latest") == latest["timestamp"]


def test_a_block_the_node_does_not_have_or_refuses_is_named(anvil_node: AnvilProcess) -> None:
    w3 = connect(anvil_node.url, timeout=5)
    with pytest.raises(ChainError, match="no block 1000000000 with a timestamp"):
        block_timestamp(w3, 10**9)
    with pytest.raises(NodeRefused, match="eth_getBlockByNumber for block nonsense failed"):
        block_timestamp(w3, "nonsense")


@pytest.mark.parametrize("block", [None, [], {"number": "0x1"}, {"timestamp": 5}, {"timestamp": "0xzz"}])
def test_a_node_answering_garbage_for_a_block_is_refused_not_trusted(
    endpoint: Endpoint, block: object
) -> None:
    endpoint.result = block
    with pytest.raises(ChainError, match="no block latest with a timestamp"):
        block_timestamp(fast(endpoint.url), "latest")
