"""Fixtures for the TEE tests: a real anvil with a deployed ConsortiumRegistry, and
tiny agent-code trees to measure."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

REPO = Path(__file__).resolve().parents[3]
ANVIL = REPO / "node_modules" / ".bin" / "anvil"
REGISTRY_ARTIFACT = REPO / "build" / "contracts" / "ConsortiumRegistry.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def anvil() -> Iterator[Web3]:
    """A fresh anvil on a free port; killed at teardown."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 10}))
            deadline = time.monotonic() + 20
            while not w3.is_connected():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-2000:]
                    pytest.fail(f"anvil did not start on port {port}: {output}")
                time.sleep(0.05)
            yield w3
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


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
