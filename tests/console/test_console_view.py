"""The consortium page's view, from hand-made events (no chain): names by
organisation, round lifecycle and blame, gas once per transaction and stage, epochs
and their sync state, request latency and per-(model, client) totals, and the caps
that bound memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from enclave_console import view as view_module
from enclave_console.view import ConsortiumView

OP_A, OP_B, OP_C, OP_R = ("0x" + c * 40 for c in "ABCD")
EN_A, EN_B, EN_C, EN_R = ("0x" + c * 40 for c in "1234")
CLIENT = "0x" + "9" * 40
GATEWAY = "0x" + "8" * 40
PROVIDER, GATEWAY_ROLE = 1, 2


@dataclass
class Ev:
    name: str
    args: dict[str, Any]
    block_number: int = 1
    tx_hash: str = field(default="")
    contract: str = "ShareExchange"


_tx = iter(range(10**9))


def ev(event: str, block: int = 1, tx: str | None = None, **args: Any) -> Ev:
    return Ev(event, args, block, tx or f"0x{next(_tx):064x}")


def consortium() -> ConsortiumView:
    v = ConsortiumView()
    for op, name, en in (
        (OP_A, "Bank A", EN_A),
        (OP_B, "Bank B", EN_B),
        (OP_C, "Insurer C", EN_C),
        (OP_R, "Rogue R", EN_R),
    ):
        v.apply(ev("OrganisationAdmitted", operator=op, name=name, roles=6, maxEnclavesPerRole=1), 100)
        v.apply(
            ev(
                "MemberRegistered",
                enclave=en,
                operator=op,
                role=PROVIDER,
                epoch=1,
                quote={"measurement": b"\x42" * 32},
                signature=b"",
                possession=b"",
            ),
            110,
        )
    return v


def open_round(
    v: ConsortiumView, round_id: int, ts: int = 200, tx: str | None = None, gas: int = 300_000
) -> None:
    v.apply(
        ev(
            "RoundOpened",
            tx=tx,
            roundId=round_id,
            epoch=1,
            inputTag=b"\0" * 32,
            participants=(EN_A, EN_B, EN_C, EN_R),
            spec={"length": 8, "fracBits": 16, "scheme": 0, "encoding": 1, "modulus": 2**64},
            threshold=4,
            postingDeadline=ts + 30,
            deadline=ts + 60,
            policy={"kind": 0, "minContributors": 0},
            floor=4,
        ),
        ts,
        gas,
    )


def test_members_carry_organisation_role_measurement_evidence_and_time() -> None:
    v = consortium()
    members = {m["enclave"]: m for m in v.snapshot()["members"]}
    assert members[EN_C]["organisation"] == "Insurer C"
    assert members[EN_C]["role"] == "provider"
    assert members[EN_C]["measurement"] == "0x" + "42" * 32
    assert members[EN_C]["evidence"] == "simulated"
    assert members[EN_C]["registered_at"] == 110 and members[EN_C]["active"]
    v.apply(ev("MemberRevoked", enclave=EN_C, by=OP_C, epoch=2, reason=2), 120)
    left = next(m for m in v.snapshot()["members"] if m["enclave"] == EN_C)
    assert (left["active"], left["revoked_reason"]) == (False, "operator")
    # An address nobody admitted is shown shortened, never as an empty name.
    assert v.name_of("0x" + "7" * 40) == "0x7777…7777"


def test_hardware_evidence_type_is_named_when_the_event_carries_it() -> None:
    v = consortium()
    v.apply(
        ev(
            "MemberRegistered",
            enclave="0x" + "5" * 40,
            operator=OP_A,
            role=GATEWAY_ROLE,
            epoch=2,
            quote={"measurement": b"\1" * 32},
            evidenceType=4,
        ),
        130,
    )
    assert v.members["0x" + "5" * 40]["evidence"] == "intel-tdx"
    assert v.members["0x" + "5" * 40]["role"] == "gateway"


def test_epoch_sync_state_follows_digests_deadline_and_time() -> None:
    v = consortium()
    v.apply(ev("EpochStarted", epoch=1, membershipDigest=b"\0" * 32, memberCount=2, syncDeadline=500), 400)
    v.set_head(10, 450)
    assert v.snapshot()["epoch"]["state"] == "synchronising"
    v.apply(ev("MembershipDigestPosted", epoch=1, member=EN_A, digest=b"\1" * 32, matches=True), 410)
    v.apply(ev("MembershipDigestPosted", epoch=1, member=EN_B, digest=b"\2" * 32, matches=False), 411)
    v.set_head(11, 501)
    epoch = v.snapshot()["epoch"]
    assert (epoch["state"], epoch["digests"]) == ("overdue", ["Bank A"])
    v.apply(ev("SyncDeadlineExtended", epoch=1, syncDeadline=900), 502)
    assert v.snapshot()["epoch"]["state"] == "synchronising"
    v.apply(ev("EpochSynchronised", epoch=1, membershipDigest=b"\1" * 32), 503)
    epoch = v.snapshot()["epoch"]
    assert (epoch["state"], epoch["synchronised_at"], epoch["sync_deadline"]) == ("synchronised", 503, 900)
    # An epoch replaced before it synchronised is superseded, not overdue forever.
    v.apply(ev("EpochStarted", epoch=2, membershipDigest=b"\0" * 32, memberCount=3, syncDeadline=1000), 600)
    v.apply(ev("EpochStarted", epoch=3, membershipDigest=b"\0" * 32, memberCount=4, syncDeadline=1100), 601)
    v.set_head(20, 2000)
    assert [(e["epoch"], e["state"]) for e in v.snapshot()["epochs"]] == [
        (3, "overdue"),
        (2, "superseded"),
        (1, "synchronised"),
    ]


def test_a_round_completes_with_contributors_and_gas_per_stage_once_per_transaction() -> None:
    v = consortium()
    open_round(v, 7, ts=200, gas=300_000)
    for i, sender in enumerate((EN_A, EN_B, EN_C, EN_R)):
        # two chunks in two transactions: both count; only the last marks it posted
        v.apply(
            ev(
                "SharesPosted",
                roundId=7,
                sender=sender,
                chunkIndex=0,
                chunkCount=2,
                commitment=b"",
                keyTable=(),
                payload=b"",
            ),
            201,
            1000,
        )
        assert [p["name"] for p in v.round_json(v.rounds[7])["posted"]] == [
            "Bank A",
            "Bank B",
            "Insurer C",
            "Rogue R",
        ][:i]
        v.apply(
            ev(
                "SharesPosted",
                roundId=7,
                sender=sender,
                chunkIndex=1,
                chunkCount=2,
                commitment=b"",
                keyTable=(),
                payload=b"",
            ),
            202,
            500,
        )
    assert v.snapshot()["rounds"][0]["state"] == "posting"
    v.apply(ev("PostingClosed", roundId=7, contributors=0b1111), 231, 40_000)
    assert v.snapshot()["rounds"][0]["state"] == "fusing"
    for sender in (EN_A, EN_B, EN_C):
        v.apply(
            ev("FusedCommitted", roundId=7, member=sender, commitment=b"", contributors=0b1111), 232, 60_000
        )
    # The last commitment completes the round in the same transaction: its gas counts once.
    last = "0x" + "ee" * 32
    v.apply(
        ev("FusedCommitted", tx=last, roundId=7, member=EN_R, commitment=b"", contributors=0b1111),
        233,
        90_000,
    )
    v.apply(ev("RoundCompleted", tx=last, roundId=7, contributors=0b1111, holders=0b0111), 233, 90_000)
    r = v.snapshot()["rounds"][0]
    assert r["state"] == "completed" and r["duration"] == 33
    assert r["gas"] == {"open": 300_000, "post shares": 6000, "close posting": 40_000, "fuse": 270_000}
    assert r["gas_total"] == 616_000
    assert [c["name"] for c in r["contributors"]] == ["Bank A", "Bank B", "Insurer C", "Rogue R"]
    assert [h["name"] for h in r["holders"]] == ["Bank A", "Bank B", "Insurer C"]
    assert (r["scheme"], r["encoding"], r["kind"]) == ("additive", "seeded", "shared-model")


def test_an_abort_names_the_culprit_by_organisation_with_exclusions_and_blame() -> None:
    v = consortium()
    open_round(v, 3)
    v.apply(ev("MemberExcluded", roundId=3, member=EN_R, reason=1, contributors=0b0111), 210, 50_000)
    v.apply(ev("RoundAborted", roundId=3, reason=1, culprits=(EN_R,)), 231, 45_000)
    r = v.round_json(v.rounds[3])
    assert (r["state"], r["abort_reason"]) == ("aborted", "missing-shares")
    assert r["culprits"] == [{"address": EN_R, "name": "Rogue R"}]
    assert r["exclusions"] == [{"address": EN_R, "name": "Rogue R", "reason": "invalid-share"}]
    assert [c["name"] for c in r["contributors"]] == ["Bank A", "Bank B", "Insurer C"]
    assert r["gas"]["finalize"] == 45_000 and r["gas"]["complaints"] == 50_000
    v.apply(ev("MemberBlamed", roundId=3, member=EN_B, reporter=EN_A, reason=1, evidence=b""), 240, 70_000)
    assert v.round_json(v.rounds[3])["blames"] == [
        {"address": EN_B, "name": "Bank B", "reason": "reveal-mismatch", "reporter": "Bank A"}
    ]
    texts = [a["text"] for a in v.snapshot()["activity"]]
    assert "round 3 aborted (missing-shares): Rogue R" in texts
    assert "round 3: Rogue R excluded (invalid-share)" in texts


def test_a_round_past_its_deadline_shows_expired_until_finalized() -> None:
    v = consortium()
    open_round(v, 1, ts=200)
    v.set_head(5, 260)
    assert v.snapshot()["rounds"][0]["state"] == "posting"
    v.set_head(6, 261)
    assert v.snapshot()["rounds"][0]["state"] == "expired"


def test_events_for_rounds_and_requests_never_seen_are_ignored() -> None:
    v = consortium()
    v.apply(ev("RoundCompleted", roundId=99, contributors=1, holders=1), 1, 10)
    v.apply(ev("PartialPosted", requestId=5, provider=EN_A, ciphertext=b""), 1, 10)
    v.apply(ev("SomethingNew", x=1), 1, 10)
    assert v.snapshot()["rounds"] == [] and v.snapshot()["requests"] == []


def _request(
    v: ConsortiumView, request_id: int, ts: int, client: str = CLIENT, model: int = 1, rows: int = 2
) -> None:
    v.apply(
        ev(
            "RequestSubmitted",
            requestId=request_id,
            modelId=model,
            client=client,
            gateway=GATEWAY,
            requestDigest=b"",
            inputHash=b"",
            deadline=ts + 100,
            fee=10**12,
            rows=rows,
            encryptedQuery=b"",
        ),
        ts,
        200_000,
    )


def test_request_latency_gas_and_totals_per_model_and_client() -> None:
    v = consortium()
    v.apply(
        ev("ModelRegistered", modelId=1, roundId=7, kind=0, fee=10**12, name="fraud-lr", metadata="{}"), 300
    )
    _request(v, 1, 1000)
    for provider in (EN_A, EN_B, EN_C):
        v.apply(ev("PartialPosted", requestId=1, provider=provider, ciphertext=b""), 1002, 50_000)
    v.apply(ev("RequestCompleted", requestId=1, resultCommitment=b"", partials=3), 1004, 80_000)
    _request(v, 2, 1010)
    v.apply(ev("RequestCompleted", requestId=2, resultCommitment=b"", partials=3), 1016, 80_000)
    _request(v, 3, 1020, rows=5)
    v.set_head(99, 1500)  # request 3 is past its deadline, not refunded yet
    snap = v.snapshot()
    by_id = {r["id"]: r for r in snap["requests"]}
    assert (by_id[1]["latency"], by_id[1]["gas"], by_id[1]["partials"]) == (4, 430_000, 3)
    assert (by_id[1]["model_name"], by_id[1]["state"]) == ("fraud-lr", "completed")
    assert (by_id[3]["state"], by_id[3]["latency"]) == ("expired", None)
    v.apply(ev("RequestRefunded", requestId=3, client=CLIENT, fee=10**12), 1501, 30_000)
    usage = v.snapshot()["usage"]
    assert usage == [
        {
            "model": 1,
            "model_name": "fraud-lr",
            "client": CLIENT,
            "requests": 3,
            "rows": 9,
            "completed": 2,
            "refunded": 1,
            "mean_latency": 5.0,
            "max_latency": 6,
            "gas": 430_000 + 280_000 + 230_000,
        }
    ]


def test_history_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(view_module, "MAX_ROUNDS", 5)
    monkeypatch.setattr(view_module, "MAX_REQUESTS", 4)
    v = consortium()
    for i in range(1, 13):
        open_round(v, i)
        _request(v, i, 1000 + i)
    snap = v.snapshot()
    assert [r["id"] for r in snap["rounds"]] == [12, 11, 10, 9, 8]
    assert [r["id"] for r in snap["requests"]] == [12, 11, 10, 9]
    assert len(snap["activity"]) <= view_module.MAX_ACTIVITY
    for _ in range(3 * view_module.MAX_ACTIVITY):
        v.apply(ev("EpochSynchronised", epoch=1, membershipDigest=b""), 1)
    assert len(v.snapshot()["activity"]) == view_module.MAX_ACTIVITY
