"""The gateway agent: an attested enclave of the gateway role that records client
requests on chain, sends each query encrypted to the model's shareholders,
collects their encrypted partial results from the chain, combines them and
records a result commitment. It never holds a share of any model.

It is a member (``MemberAgent``: onboarding, rounds, disputes, the model catalog)
composed with its own part, ``GatewayRequests`` (recorded, completed by the agent
loop, refunded), and the decisions on calls (``Answering``); it runs no provider code.

Threads: the agent loop (events, key sync, completing and refunding requests) runs
in one thread and alone completes requests, every request answered by a step in one
``completeRequests`` transaction; calls (``answering``) submit from executor
threads and wait on futures the loop resolves. Chain sends are serialised by the TxSender.
"""

from __future__ import annotations

import logging
from typing import Any, Self

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from enclave_agent.config import AgentConfig, GatewayConfig, load_account
from enclave_agent.errors import ConfigError
from enclave_agent.gateway import auth
from enclave_agent.gateway.answering import Answering, Completions
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.gateway.ratelimit import RateLimiter
from enclave_agent.gateway.requests import GatewayRequests
from enclave_agent.onchain import CLIENT_ROLE
from enclave_agent.protocol import queries, records
from enclave_agent.protocol.agent import MemberAgent
from enclave_agent.protocol.context import Wiring, wire
from enclave_agent.protocol.records import ModelRecord
from enclave_agent.tee.backend import TeeBackend

log = logging.getLogger(__name__)


def custody_accounts(config: AgentConfig) -> dict[str, LocalAccount]:
    """The custody keys ``[gateway] custody_keys`` names, each checked to be its client's."""
    custody = {}
    for client, path in (config.gateway or GatewayConfig()).custody_keys.items():
        account = load_account(path, f"custody key of client {client}")
        if account.address != client:
            raise ConfigError(f"custody key file {path} holds the key of {account.address}, not of {client}")
        custody[client] = account
    return custody


class GatewayAgent(MemberAgent):
    """A member enclave of the gateway role (see the module docstring)."""

    def __init__(
        self, config: AgentConfig, wiring: Wiring, custody: dict[str, LocalAccount] | None = None
    ) -> None:
        gateway = config.gateway or GatewayConfig()
        self.custody = custody_accounts(config) if custody is None else custody
        self.metrics = Metrics()
        self.completions = Completions()  # calls waiting for the loop to settle a request
        self.draining = False  # SIGTERM: no new inference calls, the ones in flight finish
        self.limiter = RateLimiter(gateway.rate_per_minute, gateway.rate_burst)
        super().__init__(config, wiring)
        self.requests = self.add_part(GatewayRequests(self, self.metrics, self.completions))
        self.answering = Answering(self)

    @classmethod
    def open(cls, config: AgentConfig, *, tee: TeeBackend | None = None) -> Self:
        # Every key file is checked before the enclave's keys or state are created.
        custody = custody_accounts(config)
        return cls(config, wire(config, tee=tee), custody)

    # ------------------------------------------------------------------ what calls ask

    def model(self, model_id: int) -> ModelRecord | None:
        """The model ``model_id`` if it is registered and not retired."""
        model = records.load_model(self.store, model_id)
        return model if model is not None and model.active else None

    def has_code(self, address: str) -> bool:
        """Whether ``address`` is a contract (a wallet that signs through EIP-1271)."""
        return len(self.w3.eth.get_code(to_checksum_address(address))) > 0

    def custody_request(self, client: str, model: ModelRecord, query: queries.Query) -> auth.SignedRequest:
        """The request an API-key client's custody key signs (see ``gateway.auth``)."""
        account = self.custody.get(client)
        if account is None:
            raise ConfigError(f"API-key client {client} has no custody key")
        return auth.custody_request(
            account,
            chain_id=self.chain_id,
            gateway_contract=self.gateway_address,
            model_id=model.id,
            query=query,
            fee=model.fee,
            now=self.chain_now(),
        )

    def client_has_access(self, client: str) -> bool:
        return bool(self.contracts.gateway.functions.hasRole(CLIENT_ROLE, client).call())

    def quota_and_balance(self, client: str) -> tuple[int, int, int]:
        quota, used = self.contracts.gateway.functions.quotaOf(client).call()
        return int(quota), int(used), int(self.contracts.gateway.functions.balanceOf(client).call())

    def organisation_name(self, enclave: str) -> str:
        """The registered name of the organisation that operates ``enclave`` (from the
        registry, remembered: a name is set once, at admission)."""
        return self.names.label(enclave)

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["models"] = [m.summary() for m in self.models()]
        return status
