"""An enclave pays for its own transactions from its own chain account, which its
operator funds: the registration sends ``FUNDING`` with it, and from then on this keeps
the account above ``MIN_ENCLAVE_BALANCE`` by topping it up from the operator's account.

A gateway under load spends about 0.25 mETH a request on Anvil (a load run of 10,000
requests drained the registration's 1 ETH after 3,878 of them, and every request after
that failed): without a top-up an agent stops working however healthy it looks. The
balance and every top-up show in ``/healthz``, ``status`` and the metrics; an operator
that cannot pay makes the agent unhealthy and says so.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from eth_utils.address import to_checksum_address

from enclave_agent.errors import ChainError

if TYPE_CHECKING:
    from enclave_agent.protocol.context import AgentContext

log = logging.getLogger(__name__)

MIN_ENCLAVE_BALANCE = 10**18 // 2  # below this the operator tops the enclave account up
FUNDING = 10**18  # what the registration and each top-up send
CHECK_EVERY = 10.0  # seconds between two balance reads (one RPC call)


class Funding:
    """Keeps the enclave account funded from the operator's (one balance read every
    ``CHECK_EVERY`` seconds; a transfer only when it is low)."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent
        self.balance: int | None = None
        self.topups = 0
        self.problem: str | None = None  # why the account cannot be kept funded
        self._next_check = 0.0

    def registration_value(self) -> int:
        """What the registration sends the enclave account: ``FUNDING`` unless it holds
        enough already (a re-registration after a new epoch or a restart)."""
        self.balance = int(self.agent.w3.eth.get_balance(to_checksum_address(self.agent.address)))
        return FUNDING if self.balance < MIN_ENCLAVE_BALANCE else 0

    def step(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY
        enclave = self.agent.address
        self.balance = int(self.agent.w3.eth.get_balance(to_checksum_address(enclave)))
        if self.balance >= MIN_ENCLAVE_BALANCE:
            self.problem = None
            return
        try:
            self.agent.operator_tx.transfer(enclave, FUNDING, label="top-up")
        except ChainError as exc:
            if self.problem is None:
                log.error(
                    "enclave account %s is low (%d wei) and the operator cannot top it up: %s",
                    enclave,
                    self.balance,
                    exc,
                )
            self.problem = f"enclave account low on funds ({self.balance} wei): the operator cannot top it up"
            return
        self.topups += 1
        log.warning(
            "enclave account %s had %d wei, below %d: the operator topped it up by %d (top-up %d)",
            enclave,
            self.balance,
            MIN_ENCLAVE_BALANCE,
            FUNDING,
            self.topups,
        )
        self.balance += FUNDING
        self.problem = None
