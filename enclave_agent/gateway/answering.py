"""The gateway's decisions on one inference call, whoever asks through whatever front end.

``Answering.answer(ask, caller)`` owns them, in order: the per-client rate limit, the
client's on-chain access, quota and fee for a batch that needs several on-chain
requests (all or nothing), recording the request(s) on chain (the contract refuses
replays, bad signatures, unpaid fees), and waiting for the answer. It returns an
``Outcome``: ``Answered``, ``Refused`` (a reason a front end maps to its own status
codes, a message, the culprit values) or ``Unanswered`` (still open on chain, or
expired and refunded). The HTTP layer only parses, authenticates and maps.

Requests are completed by the agent loop alone (``gateway.requests.GatewayRequests``):
a call waits on a ``Completions`` future that the loop resolves when it completes,
refuses or refunds the request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from enclave_agent.errors import ContractRevert, EnclaveAgentError, InsufficientFunds
from enclave_agent.gateway import auth, scoring
from enclave_agent.model.ranges import InputRange
from enclave_agent.protocol import queries
from enclave_agent.protocol.funding import CHECK_EVERY
from enclave_agent.protocol.records import ModelRecord

if TYPE_CHECKING:
    from enclave_agent.gateway.service import GatewayAgent

log = logging.getLogger(__name__)
T = TypeVar("T")
Results = list[dict[str, Any]]


@dataclass(frozen=True)
class Ask:
    """A validated inference call: the model and the query (what a signature covers)."""

    model: ModelRecord
    query: queries.Query
    batch: bool
    bounds: InputRange | None = None
    encrypt_to: bytes | None = None


@dataclass(frozen=True)
class Answered:
    results: Results  # one per row, in row order, as the gateway computed them (unsealed)
    batch: bool


@dataclass(frozen=True)
class Refused:
    """Not answered, and nothing charged. ``reason`` is one of ``REASONS`` or the name
    of the contract's custom error; ``details`` are the culprit values."""

    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    retry_after: int | None = None
    field: str = ""


@dataclass(frozen=True)
class Unanswered:
    """Recorded on chain but not answered in time: ``still_open`` says whether it may
    still be answered (and charged) before ``expires_at``, else its fee is refunded."""

    request_ids: list[int]
    expires_at: int
    still_open: bool


Outcome = Answered | Refused | Unanswered

# Refusals the gateway decides itself (the contract's own are named by their errors).
REASONS = (
    "too_many_rows",
    "rate_limited",
    "forbidden",
    "quota",
    "fee",
    "InsufficientFunds",
    "InconsistentPartials",
    "error",
)


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (chain, store) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))


