"""Which errors mean "the node is unreachable", and how an outage paces and logs retries."""

from __future__ import annotations

import logging

import pytest
import requests

from enclave_agent.chain.outage import Outage, unreachable
from enclave_agent.errors import ChainError, ProtocolError


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(response=response)


def wrapped(inner: BaseException) -> ChainError:
    try:
        raise inner
    except BaseException as exc:
        try:
            raise ChainError("send failed") from exc
        except ChainError as outer:
            return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.ConnectionError("refused"), True),
        (requests.Timeout("slow"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (http_error(502), True),
        (http_error(503), True),
        (http_error(429), False),
        (http_error(400), False),
        (wrapped(requests.ConnectionError("refused")), True),
        (wrapped(ValueError("bad")), False),
        (ProtocolError("peer broke the protocol"), False),
        (ValueError("not a chain problem"), False),
    ],
)
def test_unreachable_tells_outages_from_failures(exc: BaseException, expected: bool) -> None:
    assert unreachable(exc) is expected


def test_backoff_is_capped_exponential_with_jitter_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    low = Outage(
        "http://user:secret@node:8545/v3/abcdefghijklmnopqrstuvwxyz", clock=lambda: now[0], jitter=lambda: 0.0
    )
    high = Outage("http://node:8545", base=0.5, cap=15.0, jitter=lambda: 1.0)
    caplog.set_level(logging.INFO)
    waits = [
        (low.failed(requests.ConnectionError()), high.failed(requests.ConnectionError())) for _ in range(8)
    ]
    assert [lo for lo, _ in waits] == [0.25, 0.5, 1.0, 2.0, 4.0, 7.5, 7.5, 7.5]  # half the ceiling, capped
    assert [hi for _, hi in waits] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert low.down and low.retry_after() == 15
    assert caplog.text.count("chain unreachable at http://node:8545/v3/***: ConnectionError") == 1
    assert "secret" not in caplog.text and "abcdefghij" not in caplog.text
    now[0] = 112.5
    low.recovered()
    assert not low.down and low.retry_after() == 1
    assert "chain reachable again at http://node:8545/v3/*** after 12.5 s (8 failed attempts)" in caplog.text
    low.recovered()  # no outage, nothing to log
    assert caplog.text.count("reachable again") == 1
