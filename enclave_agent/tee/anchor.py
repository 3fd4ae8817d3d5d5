"""Chain-anchored challenges: how evidence without a signed time (DCAP quotes, SNP
reports) proves it is fresh to verifiers that never talked to the enclave.

A registering enclave puts the hash of a recent block of the consortium's chain in the
challenge half of its report data (``enclave_agent.tee.binding``). The evidence cannot
predate that block, so the block's timestamp bounds its age: the evidence verifier
service (given the chain's RPC) and every peer (from its own node) look the hash up
and apply the policy's ``max_age`` to it. A hash that names no block of the chain
anchors nothing, and the evidence is refused for want of freshness. Nitro documents
carry the same challenge as their ``nonce``, but their own signed time is what counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from web3.exceptions import BlockNotFound

from enclave_agent.tee.evidence import VerifiedEvidence

BlockTime = Callable[[bytes], "int | None"]


def recent_block_hash(w3: Any, depth: int) -> bytes:
    """The hash of the block ``depth`` below the head: deep enough not to be reorganised
    away before the peers look it up, recent enough to leave the evidence its age."""
    head = int(w3.eth.block_number)
    return bytes(w3.eth.get_block(max(0, head - depth))["hash"])


def block_time_on(w3: Any) -> BlockTime:
    """A lookup of a block's timestamp by hash on ``w3``'s chain (None: no such block)."""

    def block_time(block_hash: bytes) -> int | None:
        if len(block_hash) != 32 or not any(block_hash):
            return None
        try:
            return int(w3.eth.get_block(block_hash)["timestamp"])
        except BlockNotFound:
            return None

    return block_time


def challenge_time(verified: VerifiedEvidence, block_time: BlockTime | None) -> int | None:
    """When the evidence's challenge came to be, if it is a block of the chain and the
    evidence signs no time of its own; else None."""
    if verified.timestamp is not None or block_time is None or verified.nonce is None:
        return None
    return block_time(bytes(verified.nonce))
