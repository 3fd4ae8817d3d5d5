"""Five provider agents, separate processes on a real Anvil: all attest and
synchronise, then one round per (scheme, encoding), Shamir with t=3 of 5; the
aggregate of the fused shares equals the sum of the inputs and nothing secret
appears on chain."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from enclave_devnet import Consortium, wait_until
from tests.integration.conftest import (
    COMBOS,
    aggregate,
    assert_no_plaintext_or_share_leaks,
    complete_every_combo,
    distinctive_inputs,
    synchronised_consortium,
)

N, D, FRAC, T = 5, 17, 16, 3
INPUTS = distinctive_inputs(N, D, seed=5)
TOLERANCE = N * 2.0 ** -(FRAC + 1)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    yield from synchronised_consortium(tmp_path_factory, "five", "vec", INPUTS)


@pytest.fixture(scope="module")
def completed_rounds(consortium: Consortium) -> dict[tuple[str, str], int]:
    return complete_every_combo(consortium, "vec", D, threshold=T)


def test_five_agents_attest_verify_and_synchronise(consortium: Consortium) -> None:
    registry = consortium.registry.functions
    members = registry.activeMembers(1).call()
    assert len(members) == N
    assert sorted(members) == sorted(a.enclave_address() for a in consortium.agents.values())
    assert registry.isSynchronised().call()
    for agent in consortium.agents.values():
        # The digest transaction is mined before the agent writes its log line.
        wait_until(
            lambda a=agent: f"verified {N} members" in a.logs(), 10, f"{agent.name} to log its verification"
        )


@pytest.mark.parametrize(("scheme", "encoding"), COMBOS)
def test_round_aggregate_equals_sum_of_inputs(
    consortium: Consortium, completed_rounds: dict[tuple[str, str], int], scheme: str, encoding: str
) -> None:
    round_id = completed_rounds[(scheme, encoding)]
    threshold = consortium.exchange.functions.roundInfo(round_id).call()[2]
    assert threshold == (T if scheme == "shamir" else N)
    total = aggregate(consortium, round_id, FRAC)
    assert np.max(np.abs(total - np.sum(INPUTS, axis=0))) <= TOLERANCE
    completed = consortium.round_events(round_id, "RoundCompleted")
    assert len(completed) == 1
    assert completed[0]["args"]["contributors"] == completed[0]["args"]["holders"] == (1 << N) - 1


def test_every_participant_posted_one_share_set_for_each_peer(
    consortium: Consortium, completed_rounds: dict[tuple[str, str], int]
) -> None:
    for round_id in completed_rounds.values():
        participants = consortium.exchange.functions.participants(round_id).call()
        posted = consortium.round_events(round_id, "SharesPosted")
        finals = [e for e in posted if e["args"]["chunkIndex"] + 1 == e["args"]["chunkCount"]]
        assert sorted(e["args"]["sender"] for e in finals) == sorted(participants)
        for agent in consortium.agents.values():
            opened = agent.logs().count(f"round {round_id}: opened share from ")
            assert opened == N - 1, f"{agent.name} opened {opened} shares in round {round_id}"


def test_no_plaintext_or_share_on_chain_or_in_logs(
    consortium: Consortium, completed_rounds: dict[tuple[str, str], int]
) -> None:
    assert_no_plaintext_or_share_leaks(consortium, INPUTS, completed_rounds.values(), frac_bits=FRAC)
