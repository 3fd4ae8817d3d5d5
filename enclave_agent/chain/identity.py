"""Which chain an agent's state belongs to.

A chain is identified by its id, its genesis block hash and the hash of the block the
contracts were deployed in. The manifest records them at deployment and the agent's
store at its first start; the agent compares them with the node at start and every
few seconds. A reset chain (a restarted Anvil, even with the contracts redeployed at
the same addresses), another chain behind the same URL or a reorganisation below the
confirmation depth all change one of them, and the agent then stops (exit 6) with a
message saying what changed, instead of acting on state that no longer exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from enclave_agent.errors import ChainChanged

__all__ = ["ChainChanged", "ChainIdentity", "IdentityGuard"]


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int
    genesis_hash: str
    deployed_block: int
    deployed_block_hash: str

    @classmethod
    def read(cls, w3: Web3, deployed_block: int) -> ChainIdentity:
        """What the node says now; ChainChanged if the deployment block does not exist."""
        genesis = w3.eth.get_block(0)
        try:
            deployment = w3.eth.get_block(deployed_block)
        except Exception as exc:  # web3 raises BlockNotFound (or a node error) past the head
            if type(exc).__name__ != "BlockNotFound":
                raise
            head = int(w3.eth.block_number)
            raise ChainChanged(
                f"the node's chain ends at block {head}, before the deployment block {deployed_block}: "
                "the chain was reset or this is another chain"
            ) from None
        return cls(
            chain_id=int(w3.eth.chain_id),
            genesis_hash=bytes(genesis["hash"]).hex(),
            deployed_block=deployed_block,
            deployed_block_hash=bytes(deployment["hash"]).hex(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash,
            "deployed_block": self.deployed_block,
            "deployed_block_hash": self.deployed_block_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainIdentity:
        return cls(
            chain_id=int(data["chain_id"]),
            genesis_hash=str(data["genesis_hash"]),
            deployed_block=int(data["deployed_block"]),
            deployed_block_hash=str(data["deployed_block_hash"]),
        )

    def differences(self, other: ChainIdentity) -> list[str]:
        """What differs between ``self`` (recorded) and ``other`` (the node now)."""
        out = []
        if self.chain_id != other.chain_id:
            out.append(f"chain id {other.chain_id}, recorded {self.chain_id}")
        if self.genesis_hash != other.genesis_hash:
            out.append(f"genesis block 0x{other.genesis_hash[:16]}…, recorded 0x{self.genesis_hash[:16]}…")
        if self.deployed_block_hash != other.deployed_block_hash:
            out.append(
                f"deployment block {self.deployed_block} is 0x{other.deployed_block_hash[:16]}…, "
                f"recorded 0x{self.deployed_block_hash[:16]}…"
            )
        return out


class IdentityGuard:
    """Compares the node with the recorded identity at most every ``interval`` seconds
    (and the block the agent last processed, against reorganisations)."""

    def __init__(
        self,
        w3: Web3,
        recorded: ChainIdentity,
        *,
        what: str,
        remedy: str,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.w3, self.recorded, self.what, self.remedy = w3, recorded, what, remedy
        self.interval, self._clock = interval, clock
        self._checked_at: float | None = None

    def check(self, last_block: tuple[int, str] | None = None, *, force: bool = False) -> None:
        """ChainChanged if the node's identity differs from the recorded one, or if
        ``last_block`` (number, hash of the last block we processed an event of) was
        replaced; at most every ``interval`` seconds unless ``force``."""
        now = self._clock()
        if not force and self._checked_at is not None and now - self._checked_at < self.interval:
            return
        current = ChainIdentity.read(self.w3, self.recorded.deployed_block)
        differences = self.recorded.differences(current)
        if differences:
            raise ChainChanged(
                f"the node is not on the chain {self.what} belongs to ({'; '.join(differences)}): "
                f"the chain was reset or replaced. {self.remedy}"
            )
        if last_block is not None and last_block[1]:
            number, recorded_hash = last_block
            try:
                found = bytes(self.w3.eth.get_block(number)["hash"]).hex()
            except Exception as exc:  # BlockNotFound: the chain is shorter than what we processed
                if type(exc).__name__ != "BlockNotFound":
                    raise
                found = ""
            if found != recorded_hash:
                raise ChainChanged(
                    f"block {number}, whose events this agent processed, was replaced: a reorganisation "
                    f"deeper than the confirmation depth. {self.remedy}"
                )
        self._checked_at = now
