"""Sending transactions signed by the enclave's own key.

The sender estimates gas first, so a call the contract would reject raises the
decoded ``ContractRevert`` before anything is signed or sent: bad input changes
nothing on chain and costs nothing. Nonces are kept locally (one lock per sender)
and resynchronised from the node when it disagrees. A raw transaction that may or
may not have reached the node (a dropped connection) is re-sent byte for byte, so a
retry can never produce a second, different transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import requests
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import BlockIdentifier, RPCEndpoint, TxParams, TxReceipt, Wei

from enclave_agent.chain.errors import ErrorDecoder
from enclave_agent.chain.transport import http_status
from enclave_agent.errors import ChainError, InsufficientFunds
from enclave_agent.store.db import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

# EIP-7825 (Osaka) caps a transaction's gas at 2^24; larger limits are refused.
TX_GAS_CAP = 2**24
# Another participant's transaction mined first can make ours the one that closes a
# phase (extra storage writes and events) after the estimate; unused gas is not paid.
GAS_MARGIN = 100_000
DEFAULT_PRIORITY_FEE = Wei(10**9)
FEES_TTL = 2.0
RECEIPT_POLL_FIRST, RECEIPT_POLL_CAP = 0.002, 0.1

_TRANSIENT: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    ProviderConnectionError,
    ConnectionError,
    TimeoutError,
)
_TRACE_ERRORS: tuple[type[BaseException], ...] = (Web3RPCError, *_TRANSIENT)
_DUPLICATE = ("already known", "already imported", "known transaction")
_NONCE_CONFLICT = (
    "nonce too low",
    "nonce is too low",
    "replacement transaction underpriced",
    "mining has already started",  # Ganache: the nonce's transaction is being mined
    "doesn't have the correct nonce",  # Ganache
)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    # A gateway in front of the node (429 rate limit, 502/503/504) asks us to come back.
    return http_status(exc) in (429, 502, 503, 504)


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc).lower()


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class TxSender:
    """Builds, signs (locally, with the enclave's key), sends and confirms transactions."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        decoder: ErrorDecoder,
        *,
        store: Store | None = None,
        max_retries: int = 3,
        gas_buffer: float = 1.2,
        receipt_timeout: float = 60,
        backoff: float = 0.25,
    ) -> None:
        if gas_buffer < 1:
            raise ValueError("gas_buffer must be at least 1")
        self.w3 = w3
        self.account = account
        self.decoder = decoder
        self.store = store
        self.max_retries = max_retries
        self.gas_buffer = gas_buffer
        self.receipt_timeout = receipt_timeout
        self.backoff = backoff
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        # Running totals for metrics: transactions mined, their gas, and refusals.
        self.mined = 0
        self.gas_spent = 0
        self.reverts = 0
        self._chain_id: int | None = None
        self._fees_cache: tuple[float, dict[str, Wei]] | None = None  # (when, fees)

    @property
    def address(self) -> str:
        return str(self.account.address)

    # ------------------------------------------------------------------ public API

    def send(self, fn: ContractFunction | ContractConstructor, *, label: str, value: int = 0) -> TxReceipt:
        """Send ``fn`` and wait for its receipt; raises the decoded ``ContractRevert``
        if the contract rejects it (before sending when the estimate already reverts)."""
        params: TxParams = {"from": self.account.address, "value": Wei(value)}
        # Estimated against the pending block: that is where the transaction goes, and on
        # an idle chain its timestamp is now, while the latest block's may be long past
        # (a deadline check against it would refuse until someone else mined a block).
        if isinstance(fn, ContractFunction):
            # Encoded once for the estimate and the transaction: web3 would encode (and
            # look the function up in the ABI, and ask the chain id) for each.
            call: TxParams = {**params, "to": fn.address, "data": fn._encode_transaction_data()}
            return self._submit(
                lambda: self.w3.eth.estimate_gas(call, "pending"),
                lambda extra: cast(TxParams, {**call, **extra}),
                label,
            )
        return self._submit(
            lambda: fn.estimate_gas(params, block_identifier="pending"),
            lambda extra: fn.build_transaction(cast(TxParams, {**params, **extra})),
            label,
        )

    def transfer(self, to: str, value: int, *, label: str) -> TxReceipt:
        """Send ``value`` wei to ``to`` (e.g. an operator funding its enclave account)."""
        params: TxParams = {
            "from": self.account.address,
            "to": Web3.to_checksum_address(to),
            "value": Wei(value),
        }
        return self._submit(
            lambda: self.w3.eth.estimate_gas(params, "pending"),
            lambda extra: cast(TxParams, {**params, **extra}),
            label,
        )

    def call(
        self, fn: ContractFunction, *, block_identifier: BlockIdentifier = "latest", value: int = 0
    ) -> Any:
        """``eth_call`` from this account; reverts come back as the decoded ``ContractRevert``."""
        params: TxParams = {"from": self.account.address, "value": Wei(value)}
        try:
            return self._retry(lambda: fn.call(params, block_identifier=block_identifier))
        except ContractLogicError as exc:
            raise self.decoder.from_exception(exc, context=fn.fn_name) from None

    def resync_nonce(self) -> None:
        """Forget the local nonce; the next send reads the node's pending count."""
        with self._lock:
            self._next_nonce = None

    def revert_of(self, receipt: TxReceipt, tx: TxParams | None = None, *, label: str = "") -> ChainError:
        """Why a mined transaction of ours failed (see ``explain_failure``)."""
        return explain_failure(self.w3, self.decoder, receipt, tx, label=label)

    # ------------------------------------------------------------------ steps

    def _submit(
        self, estimate: Callable[[], int], build: Callable[[dict[str, Any]], TxParams], label: str
    ) -> TxReceipt:
        gas = self._estimate(estimate, label)
        fees = self._current_fees()
        with self._lock:
            tx_hash, tx = self._sign_and_send(build, {**fees, "gas": gas}, label)
        receipt = self._wait(tx_hash, label)
        self.mined += 1
        self.gas_spent += int(receipt["gasUsed"])
        if receipt["status"] != 1:
            self.reverts += 1
            self._record(label, tx_hash, "reverted")
            error = self.revert_of(receipt, tx, label=label)
            log.warning("%s tx=%s reverted in block %d: %s", label, tx_hash, receipt["blockNumber"], error)
            raise error
        self._record(label, tx_hash, "mined")
        log.info(
            "sent %s tx=%s gas_used=%d block=%d", label, tx_hash, receipt["gasUsed"], receipt["blockNumber"]
        )
        return receipt

    def _estimate(self, estimate: Callable[[], int], label: str) -> int:
        try:
            needed = self._retry(lambda: int(estimate()))
        except ContractLogicError as exc:
            error = self.decoder.from_exception(exc, context=label)
            log.debug("%s not sent: the contract rejects it: %s", label, error.error_name)
            self.reverts += 1
            raise error from None
        except Web3RPCError as exc:
            if "insufficient funds" in _message(exc):
                raise self._unfunded(label, exc) from exc
            raise ChainError(f"{label}: gas estimate failed: {exc.message}") from exc
        gas = int(needed * self.gas_buffer) + GAS_MARGIN
        return gas if gas <= TX_GAS_CAP else max(needed, TX_GAS_CAP)

    def _unfunded(self, label: str, exc: Web3RPCError) -> InsufficientFunds:
        return InsufficientFunds(
            f"{label}: {self.account.address} cannot pay for the transaction's gas ({exc.message})"
        )

    def _current_fees(self) -> dict[str, Wei]:
        """``_fees``, asked at most every ``FEES_TTL`` seconds: they carry twice the base
        fee as headroom, more than it can rise in that time (12.5% a block at most)."""
        cached, now = self._fees_cache, time.monotonic()
        if cached is not None and now - cached[0] < FEES_TTL:
            return cached[1]
        fees = self._retry(self._fees)
        self._fees_cache = (now, fees)
        return fees

    def _fees(self) -> dict[str, Wei]:
        """EIP-1559 fees (2x base fee headroom plus the node's tip), legacy gas price without a base fee."""
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            return {"gasPrice": self.w3.eth.gas_price}
        try:
            tip = self.w3.eth.max_priority_fee
        except Web3RPCError:
            tip = DEFAULT_PRIORITY_FEE
        return {"maxFeePerGas": Wei(2 * base + tip), "maxPriorityFeePerGas": tip}

    def _sign_and_send(
        self, build: Callable[[dict[str, Any]], TxParams], extra: dict[str, Any], label: str
    ) -> tuple[str, TxParams]:
        """Sign with the next nonce and send; caller holds ``self._lock``."""
        if self._chain_id is None:
            self._chain_id = self._retry(lambda: self.w3.eth.chain_id)
        for _ in range(self.max_retries + 1):
            if self._next_nonce is None:
                self._next_nonce = self._retry(
                    lambda: self.w3.eth.get_transaction_count(self.account.address, "pending")
                )
            nonce = self._next_nonce
            tx = build({**extra, "nonce": nonce, "chainId": self._chain_id})
            signed = self.account.sign_transaction(cast(dict[str, Any], tx))
            tx_hash = _hex(signed.hash)
            self._record(label, tx_hash, "pending")
            if self.store is not None:
                self.store.sync()  # what the agent stored before this leaves it is on disk
            try:
                self._send_raw(signed.raw_transaction)
            except Web3RPCError as exc:
                text = _message(exc)
                if any(s in text for s in _DUPLICATE):
                    pass  # an earlier attempt of these very bytes arrived
                elif any(s in text for s in _NONCE_CONFLICT):
                    if self._known(tx_hash):
                        pass  # our earlier attempt was mined already
                    else:
                        self._record(label, tx_hash, "dropped")
                        log.info("%s: nonce %d taken, resynchronising with the node", label, nonce)
                        self._next_nonce = None
                        continue
                else:
                    self._record(label, tx_hash, "failed")
                    self._next_nonce = None
                    self._fees_cache = None  # e.g. "max fee per gas less than block base fee"
                    if "insufficient funds" in text:
                        raise self._unfunded(label, exc) from exc
                    raise ChainError(f"{label}: node refused the transaction: {exc.message}") from exc
            except BaseException:
                # Unreachable node: the bytes may have arrived. The next send reads the
                # node's pending count, which then includes them.
                self._record(label, tx_hash, "unknown")
                self._next_nonce = None
                raise
            self._next_nonce = nonce + 1
            return tx_hash, tx
        raise ChainError(f"{label}: nonce kept conflicting after {self.max_retries + 1} attempts")

    def _send_raw(self, raw: bytes) -> None:
        """Send the same bytes until the node answers (transient errors retried)."""
        self._retry(lambda: self.w3.eth.send_raw_transaction(HexBytes(raw)))

    def _known(self, tx_hash: str) -> bool:
        try:
            self._retry(lambda: self.w3.eth.get_transaction(HexStr(tx_hash)))
        except TransactionNotFound:
            return False
        return True

    def _wait(self, tx_hash: str, label: str) -> TxReceipt:
        """The receipt, asked at once and then after 2, 4, 8 ... ms (at most ``RECEIPT_POLL_CAP``
        apart): a node that mines on arrival (Anvil) has it within milliseconds, and
        web3's fixed 50 ms poll made most of a single answer's wait under load."""
        deadline = time.monotonic() + self.receipt_timeout
        delay = RECEIPT_POLL_FIRST
        while True:
            try:
                return self._retry(lambda: self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
            except TransactionNotFound:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(delay, remaining))
                delay = min(2 * delay, RECEIPT_POLL_CAP)
        self._record(label, tx_hash, "timeout")
        raise ChainError(
            f"{label}: transaction {tx_hash} not mined within {self.receipt_timeout}s; "
            "it may still be mined, look it up before sending again"
        )

    def _record(self, label: str, tx_hash: str, status: str) -> None:
        if self.store is not None:
            self.store.record_tx(label, tx_hash, status)

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action``; transient transport errors are retried with exponential backoff."""
        for attempt in range(self.max_retries + 1):
            try:
                return action()
            except Exception as exc:
                if not _is_transient(exc) or attempt == self.max_retries:
                    if _is_transient(exc):
                        raise ChainError(
                            f"node unreachable after {attempt + 1} attempts: {type(exc).__name__}"
                        ) from exc
                    raise
                delay = min(self.backoff * 2**attempt, 5.0)
                log.warning("transient RPC error (%s), retrying in %.2fs", type(exc).__name__, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def explain_failure(
    w3: Web3,
    decoder: ErrorDecoder,
    receipt: TxReceipt,
    tx: TxParams | None = None,
    *,
    label: str = "",
    trace: bool = True,
) -> ChainError:
    """Why a mined transaction failed: the decoded ``ContractRevert``, or a
    ``ChainError`` when it ran out of gas or the node keeps no revert data.

    Asks the node's call tracer first (exact, where the debug API exists), then
    replays the call with ``eth_call`` at the transaction's block and the one before."""
    tx_hash = _hex(receipt["transactionHash"])
    context = label or tx_hash
    frame = _trace(w3, tx_hash) if trace else {}
    output, error = str(frame.get("output") or ""), str(frame.get("error") or "")
    if output not in ("", "0x"):
        return decoder.decode(output, context=context)
    if "out of gas" in error.lower():
        return ChainError(f"{context}: transaction {tx_hash} ran out of gas ({receipt['gasUsed']} used)")
    if tx is None:
        tx = cast(TxParams, dict(w3.eth.get_transaction(HexStr(tx_hash))))
    if "gas" in tx and receipt["gasUsed"] >= int(tx["gas"]):
        # A revert hands back the gas left; only exhaustion uses all of it.
        return ChainError(f"{context}: transaction {tx_hash} ran out of gas ({receipt['gasUsed']} used)")
    fields: dict[str, Any] = dict(tx)
    replay: dict[str, Any] = {
        "from": fields["from"],
        "data": fields.get("data", fields.get("input", "0x")),  # built txs say data, mined ones input
        "value": fields.get("value", 0),
    }
    if fields.get("to"):
        replay["to"] = fields["to"]
    block = receipt["blockNumber"]
    for at in (block, block - 1):
        try:
            w3.eth.call(cast(TxParams, replay), block_identifier=at)
        except ContractLogicError as exc:
            return decoder.from_exception(exc, context=context)
        except Web3RPCError:
            continue
    return decoder.decode(b"", context=f"{context} (tx {tx_hash}, no revert data from the node)")


def _trace(w3: Web3, tx_hash: str) -> dict[str, Any]:
    """The call tracer's top frame, or {} where the node has no debug API."""
    try:
        response = w3.provider.make_request(
            RPCEndpoint("debug_traceTransaction"), [tx_hash, {"tracer": "callTracer"}]
        )
    except _TRACE_ERRORS:
        return {}
    result = response.get("result")
    return dict(result) if isinstance(result, dict) else {}
