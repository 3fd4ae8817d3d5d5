"""Following the chain for the page: read-only, no wallet, no keys.

A ``Watcher`` thread reads the three contracts' logs from the manifest's deployment
block on (in batches of at most ``batch_blocks``), decodes them with
``enclave_agent.chain.decode_logs``, adds each event's block timestamp and its
transaction's gas used (from the receipt) and folds it into a ``ConsortiumView``.
Every change bumps ``version``, which the HTTP layer pushes to the page.

When the node does not answer, ``status`` says so (with the error and when the chain
was last seen) and the watcher retries every poll interval. When the chain's head goes
below what was read, or the last block read has another hash now (a node restarted
with a fresh chain, a reorganisation), the view is rebuilt from the deployment block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import requests
from web3 import Web3
from web3.exceptions import BlockNotFound, Web3Exception
from web3.types import FilterParams, LogReceipt

from enclave_agent.chain import Contracts, Manifest, connect, decode_logs, redact_url
from enclave_agent.errors import ChainError, ConfigError
from enclave_console.view import ConsortiumView

log = logging.getLogger(__name__)

UNREACHABLE = (ChainError, requests.RequestException, Web3Exception, OSError, ValueError)
CACHE = 4096  # block timestamps and receipts' gas kept while following


class Watcher:
    """Keeps a ``ConsortiumView`` of one deployment up to date in a thread."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        rpc_url: str | None = None,
        poll_interval: float = 0.5,
        batch_blocks: int = 2000,
        connector: Callable[[str], Web3] | None = None,
    ) -> None:
        self.manifest = manifest
        self.rpc_url = rpc_url or manifest.rpc_url
        self.poll_interval = poll_interval
        self.batch_blocks = batch_blocks
        self._connect = connector or (lambda url: connect(url, timeout=10))
        self.lock = threading.Lock()
        self.view = ConsortiumView()
        self.version = 0
        self.status: dict[str, Any] = {
            "reachable": False,
            "error": "not connected yet",
            "rpc_url": redact_url(self.rpc_url),
            "chain_id": manifest.chain_id,
            "last_seen": None,
            "synced_to": None,
        }
        self._contracts: Contracts | None = None
        self._next_block = manifest.deployed_block
        self._seen: tuple[int, str] | None = None  # the last block read and its hash
        self._timestamps: OrderedDict[int, int] = OrderedDict()
        self._gas: OrderedDict[str, int] = OrderedDict()
        self.behind = False  # the last step read a full batch and the head is further
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ public

    def snapshot(self, *, rounds: int | None = None, requests: int | None = None) -> dict[str, Any]:
        """The view's snapshot with the chain status (see ``ConsortiumView.snapshot``)."""
        with self.lock:
            view = self.view.snapshot(rounds=rounds, requests=requests)
            return {"chain": dict(self.status), "version": self.version, **view}

    def read(self, fn: Callable[[ConsortiumView], Any]) -> Any:
        with self.lock:
            return fn(self.view)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="console-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                if self.behind:
                    continue  # catching up: the next batch at once
            except (ConfigError, *UNREACHABLE) as exc:
                self._unreachable(exc)
            except Exception as exc:  # a bug must not end the page's only reader silently
                log.exception("reading the chain failed")
                self._unreachable(ChainError(f"reading the chain failed: {type(exc).__name__}: {exc}"))
            self._stop.wait(self.poll_interval)

    # ------------------------------------------------------------------ following

    def step(self) -> int:
        """Read what is new up to the head (one batch at most); returns events applied."""
        contracts = self._bind()
        w3 = contracts.w3
        head = int(w3.eth.block_number)
        seen = self._seen
        if head + 1 < self._next_block or (seen is not None and self._block_hash(w3, seen[0]) != seen[1]):
            log.warning("the chain was replaced or reorganised below the last block read; reading it again")
            self._reset()
        applied = 0
        if self._next_block <= head:
            last = min(head, self._next_block + self.batch_blocks - 1)
            params: FilterParams = {
                "address": contracts.addresses,
                "fromBlock": self._next_block,
                "toBlock": last,
            }
            logs: list[LogReceipt] = list(w3.eth.get_logs(params))
            events = sorted(decode_logs(contracts, logs), key=lambda e: (e.block_number, e.log_index))
            enriched = [
                (e, self._timestamp(w3, e.block_number), self._gas_used(w3, e.tx_hash)) for e in events
            ]
            head_time = self._timestamp(w3, last)
            self._seen = (last, self._block_hash(w3, last))
            with self.lock:
                self.view.apply_all(enriched)
                self.view.set_head(last, head_time)
                self._next_block = last + 1
                self._mark_reachable(last)
            self.behind = last < head
            applied = len(enriched)
        else:
            self.behind = False
            head_time = self._timestamp(w3, head)
            with self.lock:
                changed = self.view.set_head(head, head_time) or not self.status["reachable"]
                self._mark_reachable(head, bump=changed)
        return applied

    def _bind(self) -> Contracts:
        if self._contracts is None:
            w3 = self._connect(self.rpc_url)
            contracts = Contracts(w3, self.manifest)
            if int(w3.eth.chain_id) != self.manifest.chain_id:
                raise ChainError(
                    f"node is on chain {w3.eth.chain_id}, the manifest names chain {self.manifest.chain_id}"
                )
            self._contracts = contracts
        return self._contracts

    def _block_hash(self, w3: Web3, number: int) -> str:
        """The block's hash ("" if the node has no such block: the chain was replaced)."""
        try:
            block = w3.eth.get_block(number)
        except BlockNotFound:
            return ""
        return bytes(block["hash"]).hex() if block.get("hash") else ""

    def _timestamp(self, w3: Web3, number: int) -> int:
        ts = self._timestamps.get(number)
        if ts is None:
            ts = int(w3.eth.get_block(number)["timestamp"])
            self._timestamps[number] = ts
            while len(self._timestamps) > CACHE:
                self._timestamps.popitem(last=False)
        return ts

    def _gas_used(self, w3: Web3, tx_hash: str) -> int:
        gas = self._gas.get(tx_hash)
        if gas is None:
            gas = int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
            self._gas[tx_hash] = gas
            while len(self._gas) > CACHE:
                self._gas.popitem(last=False)
        return gas

    def _reset(self) -> None:
        with self.lock:
            self.view = ConsortiumView()
            self._next_block = self.manifest.deployed_block
            self._seen = None
            self._timestamps.clear()
            self._gas.clear()
            self.version += 1

    def _mark_reachable(self, block: int, *, bump: bool = True) -> None:
        was = self.status["reachable"]
        self.status.update(reachable=True, error="", last_seen=time.time(), synced_to=block)
        if bump or not was:
            self.version += 1
        if not was:
            log.info("following %s from block %d", redact_url(self.rpc_url), self.manifest.deployed_block)

    def _unreachable(self, exc: BaseException) -> None:
        if isinstance(exc, ConfigError | ChainError):
            message = str(exc)
        else:
            message = f"JSON-RPC endpoint {redact_url(self.rpc_url)} does not answer: {type(exc).__name__}"
        with self.lock:
            if self.status["reachable"] or self.status["error"] != message:
                log.warning("chain unreachable: %s", message)
                self.version += 1
            self.status.update(reachable=False, error=message)
        self._contracts = None  # reconnect (and re-check the chain id) next time
