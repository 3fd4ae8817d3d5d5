"""Queries as they travel to the providers: binary, exact, bounded, and split so
that one request's encrypted copies stay under the transaction size limit."""

from __future__ import annotations

import math

import pytest

from enclave_agent.errors import ProtocolError
from enclave_agent.protocol import queries
from enclave_agent.protocol.queries import KIND_SCORE, KIND_STATISTIC, MAX_ROWS, Query


def test_score_rows_round_trip_exactly() -> None:
    rows = ((0.1, -2.5e-300, 1e300), (3.0, 0.0, -0.0), (math.pi, 1 / 3, 2**53 + 1.0))
    query = Query(KIND_SCORE, rows=rows)
    raw = query.to_bytes()
    assert len(raw) == 5 + 8 * 9
    assert Query.from_bytes(raw) == query and query.row_count == 3


def test_statistic_round_trips_and_counts_one_row() -> None:
    query = Query(KIND_STATISTIC, column=29)
    assert Query.from_bytes(query.to_bytes()) == query and query.row_count == 1
    assert query.split(1) == [query]


@pytest.mark.parametrize(
    "rows",
    [
        (),
        ((1.0, 2.0), (1.0,)),
        ((float("nan"),),),
        ((float("inf"), 1.0),),
        tuple((1.0,) for _ in range(MAX_ROWS + 1)),
    ],
)
def test_bad_score_queries_are_refused_when_encoded(rows) -> None:
    with pytest.raises(ProtocolError):
        Query(KIND_SCORE, rows=rows).to_bytes()


def test_malformed_bytes_are_refused() -> None:
    good = Query(KIND_SCORE, rows=((1.0, 2.0),)).to_bytes()
    nan_row = good[:5] + bytes.fromhex("7ff8000000000000") + good[13:]
    for raw in (b"", b"\x03", good[:-1], good + b"\x00", nan_row, b"\x01\x00\x00\x00\x02", b"\x02\x00"):
        with pytest.raises(ProtocolError, match="malformed query"):
            Query.from_bytes(raw)


def test_split_keeps_row_order_and_covers_every_row() -> None:
    rows = tuple((float(i), float(-i)) for i in range(10))
    parts = Query(KIND_SCORE, rows=rows).split(4)
    assert [p.row_count for p in parts] == [4, 4, 2]
    assert tuple(r for p in parts for r in p.rows) == rows


@pytest.mark.parametrize(("features", "holders"), [(30, 3), (30, 10), (1, 2), (5000, 20)])
def test_rows_per_request_fits_the_budget(features: int, holders: int) -> None:
    size = queries.rows_per_request(features, holders)
    assert 1 <= size <= MAX_ROWS
    encrypted = holders * (len(Query(KIND_SCORE, rows=((0.5,) * features,) * size).to_bytes()) + 28 + 64)
    assert size == 1 or encrypted <= queries.QUERY_BYTES_BUDGET
    if size < MAX_ROWS and size > 1:  # one more row would not fit
        assert holders * 8 * features * (size + 1) > queries.QUERY_BYTES_BUDGET - 256 - holders * 128


def test_partial_width_counts_two_values_per_row() -> None:
    assert queries.partial_width(KIND_SCORE, 7) == 14
    assert queries.partial_width(KIND_STATISTIC) == 3


def test_result_associated_data_binds_request_and_row() -> None:
    assert len({queries.result_ad(1, 0), queries.result_ad(1, 1), queries.result_ad(10, 0)}) == 3
