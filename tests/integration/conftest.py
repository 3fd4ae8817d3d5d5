from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.fixed_point import encode
from enclave_devnet import COMPLETED, Consortium, distinctive, found_on_chain, start_consortium


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def make_consortium(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Consortium]:
    root = tmp_path_factory.mktemp(name)
    with start_consortium(root) as consortium:
        yield consortium


COMBOS = [("additive", "dense"), ("additive", "seeded"), ("shamir", "dense"), ("shamir", "seeded")]


def synchronised_consortium(
    tmp_path_factory: pytest.TempPathFactory, name: str, tag: str, inputs: Sequence[np.ndarray]
) -> Iterator[Consortium]:
    """One provider agent per input vector (offered as ``tag``), all synchronised."""
    for c in make_consortium(tmp_path_factory, name):
        for i, values in enumerate(inputs):
            c.add_agent(f"provider-{i}", operator_index=i + 1, inputs={tag: list(values)})
        c.wait_synchronised(len(inputs))
        yield c


def complete_every_combo(
    consortium: Consortium, tag: str, length: int, *, threshold: int | None = None
) -> dict[tuple[str, str], int]:
    """One round per (scheme, encoding), opened at once (the agents work on them
    concurrently, which keeps this short), each waited for until Completed."""
    rounds = {
        (scheme, encoding): consortium.open_round(
            tag, length, scheme=scheme, encoding=encoding, threshold=threshold if scheme == "shamir" else None
        )
        for scheme, encoding in COMBOS
    }
    for (scheme, encoding), round_id in rounds.items():
        assert consortium.wait_round(round_id) == COMPLETED, (
            f"round {round_id} ({scheme}/{encoding}) did not complete"
        )
    return rounds


def distinctive_inputs(n: int, d: int, seed: int) -> list[np.ndarray]:
    """Inputs whose encodings are high-entropy, so a scan for them cannot match by chance."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-500, 500, size=d) + rng.uniform(0.001, 0.999, size=d) for _ in range(n)]


def aggregate(consortium: Consortium, round_id: int, frac_bits: int = 16) -> np.ndarray:
    """Combine the agents' fused shares (simulated mode lets the test unseal them)."""
    return consortium.fused_aggregate(round_id, frac_bits)


def _encodings(values: np.ndarray, modulus: int, frac_bits: int, headroom: int) -> set[bytes]:
    """Every way a value could appear in 8 bytes: float64 and fixed point, both byte orders."""
    out = set()
    for v in values:
        out.add(struct.pack("<d", float(v)))
        out.add(struct.pack(">d", float(v)))
    for element in encode(values, frac_bits, modulus, headroom=headroom):
        out.add(int(element).to_bytes(8, "little"))
        out.add(int(element).to_bytes(8, "big"))
    return out


def assert_no_plaintext_or_share_leaks(
    consortium: Consortium, inputs: Sequence[np.ndarray], round_ids: Iterable[int], *, frac_bits: int
) -> None:
    """Scan every byte on chain for the inputs (float and fixed point) and for every
    8-byte word of each agent's kept and fused shares of ``round_ids``; scan every
    agent's log for the same, written as text (decimal or hex)."""
    needles: set[bytes] = set()
    for values in inputs:
        needles |= _encodings(values, RING64, frac_bits, len(inputs))
        needles |= _encodings(values, PRIME61, frac_bits, len(inputs))
    for round_id in round_ids:
        for agent in consortium.agents.values():
            for key in (f"round/{round_id}/fused", f"round/{round_id}/kept"):
                raw = agent.unseal(key)
                assert raw is not None, f"{agent.name} has no {key}"
                needles |= {raw[i : i + 8] for i in range(0, len(raw), 8)}
    assert sum(map(distinctive, needles)) > 20
    haystack = consortium.chain_bytes()
    assert len(haystack) > 20
    assert [n.hex() for n in found_on_chain(needles, haystack)] == []

    words = [n for n in needles if distinctive(n)]
    texts = {repr(float(v)) for values in inputs for v in values}
    texts |= {w.hex() for w in words} | {
        str(int.from_bytes(w, order)) for w in words for order in ("little", "big")
    }
    texts = {t for t in texts if len(t) >= 8}  # shorter decimals could be timings or gas
    logs = {agent.name: agent.logs() for agent in consortium.agents.values()}
    assert all("tee=SIMULATED" in text for text in logs.values())
    assert [(name, t) for name, text in logs.items() for t in texts if t in text] == []


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    return tmp_path
