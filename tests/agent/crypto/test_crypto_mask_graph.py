"""The sparse mask: who shares with whom, its collusion bound, and sparse additive
rounds that still add up (and hide each input from fewer than k colluders)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from enclave_agent.crypto import field, fixed_point, mask_graph, shares
from enclave_agent.crypto.field import RING64
from enclave_agent.errors import CryptoError

D = 5
CONTEXT = b"chain=31337/contract=0xd8b9/round=9"


def test_a_ring_of_five():
    assert [mask_graph.neighbours(i, 5, 2) for i in range(5)] == [[1, 4], [0, 2], [1, 3], [2, 4], [0, 3]]


@pytest.mark.parametrize(("n", "degree"), [(4, 2), (5, 2), (10, 4), (11, 10), (50, 10), (64, 62)])
def test_every_participant_has_k_neighbours_and_the_graph_is_symmetric(n, degree):
    for i in range(n):
        mine = mask_graph.neighbours(i, n, degree)
        assert len(mine) == min(degree, n - 1)
        assert all(i in mask_graph.neighbours(j, n, degree) for j in mine)


@pytest.mark.parametrize(("n", "degree"), [(3, 0), (5, 0), (5, 4), (5, 6), (6, 6), (6, 100)])
def test_degree_zero_or_at_least_n_minus_one_is_every_pair(n, degree):
    for i in range(n):
        assert mask_graph.neighbours(i, n, degree) == [j for j in range(n) if j != i]
    assert mask_graph.collusion_bound(n, degree) == n - 1


def connected_without(n: int, degree: int, removed: set[int]) -> bool:
    left = [i for i in range(n) if i not in removed]
    seen, todo = {left[0]}, [left[0]]
    while todo:
        for j in mask_graph.neighbours(todo.pop(), n, degree):
            if j not in removed and j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(left)


@pytest.mark.parametrize(("n", "degree"), [(7, 2), (8, 4), (9, 4), (10, 6)])
def test_the_collusion_bound_is_the_connectivity(n, degree):
    """No coalition smaller than k cuts the others apart (checked exhaustively), and
    some coalition of k does: the bound is exact."""
    bound = mask_graph.collusion_bound(n, degree)
    assert bound == degree
    for size in range(bound):
        for coalition in itertools.combinations(range(n), size):
            assert connected_without(n, degree, set(coalition)), coalition
    assert not connected_without(n, degree, set(mask_graph.neighbours(0, n, degree)))  # 0 is cut off


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((0, 5, 3), "even"),
        ((0, 5, -2), "even"),
        ((5, 5, 2), "index"),
        ((0, 0, 2), "positive"),
        ((0, 5, True), "even"),
    ],
)
def test_bad_arguments(args, pattern):
    with pytest.raises(CryptoError, match=pattern):
        mask_graph.neighbours(*args)
    with pytest.raises(CryptoError, match="distinct"):
        mask_graph.is_neighbour(1, 1, 5, 2)


def sparse_round(secrets: list[np.ndarray], encoding: str, degree: int) -> tuple[list[np.ndarray], list]:
    n = len(secrets)
    results = [
        shares.split_vector(
            s,
            scheme="additive",
            encoding=encoding,
            n=n,
            t=n,
            own_index=i,
            modulus=RING64,
            context=CONTEXT,
            recipients=mask_graph.neighbours(i, n, degree),
        )
        for i, s in enumerate(secrets)
    ]
    received: list[list[np.ndarray]] = [[r.kept] for r in results]
    for result in results:
        for j, message in result.messages.items():
            received[j].append(shares.open_message(message, length=D, modulus=RING64, context=CONTEXT))
    return [shares.fuse(r, RING64) for r in received], results


@pytest.mark.parametrize("encoding", ["dense", "seeded"])
@pytest.mark.parametrize(("n", "degree"), [(4, 2), (7, 2), (7, 4), (10, 4)])
def test_a_sparse_round_adds_up_and_sends_k_messages(encoding, n, degree):
    values = [np.linspace(-5.0, 5.0, D) * (i + 1) for i in range(n)]
    secrets = [fixed_point.encode(v, 16, RING64, headroom=n) for v in values]
    fused, results = sparse_round(secrets, encoding, degree)
    assert np.array_equal(field.sum_arrays(fused, RING64), field.sum_arrays(secrets, RING64))
    for i, result in enumerate(results):
        assert sorted(result.messages) == mask_graph.neighbours(i, n, degree)
    for f, s in zip(fused, secrets, strict=True):  # no fused share is its holder's input
        assert not np.array_equal(f, s)


def test_what_colluding_neighbours_see_is_not_the_input():
    """Participant 0's two ring neighbours pool what 0 sent them: without 0's kept share
    that is uniformly random, not 0's input; with it (all k neighbours plus 0's revealed
    fused share) the input falls out, which is why the bound is k."""
    n, degree = 6, 2
    secrets = [fixed_point.encode(np.full(D, float(i + 1)), 16, RING64, headroom=n) for i in range(n)]
    _, results = sparse_round(secrets, "dense", degree)
    sent = [
        shares.open_message(results[0].messages[j], length=D, modulus=RING64, context=CONTEXT) for j in (1, 5)
    ]
    pooled = field.sum_arrays(sent, RING64)
    assert not np.array_equal(pooled, secrets[0])
    assert np.array_equal(field.add(pooled, results[0].kept, RING64), secrets[0])


@pytest.mark.parametrize(
    ("scheme", "recipients", "pattern"),
    [
        ("additive", [0, 1], "distinct other"),
        ("additive", [1, 1], "distinct other"),
        ("additive", [5], "distinct other"),
        ("shamir", [1, 4], "a Shamir share must reach every other participant"),
    ],
)
def test_recipients_must_be_distinct_others_and_all_for_shamir(scheme, recipients, pattern):
    with pytest.raises(CryptoError, match=pattern):
        shares.split_vector(
            np.zeros(D, dtype=np.uint64),
            scheme=scheme,
            encoding="dense",
            n=5,
            t=3,
            own_index=0,
            modulus=field.PRIME61,
            context=CONTEXT,
            recipients=recipients,
        )
