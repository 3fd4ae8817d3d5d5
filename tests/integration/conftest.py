from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from enclave_agent.crypto.field import RING64
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.crypto.sharing import shamir_reconstruct
from tests.integration.harness import Consortium, start_consortium


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def make_consortium(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Consortium]:
    root = tmp_path_factory.mktemp(name)
    consortium = start_consortium(root)
    try:
        yield consortium
    finally:
        consortium.stop()


def distinctive_inputs(n: int, d: int, seed: int) -> list[np.ndarray]:
    """Inputs whose encodings are high-entropy, so a scan for them cannot match by chance."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-500, 500, size=d) + rng.uniform(0.001, 0.999, size=d) for _ in range(n)]


def aggregate(consortium: Consortium, round_id: int, frac_bits: int = 16) -> np.ndarray:
    """Combine the agents' fused shares (simulated mode lets the test unseal them)."""
    participants = consortium.exchange.functions.participants(round_id).call()
    spec = consortium.exchange.functions.roundInfo(round_id).call()[0]
    modulus, holders = int(spec[4]), int(consortium.exchange.functions.roundInfo(round_id).call()[7])
    by_address = {agent.enclave_address(): agent for agent in consortium.agents.values()}
    fused = {}
    for index, address in enumerate(participants):
        if holders >> index & 1 and address in by_address:
            share = by_address[address].fused(round_id)
            if share is not None:
                fused[index + 1] = share
    if modulus == RING64:
        total = np.zeros_like(next(iter(fused.values())))
        for share in fused.values():
            total = total + share  # uint64 wrap-around is the ring
        return decode(total, frac_bits, modulus)
    return decode(shamir_reconstruct(fused, modulus), frac_bits, modulus)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    return tmp_path
