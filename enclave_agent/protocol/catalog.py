"""The models and statistics the consortium registered for inference, as the chain says
(``ModelRegistered``, ``ModelRetired``): what a provider answers for and what a gateway
offers. Every member keeps the same list; nothing else writes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from enclave_agent.chain import ChainEvent
from enclave_agent.protocol import records, stages
from enclave_agent.protocol.context import AgentContext
from enclave_agent.protocol.records import ModelRecord


class ModelCatalog:
    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {"ModelRegistered": self._on_model_registered, "ModelRetired": self._on_model_retired}

    def step(self) -> None:
        """Nothing to reconcile: the list follows the events."""

    def _on_model_registered(self, event: ChainEvent) -> None:
        args = event.args
        model = ModelRecord(
            id=int(args["modelId"]),
            round_id=int(args["roundId"]),
            kind=stages.OUTPUT_KINDS[int(args["kind"])],
            fee=int(args["fee"]),
            name=str(args["name"]),
            metadata=str(args["metadata"]),
        )
        records.save_model(self.agent.store, model)

    def _on_model_retired(self, event: ChainEvent) -> None:
        model = records.load_model(self.agent.store, int(event.args["modelId"]))
        if model is not None:
            records.save_model(self.agent.store, replace(model, active=False))
