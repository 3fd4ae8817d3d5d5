"""After registering, an agent checks that the registry's record of its enclave holds
its own operator and X25519 key, and stops (exit 5) on anything else."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from enclave_agent.protocol.onboarding import AgentRecordMismatch, Onboarding
from enclave_agent.tee.quote import ROLE_PROVIDER, Quote

OPERATOR = Account.from_key(keccak(b"operator")).address
ENCLAVE = Account.from_key(keccak(b"enclave")).address
X25519 = os.urandom(32)


def agent_with_record(operator: str, x25519: bytes) -> Any:
    record = (ROLE_PROVIDER, True, operator, b"\x11" * 32, x25519, 1)
    member = SimpleNamespace(call=lambda: record)
    functions = SimpleNamespace(member=lambda address: member)
    return SimpleNamespace(
        address=ENCLAVE,
        operator=SimpleNamespace(address=OPERATOR),
        keys=SimpleNamespace(x25519_public=X25519),
        contracts=SimpleNamespace(registry=SimpleNamespace(functions=functions)),
    )


def quote(operator: str = OPERATOR, x25519: bytes = X25519) -> Quote:
    return Quote(
        ROLE_PROVIDER, b"\x11" * 32, operator, ENCLAVE, x25519, 31337, "0x" + "22" * 20, b"\x33" * 32, 99
    )


def test_our_own_record_passes() -> None:
    Onboarding(agent_with_record(OPERATOR, X25519))._check_own_record(quote())


@pytest.mark.parametrize(
    ("event_quote", "record", "what"),
    [
        (quote(x25519=os.urandom(32)), (OPERATOR, X25519), "registration event"),
        (quote(operator=Account.create().address), (OPERATOR, X25519), "registration event"),
        (quote(), (OPERATOR, os.urandom(32)), "registry record"),
        (quote(), (Account.create().address, X25519), "registry record"),
    ],
)
def test_a_record_with_another_operator_or_key_stops_the_agent(
    event_quote: Quote, record: tuple[str, bytes], what: str
) -> None:
    onboarding = Onboarding(agent_with_record(*record))
    with pytest.raises(AgentRecordMismatch, match=f"the {what} of enclave {ENCLAVE}"):
        onboarding._check_own_record(event_quote)
