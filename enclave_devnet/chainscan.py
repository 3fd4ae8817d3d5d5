"""Reading back what is on a chain: every byte an observer sees (for leak scans)
and the transactions each participant sent for one round (for cost figures)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from web3 import Web3
from web3.contract import Contract
from web3.types import BlockData, TxData


@dataclass(frozen=True)
class SentTransaction:
    """One mined transaction a participant sent for a round."""

    sender: str
    function: str
    gas_used: int
    calldata_bytes: int
    block: int
    succeeded: bool


def chain_bytes(w3: Web3, from_block: int = 0, to_block: int | None = None) -> list[bytes]:
    """Every transaction's calldata and every log's topics and data, block by block."""
    out: list[bytes] = []
    last = w3.eth.block_number if to_block is None else to_block
    for number in range(from_block, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in _transactions(block):
            out.append(bytes(tx["input"]))
        for receipt in w3.eth.get_block_receipts(number):
            for entry in receipt["logs"]:
                out.append(b"".join(bytes(t) for t in entry["topics"]) + bytes(entry["data"]))
    return out


def distinctive(needle: bytes) -> bool:
    """Whether a needle is worth scanning for: at least four distinct byte values and no
    three zero bytes in a row. 0.25 as a big-endian float64 is 3fd0 and six zero bytes,
    which any ABI word ending in 0x3fd0 followed by a small integer contains by chance;
    2215.0 as a little-endian one is five zero bytes and 4ea140, which a zero word (a key
    table's own entry, an empty bitmap) followed by a hash starting 4ea140 contains by
    chance (a leak test of the demo once failed on it)."""
    return len(set(needle)) > 3 and b"\0\0\0" not in needle


def found_on_chain(needles: Iterable[bytes], haystack: Sequence[bytes]) -> list[bytes]:
    """The distinctive needles that occur in any blob of ``haystack``, sorted."""
    return sorted(n for n in set(needles) if distinctive(n) and any(n in blob for blob in haystack))


def round_transactions(
    w3: Web3, exchange: Contract, round_id: int, from_block: int, to_block: int | None = None
) -> list[SentTransaction]:
    """The mined ShareExchange transactions whose ``roundId`` argument is ``round_id``
    (postShares, complain, judgeComplaint, postFused, closePosting, finalize), failed ones
    included: their gas is paid too."""
    out: list[SentTransaction] = []
    last = w3.eth.block_number if to_block is None else to_block
    for number in range(from_block, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        receipts = {bytes(r["transactionHash"]): r for r in w3.eth.get_block_receipts(number)}
        for tx in _transactions(block):
            if tx.get("to") != exchange.address:
                continue
            data = bytes(tx["input"])
            try:
                fn, args = exchange.decode_function_input(data)
            except ValueError:
                continue
            if args.get("roundId") != round_id:
                continue
            receipt = receipts[bytes(tx["hash"])]
            out.append(
                SentTransaction(
                    sender=str(tx["from"]),
                    function=str(fn.fn_name),
                    gas_used=int(receipt["gasUsed"]),
                    calldata_bytes=len(data),
                    block=number,
                    succeeded=receipt["status"] == 1,
                )
            )
    return out


def _transactions(block: BlockData) -> list[TxData]:
    # Fetched with full_transactions=True: objects, not hashes.
    return cast(list[TxData], list(block["transactions"]))
