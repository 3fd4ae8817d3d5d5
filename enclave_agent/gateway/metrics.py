"""The gateway's counters and their Prometheus text (``GET /metrics``).

Latency is a histogram over fixed buckets: a count per bucket, the sum and the count,
so its memory is constant however many calls the gateway answers (it used to keep
every sample). It keeps no sample and no percentile: nothing in the agent reads one
(the demo and ``bench/`` time their own calls on the client side), and Prometheus
derives quantiles from the buckets (``histogram_quantile``).

The provider agents' metrics are ``enclave_agent.protocol.health``'s; the gateway
adds these to the ``enclave_agent_synchronised`` and ``enclave_agent_epoch`` gauges.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from enclave_agent.protocol.rounds import RoundDoc

__all__ = ["LATENCY_BUCKETS", "Histogram", "Metrics", "prometheus_text"]

# Upper bounds (seconds) of the latency buckets; +Inf is implied.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    """Observations counted per bucket (``le`` semantics: a value equal to a bound
    falls in that bound's bucket); the last count is the +Inf bucket."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError(f"histogram bounds {self.bounds} are not ascending")  # bisect needs them so
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # NaN is at or below no bound: +Inf only (bisect would put it in the first bucket).
        self.counts[len(self.bounds) if math.isnan(value) else bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the +Inf count (Prometheus ``_bucket``)."""
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out

    def copy(self) -> Histogram:
        return replace(self, counts=list(self.counts))


@dataclass
class Metrics:
    """The gateway's counters, shared by the HTTP handlers and the agent loop."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: dict[str, int] = field(default_factory=dict)  # inference calls by outcome
    in_flight: int = 0  # inference calls being answered (a shutdown waits for them)
    latency: Histogram = field(default_factory=Histogram)  # of answered inference calls
    partials_ignored: int = 0
    # (provider, why) -> partials found wrong: "corrected" (named and corrected) or
    # "unreadable" (did not decrypt or decode); a wrong partial that can be detected
    # but not corrected refuses the answer (requests outcome "inconsistent_partials")
    wrong_partials: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_wrong(self, provider: str, why: str) -> None:
        with self.lock:
            key = (provider, why)
            self.wrong_partials[key] = self.wrong_partials.get(key, 0) + 1

    def count(self, outcome: str) -> None:
        with self.lock:
            self.requests[outcome] = self.requests.get(outcome, 0) + 1

    def observe(self, seconds: float) -> None:
        with self.lock:
            self.latency.observe(seconds)


def prometheus_text(
    metrics: Metrics,
    rounds: Iterable[RoundDoc],
    synchronised: bool,
    epoch: int,
    funding: tuple[int | None, int] = (None, 0),
) -> str:
    """The gateway's ``/metrics`` page: its counters, the blame recorded on chain over
    ``rounds`` (every round the gateway saw), its synchronisation and epoch, and its
    enclave account's ``funding`` (balance at the last check, top-ups so far)."""
    with metrics.lock:  # one consistent reading of the counters
        requests = sorted(metrics.requests.items())
        latency = metrics.latency.copy()
        ignored = metrics.partials_ignored
        wrong = sorted(metrics.wrong_partials.items())
    lines = [
        "# HELP enclave_gateway_requests_total Inference calls by outcome.",
        "# TYPE enclave_gateway_requests_total counter",
        *(f'enclave_gateway_requests_total{{outcome="{outcome}"}} {n}' for outcome, n in requests),
        "# HELP enclave_gateway_request_seconds Latency of answered inference calls.",
        "# TYPE enclave_gateway_request_seconds histogram",
        *_histogram_lines("enclave_gateway_request_seconds", latency),
        "# HELP enclave_gateway_partials_ignored_total Partials ignored (unknown request or duplicate).",
        "# TYPE enclave_gateway_partials_ignored_total counter",
        f"enclave_gateway_partials_ignored_total {ignored}",
        "# HELP enclave_gateway_wrong_partials_total Partial results found wrong, by provider and outcome.",
        "# TYPE enclave_gateway_wrong_partials_total counter",
        *(
            f'enclave_gateway_wrong_partials_total{{provider="{p}",outcome="{why}"}} {n}'
            for (p, why), n in wrong
        ),
        *_blame_lines(rounds),
        "# HELP enclave_agent_synchronised Whether the gateway enclave is synchronised (1) or not (0).",
        "# TYPE enclave_agent_synchronised gauge",
        f"enclave_agent_synchronised {int(synchronised)}",
        "# HELP enclave_agent_epoch Current membership epoch.",
        "# TYPE enclave_agent_epoch gauge",
        f"enclave_agent_epoch {epoch}",
        "# HELP enclave_agent_enclave_topups_total Times the operator topped the enclave account up.",
        "# TYPE enclave_agent_enclave_topups_total counter",
        f"enclave_agent_enclave_topups_total {funding[1]}",
    ]
    if funding[0] is not None:
        lines += [
            "# HELP enclave_agent_enclave_balance_wei The enclave account's balance at the last check.",
            "# TYPE enclave_agent_enclave_balance_wei gauge",
            f"enclave_agent_enclave_balance_wei {funding[0]}",
        ]
    return "\n".join(lines) + "\n"


def _histogram_lines(name: str, histogram: Histogram) -> list[str]:
    labels = [*(str(bound) for bound in histogram.bounds), "+Inf"]
    return [
        *(f'{name}_bucket{{le="{le}"}} {n}' for le, n in zip(labels, histogram.cumulative(), strict=True)),
        f"{name}_sum {histogram.sum:.6f}",
        f"{name}_count {histogram.count}",
    ]


def _blame_lines(rounds: Iterable[RoundDoc]) -> list[str]:
    """Exclusions and detections recorded on chain (ShareExchange's MemberExcluded and
    MemberBlamed events), by member and reason."""
    excluded: dict[tuple[str, str], int] = {}
    blamed: dict[tuple[str, str], int] = {}
    for doc in rounds:
        for e in doc.exclusions:
            excluded[(e["member"], e["reason"])] = excluded.get((e["member"], e["reason"]), 0) + 1
        for b in doc.blames:
            blamed[(b["member"], b["reason"])] = blamed.get((b["member"], b["reason"]), 0) + 1
    return [
        "# HELP enclave_round_exclusions_total Members excluded from rounds on chain, by reason.",
        "# TYPE enclave_round_exclusions_total counter",
        *(
            f'enclave_round_exclusions_total{{member="{m}",reason="{r}"}} {n}'
            for (m, r), n in sorted(excluded.items())
        ),
        "# HELP enclave_round_blames_total Misbehaviour detected and recorded on chain, by member, reason.",
        "# TYPE enclave_round_blames_total counter",
        *(
            f'enclave_round_blames_total{{member="{m}",reason="{r}"}} {n}'
            for (m, r), n in sorted(blamed.items())
        ),
    ]
