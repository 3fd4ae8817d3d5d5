"""A provider can answer in the block right after the request, before the gateway's
submit() has stored the request it recorded: that partial is kept, not dropped (a
dropped partial left a Shamir answer unchecked and an additive one unanswerable)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from enclave_agent.chain import ChainEvent
from enclave_agent.gateway.answering import Completions
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.gateway.requests import GatewayRequests
from enclave_agent.protocol.records import RequestRecord, save_request
from enclave_agent.store import Store

ME = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER_GATEWAY = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
PROVIDER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


class FakeGatewayContract:
    def __init__(self, recorded_by: dict[int, str]) -> None:
        self.functions = SimpleNamespace(
            requestInfo=lambda rid: SimpleNamespace(
                call=lambda: (1, PROVIDER, recorded_by.get(rid, "0x" + "00" * 20), 0, 0, 0)
            )
        )


def gateway(tmp_path: Path, recorded_by: dict[int, str]) -> GatewayRequests:
    agent = SimpleNamespace(
        store=Store(tmp_path / "agent.sqlite3"),
        address=ME,
        contracts=SimpleNamespace(gateway=FakeGatewayContract(recorded_by)),
    )
    return GatewayRequests(cast(Any, agent), Metrics(), Completions())


def partial(request_id: int, provider: str = PROVIDER) -> ChainEvent:
    args = {"requestId": request_id, "provider": provider, "ciphertext": b"ct"}
    return ChainEvent("gateway", "PartialPosted", args, 10, "0x" + "ab" * 32, 0)


def test_a_partial_for_our_request_not_yet_stored_is_kept(tmp_path: Path) -> None:
    agent = gateway(tmp_path, {7: ME})
    agent.handlers()["PartialPosted"](partial(7))
    assert agent.store.get_blob(f"request/7/partial/{PROVIDER}") == b"ct"
    assert agent.metrics.partials_ignored == 0


def test_a_partial_for_another_gateways_request_is_ignored(tmp_path: Path, caplog: Any) -> None:
    agent = gateway(tmp_path, {7: OTHER_GATEWAY})
    agent.handlers()["PartialPosted"](partial(7))
    assert agent.store.get_blob(f"request/7/partial/{PROVIDER}") is None
    assert agent.metrics.partials_ignored == 1
    assert "not one of ours" in caplog.text


def test_a_stored_request_still_refuses_non_holders_and_duplicates(tmp_path: Path, caplog: Any) -> None:
    agent = gateway(tmp_path, {7: ME})
    request = RequestRecord(
        id=7, model_id=1, kind="score", client=ME, holders=[PROVIDER], epoch=1, deadline=0, submit_tx="0x"
    )
    save_request(agent.store, request)
    agent.handlers()["PartialPosted"](partial(7, OTHER_GATEWAY))
    agent.handlers()["PartialPosted"](partial(7))
    agent.handlers()["PartialPosted"](partial(7))
    assert agent.store.get_blob(f"request/7/partial/{OTHER_GATEWAY}") is None
    assert agent.store.blob_keys("request/7/partial/") == [f"request/7/partial/{PROVIDER}"]
    assert agent.metrics.partials_ignored == 2
    assert "not a holder or a duplicate" in caplog.text
