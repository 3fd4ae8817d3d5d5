"""The consortium as the page shows it, built from decoded chain events alone.

``ConsortiumView.apply(event, timestamp, gas)`` folds one event (with its block's
timestamp and its transaction's gas, counted once per transaction) into members,
epochs, rounds, models and inference requests (``records``); ``snapshot()`` is the
JSON the API and the page read (``render``). Pure: no chain access, so it is tested
with hand-made events.

Memory is bounded: at most ``MAX_ROUNDS`` rounds, ``MAX_REQUESTS`` requests,
``MAX_EPOCHS`` epochs, ``MAX_MEMBERS`` members, ``MAX_AGGREGATES`` (model, client)
totals and ``MAX_ACTIVITY`` lines of activity are kept; the oldest go first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from enclave_agent.protocol.stages import (
    ABORT_REASONS,
    BLAME_REASONS,
    ENCODINGS,
    EXCLUSION_REASONS,
    OUTPUT_KINDS,
    REVOKE_REASONS,
    SCHEMES,
)
from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.quote import ROLE_NAMES
from enclave_console.records import (
    ROUND_STAGES,
    Aggregate,
    Event,
    RequestView,
    RoundView,
)
from enclave_console.records import bits as _bits
from enclave_console.records import hexstr as _hex
from enclave_console.records import label as _label
from enclave_console.records import put as _put
from enclave_console.render import Rendering

MAX_ROUNDS = 200
MAX_REQUESTS = 1000
MAX_EPOCHS = 64
MAX_MEMBERS = 1024
MAX_MODELS = 256
MAX_AGGREGATES = 1024
MAX_ACTIVITY = 100
MAX_ORGANISATIONS = 1024


class ConsortiumView(Rendering):
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

    @property
    def limits(self) -> dict[str, int]:
        """How much history is kept, by kind (the caps above)."""
        return {
            "rounds": MAX_ROUNDS,
            "requests": MAX_REQUESTS,
            "epochs": MAX_EPOCHS,
            "members": MAX_MEMBERS,
            "activity": MAX_ACTIVITY,
        }
