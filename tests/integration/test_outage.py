"""The JSON-RPC endpoint disappears for 10 s in the middle of a round: three provider
processes and the gateway reach the chain through a proxy that drops every request
meanwhile. No agent crashes, the gateway's HTTP stays up and says 503 with
Retry-After, every agent logs the outage's start and end, and the round completes.
And on an idle chain (no block mined for lack of transactions) deadlines still pass on
time."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from enclave_devnet import COMPLETED, Consortium, free_port, wait_until
from tests.agent.chain.faultproxy import FaultProxy
from tests.integration.conftest import aggregate, distinctive_inputs, make_consortium
from tests.support.http import http_json

N, D, FRAC = 3, 8, 16
INPUTS = distinctive_inputs(N, D, seed=5)
OUTAGE = 10.0


PROVIDER_HEALTH = free_port()  # provider-0 serves /healthz and /metrics here


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, FaultProxy, str]]:
    for c in make_consortium(tmp_path_factory, "outage"):
        with FaultProxy(c.anvil.url) as proxy:
            for i in range(N):
                c.add_agent(
                    f"provider-{i}",
                    operator_index=i + 1,
                    inputs={"v": list(INPUTS[i])},
                    rpc_url=proxy.url,
                    extra=f"[health]\nport = {PROVIDER_HEALTH}\n" if i == 0 else "",
                )
            port = free_port()
            gateway = f'[gateway]\nhost = "127.0.0.1"\nport = {port}\n'
            c.add_agent("gateway", operator_index=N + 1, role="gateway", extra=gateway, rpc_url=proxy.url)
            c.wait_synchronised(N)
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_json(url + "/healthz", timeout=5)[0] == 200, 60, "the gateway")
            yield c, proxy, url


def provider_health() -> tuple[int, dict[str, Any]]:
    return http_json(f"http://127.0.0.1:{PROVIDER_HEALTH}/healthz", timeout=5)


def test_an_outage_mid_round_is_ridden_out(setup: tuple[Consortium, FaultProxy, str]) -> None:
    c, proxy, gateway = setup
    round_id = c.open_round("v", D, scheme="additive", encoding="seeded", posting_window=90, window=180)
    proxy.down = True
    started = time.monotonic()
    try:
        # The gateway notices, stays up and tells clients when to come back.
        def gateway_says_unreachable() -> bool:
            status, body = http_json(gateway + "/healthz", timeout=5)
            return status == 503 and body["status"] == "chain unreachable"

        wait_until(gateway_says_unreachable, OUTAGE, "the gateway to report the outage")
        status, body = http_json(gateway + "/v1/models", timeout=5)
        assert status == 503 and body["retry_after"] >= 1, body
        wait_until(lambda: provider_health()[1]["rpc"] == "unreachable", OUTAGE, "provider-0 to report it")
        assert provider_health()[0] == 503
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))
        c.check_alive()
    finally:
        proxy.down = False
    assert c.wait_round(round_id, timeout=120) == COMPLETED
    recovered_after = time.monotonic() - started - OUTAGE
    total = aggregate(c, round_id, FRAC)
    assert np.max(np.abs(total - np.sum(INPUTS, axis=0))) <= N * 2.0 ** -(FRAC + 1)
    wait_until(lambda: http_json(gateway + "/healthz", timeout=5)[0] == 200, 60, "the gateway to recover")
    status, report = provider_health()
    assert status == 200 and report["status"] == "ok" and report["keys_for_synchronised_epoch"], report
    assert report["last_block_age_s"] is not None and report["last_block"] >= 1

    def provider_metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{PROVIDER_HEALTH}/metrics", timeout=10) as response:
            return str(response.read().decode())

    # The chain says completed first; the provider records it at its next poll.
    wait_until(
        lambda: 'enclave_agent_rounds{state="completed"}' in provider_metrics(),
        30,
        "provider-0 to record the round as completed",
    )
    metrics = provider_metrics()
    assert "enclave_agent_synchronised 1.0" in metrics
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    assert float(samples["enclave_agent_rpc_errors_total"]) >= 1  # the outage counted
    c.check_alive()
    for name, agent in c.agents.items():
        logs = agent.logs()
        assert "chain unreachable at" in logs, name
        assert "chain reachable again at" in logs, name
        assert "Traceback" not in logs, name
    print(f"round completed {recovered_after:.1f} s after the endpoint came back")


def test_deadlines_pass_on_an_idle_chain(setup: tuple[Consortium, FaultProxy, str]) -> None:
    """Plain Anvil mines only when a transaction arrives. A participant is down, so
    after the honest postings nobody sends anything: the posting deadline must still
    close the round on time (agents estimate against the pending block, whose
    timestamp is now), not when some unrelated transaction happens to mine a block."""
    c, _, _ = setup
    silent = c.agents["provider-2"]
    silent.stop()
    try:
        round_id = c.open_round("v", D, scheme="additive", encoding="seeded", posting_window=5, window=10)
        posting_deadline = int(c.exchange.functions.roundInfo(round_id).call()[4])
        assert c.wait_round(round_id, timeout=60) == 4  # aborted: the silent member never posted
        (aborted,) = c.round_events(round_id, "RoundAborted")
        mined_at = int(c.w3.eth.get_block(aborted["blockNumber"])["timestamp"])
        assert list(aborted["args"]["culprits"]) == [silent.enclave_address()]
        assert mined_at - posting_deadline <= 5, f"closed {mined_at - posting_deadline} s after the deadline"
    finally:
        silent.start()
        c.wait_synchronised(N)
