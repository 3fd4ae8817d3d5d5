"""Reorganisations, made with Anvil's ``anvil_reorg``: one within an agent's
confirmation depth is absorbed (the agent never saw the replaced block's events and
goes on), one deeper than it replaces a block whose events the agent processed, and
the agent stops with exit code 6 naming the replaced block.

Two providers follow the same chain: provider-0 with ``confirmations = 0``,
provider-1 with ``confirmations = 3``. A thread mines a block every 0.3 s (a chain
with a block time, as confirmations assume); it pauses while the test makes a
governance transaction in block B and replaces B by an empty block."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from enclave_devnet import Consortium, wait_until
from tests.integration.conftest import make_consortium

EXIT_CHAIN_CHANGED = 6


class Miner:
    """Mines a block every ``interval`` seconds unless paused."""

    def __init__(self, c: Consortium, interval: float = 0.3) -> None:
        self.c, self.interval = c, interval
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            if self.running.is_set():
                with self.lock:
                    self.c.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def __enter__(self) -> Miner:
        self.running.set()
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()

    def pause(self) -> None:
        self.running.clear()
        with self.lock:  # a mine in flight finishes first
            pass


def last_event_block(state_dir: Path) -> int | None:
    """The block of the last event the agent processed, read from its store."""
    with closing(sqlite3.connect(f"file:{state_dir / 'agent.sqlite3'}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT value FROM docs WHERE key = 'lastblock/main'").fetchone()
    return None if row is None else int(json.loads(row[0])["number"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, Miner]]:
    for c in make_consortium(tmp_path_factory, "reorg"):
        with Miner(c) as miner:
            c.add_agent("provider-0", operator_index=1, inputs={"v": [1.0, 2.0]})
            c.add_agent("provider-1", operator_index=2, inputs={"v": [1.0, 2.0]}, confirmations=3)
            c.wait_synchronised(2)
            yield c, miner


def test_a_reorg_within_the_confirmation_depth_is_absorbed_and_a_deeper_one_stops_the_agent(
    setup: tuple[Consortium, Miner],
) -> None:
    c, miner = setup
    shallow, deep = c.agents["provider-1"], c.agents["provider-0"]
    wait_until(lambda: last_event_block(shallow.state_dir) is not None, 30, "provider-1 to process events")
    miner.pause()
    assert c.admit_organisation(c.w3.eth.accounts[9], "vanishing")
    block = int(c.w3.eth.block_number)
    assert c.w3.eth.get_block(block)["transactions"]
    wait_until(lambda: last_event_block(deep.state_dir) == block, 30, "provider-0 to process block B")
    assert last_event_block(shallow.state_dir) < block  # 3 confirmations: B is still too new

    c.w3.provider.make_request("anvil_reorg", [1, []])  # type: ignore[arg-type]
    reorganised = time.monotonic()
    assert not c.w3.eth.get_block(block)["transactions"]
    assert int(c.registry.functions.organisation(c.w3.eth.accounts[9]).call()[0]) == 0  # gone
    miner.running.set()

    # Deeper than provider-0's depth (0): it processed B's event, so it stops, saying so.
    wait_until(lambda: not deep.running, 30, "provider-0 to stop")
    print(f"provider-0 stopped {time.monotonic() - reorganised:.1f} s after the reorganisation")
    assert deep.returncode == EXIT_CHAIN_CHANGED, deep.logs()[-2000:]
    assert f"block {block}, whose events this agent processed, was replaced" in deep.logs()

    # Within provider-1's depth (3): never seen, nothing to undo; it goes on following.
    wait_until(lambda: int(c.w3.eth.block_number) >= block + 6, 30, "six more blocks")
    assert shallow.running, shallow.logs()[-2000:]
    miner.pause()
    assert c.admit_organisation(c.w3.eth.accounts[9], "admitted again")
    again = int(c.w3.eth.block_number)
    miner.running.set()
    wait_until(
        lambda: (last_event_block(shallow.state_dir) or 0) >= again, 30, "provider-1 to process the new event"
    )
    assert shallow.running and "was replaced" not in shallow.logs()
    assert "Traceback" not in shallow.logs() + deep.logs()
