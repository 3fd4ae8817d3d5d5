"""Funding keeps an enclave account able to pay for its transactions: the operator tops
it up when it runs low, at most one balance read per CHECK_EVERY seconds, and when the
operator cannot pay the agent says so (unhealthy) instead of failing silently."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from enclave_agent.errors import ChainError, InsufficientFunds
from enclave_agent.protocol import funding
from enclave_agent.protocol.funding import FUNDING, MIN_ENCLAVE_BALANCE, Funding

ENCLAVE = "0x" + "ab" * 20


class FakeChain:
    def __init__(self, balance: int) -> None:
        self.balance, self.reads, self.transfers = balance, 0, []
        self.broke = False

    def get_balance(self, address: str) -> int:
        assert address.lower() == ENCLAVE
        self.reads += 1
        return self.balance

    def transfer(self, to: str, value: int, *, label: str) -> None:
        if self.broke:
            raise InsufficientFunds(f"{label}: operator cannot pay")
        self.transfers.append((to, value, label))
        self.balance += value


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(funding.time, "monotonic", lambda: now[0])
    return now


def agent(chain: FakeChain) -> Any:
    return SimpleNamespace(
        address=ENCLAVE, w3=SimpleNamespace(eth=chain), operator_tx=SimpleNamespace(transfer=chain.transfer)
    )


def test_a_low_account_is_topped_up_once_and_a_funded_one_left_alone(clock: list[float]) -> None:
    chain = FakeChain(MIN_ENCLAVE_BALANCE - 1)
    f = Funding(agent(chain))
    f.step()
    assert chain.transfers == [(ENCLAVE, FUNDING, "top-up")] and f.topups == 1
    assert f.balance == MIN_ENCLAVE_BALANCE - 1 + FUNDING and f.problem is None
    f.step()  # within CHECK_EVERY: not even a read
    assert chain.reads == 1
    clock[0] += funding.CHECK_EVERY
    f.step()
    assert chain.reads == 2 and len(chain.transfers) == 1


def test_an_operator_that_cannot_pay_makes_a_problem_until_it_can(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    chain = FakeChain(0)
    chain.broke = True
    f = Funding(agent(chain))
    f.step()
    assert f.problem is not None and "low on funds (0 wei)" in f.problem and f.topups == 0
    clock[0] += funding.CHECK_EVERY
    f.step()
    assert caplog.text.count("cannot top it up") == 1  # logged once per episode, not per check
    chain.broke = False
    clock[0] += funding.CHECK_EVERY
    f.step()
    assert f.problem is None and f.topups == 1 and chain.balance == FUNDING


def test_the_registration_funds_only_an_account_that_needs_it(clock: list[float]) -> None:
    assert Funding(agent(FakeChain(0))).registration_value() == FUNDING
    assert Funding(agent(FakeChain(MIN_ENCLAVE_BALANCE))).registration_value() == 0


def test_any_chain_error_of_the_transfer_is_a_problem_not_a_crash(clock: list[float]) -> None:
    chain = FakeChain(0)

    def fails(to: str, value: int, *, label: str) -> None:
        raise ChainError("top-up: node refused the transaction")

    a = agent(chain)
    a.operator_tx = SimpleNamespace(transfer=fails)
    f = Funding(a)
    f.step()
    assert f.problem is not None
