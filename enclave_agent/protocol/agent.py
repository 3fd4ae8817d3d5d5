"""The enclave agent: one process per organisation, meeting the others only
through the chain.

Each loop iteration (``step``) first applies new chain events to the persisted
state (one SQLite transaction per event, so a replay never applies an event
twice), then each part reconciles: it performs whatever chain action is still
missing, checking the chain first so that a restart repeats nothing.

    Onboarding           register, verify every member, derive keys, post the digest
    RoundParticipation   post shares, open, fuse, commit, deadlines
    Disputes             complain with evidence, judge complaints, report blame
    Revealing            open fused commitments to the holders, reconstruct robustly
    ModelCatalog         the registered models, as the chain says

``MemberAgent`` is any member enclave (those parts, the loop, status); ``Agent`` is a
provider: a member plus

    InferenceResponder   answer recorded requests with encrypted partial results

and the gateway (``enclave_agent.gateway.service``) is a member plus its own requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeVar

import requests

from enclave_agent.chain import ChainEvent, EventFollower
from enclave_agent.chain.heads import Head, NewHeads
from enclave_agent.chain.identity import ChainChanged
from enclave_agent.chain.outage import unreachable
from enclave_agent.config import AgentConfig
from enclave_agent.errors import (
    EXIT_CHAIN_CHANGED,
    EXIT_OK,
    EXIT_RECORD_MISMATCH,
    EXIT_REFUSED,
    EXIT_REVOKED,
    EXIT_STATE_LOST,
    ChainError,
    ProtocolError,
)
from enclave_agent.protocol.catalog import ModelCatalog
from enclave_agent.protocol.context import AgentContext, Wiring, wire
from enclave_agent.protocol.disputes import Disputes
from enclave_agent.protocol.onboarding import AgentRecordMismatch, AgentRefused, AgentRevoked, Onboarding
from enclave_agent.protocol.participation import RoundParticipation
from enclave_agent.protocol.responder import InferenceResponder
from enclave_agent.protocol.revealing import Revealing
from enclave_agent.protocol.rounds import RoundDoc
from enclave_agent.protocol.stages import MEMBER_STAGES
from enclave_agent.tee.backend import TeeBackend

log = logging.getLogger(__name__)


__all__ = [
    "EXIT_CHAIN_CHANGED",
    "EXIT_RECORD_MISMATCH",
    "EXIT_REFUSED",
    "EXIT_REVOKED",
    "EXIT_STATE_LOST",
    "Agent",
    "AgentRecordMismatch",
    "AgentRefused",
    "AgentRevoked",
    "MemberAgent",
]


class Part(Protocol):
    """One responsibility of an agent: the chain events it applies and what it
    reconciles each step while the enclave is a member."""

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]: ...

    def step(self) -> None: ...


P = TypeVar("P", bound=Part)


class MemberAgent(AgentContext):
    """What every member enclave runs, provider or gateway."""

    def __init__(self, config: AgentConfig, wiring: Wiring) -> None:
        super().__init__(config, wiring)
        self._heads: NewHeads | None = None  # while run() runs
        self.follower = EventFollower(
            self.w3,
            self.contracts,
            self.store,
            start_block=self.manifest.deployed_block,
            confirmations=config.confirmations,
        )
        self._written_status: dict[str, Any] | None = None
        self.onboarding = Onboarding(self)
        self.participation = RoundParticipation(self)
        self.disputes = Disputes(self)
        self.revealing = Revealing(self)
        self.catalog = ModelCatalog(self)
        self.handlers: dict[str, Callable[[ChainEvent], None]] = dict(self.onboarding.handlers())
        # Stepped in this order while a member (onboarding steps always, first); a kind
        # of member adds its own parts after these (``add_part``).
        self.member_parts: list[Part] = []
        for part in (self.participation, self.disputes, self.revealing, self.catalog):
            self.add_part(part)

    @classmethod
    def open(cls, config: AgentConfig, *, tee: TeeBackend | None = None) -> Self:
        """The agent ``config`` describes, on the parts ``wire`` builds from it."""
        return cls(config, wire(config, tee=tee))

    def add_part(self, part: P) -> P:
        """Step ``part`` after the others while a member and give it its chain events."""
        self.member_parts.append(part)
        self.handlers.update(part.handlers())
        return part

    # ------------------------------------------------------------------ main loop

    def run(self, stop: threading.Event | None = None) -> int:
        stop = stop or threading.Event()
        heads = self._heads = NewHeads(self.rpc_url).start()
        head: Head | None = None
        try:
            while not stop.is_set():
                woke, head = head, None  # a head is used by one step at most
                try:
                    self.step(woke)
                    self.outage.recovered()
                except (ChainError, ProtocolError, requests.RequestException, OSError) as exc:
                    if unreachable(exc):
                        # The node is down: wait it out (the outage logs start and end);
                        # events and half-done actions are picked up again afterwards.
                        stop.wait(self.outage.failed(exc))
                        continue
                    if not isinstance(exc, ChainError | ProtocolError):
                        raise
                    # Transient (a race lost to another agent, a reorg): the next step
                    # re-reads the chain and retries whatever is still missing.
                    log.error("step failed, retrying: %s", exc)
                    stop.wait(min(5.0, self.config.poll_interval * 10))
                if not stop.is_set() and heads.wait(self.config.poll_interval):  # a block, or the interval
                    head = heads.take()
        except AgentRefused as exc:
            log.error("%s", exc)
            return EXIT_REFUSED
        except AgentRevoked as exc:
            log.error("%s", exc)
            return EXIT_REVOKED
        except AgentRecordMismatch as exc:
            log.error("%s", exc)
            return EXIT_RECORD_MISMATCH
        except ChainChanged as exc:
            log.error("%s", exc)
            return EXIT_CHAIN_CHANGED
        finally:
            heads.close()
            self._write_status()
            self.follower.flush()
        return EXIT_OK

    def processed_block(self) -> int | None:
        # The follower's own: blocks without events are not in the store for a few seconds.
        return self.follower.checkpoint

    def wake(self) -> None:
        """Run the next step now rather than at the next block or poll interval (a
        thread that stored something the loop acts on calls it)."""
        if self._heads is not None:
            self._heads.nudge()

    def step(self, head: Head | None = None) -> None:
        """One pass: new events, then every part. ``head``: the block that woke it."""
        self.forget_rounds()  # a step sees the store as it is now
        self.guard.check(self.follower.last_event_block)
        self.follower.process(self._handle, head)
        if self.stage in MEMBER_STAGES:
            self.funding.step()  # first: every step below may need the account to pay
        self.onboarding.step()
        if self.stage in MEMBER_STAGES:
            for part in self.member_parts:
                part.step()
        self._write_status()

    def _handle(self, event: ChainEvent) -> None:
        handler = self.handlers.get(event.name)
        if handler is not None:
            handler(event)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        view = self.view
        return {
            "name": self.config.name,
            "role": self.config.role,
            "tee": "SIMULATED" if self.tee.simulated else self.tee.name,
            "enclave": self.address,
            "operator": self.operator.address,
            "measurement": "0x" + self.measurement.hex(),
            "stage": self.stage,
            "epoch": view.epoch,
            "synchronised_epoch": view.synchronised_epoch,
            "members": len(view.members),
            "rounds": {str(d.round_id): _round_status(d) for d in self.rounds()},
        }

    def _write_status(self) -> None:
        """Persist the status for ``enclave-agent status``, when it changed: most steps
        change nothing (so the checkpoint, which moves every block, is not in it:
        ``status`` reads it from the store)."""
        status = self.status()
        if status != self._written_status:
            self.store.put_json("status", status)
            self._written_status = status


class Agent(MemberAgent):
    """A provider enclave agent: a member that answers inference requests."""

    def __init__(self, config: AgentConfig, wiring: Wiring) -> None:
        super().__init__(config, wiring)
        self.responder = self.add_part(InferenceResponder(self))


def _round_status(doc: RoundDoc) -> dict[str, Any]:
    """What ``enclave-agent status`` shows of a round: its progress and every exclusion
    and detection recorded on chain, naming the member and the reason."""
    out: dict[str, Any] = {
        "tag": doc.tag,
        "status": doc.status,
        "participant": doc.my_index is not None,
        "floor": doc.floor,
        "contributors": len(doc.mask_members(doc.contributors)),
    }
    if doc.abort_reason:
        out["aborted"] = {"reason": doc.abort_reason, "culprits": doc.culprits}
    if doc.exclusions:
        out["excluded"] = doc.exclusions
    if doc.blames:
        out["blamed"] = doc.blames
    if doc.refused:
        out["refused"] = doc.refused
    return out
