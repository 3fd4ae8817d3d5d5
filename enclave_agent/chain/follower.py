"""Following the contracts' events exactly once.

The follower reads logs from its checkpoint to ``head - confirmations``, in batches.
``process`` hands each new event to a handler inside one store transaction that
also marks the event processed, so the handler's own store writes, the mark and the
checkpoint commit together or not at all: a crash or a handler exception means the
event is delivered again after restart, and a committed event never is.

The block of the last processed event is recorded with its hash
(``last_event_block``), so that a reorganisation deeper than ``confirmations`` which
replaced it is detected (``chain.identity``); choose ``confirmations`` for the chain
(0 on Anvil, a few blocks on a PoW-like L1, 0 on a QBFT network with instant finality).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import FilterParams, LogReceipt

from enclave_agent.chain.client import Contracts
from enclave_agent.chain.events import ChainEvent, decode_logs
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
        self._scanned_to: int | None = None

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
        return self.store.get_checkpoint(self.checkpoint_name)

    def safe_head(self) -> int:
        return int(self.w3.eth.block_number) - self.confirmations

    def poll(self) -> list[ChainEvent]:
        """New events up to the safe head, ordered by (block, log index)."""
        checkpoint = self.checkpoint
        first = self.start_block if checkpoint is None else max(checkpoint + 1, self.start_block)
        last = self.safe_head()
        self._scanned_to = None
        if last < first:
            return []
        logs: list[LogReceipt] = []
        for start in range(first, last + 1, self.batch_blocks):
            logs.extend(self._get_logs(start, min(start + self.batch_blocks - 1, last)))
        events = sorted(decode_logs(self.contracts, logs), key=lambda e: (e.block_number, e.log_index))
        self._scanned_to = last
        return [e for e in events if not self.store.is_processed(e.event_id)]

    def process(self, handler: Callable[[ChainEvent], Any]) -> int:
        """Deliver every new event to ``handler``; returns how many it handled.

        A handler exception rolls back that event's transaction and propagates;
        the events before it stay committed."""
        events = self.poll()
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
        if scanned_to is not None:
            with self.store.transaction():
                self._advance(scanned_to)
        return handled

    def _advance(self, block: int) -> None:
        current = self.store.get_checkpoint(self.checkpoint_name)
        if current is None or block > current:
            self.store.set_checkpoint(self.checkpoint_name, block)

    def _get_logs(self, first: int, last: int) -> list[LogReceipt]:
        """Logs of our contracts in [first, last]; halves the range when the node refuses it."""
        params: FilterParams = {
            "address": self.contracts.addresses,
            "fromBlock": first,
            "toBlock": last,
        }
        try:
            return list(self.w3.eth.get_logs(params))
        except Web3RPCError as exc:
            if first == last:
                raise ChainError(f"eth_getLogs failed for block {first}: {exc.message}") from exc
            middle = (first + last) // 2
            log.info("eth_getLogs refused blocks %d..%d (%s); splitting", first, last, exc.message)
            return self._get_logs(first, middle) + self._get_logs(middle + 1, last)
