"""What an agent says about itself: ``/healthz`` (JSON) and ``/metrics`` (Prometheus).

Health tells the truth: "ok" only when the node answers, the agent is a member and
holds the pairwise keys of the epoch it serves, and its view of the chain is fresh.
A provider serves both on ``[health] host/port`` (``serve_health``); the gateway adds
them to its API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from enclave_agent.chain.outage import unreachable
from enclave_agent.protocol.stages import MEMBER_STAGES

if TYPE_CHECKING:
    from enclave_agent.protocol.context import AgentContext

log = logging.getLogger(__name__)


def health_report(agent: AgentContext) -> tuple[bool, dict[str, Any]]:
    """(healthy, the report). Reads the node once (the last block processed)."""
    view = agent.view
    epoch = view.synchronised_epoch
    keys = epoch != 0 and agent.store.get_blob(f"keys/{epoch}") is not None
    checkpoint = agent.processed_block()
    age: float | None = None
    rpc = "unreachable" if agent.outage.down else "reachable"
    if checkpoint is not None and rpc == "reachable":
        try:
            age = round(time.time() - int(agent.w3.eth.get_block(checkpoint)["timestamp"]), 1)
        except Exception as exc:  # the node went away between two polls
            if not unreachable(exc):
                raise
            agent.outage.failed(exc)  # so that everything the agent serves says so at once
            rpc = "unreachable"
    member = agent.stage in MEMBER_STAGES
    funded = agent.funding.problem is None
    healthy = rpc == "reachable" and member and keys and funded
    if rpc != "reachable":
        status = "chain unreachable"
    elif not member:
        status = agent.stage
    elif not keys:
        status = "no keys for a synchronised epoch yet"
    elif not funded:
        status = str(agent.funding.problem)
    else:
        status = "ok"
    return healthy, {
        "status": status,
        "stage": agent.stage,
        "tee": "SIMULATED" if agent.tee.simulated else agent.tee.name,
        "enclave": agent.address,
        "chain_id": agent.chain_id,
        "rpc": rpc,
        "epoch": view.epoch,
        "synchronised_epoch": epoch,
        "keys_for_synchronised_epoch": keys,
        "last_block": checkpoint,
        "last_block_age_s": age,
        "enclave_balance_wei": agent.funding.balance,
        "enclave_topups": agent.funding.topups,
    }


class AgentCollector(Collector):
    """The agent's metrics, read from its state and counters at each scrape."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        agent = self.agent
        view = agent.view
        yield GaugeMetricFamily(
            "enclave_agent_synchronised",
            "Whether the agent serves a synchronised epoch it holds keys for (1) or not (0).",
            value=int(health_report(agent)[0]),
        )
        yield GaugeMetricFamily("enclave_agent_epoch", "Current membership epoch.", value=view.epoch)
        yield CounterMetricFamily(
            "enclave_agent_rpc_errors",
            "JSON-RPC calls that failed for want of the node.",
            value=agent.outage.failures_total,
        )
        senders = (agent.enclave_tx, agent.operator_tx)
        yield CounterMetricFamily(
            "enclave_agent_reverts",
            "Transactions the contracts refused.",
            value=sum(s.reverts for s in senders),
        )
        yield CounterMetricFamily(
            "enclave_agent_gas_spent",
            "Gas of the transactions mined.",
            value=sum(s.gas_spent for s in senders),
        )
        if agent.funding.balance is not None:
            yield GaugeMetricFamily(
                "enclave_agent_enclave_balance_wei",
                "The enclave account's balance at the last check (it pays for the enclave's transactions).",
                value=agent.funding.balance,
            )
        yield CounterMetricFamily(
            "enclave_agent_enclave_topups",
            "Times the operator topped the enclave account up.",
            value=agent.funding.topups,
        )
        yield GaugeMetricFamily(
            "enclave_agent_pending_answers",
            "Partial results computed and not yet posted.",
            value=len(agent.store.keys("answer/")),
        )
        checkpoint = agent.processed_block()
        if checkpoint is not None and not agent.outage.down:
            try:
                head = int(agent.w3.eth.block_number)
            except Exception as exc:
                if not unreachable(exc):
                    raise
            else:
                yield GaugeMetricFamily(
                    "enclave_agent_block_lag",
                    "Blocks between the head and the last processed.",
                    value=head - checkpoint,
                )
        rounds = GaugeMetricFamily(
            "enclave_agent_rounds", "Rounds this agent knows, by state.", labels=["state"]
        )
        counts: dict[str, int] = {}
        for doc in agent.load_rounds():  # the HTTP thread: never the loop's cached documents
            counts[doc.status] = counts.get(doc.status, 0) + 1
        for state, count in sorted(counts.items()):
            rounds.add_metric([state], count)
        yield rounds


def metrics_text(agent: AgentContext) -> bytes:
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    return bytes(generate_latest(registry))


def health_app(agent: AgentContext) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        healthy, report = await asyncio.get_running_loop().run_in_executor(None, health_report, agent)
        return web.json_response(report, status=200 if healthy else 503)

    async def metrics(request: web.Request) -> web.Response:
        text = await asyncio.get_running_loop().run_in_executor(None, metrics_text, agent)
        return web.Response(body=text, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def serve_health(agent: AgentContext, host: str, port: int) -> threading.Event:
    """Serve ``/healthz`` and ``/metrics`` from a daemon thread; set the returned event
    to stop. Blocks until the port is bound (an error there is raised here)."""
    from enclave_agent.listener import listen

    stop, bound = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            listener = await listen(health_app(agent), host, port)
        except OSError as exc:
            failure.append(exc)
            bound.set()
            return
        log.info("health and metrics on http://%s:%d/healthz and /metrics", host, listener.port)
        bound.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await listener.close()

    threading.Thread(target=lambda: asyncio.run(main()), name="health", daemon=True).start()
    bound.wait(30)
    if failure:
        raise failure[0]
    return stop
