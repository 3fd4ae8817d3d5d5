"""The consortium view as JSON: what ``/api/...`` answers and the page draws.

States that depend on time (a round past its deadline is ``expired``, an epoch past
its sync deadline ``overdue``) are derived here from the newest block read, as the
contracts derive them; addresses are named by organisation wherever one is known.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from itertools import islice
from typing import Any

from enclave_console.records import STAGE_ORDER, Aggregate, RequestView, RoundView


class Rendering:
    """The output half of ``ConsortiumView`` (which holds these fields)."""

    organisations: OrderedDict[str, str]
    members: OrderedDict[str, dict[str, Any]]
    epochs: OrderedDict[int, dict[str, Any]]
    rounds: OrderedDict[int, RoundView]
    models: OrderedDict[int, dict[str, Any]]
    requests: OrderedDict[int, RequestView]
    aggregates: OrderedDict[tuple[int, str], Aggregate]
    activity: deque[dict[str, Any]]
    head_block: int
    head_time: int
    events: int

    @property
    def limits(self) -> dict[str, int]:
        """How much history is kept, by kind (the view's caps)."""
        raise NotImplementedError

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

    def snapshot(self, *, rounds: int | None = None, requests: int | None = None) -> dict[str, Any]:
        """Everything the page shows (newest first in every list); ``rounds`` and
        ``requests`` keep only that many of the newest (``kept`` says how many there are)."""
        newest_rounds = list(islice(reversed(self.rounds.values()), rounds))
        newest_requests = list(islice(reversed(self.requests.values()), requests))
        return {
            "head": {"block": self.head_block, "time": self.head_time},
            "events": self.events,
            "epoch": self.current_epoch(),
            "organisations": [{"operator": op, "name": name} for op, name in self.organisations.items()],
            "members": [self.member_json(m) for m in reversed(self.members.values())],
            "epochs": [self.epoch_json(e) for e in reversed(self.epochs.values())],
            "rounds": [self.round_json(r) for r in newest_rounds],
            "models": list(reversed(self.models.values())),
            "requests": [self.request_json(r) for r in newest_requests],
            "usage": self.usage_json(),
            "activity": list(reversed(self.activity)),
            "limits": self.limits,
            "kept": {"rounds": len(self.rounds), "requests": len(self.requests)},
        }
