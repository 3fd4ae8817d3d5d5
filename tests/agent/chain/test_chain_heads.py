"""``NewHeads``: a block on a real Anvil wakes the loop at once; no WebSocket endpoint,
a refused subscription or a hostile server that sends garbage leaves the loop
polling, never crashes it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from web3 import Web3
from websockets.sync.server import ServerConnection, serve

from enclave_agent.chain.heads import Head, NewHeads, parse_head, websocket_url
from tests.support.anvil import AnvilProcess, free_port


@pytest.mark.parametrize(
    ("rpc", "ws"),
    [
        ("http://127.0.0.1:8545", "ws://127.0.0.1:8545"),
        ("https://node.example/v1/key?x=1", "wss://node.example/v1/key?x=1"),
        ("http://user:pw@host:80/", "ws://user:pw@host:80/"),
    ],
)
def test_the_websocket_url_is_the_http_one(rpc: str, ws: str) -> None:
    assert websocket_url(rpc) == ws


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        websocket_url("ipc:///tmp/node.ipc")


@pytest.fixture(scope="module")
def node() -> Iterator[AnvilProcess]:
    with AnvilProcess() as anvil:
        yield anvil


def test_a_block_wakes_the_loop_within_milliseconds(node: AnvilProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url))
    heads = NewHeads(node.url).start()
    try:
        deadline = time.monotonic() + 10
        while not heads.subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert heads.subscribed
        assert not heads.wait(0.3)  # an idle chain: nothing to wake for
        delays = []
        for _ in range(5):
            started = time.monotonic()
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            assert heads.wait(5.0)
            delays.append(time.monotonic() - started)
        assert heads.heads >= 5
        assert sorted(delays)[2] < 0.2  # well under the 0.2 s poll interval it replaces
        head = heads.take()  # the block that woke it, as the node has it
        block = w3.eth.get_block("latest")
        assert head == Head(block["number"], "0x" + bytes(block["hash"]).hex(), bytes(block["logsBloom"]))
        assert heads.take() is None  # taken once
    finally:
        heads.close()
    assert not heads.subscribed


def test_no_websocket_endpoint_means_polling() -> None:
    heads = NewHeads(f"http://127.0.0.1:{free_port()}", retry=0.05).start()
    try:
        started = time.monotonic()
        assert not heads.wait(0.3)
        assert 0.25 <= time.monotonic() - started < 2
        assert not heads.subscribed
    finally:
        heads.close()


class HostileNode:
    """A WebSocket server that answers ``eth_subscribe`` as told, then sends ``after``."""

    def __init__(self, reply: object, after: list[str | bytes]) -> None:
        self.reply, self.after = reply, after
        self.connections = 0
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, connection: ServerConnection) -> None:
        self.connections += 1
        json.loads(connection.recv())
        connection.send(json.dumps(self.reply))
        for message in self.after:
            connection.send(message)
        time.sleep(5)

    def close(self) -> None:
        self.server.shutdown()


NOTIFICATION = json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"result": {}}})


@pytest.mark.parametrize("reply", [{"jsonrpc": "2.0", "id": 1, "error": {"code": -32601}}, None, [1], "x"])
def test_a_refused_subscription_means_polling(reply: object) -> None:
    node = HostileNode(reply, [])
    heads = NewHeads(node.url, retry=0.05).start()
    try:
        assert not heads.wait(0.5)
        assert node.connections >= 2 and not heads.subscribed  # it retries, then polls on
    finally:
        heads.close()
        node.close()


GARBAGE = {
    "text": "not json",
    "list": "[1, 2]",
    "null": "null",
    "bytes": b"\xff\xfe",
    "method-not-a-string": json.dumps({"method": 7}),
    "deeply-nested": "[" * 100_000,
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_from_the_node_does_not_stop_the_thread(garbage: str | bytes) -> None:
    node = HostileNode({"jsonrpc": "2.0", "id": 1, "result": "0x1"}, [garbage, NOTIFICATION])
    heads = NewHeads(node.url, retry=0.05).start()
    try:
        assert heads.wait(5.0)  # the garbage is ignored, the notification after it wakes
        assert heads.heads == 1 and node.connections == 1
        assert heads.take() is None  # it named no block: the loop asks the node
    finally:
        heads.close()
        node.close()


HEADER = {
    "number": "0x2a",
    "hash": "0x" + "ab" * 32,
    "logsBloom": "0x" + "00" * 255 + "01",
    "parentHash": "0x",
}


def note(header: object) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "method": "eth_subscription",
        "params": {"subscription": "0x1", "result": header},
    }


def test_a_header_names_its_block() -> None:
    assert parse_head(note(HEADER)) == Head(42, "0x" + "ab" * 32, bytes(255) + b"\x01")


@pytest.mark.parametrize(
    "header",
    [
        None,
        [],
        {**HEADER, "number": None},
        {**HEADER, "number": "0xzz"},
        {**HEADER, "number": "-0x1"},
        {**HEADER, "hash": "0x" + "ab" * 31},  # a hash of 31 bytes
        {**HEADER, "hash": 7},
        {**HEADER, "logsBloom": "0x" + "00" * 255},  # a bloom one byte short
        {**HEADER, "logsBloom": "0x" + "zz" * 256},
        {k: v for k, v in HEADER.items() if k != "logsBloom"},
    ],
)
def test_a_malformed_header_names_no_block(header: object) -> None:
    """A head the follower cannot trust to the byte is no head: the loop asks the node."""
    assert parse_head(note(header)) is None
    assert parse_head({"params": "x"}) is None


def test_a_nudge_wakes_the_loop_without_naming_a_block() -> None:
    """Another thread (the gateway's HTTP side, having stored a request) wakes the loop
    at once even with no WebSocket endpoint; the loop then asks the node itself."""
    heads = NewHeads(f"http://127.0.0.1:{free_port()}", retry=0.05).start()
    try:
        started = time.monotonic()
        threading.Timer(0.05, heads.nudge).start()
        assert heads.wait(5.0)
        assert time.monotonic() - started < 2
        assert heads.take() is None
        assert not heads.wait(0.1)  # one nudge, one wake
    finally:
        heads.close()
