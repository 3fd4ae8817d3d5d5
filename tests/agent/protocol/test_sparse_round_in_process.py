"""A sparse-mask round among five providers on a ring (mask degree 2), driven in this
process on a real Anvil (see ``in_process``): each provider shares with its two
neighbours only, the fused shares still add up to the inputs; and a rogue provider
that leaves a neighbour without its share is caught by that neighbour's complaint,
judged by the others, and named when the round aborts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from in_process import add_providers, senders, step_until, synchronised_providers

from enclave_agent.crypto import mask_graph, posting
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.operator.models import STATS_TAG
from enclave_agent.protocol import participation
from enclave_agent.protocol.agent import MemberAgent
from enclave_agent.protocol.rounds import Posting as BuiltPosting
from enclave_agent.protocol.rounds import RoundDoc
from enclave_devnet import Consortium, start_consortium
from enclave_devnet.consortium import ABORTED, COMPLETED

FRAC = 16
N, DEGREE = 5, 2
STATS = [np.array([float(i + 1), -2.5 * i, 0.25]) for i in range(N)]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    with start_consortium(tmp_path_factory.mktemp("sparse")) as c:
        add_providers(c, [{STATS_TAG: list(stats)} for stats in STATS])
        yield c


@pytest.fixture(scope="module")
def providers(consortium: Consortium) -> list[MemberAgent]:
    return synchronised_providers(consortium, N)


def posted(consortium: Consortium, round_id: int) -> dict[str, Any]:
    """Each sender's whole SharesPosted payload and key table."""
    out: dict[str, Any] = {}
    for e in sorted(consortium.round_events(round_id, "SharesPosted"), key=lambda e: e["args"]["chunkIndex"]):
        sender = e["args"]["sender"]
        payload, table = out.get(sender, (b"", []))
        out[sender] = (
            payload + bytes(e["args"]["payload"]),
            table or [bytes(k) for k in e["args"]["keyTable"]],
        )
    return out


def test_each_provider_shares_with_its_neighbours_only(
    consortium: Consortium, providers: list[MemberAgent]
) -> None:
    round_id = consortium.open_round(STATS_TAG, 3, output="statistic", mask_degree=DEGREE)
    step_until(providers, lambda: consortium.round_state(round_id) == COMPLETED, f"round {round_id}")
    doc = providers[0].round_doc(round_id)
    assert doc is not None and doc.mask_degree == DEGREE
    order = doc.participants
    postings = posted(consortium, round_id)
    for sender, (payload, table) in postings.items():
        i = order.index(sender)
        neighbours = [order[j] for j in mask_graph.neighbours(i, N, DEGREE)]
        assert sorted(r for r, _ in posting.decode_entries(payload)) == sorted(neighbours)
        # Key commitments for the neighbours only: nobody else can ever complain.
        assert [j for j, k in enumerate(table) if k != bytes(32)] == mask_graph.neighbours(i, N, DEGREE)
    for p in providers:
        mine = p.round_doc(round_id)
        assert mine is not None and not mine.invalid
        me = order.index(p.address)
        assert sorted(mine.received) == sorted(order[j] for j in mask_graph.neighbours(me, N, DEGREE))
    fused = [p.fused_share(round_id) for p in providers]
    total = np.zeros(3, dtype=np.uint64)
    for share in fused:
        assert share is not None
        total = total + share
    assert np.allclose(decode(total, FRAC, doc.modulus), np.sum(STATS, axis=0), atol=N * 2.0**-FRAC)
    # The posting of five seeds of 33 bytes became two: smaller on chain too.
    assert all(len(payload) < 2 * 200 for payload, _ in postings.values())


def test_a_rogue_that_skips_a_neighbour_is_named(
    consortium: Consortium, providers: list[MemberAgent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rogue posts its shares without the entry its neighbour is owed (its key
    table still commits to that key). The neighbour complains, the three others judge
    the sender at fault, and the additive round aborts naming the rogue alone."""
    rogue = providers[0]
    honest_build = participation.build_posting

    def build_posting(doc: RoundDoc, values: np.ndarray, keys: Any, ctx: Any) -> BuiltPosting:
        built = honest_build(doc, values, keys, ctx)
        if doc.me != rogue.address:
            return built
        entries = posting.decode_entries(b"".join(built.chunks))
        victim = doc.participants[mask_graph.neighbours(doc.my_index or 0, doc.n, doc.mask_degree)[0]]
        chunks = posting.split_chunks(posting.encode_entries([e for e in entries if e[0] != victim]))
        return BuiltPosting(built.kept, chunks, posting.chain_commitment(chunks), built.key_table)

    monkeypatch.setattr(participation, "build_posting", build_posting)
    round_id = consortium.open_round(STATS_TAG, 3, output="statistic", mask_degree=DEGREE)
    step_until(providers, lambda: consortium.round_state(round_id) == ABORTED, f"round {round_id}")
    (aborted,) = consortium.round_events(round_id, "RoundAborted")
    doc = providers[1].round_doc(round_id)
    assert doc is not None
    victim = doc.participants[mask_graph.neighbours(doc.index_of(rogue.address), N, DEGREE)[0]]
    assert list(aborted["args"]["culprits"]) == [rogue.address]
    (filed,) = consortium.round_events(round_id, "ComplaintFiled")
    assert (filed["args"]["accuser"], filed["args"]["sender"]) == (victim, rogue.address)
    verdicts = consortium.round_events(round_id, "ComplaintJudged")
    assert len(verdicts) == N - 2 and all(v["args"]["senderAtFault"] for v in verdicts)
    complainers = [
        p for p, s in zip(providers, senders(providers), strict=True) if f"complain-{round_id}" in s.labels
    ]
    assert [p.address for p in complainers] == [victim]
