"""Fixtures for the TEE tests: a real anvil with a deployed ConsortiumRegistry, and
tiny agent-code trees to measure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from enclave_devnet.anvil import AnvilProcess

REPO = Path(__file__).resolve().parents[3]
REGISTRY_ARTIFACT = REPO / "build" / "contracts" / "ConsortiumRegistry.json"


@pytest.fixture(scope="session")
def anvil() -> Iterator[Web3]:
    """A fresh anvil on a free port (the devnet's launcher); stopped at teardown."""
    with AnvilProcess() as node:
        yield Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 10}))


@pytest.fixture
def registry(anvil: Web3) -> Any:
    """A freshly deployed ConsortiumRegistry governed by accounts[0]."""
    artifact = json.loads(REGISTRY_ARTIFACT.read_text())
    governor = anvil.eth.accounts[0]
    factory = anvil.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = anvil.eth.wait_for_transaction_receipt(
        factory.constructor(governor).transact({"from": governor})
    )
    return anvil.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


@pytest.fixture
def tiny_package(tmp_path: Path) -> tuple[Path, Path]:
    """A two-file agent package and a lock file, to measure and then alter."""
    package = tmp_path / "code" / "enclave_agent"
    (package / "tee").mkdir(parents=True)
    (package / "__init__.py").write_text('"""tiny agent"""\n')
    (package / "tee" / "logic.py").write_text("ANSWER = 42\n")
    lock = tmp_path / "code" / "requirements.lock"
    lock.write_text("web3==7.16.0\n")
    return package, lock
