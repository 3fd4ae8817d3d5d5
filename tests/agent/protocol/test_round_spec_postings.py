"""How many bytes a round makes each provider post, and the coordinator's warning when
that is bound by the chain's gas rather than by the agents (figures from the rounds
benchmark: n = 10, d = 10^5 dense is 7.2 MB and 289 M gas; Shamir seeded 0.80 MB)."""

from __future__ import annotations

import logging

import pytest

from enclave_agent.protocol import coordinator
from enclave_agent.protocol.round_spec import (
    LARGE_POSTING_BYTES,
    RoundRequest,
    large_posting_warning,
    posting_bytes,
)


@pytest.mark.parametrize(
    ("scheme", "encoding", "threshold", "degree", "low", "high"),
    [
        ("additive", "dense", None, 0, 7_100_000, 7_300_000),  # 9 shares of 800 KB
        ("additive", "dense", None, 4, 3_150_000, 3_250_000),  # a sparse mask: 4 recipients
        ("additive", "seeded", None, 0, 500, 2_000),  # 9 seeds: flat in d
        ("additive", "seeded", 7, 0, 500, 2_000),  # t-of-n additive: still seeds only
        ("shamir", "seeded", None, 0, 790_000, 810_000),  # t = 9: one dense share
        ("shamir", "seeded", 5, 0, 3_990_000, 4_010_000),  # n - t = 5 dense shares
    ],
)
def test_posting_bytes_follow_what_travels_dense(scheme, encoding, threshold, degree, low, high) -> None:
    request = RoundRequest(
        "x", 100_000, scheme=scheme, encoding=encoding, threshold=threshold, mask_degree=degree
    )
    assert low <= posting_bytes(request, 10) <= high


def test_only_chain_bound_postings_get_a_warning_with_size_and_gas() -> None:
    dense = RoundRequest("x", 100_000, encoding="dense")
    warning = large_posting_warning(dense, 10)
    assert warning is not None and "7.2 MB" in warning and "288 M gas" in warning
    assert large_posting_warning(RoundRequest("x", 100_000), 10) is None  # seeded
    assert large_posting_warning(RoundRequest("x", 31, encoding="dense"), 50) is None
    edge = RoundRequest("x", LARGE_POSTING_BYTES // (8 * 9) - 100, encoding="dense")
    assert large_posting_warning(edge, 10) is None


def test_the_coordinator_logs_the_warning_before_it_opens(monkeypatch, caplog) -> None:
    class Members:
        def call(self) -> list[str]:
            return ["0x" + f"{i:040x}" for i in range(10)]

    class Fake:
        def __getattr__(
            self, name
        ):  # contracts.registry.functions.activeMembers(...), exchange.functions.openRound
            return self

        def activeMembers(self, role):  # noqa: N802 (the contract's name)
            return Members()

        def openRound(self, *args):  # noqa: N802
            return args

        def get_block(self, tag):
            return {"timestamp": 1_000}

    caplog.set_level(logging.WARNING, logger=coordinator.__name__)
    args = coordinator.open_round_call(Fake(), Fake(), RoundRequest("x", 100_000, encoding="dense"))  # type: ignore[arg-type]
    assert args[2] == 10 and "7.2 MB" in caplog.text
