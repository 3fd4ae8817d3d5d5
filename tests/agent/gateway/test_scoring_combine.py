"""The gateway combines every provider's partial: Shamir partials are checked and
corrected (Reed-Solomon), a disagreement it cannot correct refuses the answer."""

from __future__ import annotations

import pytest

from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import ProtocolError
from enclave_agent.gateway import scoring

P = PRIME61


def shamir_partials(values: list[int], n: int, t: int) -> dict[int, list[int]]:
    """f_k(x) = values[k] + (k + 1) x + 3 x^2 ... of degree t - 1, at x = 1..n."""
    return {
        x: [(v + sum((k + 2 + j) * pow(x, j + 1, P) for j in range(t - 1))) % P for k, v in enumerate(values)]
        for x in range(1, n + 1)
    }


def test_consistent_partials_combine_and_are_checked() -> None:
    partials = shamir_partials([5, 7, 11], n=4, t=2)
    combined = scoring.combine(partials, P, additive=False, threshold=2)
    assert combined.total == [5, 7, 11] and combined.wrong == () and combined.checked


def test_a_wrong_partial_is_corrected_and_named_with_t_plus_2() -> None:
    partials = shamir_partials([5, 7, 11], n=4, t=2)
    partials[3] = [(v + 1000) % P for v in partials[3]]
    combined = scoring.combine(partials, P, additive=False, threshold=2)
    assert combined.total == [5, 7, 11] and combined.wrong == (3,)


def test_a_wrong_partial_with_t_plus_1_refuses_the_answer() -> None:
    partials = shamir_partials([5, 7], n=3, t=2)
    partials[2] = [partials[2][0], (partials[2][1] + 1) % P]
    with pytest.raises(scoring.InconsistentPartials, match="detected|cannot say"):
        scoring.combine(partials, P, additive=False, threshold=2)


def test_exactly_t_partials_are_combined_unchecked() -> None:
    partials = {x: p for x, p in shamir_partials([5], n=3, t=2).items() if x != 2}
    combined = scoring.combine(partials, P, additive=False, threshold=2)
    assert combined.total == [5] and not combined.checked


def test_additive_partials_sum_and_cannot_be_checked() -> None:
    combined = scoring.combine({1: [RING64 - 1, 2], 2: [3, 4], 3: [0, 1]}, RING64, additive=True)
    assert combined.total == [2, 7] and not combined.checked


@pytest.mark.parametrize(
    ("partials", "message"),
    [({}, "no partial"), ({1: [1], 2: [1, 2]}, "width"), ({1: [P], 2: [1]}, "out of the modulus")],
)
def test_bad_partials_are_refused(partials: dict[int, list[int]], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        scoring.combine(partials, P, additive=False, threshold=1)
