"""What the in-process protocol tests share: an agent's parts on a consortium's own node
connection (``wiring``), a sender that records what it mined, and stepping agents in
turn until something holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account import Account
from web3.types import TxReceipt

from enclave_agent.chain import ErrorDecoder, TxSender
from enclave_agent.config import load_config
from enclave_agent.protocol.agent import Agent, MemberAgent
from enclave_agent.protocol.context import Wiring
from enclave_agent.protocol.stages import Stage
from enclave_agent.store import Store
from enclave_agent.tee.simulated import SimulatedTee
from enclave_devnet import Consortium, dev_key


class RecordingSender(TxSender):
    """The real sender, keeping the label of every transaction it got mined."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels: list[str] = []

    def send(self, fn: Any, *, label: str, value: int = 0) -> TxReceipt:
        receipt = super().send(fn, label=label, value=value)
        self.labels.append(label)
        return receipt


def wiring(c: Consortium, name: str, operator_index: int) -> Wiring:
    """The parts of agent ``name`` (its config written by the consortium), on the
    consortium's own node connection."""
    config = load_config(c.agents[name].config)
    tee = SimulatedTee(config.state_dir)
    store = Store(config.state_dir / "agent.sqlite3")
    decoder = ErrorDecoder.from_manifest(c.manifest)
    operator = Account.from_key(dev_key(operator_index))
    return Wiring(
        operator=operator,
        manifest=c.manifest,
        tee=tee,
        store=store,
        w3=c.w3,
        rpc_url=c.manifest.rpc_url,
        contracts=c.contracts,
        enclave_tx=RecordingSender(c.w3, tee.load_or_create_keys().account, decoder, store=store),
        operator_tx=TxSender(c.w3, operator, decoder, store=store),
    )


def step_until(agents: list[MemberAgent], done: Callable[[], bool], what: str, *, limit: int = 60) -> int:
    """Step every agent in turn until ``done``; the number of rounds of steps it took."""
    for turn in range(1, limit + 1):
        for agent in agents:
            agent.step()
        if done():
            return turn
    raise AssertionError(f"{what}: not done after {limit} rounds of steps")


def add_providers(c: Consortium, inputs: list[dict[str, Any]]) -> None:
    """Provider ``i`` (operator ``i + 1``) with ``inputs[i]``, configured but not started."""
    for i, given in enumerate(inputs):
        c.add_agent(f"provider-{i}", i + 1, given, start=False)


def synchronised_providers(c: Consortium, n: int) -> list[MemberAgent]:
    """The first ``n`` providers as agents in this process, stepped until synchronised."""
    agents: list[MemberAgent] = [
        Agent(load_config(c.agents[f"provider-{i}"].config), wiring(c, f"provider-{i}", i + 1))
        for i in range(n)
    ]
    step_until(agents, lambda: all(a.stage == Stage.SYNCHRONISED for a in agents), "synchronised", limit=400)
    return agents


def senders(agents: list[MemberAgent]) -> list[RecordingSender]:
    return [agent.enclave_tx for agent in agents]  # type: ignore[misc]
