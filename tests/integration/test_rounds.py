"""Three provider agents, separate processes on a real Anvil: attestation, key
synchronisation, and one round per (scheme, encoding); the aggregate of the fused
shares equals the sum of the inputs; nothing secret appears on chain."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from enclave_agent.tee._files import write_private_file
from enclave_devnet import Consortium, dev_key, wait_until
from tests.integration.conftest import (
    COMBOS,
    aggregate,
    assert_no_plaintext_or_share_leaks,
    complete_every_combo,
    distinctive_inputs,
    synchronised_consortium,
)

N, D, FRAC = 3, 31, 16
INPUTS = distinctive_inputs(N, D, seed=31)
TOLERANCE = N * 2.0 ** -(FRAC + 1)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    yield from synchronised_consortium(tmp_path_factory, "three", "vec31", INPUTS)


@pytest.fixture(scope="module")
def completed_rounds(consortium: Consortium) -> dict[tuple[str, str], int]:
    return complete_every_combo(consortium, "vec31", D)


def test_agents_attest_verify_and_synchronise(consortium: Consortium) -> None:
    registry = consortium.registry.functions
    members = registry.activeMembers(1).call()
    assert sorted(members) == sorted(a.enclave_address() for a in consortium.agents.values())
    assert registry.isSynchronised().call()
    for agent in consortium.agents.values():
        assert "tee=SIMULATED" in agent.logs()
        # The digest transaction is mined before the agent writes its log line.
        wait_until(
            lambda a=agent: "verified 3 members" in a.logs(), 10, f"{agent.name} to log its verification"
        )


@pytest.mark.parametrize(("scheme", "encoding"), COMBOS)
def test_round_aggregate_equals_sum_of_inputs(
    consortium: Consortium, completed_rounds: dict[tuple[str, str], int], scheme: str, encoding: str
) -> None:
    round_id = completed_rounds[(scheme, encoding)]
    total = aggregate(consortium, round_id, FRAC)
    expected = np.sum(INPUTS, axis=0)
    assert np.max(np.abs(total - expected)) <= TOLERANCE
    completed = consortium.round_events(round_id, "RoundCompleted")
    assert len(completed) == 1 and completed[0]["args"]["holders"] == (1 << N) - 1


def test_one_share_set_per_participant(
    consortium: Consortium, completed_rounds: dict[tuple[str, str], int]
) -> None:
    for round_id in completed_rounds.values():
        posted = consortium.round_events(round_id, "SharesPosted")
        finals = [e for e in posted if e["args"]["chunkIndex"] + 1 == e["args"]["chunkCount"]]
        assert sorted(e["args"]["sender"] for e in finals) == sorted(
            consortium.exchange.functions.participants(round_id).call()
        )


def test_no_plaintext_or_share_on_chain_or_in_logs(
    consortium: Consortium, completed_rounds: dict[tuple[str, str], int]
) -> None:
    assert_no_plaintext_or_share_leaks(consortium, INPUTS, completed_rounds.values(), frac_bits=FRAC)


def test_open_round_from_the_command_line(consortium: Consortium, tmp_path: Path) -> None:
    key = tmp_path / "coordinator.key"
    write_private_file(key, dev_key(0).encode())
    base = [
        sys.executable,
        "-m",
        "enclave_agent.cli",
        "open-round",
        "--manifest",
        str(consortium.manifest_path),
    ]
    base += ["--key-file", str(key), "--tag", "vec31"]
    rounds_before = consortium.exchange.functions.roundCount().call()
    bad = subprocess.run([*base, "--length", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "length must be >= 1" in bad.stderr
    assert consortium.exchange.functions.roundCount().call() == rounds_before
    done = subprocess.run(
        [*base, "--length", str(D), "--scheme", "shamir"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    round_id = int(done.stdout.strip())
    assert round_id == rounds_before + 1
    assert consortium.wait_round(round_id) == 3
    assert np.max(np.abs(aggregate(consortium, round_id, FRAC) - np.sum(INPUTS, axis=0))) <= TOLERANCE


def _org(consortium: Consortium, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "enclave_agent.cli", "org", *args]
    command += ["--manifest", str(consortium.manifest_path), "--key-file", str(key)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_organisations_from_the_command_line(consortium: Consortium, tmp_path: Path) -> None:
    import json

    key = tmp_path / "governor.key"
    write_private_file(key, dev_key(0).encode())
    newcomer = consortium.w3.eth.accounts[12]
    admitted = _org(consortium, key, "admit", newcomer, "--name", "bank-d", "--roles", "provider,gateway")
    assert admitted.returncode == 0, admitted.stderr
    assert json.loads(admitted.stdout) == {
        "operator": newcomer,
        "name": "bank-d",
        "status": "admitted",
        "roles": ["provider", "gateway"],
        "max_enclaves_per_role": 1,
        "cooling_until": 0,
        "enclaves": {"provider": 0, "gateway": 0},
    }
    listed = json.loads(_org(consortium, key, "list").stdout)
    assert [o["name"] for o in listed] == ["provider-0", "provider-1", "provider-2", "bank-d"]
    assert [o["enclaves"]["provider"] for o in listed] == [1, 1, 1, 0]
    again = _org(consortium, key, "admit", newcomer, "--name", "bank-d")
    assert again.returncode == 1 and "RegistryOrganisationExists" in again.stderr
    bad = _org(consortium, key, "admit", newcomer, "--name", "x", "--roles", "auditor")
    assert bad.returncode == 2 and "roles must be a comma-separated subset" in bad.stderr
    stranger = tmp_path / "stranger.key"
    write_private_file(stranger, dev_key(13).encode())
    refused = _org(consortium, stranger, "suspend", newcomer)
    assert refused.returncode == 1 and "AccessControlUnauthorizedAccount" in refused.stderr
    assert json.loads(_org(consortium, key, "suspend", newcomer).stdout)["status"] == "suspended"
    assert json.loads(_org(consortium, key, "reinstate", newcomer).stdout)["status"] == "admitted"


def test_suspending_an_organisation_expels_its_agent(consortium: Consortium, tmp_path: Path) -> None:
    """Runs last: governance suspends provider-2's organisation; its enclave is revoked,
    the agent stops with exit code 4, and the other two synchronise a new epoch."""
    key = tmp_path / "governor.key"
    write_private_file(key, dev_key(0).encode())
    agent = consortium.agents["provider-2"]
    suspended = _org(consortium, key, "suspend", consortium.w3.eth.accounts[3])
    assert suspended.returncode == 0, suspended.stderr
    wait_until(lambda: not agent.running, 30, "provider-2 to stop")
    assert agent.returncode == 4 and "organisation-suspended" in agent.logs()
    del consortium.agents["provider-2"]  # its exit is the expected one
    consortium.wait_synchronised(2)
    assert agent.enclave_address() not in consortium.registry.functions.activeMembers(1).call()
