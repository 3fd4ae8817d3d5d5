"""Faults with real processes: a tampered ciphertext, a participant that never
posts, kill -9 in the middle of a round, and an agent whose code differs by one byte."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from web3.logs import DISCARD

from enclave_agent.tee.measure import measure_package
from enclave_devnet import REPO_ROOT as REPO
from enclave_devnet import Consortium, wait_until
from tests.integration.conftest import (
    aggregate,
    assert_no_plaintext_or_share_leaks,
    distinctive_inputs,
    make_consortium,
)
from tests.integration.rogue import Rogue

HONEST, D, FRAC = 3, 8, 16
INPUTS = distinctive_inputs(HONEST + 1, D, seed=99)
BIG_D = 20_000
BIG_INPUTS = distinctive_inputs(HONEST + 1, BIG_D, seed=7)
TOLERANCE = (HONEST + 1) * 2.0 ** -(FRAC + 1)
ABORT_MISSING_SHARES, ABORT_INVALID_SHARE = 1, 2
EXCLUDED_INVALID_SHARE = 1
COMPLETED, ABORTED, FUSING = 3, 4, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, Rogue]]:
    for c in make_consortium(tmp_path_factory, "faults"):
        big = c.root / "big"
        big.mkdir()
        for i in range(HONEST):
            np.save(big / f"{i}.npy", BIG_INPUTS[i])
            c.add_agent(
                f"provider-{i}",
                operator_index=i + 1,
                inputs={"vec8": list(INPUTS[i]), "big": big / f"{i}.npy"},
            )
        c.wait_synchronised(HONEST)
        rogue = Rogue(c, operator_index=HONEST + 1)
        rogue.registered()
        wait_until(
            lambda: c.registry.functions.activeMembers(1).call().__len__() == HONEST + 1, 30, "rogue member"
        )
        rogue.post_digest()
        c.wait_synchronised(HONEST + 1)
        yield c, rogue


def _names(c: Consortium) -> dict[str, str]:
    return {agent.enclave_address(): name for name, agent in c.agents.items()}


def test_tampered_ciphertext_aborts_additive_round_naming_sender(setup: tuple[Consortium, Rogue]) -> None:
    c, rogue = setup
    victim = c.agents["provider-0"].enclave_address()
    round_id = c.open_round("vec8", D, scheme="additive", encoding="seeded")
    rogue.post_shares(round_id, INPUTS[HONEST], tamper_for=victim)
    assert c.wait_round(round_id) == ABORTED
    aborted = c.round_events(round_id, "RoundAborted")[0]["args"]
    assert aborted["reason"] == ABORT_INVALID_SHARE
    assert list(aborted["culprits"]) == [rogue.address]
    # The victim complained with the evidence; the two other honest agents judged it.
    complaint = c.round_events(round_id, "ComplaintFiled")[0]["args"]
    assert complaint["accuser"] == victim and complaint["sender"] == rogue.address
    votes = c.round_events(round_id, "ComplaintJudged")
    assert sorted(v["args"]["judge"] for v in votes) == sorted(
        a.enclave_address() for n, a in c.agents.items() if n != "provider-0"
    )
    assert all(v["args"]["senderAtFault"] for v in votes)
    excluded = c.round_events(round_id, "MemberExcluded")[0]["args"]
    assert (excluded["member"], excluded["reason"]) == (rogue.address, EXCLUDED_INVALID_SHARE)
    # The log names the sender by address and, where the registry knows it, by organisation.
    assert re.search(rf"share from {rogue.address}( \([\w-]+\))? rejected", c.agents["provider-0"].logs())


def test_tampered_ciphertext_shamir_completes_without_sender(setup: tuple[Consortium, Rogue]) -> None:
    c, rogue = setup
    victim = c.agents["provider-1"].enclave_address()
    round_id = c.open_round("vec8", D, scheme="shamir", encoding="dense", threshold=3)
    rogue.post_shares(round_id, INPUTS[HONEST], tamper_for=victim)
    assert c.wait_round(round_id) == COMPLETED
    completed = c.round_events(round_id, "RoundCompleted")[0]["args"]
    participants = c.exchange.functions.participants(round_id).call()
    rogue_bit = 1 << participants.index(rogue.address)
    assert completed["contributors"] & rogue_bit == 0
    excluded = c.round_events(round_id, "MemberExcluded")[0]["args"]
    assert (excluded["member"], excluded["reason"]) == (rogue.address, EXCLUDED_INVALID_SHARE)
    total = aggregate(c, round_id, FRAC)
    assert np.max(np.abs(total - np.sum(INPUTS[:HONEST], axis=0))) <= TOLERANCE


def test_silent_participant_aborts_additive_round_at_deadline(setup: tuple[Consortium, Rogue]) -> None:
    c, rogue = setup
    round_id = c.open_round("vec8", D, scheme="additive", encoding="dense", posting_window=30, window=60)
    wait_until(
        lambda: all(c.exchange.functions.chunksPosted(round_id, a).call() > 0 for a in _names(c)),
        60,
        "honest postings",
    )
    c.advance_time(31)
    assert c.wait_round(round_id) == ABORTED
    aborted = c.round_events(round_id, "RoundAborted")[0]["args"]
    assert aborted["reason"] == ABORT_MISSING_SHARES
    assert list(aborted["culprits"]) == [rogue.address]


def _three_of_four_without_the_rogue(c: Consortium, scheme: str) -> int:
    """A t = 3 round the honest agents post and fuse while the rogue stays silent; both
    deadlines are skipped. Returns the round, ended."""
    round_id = c.open_round(
        "vec8", D, scheme=scheme, encoding="seeded", threshold=3, posting_window=30, window=60
    )
    wait_until(
        lambda: all(c.exchange.functions.chunksPosted(round_id, a).call() > 0 for a in _names(c)),
        60,
        "honest postings",
    )
    c.advance_time(31)
    c.wait_round(round_id, states=(FUSING,))
    wait_until(
        lambda: len(c.round_events(round_id, "FusedCommitted")) == HONEST, 60, "honest fused commitments"
    )
    c.advance_time(31)
    c.wait_round(round_id)
    return round_id


def test_silent_participant_shamir_completes_with_t_of_n(setup: tuple[Consortium, Rogue]) -> None:
    c, _ = setup
    round_id = _three_of_four_without_the_rogue(c, "shamir")
    assert c.round_state(round_id) == COMPLETED
    total = aggregate(c, round_id, FRAC)
    assert np.max(np.abs(total - np.sum(INPUTS[:HONEST], axis=0))) <= TOLERANCE


def test_silent_participant_additive_t_of_n_recovers(setup: tuple[Consortium, Rogue]) -> None:
    """An additive round of threshold 3 of 4: the three honest agent processes post, fuse,
    and after the deadline reveal the keys of what they sent the silent one; the
    aggregate (their shares plus the public correction) is the sum of their inputs."""
    c, rogue = setup
    round_id = _three_of_four_without_the_rogue(c, "additive")
    assert c.round_state(round_id) == COMPLETED
    (started,) = c.round_events(round_id, "RecoveryStarted")
    participants = c.exchange.functions.participants(round_id).call()
    assert started["args"]["absent"] == 1 << participants.index(rogue.address)
    revealed = c.round_events(round_id, "RecoveryKeysRevealed")
    assert len(revealed) == HONEST and all(len(e["args"]["receivedKeys"]) == 0 for e in revealed)
    total = aggregate(c, round_id, FRAC)
    assert np.max(np.abs(total - np.sum(INPUTS[:HONEST], axis=0))) <= TOLERANCE
    # The revealed keys open the masks owed to the silent one, nothing an honest agent kept.
    assert_no_plaintext_or_share_leaks(c, INPUTS[:HONEST], [round_id], frac_bits=FRAC)


def test_kill_9_mid_round_then_restart_completes_without_second_share_set(
    setup: tuple[Consortium, Rogue],
) -> None:
    c, rogue = setup
    # The rogue leaves first (governance revokes it): a new epoch, re-keyed by the honest agents.
    c.w3.eth.wait_for_transaction_receipt(
        c.registry.functions.revoke(rogue.address).transact({"from": c.governor})
    )
    c.wait_synchronised(HONEST)
    victim = c.agents["provider-2"]
    victim_address = victim.enclave_address()
    round_id = c.open_round("big", BIG_D, scheme="additive", encoding="dense", posting_window=240, window=300)
    wait_until(
        lambda: c.exchange.functions.chunksPosted(round_id, victim_address).call() >= 1, 60, "first chunk"
    )
    victim.kill9()
    posted_at_kill = c.exchange.functions.chunksPosted(round_id, victim_address).call()
    victim.start()
    assert c.wait_round(round_id, timeout=180) == COMPLETED
    total = aggregate(c, round_id, FRAC)
    assert np.max(np.abs(total - np.sum(BIG_INPUTS[:HONEST], axis=0))) <= HONEST * 2.0 ** -(FRAC + 1)

    chunks = [
        e["args"] for e in c.round_events(round_id, "SharesPosted") if e["args"]["sender"] == victim_address
    ]
    assert len({e["commitment"] for e in chunks}) == 1, "a second share set appeared"
    assert sorted(e["chunkIndex"] for e in chunks) == list(range(chunks[0]["chunkCount"]))
    assert posted_at_kill >= 1
    opened = re.findall(rf"round {round_id}: opened share from (0x[0-9a-fA-F]+)", victim.logs())
    assert opened and max(Counter(opened).values()) == 1, "an event was processed twice"


def test_a_second_process_on_the_same_state_is_refused(setup: tuple[Consortium, Rogue]) -> None:
    c, _ = setup
    agent = c.agents["provider-0"]
    assert agent.running
    result = subprocess.run(
        [sys.executable, "-m", "enclave_agent.cli", "run", "--config", str(agent.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"another agent process (pid {agent.pid}) is using this state directory" in result.stderr


def _modified_build(tmp_path: Path) -> tuple[Path, bytes]:
    """A copy of the agent package and lock with one byte changed, and its measurement."""
    copy = tmp_path / "modified"
    shutil.copytree(
        REPO / "enclave_agent", copy / "enclave_agent", ignore=shutil.ignore_patterns("__pycache__")
    )
    init = copy / "enclave_agent" / "__init__.py"
    init.write_bytes(init.read_bytes() + b" ")
    modified = measure_package(copy / "enclave_agent")
    assert modified != measure_package()
    return copy, modified


def _run_modified(
    c: Consortium, copy: Path, name: str, operator_index: int, service_url: str
) -> subprocess.CompletedProcess[str]:
    agent = c.add_agent(name, operator_index=operator_index, start=False, attestation_url=service_url)
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "enclave_agent.cli", "run", "--config", str(agent.config)],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_one_byte_code_change_is_refused_with_both_measurements(
    setup: tuple[Consortium, Rogue], tmp_path: Path
) -> None:
    """A modified build with an attestation service of that build (same trusted signer):
    the service vouches for the modified measurement and the registry refuses it."""
    c, _ = setup
    copy, modified = _modified_build(tmp_path)
    approved = measure_package()
    service = subprocess.Popen(
        [sys.executable, "-m", "enclave_devnet.attestation_service", "--key", str(c.service_key_file)],
        cwd=copy,
        env=dict(os.environ, PYTHONPATH=str(copy), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert service.stdout is not None
        line = service.stdout.readline()
        assert f"measurement=0x{modified.hex()}" in line, line  # it measures the build it runs
        url = re.search(r"listening on (http://\S+)", line).group(1)  # type: ignore[union-attr]
        members_before = c.registry.functions.activeMembers(1).call()
        result = _run_modified(c, copy, "modified", 8, url)
    finally:
        service.terminate()
        service.wait(10)
    assert result.returncode == 3, result.stderr[-3000:]
    assert f"0x{modified.hex()}" in result.stderr and f"0x{approved.hex()}" in result.stderr
    assert "RegistryMeasurementNotApproved" in result.stderr
    assert c.registry.functions.activeMembers(1).call() == members_before
    assert (c.agents["modified"].status() or {}).get("stage") == "refused"  # what status says after exit 3


def test_a_modified_build_does_not_take_a_quote_for_the_approved_one(
    setup: tuple[Consortium, Rogue], tmp_path: Path
) -> None:
    """The consortium's service vouches only for its own (approved) build; an honest
    agent of another build stops rather than register under a measurement it does not run."""
    c, _ = setup
    copy, modified = _modified_build(tmp_path)
    members_before = c.registry.functions.activeMembers(1).call()
    result = _run_modified(c, copy, "modified-2", 9, c.service_url)
    assert result.returncode == 3, result.stderr[-3000:]
    assert f"vouches for measurement 0x{measure_package().hex()}" in result.stderr
    assert f"this enclave measured 0x{modified.hex()}" in result.stderr
    assert c.registry.functions.activeMembers(1).call() == members_before
    assert (c.agents["modified-2"].status() or {}).get("stage") == "refused"


def test_measurement_revocation_stops_agents_on_the_old_code(setup: tuple[Consortium, Rogue]) -> None:
    """Runs last: governance withdraws the measurement every agent runs (a rotation);
    the registry deactivates them and each agent stops with exit code 4."""
    c, _ = setup
    measurement = measure_package()
    receipt = c.w3.eth.wait_for_transaction_receipt(
        c.registry.functions.revokeMeasurement(1, measurement).transact({"from": c.governor})
    )
    revoked = c.registry.events.MeasurementRevoked().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert revoked["deactivated"] == HONEST
    assert c.registry.functions.activeMembers(1).call() == []
    for agent in c.agents.values():
        if agent.name.startswith("modified"):  # never started here
            continue
        wait_until(lambda a=agent: not a.running, 30, f"{agent.name} to stop")
        assert agent.returncode == 4
        assert "membership revoked" in agent.logs()
