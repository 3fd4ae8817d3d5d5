"""The gateway's metrics (unit test): latency is a fixed-bucket histogram whose memory
does not grow with the number of calls, its counts are exact, and ``/metrics`` renders
it and the counters under the names the docs and dashboards use."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from enclave_agent.gateway.metrics import LATENCY_BUCKETS, Histogram, Metrics, prometheus_text

# Exactly representable, some on a bound (a value equal to a bound is in its bucket).
LATENCIES = [0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 3.0, 60.0, 61.0, 1000.0]


def _metrics() -> Metrics:
    metrics = Metrics()
    for seconds in LATENCIES:
        metrics.observe(seconds)
    for outcome in ("ok", "rate_limited", "ok"):
        metrics.count(outcome)
    metrics.count_wrong("0xB", "corrected")
    metrics.count_wrong("0xA", "unreadable")
    metrics.count_wrong("0xB", "corrected")
    metrics.partials_ignored = 3
    return metrics


def test_memory_stays_constant_however_many_calls_are_observed() -> None:
    metrics = Metrics()
    metrics.observe(0.3)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            metrics.observe((i % 700) / 10)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096  # keeping every sample would take megabytes
    assert len(metrics.latency.counts) == len(LATENCY_BUCKETS) + 1
    assert metrics.latency.count == 100_001


def test_bucket_counts_sum_and_count_are_exact() -> None:
    latency = _metrics().latency
    assert latency.bounds == (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    assert latency.counts == [2, 2, 2, 0, 1, 0, 0, 1, 2]
    assert latency.cumulative() == [2, 4, 6, 6, 7, 7, 7, 8, 10]
    assert latency.sum == 1127.0
    assert latency.count == 10


def test_nan_counts_in_the_inf_bucket_only() -> None:
    latency = Histogram()
    latency.observe(float("nan"))
    assert latency.cumulative() == [0] * len(LATENCY_BUCKETS) + [1]


def test_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match="not ascending"):
        Histogram((1.0, 0.5))


def test_prometheus_text_for_a_known_set() -> None:
    rounds = [
        SimpleNamespace(
            exclusions=[{"member": "0xA", "reason": "late", "by": "0xC"}],
            blames=[{"member": "0xB", "reason": "WrongPartial", "by": "0xC"}] * 2,
        )
    ]
    text = prometheus_text(_metrics(), cast(Any, rounds), synchronised=True, epoch=3)
    assert text == (
        "# HELP enclave_gateway_requests_total Inference calls by outcome.\n"
        "# TYPE enclave_gateway_requests_total counter\n"
        'enclave_gateway_requests_total{outcome="ok"} 2\n'
        'enclave_gateway_requests_total{outcome="rate_limited"} 1\n'
        "# HELP enclave_gateway_request_seconds Latency of answered inference calls.\n"
        "# TYPE enclave_gateway_request_seconds histogram\n"
        'enclave_gateway_request_seconds_bucket{le="0.25"} 2\n'
        'enclave_gateway_request_seconds_bucket{le="0.5"} 4\n'
        'enclave_gateway_request_seconds_bucket{le="1.0"} 6\n'
        'enclave_gateway_request_seconds_bucket{le="2.0"} 6\n'
        'enclave_gateway_request_seconds_bucket{le="5.0"} 7\n'
        'enclave_gateway_request_seconds_bucket{le="10.0"} 7\n'
        'enclave_gateway_request_seconds_bucket{le="30.0"} 7\n'
        'enclave_gateway_request_seconds_bucket{le="60.0"} 8\n'
        'enclave_gateway_request_seconds_bucket{le="+Inf"} 10\n'
        "enclave_gateway_request_seconds_sum 1127.000000\n"
        "enclave_gateway_request_seconds_count 10\n"
        "# HELP enclave_gateway_partials_ignored_total Partials ignored (unknown request or duplicate).\n"
        "# TYPE enclave_gateway_partials_ignored_total counter\n"
        "enclave_gateway_partials_ignored_total 3\n"
        "# HELP enclave_gateway_wrong_partials_total Partial results found wrong, by provider and outcome.\n"
        "# TYPE enclave_gateway_wrong_partials_total counter\n"
        'enclave_gateway_wrong_partials_total{provider="0xA",outcome="unreadable"} 1\n'
        'enclave_gateway_wrong_partials_total{provider="0xB",outcome="corrected"} 2\n'
        "# HELP enclave_round_exclusions_total Members excluded from rounds on chain, by reason.\n"
        "# TYPE enclave_round_exclusions_total counter\n"
        'enclave_round_exclusions_total{member="0xA",reason="late"} 1\n'
        "# HELP enclave_round_blames_total Misbehaviour detected and recorded on chain, by member, reason.\n"
        "# TYPE enclave_round_blames_total counter\n"
        'enclave_round_blames_total{member="0xB",reason="WrongPartial"} 2\n'
        "# HELP enclave_agent_synchronised Whether the gateway enclave is synchronised (1) or not (0).\n"
        "# TYPE enclave_agent_synchronised gauge\n"
        "enclave_agent_synchronised 1\n"
        "# HELP enclave_agent_epoch Current membership epoch.\n"
        "# TYPE enclave_agent_epoch gauge\n"
        "enclave_agent_epoch 3\n"
        "# HELP enclave_agent_enclave_topups_total Times the operator topped the enclave account up.\n"
        "# TYPE enclave_agent_enclave_topups_total counter\n"
        "enclave_agent_enclave_topups_total 0\n"
    )
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["enclave_gateway_request_seconds"] == "histogram"  # Prometheus reads it as one
