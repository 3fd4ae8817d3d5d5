"""Who exchanges shares with whom in an additive round: every pair, or a sparse mask.

With a mask degree k (even, k >= 2) the n participants sit on a circle in their
round order and each shares only with the k/2 nearest on either side: the circulant
graph C_n(1..k/2), the rule ShareExchange applies to complaints. A circulant graph of
degree k is k-connected, so a coalition of fewer than k participants can never cut the
honest participants apart: as with every pair, it learns nothing about them beyond the
sum of their inputs. A coalition holding all k neighbours of a participant learns that
participant's input once its fused share is revealed. Degree 0, or any k >= n - 1,
is every pair (private against n - 1 colluders). Each participant expands 2k seeds
instead of 2(n - 1): the cost of a round no longer grows with n times n.
"""

from __future__ import annotations

from enclave_agent.errors import CryptoError

__all__ = ["collusion_bound", "is_neighbour", "neighbours"]


def _check(n: int, degree: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CryptoError(f"n must be a positive int, got {n!r}")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0 or degree % 2:
        raise CryptoError(f"mask degree must be 0 (every pair) or an even int >= 2, got {degree!r}")


def is_neighbour(a: int, b: int, n: int, degree: int) -> bool:
    """Whether participants ``a`` and ``b`` (0-based, distinct) exchange shares."""
    _check(n, degree)
    if not (0 <= a < n and 0 <= b < n) or a == b:
        raise CryptoError(f"participants must be distinct indices in [0, {n}), got {a} and {b}")
    if degree == 0:
        return True
    gap = abs(a - b)
    return min(gap, n - gap) <= degree // 2


def neighbours(index: int, n: int, degree: int) -> list[int]:
    """The participants ``index`` sends shares to and receives shares from, ascending."""
    _check(n, degree)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise CryptoError(f"index must be an int in [0, {n}), got {index!r}")
    return [j for j in range(n) if j != index and is_neighbour(index, j, n, degree)]


def collusion_bound(n: int, degree: int) -> int:
    """The fewest colluders that can learn an honest participant's input: its number of
    neighbours (the graph's connectivity), n - 1 when every pair shares."""
    _check(n, degree)
    return n - 1 if degree == 0 else min(degree, n - 1)
