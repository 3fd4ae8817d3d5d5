"""Following the contracts' events exactly once.

The follower reads logs from its checkpoint to ``head - confirmations``, in batches.
``process`` hands each new event to a handler inside one store transaction that
also marks the event processed, so the handler's own store writes, the mark and the
checkpoint commit together or not at all: a crash or a handler exception means the
event is delivered again after restart, and a committed event never is.

Told which block woke it (``Head``, from the newHeads subscription) and that block
is the only new one, the follower asks nothing of the node when the block's logs
bloom holds none of our contracts (most blocks of a shared chain), and otherwise
reads exactly that block's logs by its hash (EIP-234: a node that does not know the
block refuses, it never answers "no logs"). Advancing the checkpoint over blocks
without events is kept in memory and written at most every ``persist_seconds``: a
restart re-reads those few blocks, and processed events are never delivered twice.

The block of the last processed event is recorded with its hash
(``last_event_block``), so that a reorganisation deeper than ``confirmations`` which
replaced it is detected (``chain.identity``); choose ``confirmations`` for the chain
(0 on Anvil, a few blocks on a PoW-like L1, 0 on a QBFT network with instant finality).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from eth_bloom.bloom import BloomFilter
from web3 import Web3

from enclave_agent.chain.client import Contracts
from enclave_agent.chain.events import ChainEvent, decode_logs
from enclave_agent.chain.heads import Head
from enclave_agent.chain.transport import NodeRefused, rpc_result
from enclave_agent.errors import ChainError
from enclave_agent.store.db import Store

log = logging.getLogger(__name__)


class EventFollower:
    """Exactly-once delivery of the three contracts' events to one handler."""

    def __init__(
        self,
        w3: Web3,
        contracts: Contracts,
        store: Store,
        *,
        name: str = "main",
        start_block: int = 0,
        confirmations: int = 0,
        batch_blocks: int = 2000,
        persist_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_blocks < 1 or confirmations < 0 or start_block < 0:
            raise ValueError("batch_blocks must be >= 1, confirmations and start_block >= 0")
        self.w3 = w3
        self.contracts = contracts
        self.store = store
        self.name = name
        self.start_block = start_block
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.persist_seconds, self._clock = persist_seconds, clock
        self._scanned_to: int | None = None
        self._scanned: int | None = None  # scanned without events, maybe not yet in the store
        self._persisted_at = clock()
        # Per contract address, the logs-bloom bits a log of it sets.
        self._bloom_bits = [
            int(BloomFilter.from_iterable([bytes.fromhex(a[2:])])) for a in contracts.addresses
        ]
        self.skipped = 0  # blocks whose bloom spared a request (tests and metrics)

    @property
    def checkpoint_name(self) -> str:
        """The store checkpoint this follower advances: its ``name``."""
        return self.name

    @property
    def last_event_block(self) -> tuple[int, str] | None:
        """The block (number, hash) of the last event processed, to detect a reorganisation."""
        data = self.store.get_json(f"lastblock/{self.checkpoint_name}")
        return None if not data else (int(data["number"]), str(data["hash"]))

    @property
    def checkpoint(self) -> int | None:
        """The last block whose events are all processed (None before the first)."""
        stored = self.store.get_checkpoint(self.checkpoint_name)
        if self._scanned is None or (stored is not None and stored >= self._scanned):
            return stored
        return self._scanned

    def safe_head(self) -> int:
        return int(rpc_result(self.w3, "eth_blockNumber", [], "the block number"), 16) - self.confirmations

    def may_hold_ours(self, head: Head) -> bool:
        """Whether ``head``'s logs bloom admits a log of one of our contracts (a bloom
        never misses one; it may admit one that is not there)."""
        bloom = int.from_bytes(head.bloom, "big")
        return any(bloom & bits == bits for bits in self._bloom_bits)

    def poll(self, head: Head | None = None) -> list[ChainEvent]:
        """New events up to the safe head, ordered by (block, log index). ``head``:
        the block that woke the loop, if the subscription announced one."""
        checkpoint = self.checkpoint
        first = self.start_block if checkpoint is None else max(checkpoint + 1, self.start_block)
        self._scanned_to = None
        logs = self._announced_logs(head) if head is not None and head.number == first else None
        if logs is not None:
            last = first
        else:
            last = self.safe_head()
            if last < first:
                return []
            logs = []
            for start in range(first, last + 1, self.batch_blocks):
                logs.extend(self._get_logs(start, min(start + self.batch_blocks - 1, last)))
        events = sorted(decode_logs(self.contracts, logs), key=lambda e: (e.block_number, e.log_index))
        self._scanned_to = last
        return [e for e in events if not self.store.is_processed(e.event_id)]

    def _announced_logs(self, head: Head) -> list[dict[str, Any]] | None:
        """The logs of the one new block ``head`` (none if its bloom rules ours out);
        None when it must be read by range instead."""
        if self.confirmations:
            return None  # the announced block is not yet deep enough to process
        if not self.may_hold_ours(head):
            self.skipped += 1
            return []
        try:
            return self._block_logs(head)
        except NodeRefused as exc:  # e.g. a node behind a balancer that has not seen it yet
            log.debug("%s: reading by range", exc)
            return None

    def process(self, handler: Callable[[ChainEvent], Any], head: Head | None = None) -> int:
        """Deliver every new event to ``handler``; returns how many it handled.

        A handler exception rolls back that event's transaction and propagates;
        the events before it stay committed."""
        events = self.poll(head)
        scanned_to = self._scanned_to
        handled = 0
        for i, event in enumerate(events):
            block_done = i + 1 == len(events) or events[i + 1].block_number != event.block_number
            with self.store.transaction():
                # Re-checked inside the transaction: another follower on this store may have won.
                if not self.store.mark_processed(event.event_id):
                    continue
                handler(event)
                self.store.put_json(
                    f"lastblock/{self.checkpoint_name}",
                    {"number": event.block_number, "hash": event.block_hash},
                )
                if block_done:
                    self._advance(event.block_number)
            handled += 1
            log.debug("processed %s.%s %s", event.contract, event.name, event.event_id)
        if scanned_to is not None and (self._scanned is None or scanned_to > self._scanned):
            self._scanned = scanned_to
            if self._clock() - self._persisted_at >= self.persist_seconds:
                self.flush()
        return handled

    def flush(self) -> None:
        """Write the checkpoint the follower holds in memory (scanned blocks without events)."""
        if self._scanned is not None:
            with self.store.transaction():
                self._advance(self._scanned)
        self._persisted_at = self._clock()

    def _advance(self, block: int) -> None:
        current = self.store.get_checkpoint(self.checkpoint_name)
        if current is None or block > current:
            self.store.set_checkpoint(self.checkpoint_name, block)

    def _block_logs(self, head: Head) -> list[dict[str, Any]]:
        """The logs of our contracts in exactly the block ``head`` names."""
        params = {"address": self.contracts.addresses, "blockHash": head.hash}
        logs = rpc_result(self.w3, "eth_getLogs", [params], f"block {head.number} ({head.hash[:10]})")
        return _checked(logs, head.number, head.number)

    def _get_logs(self, first: int, last: int) -> list[dict[str, Any]]:
        """Logs of our contracts in [first, last]; halves the range when the node refuses it."""
        params = {"address": self.contracts.addresses, "fromBlock": hex(first), "toBlock": hex(last)}
        try:
            logs = rpc_result(self.w3, "eth_getLogs", [params], f"blocks {first}..{last}")
        except NodeRefused as exc:
            if first == last:
                raise
            middle = (first + last) // 2
            log.info("%s; splitting", exc)
            return self._get_logs(first, middle) + self._get_logs(middle + 1, last)
        return _checked(logs, first, last)


def _checked(logs: Any, first: int, last: int) -> list[dict[str, Any]]:
    """``logs`` if it is a list of logs of blocks [first, last] none of which was removed;
    ChainError otherwise (a node that answers something else is not followed blindly)."""
    if not isinstance(logs, list):
        raise ChainError(f"eth_getLogs for blocks {first}..{last} answered {type(logs).__name__}, not a list")
    for entry in logs:
        try:
            number = int(entry["blockNumber"], 16)
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(
                f"eth_getLogs for blocks {first}..{last} answered a log without a number"
            ) from exc
        if not first <= number <= last or entry.get("removed"):
            raise ChainError(f"eth_getLogs for blocks {first}..{last} answered a log of block {number}")
    return logs
