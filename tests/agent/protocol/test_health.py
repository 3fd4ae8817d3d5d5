"""``health_report`` over a stand-in agent: "ok" only with a reachable node, membership
and the keys of a synchronised epoch; a node that stops answering while the report is
made is reported as unreachable and recorded as an outage, so that every endpoint
the agent serves (the gateway's 503 guard reads the outage) says so at once."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import requests

from enclave_agent.chain.outage import Outage
from enclave_agent.protocol.health import health_report
from enclave_agent.protocol.stages import Stage


class Eth:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def get_block(self, number: int) -> dict[str, Any]:
        if self.fail:
            raise requests.ConnectionError("refused")
        return {"timestamp": int(time.time()) - 3, "number": number}


class Store:
    def __init__(self, keys: bool) -> None:
        self.keys = keys

    def get_blob(self, key: str) -> bytes | None:
        return b"sealed" if self.keys and key == "keys/2" else None

    def get_checkpoint(self, name: str) -> int | None:
        return 41


def agent(
    *, fail: bool = False, keys: bool = True, stage: Stage = Stage.SYNCHRONISED, unfunded: str | None = None
) -> Any:
    store = Store(keys)
    return SimpleNamespace(
        funding=SimpleNamespace(balance=7 * 10**17, topups=2, problem=unfunded),
        view=SimpleNamespace(synchronised_epoch=2, epoch=3),
        store=store,
        processed_block=lambda: store.get_checkpoint("main"),
        outage=Outage("http://node:8545", jitter=lambda: 0.0),
        w3=SimpleNamespace(eth=Eth(fail)),
        stage=stage,
        tee=SimpleNamespace(simulated=True, name="simulated"),
        address="0x" + "11" * 20,
        chain_id=31337,
    )


def test_a_member_with_keys_and_a_node_is_ok() -> None:
    healthy, report = health_report(agent())
    assert healthy and report["status"] == "ok" and report["rpc"] == "reachable"
    assert report["last_block"] == 41 and 2 <= report["last_block_age_s"] < 30
    assert (
        report["epoch"] == 3 and report["synchronised_epoch"] == 2 and report["keys_for_synchronised_epoch"]
    )


def test_no_keys_or_no_membership_is_not_ok() -> None:
    healthy, report = health_report(agent(keys=False))
    assert not healthy and report["status"] == "no keys for a synchronised epoch yet"
    healthy, report = health_report(agent(stage=Stage.REGISTERING))
    assert not healthy and json.dumps(report["status"]) == json.dumps(report["stage"]) == '"registering"'


def test_an_enclave_account_its_operator_cannot_fund_is_not_ok() -> None:
    healthy, report = health_report(agent())
    assert healthy and report["enclave_balance_wei"] == 7 * 10**17 and report["enclave_topups"] == 2
    problem = "enclave account low on funds (0 wei): the operator cannot top it up"
    healthy, report = health_report(agent(unfunded=problem))
    assert not healthy and report["status"] == problem


def test_a_node_that_stops_answering_is_an_outage_for_everyone() -> None:
    a = agent(fail=True)
    assert not a.outage.down
    healthy, report = health_report(a)
    assert not healthy and report["status"] == "chain unreachable" and report["rpc"] == "unreachable"
    assert report["last_block_age_s"] is None
    assert a.outage.down  # the gateway's /v1 guard answers 503 from now on