class Completions:
    """Futures for the requests calls wait on; the agent loop resolves them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list[Future[Results | None]]] = {}

    def watch(self, request_id: int) -> Future[Results | None]:
        future: Future[Results | None] = Future()
        with self._lock:
            self._waiting.setdefault(request_id, []).append(future)
        return future

    def forget(self, request_id: int, future: Future[Results | None]) -> None:
        with self._lock:
            waiting = self._waiting.get(request_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiting.pop(request_id, None)

    def resolve(self, request_id: int, results: Results | None) -> None:
        """Answered (``results``) or closed unanswered (None)."""
        for future in self._take(request_id):
            if not future.done():
                future.set_result(results)

    def fail(self, request_id: int, exc: BaseException) -> None:
        for future in self._take(request_id):
            if not future.done():
                future.set_exception(exc)

    def _take(self, request_id: int) -> list[Future[Results | None]]:
        with self._lock:
            return self._waiting.pop(request_id, [])


class Answering:
    def __init__(self, agent: GatewayAgent) -> None:
        self.agent = agent

    async def answer(self, ask: Ask, caller: auth.Caller, started: float) -> Outcome:
        """Every decision on one call, turned into an outcome; ``started`` is when the
        call arrived (the wait for providers counts from it)."""
        metrics = self.agent.metrics
        try:
            outcome = await self._answer(ask, caller, started)
        except ContractRevert as exc:
            metrics.count(f"refused_{exc.error_name}")
            return Refused(
                exc.error_name, "refused by the InferenceGateway contract", {"args": exc.error_args}
            )
        except InsufficientFunds as exc:
            metrics.count("unfunded")
            log.error("inference not served: %s", exc)
            return Refused(
                "InsufficientFunds",
                "the gateway's enclave account cannot pay for its transactions right now; its operator "
                "tops it up: try again later (a request already recorded is completed once it can be, "
                "or refunded)",
                retry_after=math.ceil(CHECK_EVERY),
            )
        except scoring.InconsistentPartials as exc:
            log.error("inference refused: %s", exc)
            return Refused(
                "InconsistentPartials",
                "the providers' partial results disagree and too few agree to correct them: no answer "
                "is given, and the request's fee is refunded when it expires",
            )
        except EnclaveAgentError as exc:
            metrics.count("error")
            log.error("inference failed: %s", exc)
            return Refused(
                "error", "the gateway could not complete the request", {"detail": type(exc).__name__}
            )
        if isinstance(outcome, Answered):
            metrics.count("ok")
        elif isinstance(outcome, Unanswered):
            metrics.count("timeout")
        return outcome

    async def _answer(self, ask: Ask, caller: auth.Caller, started: float) -> Outcome:
        agent, model, rows = self.agent, ask.model, ask.query.row_count
        if caller.signed is not None:
            too_many = await blocking(self.signable, ask)
            if too_many is not None:
                return too_many
        # Refusals we can see before writing anything on chain.
        wait = agent.limiter.take(caller.client, rows)
        if wait:
            agent.metrics.count("rate_limited")
            return Refused(
                "rate_limited",
                f"rate limit: {agent.limiter.per_minute} requests a minute per client",
                {"retry_after": math.ceil(wait)},
                retry_after=math.ceil(wait),
            )
        if not await blocking(agent.client_has_access, caller.client):
            agent.metrics.count("forbidden")
            return Refused(
                "forbidden", "client has no access (CLIENT_ROLE) on chain", {"client": caller.client}
            )
        # One on-chain request is left to the contract, which refuses it during gas
        # estimation (nothing is sent); a batch that needs several is checked as a whole
        # first so that it is all or nothing.
        if rows > 1:
            quota, used, balance = await blocking(agent.quota_and_balance, caller.client)
            if quota - used < rows:
                agent.metrics.count("quota")
                return Refused("quota", "quota exhausted", {"quota": quota, "used": used, "requested": rows})
            if balance < int(model.fee) * rows:
                agent.metrics.count("fee")
                return Refused(
                    "fee",
                    "fee unpaid: deposit to the InferenceGateway",
                    {"balance": balance, "fee": int(model.fee) * rows},
                )
        request_ids = await self._submit(ask, caller)
        # Wait as long as the chain gives the providers (a request answered after the
        # call gave up is charged, so the call never gives up first) unless the operator
        # chose a shorter wait; then the outcome says the request is still open.
        recorded = [await blocking(agent.requests.request, i) for i in request_ids]  # the store, off the loop
        expires = max(r.deadline if r else 0 for r in recorded)
        configured = agent.config.gateway.request_timeout if agent.config.gateway else None
        on_chain = expires - await blocking(agent.chain_now) + 2
        deadline = started + (configured or on_chain)
        results = [await self._wait(request_id, deadline) for request_id in request_ids]
        if any(r is None for r in results):
            still_open = configured is not None and configured < on_chain
            return Unanswered(request_ids, expires, still_open)
        return Answered([row for request_rows in results if request_rows for row in request_rows], ask.batch)

    def signable(self, ask: Ask) -> Refused | None:
        """A client's signature covers one on-chain request: at most ``rows_per_request``
        rows (checked before a wallet is asked to sign, and again when it has)."""
        size = self.agent.requests.rows_per_request(ask.model)
        if ask.query.row_count <= size:
            return None
        return Refused(
            "too_many_rows",
            f"a signed request carries at most {size} rows of model {ask.model.id} "
            f"(rows_per_request), got {ask.query.row_count}: sign several requests",
            field="rows",
        )

    async def _submit(self, ask: Ask, caller: auth.Caller) -> list[int]:
        """Record the call on chain: the client's own signed request, or one custody-signed
        request per ``rows_per_request`` rows. Replays and bad signatures are the
        contract's to refuse."""
        agent = self.agent
        if caller.signed is not None:
            return [
                await blocking(
                    agent.requests.submit, ask.model, caller.signed, ask.query, ask.bounds, ask.encrypt_to
                )
            ]
        size = await blocking(agent.requests.rows_per_request, ask.model)
        request_ids = []
        for query in ask.query.split(size):
            signed = await blocking(agent.custody_request, caller.client, ask.model, query)
            request_ids.append(
                await blocking(agent.requests.submit, ask.model, signed, query, ask.bounds, ask.encrypt_to)
            )
        return request_ids

    async def _wait(self, request_id: int, deadline: float) -> Results | None:
        """The request's results once the agent loop completed it; None if it was closed
        unanswered or ``deadline`` (monotonic) passed first."""
        completions = self.agent.completions
        future = completions.watch(request_id)
        try:
            closed, results = await blocking(self.agent.requests.settled, request_id)  # before we watched
            if closed:
                return results
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            return await asyncio.wait_for(asyncio.wrap_future(future), remaining)
        except TimeoutError:
            return None
        finally:
            completions.forget(request_id, future)
