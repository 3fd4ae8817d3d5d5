"""Additive t-of-n rounds among five providers driven in this process on a real Anvil
(see ``in_process``): one provider drops out (after posting, or before it), the deadline
passes, the four holders reveal their recovery keys and the round completes; the
holders' shares (with the first holder's correction) add up to the four holders'
inputs, the Intermediate aggregate every holder reconstructs is that sum, and the
dropped provider coming back changes nothing. A holder that stays silent during the
recovery is named when the round aborts; one whose share for the absent does not open
under its checked key is blamed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from in_process import add_providers, senders, step_until, synchronised_providers

from enclave_agent.crypto import posting
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.operator.models import STATS_TAG
from enclave_agent.operator.rounds import show
from enclave_agent.protocol import participation
from enclave_agent.protocol.agent import MemberAgent
from enclave_agent.protocol.rounds import Posting as BuiltPosting
from enclave_agent.protocol.rounds import RoundDoc, correction_key
from enclave_devnet import Consortium, start_consortium
from enclave_devnet.consortium import ABORTED

FRAC = 16
N, T = 5, 3
STATS = [np.array([float(i + 1), -2.5 * i, 0.25 * i]) for i in range(N)]
FUSING, RECOVERING = 2, 6
RECOVERY_UNREADABLE = 5


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    with start_consortium(tmp_path_factory.mktemp("recovery")) as c:
        add_providers(c, [{STATS_TAG: list(stats)} for stats in STATS])
        yield c


@pytest.fixture(scope="module")
def providers(consortium: Consortium) -> list[MemberAgent]:
    return synchronised_providers(consortium, N)


def inputs_of(providers: list[MemberAgent], agents: list[MemberAgent]) -> np.ndarray:
    return np.sum([STATS[providers.index(a)] for a in agents], axis=0)


def fused(agents: list[MemberAgent], round_id: int) -> bool:
    return all(getattr(a.round_doc(round_id), "fused_over", -1) != -1 for a in agents)


def completed(agents: list[MemberAgent], round_id: int) -> bool:
    """Every agent has seen the round complete (the chain says so one step earlier)."""
    return all(getattr(a.round_doc(round_id), "status", "") == "completed" for a in agents)


def drop_after_posting(
    consortium: Consortium, round_id: int, stay: list[MemberAgent], dropped: MemberAgent
) -> None:
    """``dropped`` posts its shares and is never stepped again; the others post and fuse."""
    posted = consortium.exchange.functions.chunksPosted
    step_until([dropped], lambda: posted(round_id, dropped.address).call() > 0, "dropped posted")
    step_until(stay, lambda: consortium.round_state(round_id) == FUSING, "posting closed")
    step_until(stay, lambda: fused(stay, round_id), "fused")


def shares_total(agents: list[MemberAgent], round_id: int) -> np.ndarray:
    total = np.zeros(3, dtype=np.uint64)
    for agent in agents:
        share = agent.fused_share(round_id)
        assert share is not None
        total = total + share
    return decode(total, FRAC, 2**64)


def test_a_provider_that_drops_after_posting_is_recovered(
    consortium: Consortium, providers: list[MemberAgent]
) -> None:
    stay, dropped = providers[:4], providers[4]
    round_id = consortium.open_round(STATS_TAG, 3, output="intermediate", threshold=T)
    drop_after_posting(consortium, round_id, stay, dropped)
    consortium.advance_time(121)
    step_until(stay, lambda: completed(stay, round_id), f"round {round_id}")
    (started,) = consortium.round_events(round_id, "RecoveryStarted")
    order = providers[0].round_doc(round_id).participants  # type: ignore[union-attr]
    assert started["args"]["absent"] == 1 << order.index(dropped.address)
    assert len(consortium.round_events(round_id, "RecoveryKeysRevealed")) == 4
    (done,) = consortium.round_events(round_id, "RoundCompleted")
    assert done["args"]["contributors"] == done["args"]["holders"] == (1 << N) - 1 - started["args"]["absent"]
    # The operator's view: who was absent, who owed keys, who revealed, and the gas of it.
    shown = show(consortium.session(), round_id)
    assert shown["state"] == "completed" and shown["gas"]["recovery"] > 0
    assert len(shown["recovery"]["absent"]) == 1 and len(shown["recovery"]["revealed"]) == 4
    assert sorted(shown["recovery"]["owing"]) == sorted(shown["recovery"]["revealed"])
    assert sum(p["holder"] for p in shown["participants"]) == 4
    expected = inputs_of(providers, stay)
    # The holders' shares, the first with the public correction, add up to their inputs only.
    assert np.allclose(shares_total(stay, round_id), expected, atol=N * 2.0**-FRAC)
    docs = [a.round_doc(round_id) for a in stay]
    first = docs[0].first_holder  # type: ignore[union-attr]
    for agent in stay:
        committed, effective = agent.committed_share(round_id), agent.fused_share(round_id)
        assert committed is not None and effective is not None
        assert np.array_equal(committed, effective) == (agent.address != first)
        assert agent.store.get_blob(correction_key(round_id)) is not None
    # Every holder reconstructs the Intermediate aggregate: the sum of the four inputs.
    step_until(stay, lambda: all(a.aggregate(round_id) is not None for a in stay), "aggregates")
    for agent in stay:
        assert np.allclose(agent.aggregate(round_id), expected, atol=N * 2.0**-FRAC)
    # The dropped provider comes back: nothing to reveal, nothing to hold, no transaction.
    before = len(senders([dropped])[0].labels)
    step_until([dropped], lambda: dropped.round_doc(round_id).status == "completed", "caught up")  # type: ignore[union-attr]
    for _ in range(3):
        dropped.step()
    assert dropped.fused_share(round_id) is None and dropped.aggregate(round_id) is None
    assert senders([dropped])[0].labels[before:] == []


def test_a_provider_that_never_posts_is_left_out(
    consortium: Consortium, providers: list[MemberAgent]
) -> None:
    stay, dropped = providers[1:], providers[0]
    round_id = consortium.open_round(STATS_TAG, 3, output="statistic", threshold=T, min_contributors=T)
    posted = consortium.exchange.functions.chunksPosted
    step_until(stay, lambda: all(posted(round_id, a.address).call() > 0 for a in stay), "posted")
    consortium.advance_time(61)
    step_until(stay, lambda: consortium.round_state(round_id) == FUSING, "posting closed")
    step_until(stay, lambda: fused(stay, round_id), "fused")
    consortium.advance_time(61)
    step_until(stay, lambda: completed(stay, round_id), f"round {round_id}")
    (started,) = consortium.round_events(round_id, "RecoveryStarted")
    order = stay[0].round_doc(round_id).participants  # type: ignore[union-attr]
    assert started["args"]["absent"] == 1 << order.index(dropped.address)
    # Nobody posted for it to fuse over: the holders reveal only the keys of what they sent it.
    for revealed in consortium.round_events(round_id, "RecoveryKeysRevealed"):
        assert len(revealed["args"]["sentKeys"]) == 1 and len(revealed["args"]["receivedKeys"]) == 0
    assert np.allclose(shares_total(stay, round_id), inputs_of(providers, stay), atol=N * 2.0**-FRAC)
    assert bin(started["args"]["owing"]).count("1") == 4


def test_a_holder_silent_during_recovery_is_named(
    consortium: Consortium, providers: list[MemberAgent]
) -> None:
    stay, dropped = providers[:4], providers[4]
    silent = stay[2]
    round_id = consortium.open_round(STATS_TAG, 3, output="statistic", threshold=T, min_contributors=T)
    drop_after_posting(consortium, round_id, stay, dropped)
    consortium.advance_time(121)
    talking = [a for a in stay if a is not silent]
    step_until(talking, lambda: consortium.round_state(round_id) == RECOVERING, "recovering")
    step_until(
        talking, lambda: len(consortium.round_events(round_id, "RecoveryKeysRevealed")) == 3, "revealed"
    )
    consortium.advance_time(61)
    step_until(talking, lambda: consortium.round_state(round_id) == ABORTED, f"round {round_id}")
    step_until(
        talking,
        lambda: all(getattr(a.round_doc(round_id), "status", "") == "aborted" for a in talking),
        "seen",
    )
    (aborted,) = consortium.round_events(round_id, "RoundAborted")
    assert list(aborted["args"]["culprits"]) == [silent.address]
    for agent in talking:
        doc = agent.round_doc(round_id)
        assert (
            doc is not None and doc.status == "aborted" and not agent.store.get_blob(correction_key(round_id))
        )


def test_a_holder_whose_share_for_the_absent_does_not_open_is_blamed(
    consortium: Consortium, providers: list[MemberAgent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rogue commits to the right key for its neighbour but posts garbage under it,
    betting the neighbour drops before it can complain. The recovery key it must reveal
    passes the contract's check, every holder then fails to open that ciphertext, refuses
    the round's aggregate and blames the rogue on chain with the key as evidence."""
    stay, dropped = providers[:4], providers[4]
    rogue = stay[1]
    honest_build = participation.build_posting

    def build_posting(doc: RoundDoc, values: np.ndarray, keys: Any, ctx: Any) -> BuiltPosting:
        built = honest_build(doc, values, keys, ctx)
        if doc.me != rogue.address:
            return built
        entries = [
            (r, secrets.token_bytes(len(c)) if r == dropped.address else c)
            for r, c in posting.decode_entries(b"".join(built.chunks))
        ]
        chunks = posting.split_chunks(posting.encode_entries(entries))
        return BuiltPosting(built.kept, chunks, posting.chain_commitment(chunks), built.key_table)

    monkeypatch.setattr(participation, "build_posting", build_posting)
    round_id = consortium.open_round(STATS_TAG, 3, output="statistic", threshold=T, min_contributors=T)
    drop_after_posting(consortium, round_id, stay, dropped)
    consortium.advance_time(121)
    step_until(stay, lambda: completed(stay, round_id), f"round {round_id}")
    honest = [a for a in stay if a is not rogue]
    step_until(stay, lambda: len(consortium.round_events(round_id, "MemberBlamed")) >= 3, "blamed")
    blames = consortium.round_events(round_id, "MemberBlamed")
    assert {b["args"]["member"] for b in blames} == {rogue.address}
    assert {a.address for a in honest} <= {b["args"]["reporter"] for b in blames}
    assert all(b["args"]["reason"] == RECOVERY_UNREADABLE for b in blames)
    for agent in stay:
        doc = agent.round_doc(round_id)
        assert doc is not None and rogue.address in doc.refused
        assert agent.store.get_blob(correction_key(round_id)) is None
    first = stay[0].round_doc(round_id).first_holder  # type: ignore[union-attr]
    assert next(a for a in stay if a.address == first).fused_share(round_id) is None  # nothing to serve
