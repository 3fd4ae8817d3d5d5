"""ShareExchange with a sparse mask: only a sender's neighbours on the circle of
participants were owed a share, so only they may complain about it.

Without that rule a participant that was never owed a share could reveal any key:
the sender's key table holds zero for it, the contract would find the key "not
committed" and exclude the honest sender with the accuser."""

from __future__ import annotations

import pytest
from helpers import ADDITIVE, RoundState, bits, norm, rejects


def sparse_round(w, degree=2):
    """An additive round of five on a ring (degree 2): i's neighbours are i - 1 and i + 1."""
    rid, _ = w.open_round(scheme=ADDITIVE, threshold=len(w.providers), mask_degree=degree)
    w.post_all(rid)
    assert w.exchange.state(rid) == RoundState.FUSING
    return rid


@pytest.mark.parametrize(("accuser", "sender"), [(0, 2), (2, 0), (1, 3), (0, 3)])
def test_a_non_neighbour_cannot_complain(world5, accuser, sender):
    """The rogue reveals the key the sender would have used (and a made-up one): refused
    either way, nobody is excluded and the round goes on."""
    w = world5
    p = w.providers
    rid = sparse_round(w)
    for key in (None, b"\x07" * 32):
        with rejects("RoundNotNeighbour", rid, p[accuser].address, p[sender].address, world=w):
            w.complain(rid, p[accuser], p[sender], key=key)
    assert w.exchange.state(rid) == RoundState.FUSING
    assert norm(w.exchange.roundGuards(rid))[1] == 0


@pytest.mark.parametrize(("accuser", "sender"), [(0, 1), (1, 0), (0, 4), (4, 0), (3, 4)])
def test_a_neighbour_complains_as_in_a_full_round(world5, accuser, sender):
    """Neighbours across the wrap-around too; the judges are every other contributor."""
    w = world5
    p = w.providers
    rid = sparse_round(w)
    tx = w.complain(rid, p[accuser], p[sender])
    others = [i for i in range(5) if i not in (accuser, sender)]
    assert tx.events["ComplaintFiled"]["judges"] == bits(*others)


def test_a_non_neighbour_lie_would_have_excluded_the_sender(world5):
    """What the neighbour rule prevents, shown on a full round: a made-up key against the
    sender's committed table excludes both and aborts."""
    w = world5
    p = w.providers
    rid = sparse_round(w, degree=0)
    tx = w.complain(rid, p[0], p[2], key=b"\x07" * 32)
    assert w.exchange.state(rid) == RoundState.ABORTED
    assert {e["member"] for e in tx.events["MemberExcluded"]} == {p[0].address, p[2].address}


def test_a_degree_of_at_least_n_is_every_pair(world5):
    w = world5
    p = w.providers
    rid = sparse_round(w, degree=6)
    tx = w.complain(rid, p[0], p[2])
    assert tx.events["ComplaintFiled"]["judges"] == bits(1, 3, 4)
