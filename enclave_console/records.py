"""The records the consortium view keeps (one per round, request and (model, client)),
what it needs of a decoded event, and the small helpers that build them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

# The transaction that emitted a round's event, by what it did (gas per stage).
ROUND_STAGES = {
    "RoundOpened": "open",
    "SharesPosted": "post shares",
    "PostingClosed": "close posting",
    "ComplaintFiled": "complaints",
    "ComplaintJudged": "complaints",
    "MemberExcluded": "complaints",
    "FusedCommitted": "fuse",
    "RoundCompleted": "finalize",
    "RoundAborted": "finalize",
    "FusedRevealed": "reveal",
    "MemberBlamed": "blame",
}
STAGE_ORDER = ("open", "post shares", "close posting", "complaints", "fuse", "finalize", "reveal", "blame")


class Event(Protocol):
    """What the view needs of a decoded log (``enclave_agent.chain.ChainEvent``)."""

    @property
    def contract(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def args(self) -> dict[str, Any]: ...
    @property
    def block_number(self) -> int: ...
    @property
    def tx_hash(self) -> str: ...


K = TypeVar("K")
V = TypeVar("V")


def put(table: OrderedDict[K, V], key: K, value: V, cap: int) -> V:
    table[key] = value
    while len(table) > cap:
        table.popitem(last=False)
    return value


def label(names: tuple[str, ...] | Mapping[int, str], value: Any) -> str:
    index = int(value)
    if isinstance(names, Mapping):
        return names.get(index, str(index))
    return names[index] if 0 <= index < len(names) else str(index)


def bits(bitmap: int, items: list[str]) -> list[str]:
    return [item for i, item in enumerate(items) if bitmap >> i & 1]


def hexstr(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value)


@dataclass
class RoundView:
    id: int
    epoch: int
    participants: list[str]
    scheme: str
    encoding: str
    length: int
    threshold: int
    kind: str
    min_contributors: int
    floor: int
    posting_deadline: int
    deadline: int
    opened_at: int
    opened_block: int
    state: str = "posting"
    contributors: list[str] = field(default_factory=list)
    holders: list[str] = field(default_factory=list)
    posted: list[str] = field(default_factory=list)
    fused: list[str] = field(default_factory=list)
    exclusions: list[dict[str, str]] = field(default_factory=list)
    blames: list[dict[str, str]] = field(default_factory=list)
    abort_reason: str = ""
    culprits: list[str] = field(default_factory=list)
    ended_at: int | None = None
    gas: dict[str, int] = field(default_factory=dict)
    txs: set[str] = field(default_factory=set)


@dataclass
class RequestView:
    id: int
    model_id: int
    client: str
    gateway: str
    rows: int
    fee: int
    deadline: int
    submitted_at: int
    submitted_block: int
    partials: int = 0
    state: str = "pending"
    completed_at: int | None = None
    gas: int = 0
    txs: set[str] = field(default_factory=set)

    @property
    def latency(self) -> int | None:
        return None if self.completed_at is None else self.completed_at - self.submitted_at


@dataclass
class Aggregate:
    requests: int = 0
    rows: int = 0
    completed: int = 0
    refunded: int = 0
    latency_sum: int = 0
    latency_max: int = 0
    gas: int = 0
