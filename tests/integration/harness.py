"""The integration tests' consortium. The implementation is ``enclave_devnet``
(shared with the benchmark and ``enclave-devnet demo``); new code imports it from
there, this module keeps the names older tests import."""

from __future__ import annotations

from enclave_devnet import (
    DEV_MNEMONIC,
    REPO_ROOT,
    AgentProcess,
    Consortium,
    dev_key,
    start_consortium,
    wait_until,
)

REPO = REPO_ROOT
MNEMONIC = DEV_MNEMONIC

__all__ = [
    "MNEMONIC",
    "REPO",
    "AgentProcess",
    "Consortium",
    "dev_key",
    "start_consortium",
    "wait_until",
]
