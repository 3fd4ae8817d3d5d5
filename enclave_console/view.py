"""The consortium as the page shows it, built from decoded chain events alone.

``ConsortiumView.apply(event, timestamp, gas)`` folds one event (with its block's
timestamp and its transaction's gas, counted once per transaction) into members,
epochs, rounds, models and inference requests; ``snapshot()`` is the JSON the API and
the page read. Pure: no chain access, so it is tested with hand-made events.

Memory is bounded: at most ``MAX_ROUNDS`` rounds, ``MAX_REQUESTS`` requests,
``MAX_EPOCHS`` epochs, ``MAX_MEMBERS`` members, ``MAX_AGGREGATES`` (model, client)
totals and ``MAX_ACTIVITY`` lines of activity are kept; the oldest go first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from enclave_agent.protocol.disputes import BLAME_REASONS, EXCLUSION_REASONS
from enclave_agent.protocol.onboarding import REVOKE_REASONS
from enclave_agent.protocol.stages import ABORT_REASONS, ENCODINGS, OUTPUT_KINDS, SCHEMES
from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.quote import ROLE_NAMES

MAX_ROUNDS = 200
MAX_REQUESTS = 1000
MAX_EPOCHS = 64
MAX_MEMBERS = 1024
MAX_MODELS = 256
MAX_AGGREGATES = 1024
MAX_ACTIVITY = 100
MAX_ORGANISATIONS = 1024

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
REQUEST_STAGES = {
    "RequestSubmitted": "submit",
    "PartialPosted": "partials",
    "RequestCompleted": "complete",
    "RequestRefunded": "refund",
}


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


def _put(table: OrderedDict[K, V], key: K, value: V, cap: int) -> V:
    table[key] = value
    while len(table) > cap:
        table.popitem(last=False)
    return value


def _label(names: tuple[str, ...] | Mapping[int, str], value: Any) -> str:
    index = int(value)
    if isinstance(names, Mapping):
        return names.get(index, str(index))
    return names[index] if 0 <= index < len(names) else str(index)


def _bits(bitmap: int, items: list[str]) -> list[str]:
    return [item for i, item in enumerate(items) if bitmap >> i & 1]


def _hex(value: Any) -> str:
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


class ConsortiumView:
    """Members, epochs, rounds, models and requests of one deployment, from its events."""

    def __init__(self) -> None:
        self.organisations: OrderedDict[str, str] = OrderedDict()  # operator -> name
        self.members: OrderedDict[str, dict[str, Any]] = OrderedDict()  # enclave -> record
        self.epochs: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.rounds: OrderedDict[int, RoundView] = OrderedDict()
        self.models: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.requests: OrderedDict[int, RequestView] = OrderedDict()
        self.aggregates: OrderedDict[tuple[int, str], Aggregate] = OrderedDict()
        self.activity: deque[dict[str, Any]] = deque(maxlen=MAX_ACTIVITY)
        self.head_block = 0
        self.head_time = 0
        self.events = 0

    # ------------------------------------------------------------------ names

    def name_of(self, address: str) -> str:
        """The organisation behind an enclave or operator address, else the short address."""
        member = self.members.get(address)
        operator = member["operator"] if member else address
        name = self.organisations.get(operator)
        if name:
            return name
        return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address

    def _who(self, address: str) -> dict[str, str]:
        return {"address": address, "name": self.name_of(address)}

    def _note(self, timestamp: int, block: int, text: str, kind: str = "info") -> None:
        self.activity.append({"time": timestamp, "block": block, "text": text, "kind": kind})

    # ------------------------------------------------------------------ events

    def set_head(self, block: int, timestamp: int) -> bool:
        """Record the newest block read; True if it moved."""
        changed = (block, timestamp) != (self.head_block, self.head_time)
        self.head_block, self.head_time = block, timestamp
        return changed

    def apply(self, event: Event, timestamp: int, gas: int = 0) -> None:
        """Fold one event in; ``gas`` is its transaction's gas used (counted once per
        transaction and round or request, whatever number of events it emitted)."""
        handler = getattr(self, f"_on_{event.name}", None)
        self.events += 1
        if handler is not None:
            handler(event, event.args, timestamp, gas)

    def apply_all(self, items: Iterable[tuple[Event, int, int]]) -> None:
        for event, timestamp, gas in items:
            self.apply(event, timestamp, gas)

    # registry

    def _on_OrganisationAdmitted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        _put(self.organisations, str(a["operator"]), str(a["name"]), MAX_ORGANISATIONS)
        self._note(ts, e.block_number, f"organisation {a['name']} admitted")

    def _on_MemberRegistered(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        quote = a.get("quote") or {}
        code = a.get("evidenceType")
        evidence = EvidenceType(int(code)).label if code else EvidenceType.SIMULATED.label
        enclave = str(a["enclave"])
        _put(
            self.members,
            enclave,
            {
                "enclave": enclave,
                "operator": str(a["operator"]),
                "role": _label(ROLE_NAMES, a["role"]),
                "measurement": _hex(quote.get("measurement", b"")),
                "evidence": evidence,
                "epoch": int(a["epoch"]),
                "registered_at": ts,
                "registered_block": e.block_number,
                "active": True,
                "revoked_reason": "",
            },
            MAX_MEMBERS,
        )
        self._note(
            ts,
            e.block_number,
            f"{self.name_of(enclave)} registered a {_label(ROLE_NAMES, a['role'])} enclave",
        )

    def _on_MemberRevoked(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        member = self.members.get(str(a["enclave"]))
        reason = _label(REVOKE_REASONS, a["reason"])
        if member is not None:
            member["active"] = False
            member["revoked_reason"] = reason
        self._note(ts, e.block_number, f"{self.name_of(str(a['enclave']))} left ({reason})", "warn")

    def _on_EpochStarted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        epoch = int(a["epoch"])
        _put(
            self.epochs,
            epoch,
            {
                "epoch": epoch,
                "members": int(a["memberCount"]),
                "started_at": ts,
                "started_block": e.block_number,
                "sync_deadline": int(a["syncDeadline"]),
                "synchronised": False,
                "synchronised_at": None,
                "digests": [],
            },
            MAX_EPOCHS,
        )
        self._note(ts, e.block_number, f"epoch {epoch} started with {int(a['memberCount'])} members")

    def _on_SyncDeadlineExtended(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        epoch = self.epochs.get(int(a["epoch"]))
        if epoch is not None:
            epoch["sync_deadline"] = int(a["syncDeadline"])

    def _on_MembershipDigestPosted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        epoch = self.epochs.get(int(a["epoch"]))
        if epoch is not None and a["matches"]:
            name = self.name_of(str(a["member"]))
            if name not in epoch["digests"] and len(epoch["digests"]) < MAX_MEMBERS:
                epoch["digests"].append(name)

    def _on_EpochSynchronised(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        epoch = self.epochs.get(int(a["epoch"]))
        if epoch is not None:
            epoch["synchronised"], epoch["synchronised_at"] = True, ts
        self._note(ts, e.block_number, f"epoch {int(a['epoch'])} synchronised", "ok")

    # share exchange

    def _round(self, e: Event, a: dict[str, Any], gas: int) -> RoundView | None:
        view = self.rounds.get(int(a["roundId"]))
        if view is not None and e.tx_hash not in view.txs:
            view.txs.add(e.tx_hash)
            stage = ROUND_STAGES.get(e.name, "other")
            view.gas[stage] = view.gas.get(stage, 0) + gas
        return view

    def _on_RoundOpened(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        spec, policy = a["spec"], a["policy"]
        round_id = int(a["roundId"])
        _put(
            self.rounds,
            round_id,
            RoundView(
                id=round_id,
                epoch=int(a["epoch"]),
                participants=[str(p) for p in a["participants"]],
                scheme=_label(SCHEMES, spec["scheme"]),
                encoding=_label(ENCODINGS, spec["encoding"]),
                length=int(spec["length"]),
                threshold=int(a["threshold"]),
                kind=_label(OUTPUT_KINDS, policy["kind"]),
                min_contributors=int(policy["minContributors"]),
                floor=int(a["floor"]),
                posting_deadline=int(a["postingDeadline"]),
                deadline=int(a["deadline"]),
                opened_at=ts,
                opened_block=e.block_number,
            ),
            MAX_ROUNDS,
        )
        self._round(e, a, gas)
        self._note(ts, e.block_number, f"round {round_id} opened over {len(a['participants'])} providers")

    def _on_SharesPosted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        sender = str(a["sender"])
        if (
            view is not None
            and int(a["chunkIndex"]) + 1 == int(a["chunkCount"])
            and sender not in view.posted
        ):
            view.posted.append(sender)

    def _on_PostingClosed(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        if view is not None:
            view.contributors = _bits(int(a["contributors"]), view.participants)
            if view.state == "posting":
                view.state = "fusing"

    def _on_ComplaintFiled(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        self._round(e, a, gas)
        accuser, sender = self.name_of(str(a["accuser"])), self.name_of(str(a["sender"]))
        self._note(
            ts, e.block_number, f"round {int(a['roundId'])}: {accuser} complained about {sender}", "warn"
        )

    def _on_ComplaintJudged(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        self._round(e, a, gas)

    def _on_MemberExcluded(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        reason = _label(EXCLUSION_REASONS, a["reason"])
        if view is not None:
            view.exclusions.append(self._who(str(a["member"])) | {"reason": reason})
            view.contributors = _bits(int(a["contributors"]), view.participants)
        name = self.name_of(str(a["member"]))
        self._note(ts, e.block_number, f"round {int(a['roundId'])}: {name} excluded ({reason})", "bad")

    def _on_MemberBlamed(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        reason = _label(BLAME_REASONS, a["reason"])
        if view is not None:
            blame = self._who(str(a["member"])) | {
                "reason": reason,
                "reporter": self.name_of(str(a["reporter"])),
            }
            if len(view.blames) < 64:
                view.blames.append(blame)
        name = self.name_of(str(a["member"]))
        self._note(ts, e.block_number, f"round {int(a['roundId'])}: {name} blamed ({reason})", "bad")

    def _on_FusedCommitted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        member = str(a["member"])
        if view is not None and member not in view.fused:
            view.fused.append(member)

    def _on_FusedRevealed(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        self._round(e, a, gas)

    def _on_RoundCompleted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        if view is not None:
            view.state, view.ended_at = "completed", ts
            view.contributors = _bits(int(a["contributors"]), view.participants)
            view.holders = _bits(int(a["holders"]), view.participants)
        self._note(ts, e.block_number, f"round {int(a['roundId'])} completed", "ok")

    def _on_RoundAborted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._round(e, a, gas)
        reason = _label(ABORT_REASONS, a["reason"])
        culprits = [str(c) for c in a["culprits"]]
        if view is not None:
            view.state, view.ended_at = "aborted", ts
            view.abort_reason, view.culprits = reason, culprits
        names = ", ".join(self.name_of(c) for c in culprits) or "nobody named"
        self._note(ts, e.block_number, f"round {int(a['roundId'])} aborted ({reason}): {names}", "bad")

    # inference gateway

    def _on_ModelRegistered(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        model_id = int(a["modelId"])
        _put(
            self.models,
            model_id,
            {
                "id": model_id,
                "name": str(a["name"]),
                "round": int(a["roundId"]),
                "kind": _label(OUTPUT_KINDS, a["kind"]),
                "fee": int(a["fee"]),
                "active": True,
                "registered_at": ts,
            },
            MAX_MODELS,
        )
        self._note(ts, e.block_number, f"model {a['name']} registered on round {int(a['roundId'])}")

    def _on_ModelRetired(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        model = self.models.get(int(a["modelId"]))
        if model is not None:
            model["active"] = False

    def _request(self, e: Event, a: dict[str, Any], gas: int) -> RequestView | None:
        view = self.requests.get(int(a["requestId"]))
        if view is not None and e.tx_hash not in view.txs:
            view.txs.add(e.tx_hash)
            view.gas += gas
            self._aggregate(view).gas += gas
        return view

    def _aggregate(self, view: RequestView) -> Aggregate:
        key = (view.model_id, view.client)
        agg = self.aggregates.get(key)
        if agg is None:
            agg = _put(self.aggregates, key, Aggregate(), MAX_AGGREGATES)
        return agg

    def _on_RequestSubmitted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        request_id = int(a["requestId"])
        view = _put(
            self.requests,
            request_id,
            RequestView(
                id=request_id,
                model_id=int(a["modelId"]),
                client=str(a["client"]),
                gateway=str(a["gateway"]),
                rows=int(a["rows"]),
                fee=int(a["fee"]),
                deadline=int(a["deadline"]),
                submitted_at=ts,
                submitted_block=e.block_number,
            ),
            MAX_REQUESTS,
        )
        agg = self._aggregate(view)
        agg.requests += 1
        agg.rows += view.rows
        self._request(e, a, gas)

    def _on_PartialPosted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._request(e, a, gas)
        if view is not None:
            view.partials += 1

    def _on_RequestCompleted(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._request(e, a, gas)
        if view is not None and view.state != "completed":
            view.state, view.completed_at = "completed", ts
            agg = self._aggregate(view)
            agg.completed += 1
            latency = ts - view.submitted_at
            agg.latency_sum += latency
            agg.latency_max = max(agg.latency_max, latency)

    def _on_RequestRefunded(self, e: Event, a: dict[str, Any], ts: int, gas: int) -> None:
        view = self._request(e, a, gas)
        if view is not None and view.state != "refunded":
            view.state = "refunded"
            self._aggregate(view).refunded += 1

    # ------------------------------------------------------------------ output

    def round_state(self, view: RoundView) -> str:
        """The state, with ``expired`` derived from time as the contract derives it."""
        if view.state in ("posting", "fusing") and self.head_time > view.deadline:
            return "expired"
        return view.state

    def epoch_state(self, epoch: dict[str, Any]) -> str:
        if epoch["synchronised"]:
            return "synchronised"
        if self.epochs and epoch["epoch"] < next(reversed(self.epochs)):
            return "superseded"  # membership changed again before every member posted
        if self.head_time > epoch["sync_deadline"]:
            return "overdue"
        return "synchronising"

    def member_json(self, member: dict[str, Any]) -> dict[str, Any]:
        return member | {"organisation": self.name_of(member["enclave"])}

    def epoch_json(self, epoch: dict[str, Any]) -> dict[str, Any]:
        return epoch | {"digests": list(epoch["digests"]), "state": self.epoch_state(epoch)}

    def round_json(self, view: RoundView) -> dict[str, Any]:
        names = [self._who(p) for p in view.participants]
        return {
            "id": view.id,
            "epoch": view.epoch,
            "state": self.round_state(view),
            "scheme": view.scheme,
            "encoding": view.encoding,
            "length": view.length,
            "threshold": view.threshold,
            "kind": view.kind,
            "min_contributors": view.min_contributors,
            "floor": view.floor,
            "opened_at": view.opened_at,
            "opened_block": view.opened_block,
            "posting_deadline": view.posting_deadline,
            "deadline": view.deadline,
            "ended_at": view.ended_at,
            "duration": None if view.ended_at is None else view.ended_at - view.opened_at,
            "participants": names,
            "posted": [self._who(p) for p in view.posted],
            "fused": [self._who(p) for p in view.fused],
            "contributors": [self._who(p) for p in view.contributors],
            "holders": [self._who(p) for p in view.holders],
            "exclusions": list(view.exclusions),
            "blames": list(view.blames),
            "abort_reason": view.abort_reason,
            "culprits": [self._who(c) for c in view.culprits],
            "gas": {stage: view.gas[stage] for stage in (*STAGE_ORDER, "other") if stage in view.gas},
            "gas_total": sum(view.gas.values()),
        }

    def request_json(self, view: RequestView) -> dict[str, Any]:
        model = self.models.get(view.model_id)
        state = view.state
        if state == "pending" and self.head_time > view.deadline:
            state = "expired"
        return {
            "id": view.id,
            "model": view.model_id,
            "model_name": model["name"] if model else f"model {view.model_id}",
            "client": view.client,
            "gateway": self._who(view.gateway),
            "rows": view.rows,
            "fee": str(view.fee),
            "deadline": view.deadline,
            "submitted_at": view.submitted_at,
            "submitted_block": view.submitted_block,
            "completed_at": view.completed_at,
            "latency": view.latency,
            "partials": view.partials,
            "state": state,
            "gas": view.gas,
        }

    def usage_json(self) -> list[dict[str, Any]]:
        out = []
        for (model_id, client), agg in self.aggregates.items():
            model = self.models.get(model_id)
            out.append(
                {
                    "model": model_id,
                    "model_name": model["name"] if model else f"model {model_id}",
                    "client": client,
                    "requests": agg.requests,
                    "rows": agg.rows,
                    "completed": agg.completed,
                    "refunded": agg.refunded,
                    "mean_latency": round(agg.latency_sum / agg.completed, 3) if agg.completed else None,
                    "max_latency": agg.latency_max if agg.completed else None,
                    "gas": agg.gas,
                }
            )
        return out

    def current_epoch(self) -> dict[str, Any] | None:
        if not self.epochs:
            return None
        return self.epoch_json(next(reversed(self.epochs.values())))

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows (newest first in every list)."""
        return {
            "head": {"block": self.head_block, "time": self.head_time},
            "events": self.events,
            "epoch": self.current_epoch(),
            "organisations": [{"operator": op, "name": name} for op, name in self.organisations.items()],
            "members": [self.member_json(m) for m in reversed(self.members.values())],
            "epochs": [self.epoch_json(e) for e in reversed(self.epochs.values())],
            "rounds": [self.round_json(r) for r in reversed(self.rounds.values())],
            "models": list(reversed(self.models.values())),
            "requests": [self.request_json(r) for r in reversed(self.requests.values())],
            "usage": self.usage_json(),
            "activity": list(reversed(self.activity)),
            "limits": {
                "rounds": MAX_ROUNDS,
                "requests": MAX_REQUESTS,
                "epochs": MAX_EPOCHS,
                "members": MAX_MEMBERS,
                "activity": MAX_ACTIVITY,
            },
        }
