"""The persisted records (``protocol.records``): written with their schema version,
read back equal; a document of a newer agent, with a field no record has or without
one it needs stops the agent naming the key, instead of failing later on a missing
field; documents written before versions existed still read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from enclave_agent.protocol import records
from enclave_agent.protocol.membership import MembershipView
from enclave_agent.protocol.records import Blame, ModelRecord, OwnRange, Posting, Record, RequestRecord
from enclave_agent.protocol.rounds import RoundDoc
from enclave_agent.store import Store, StoreError

MODEL = ModelRecord(id=3, round_id=8, kind="statistic", fee=5, name="stats", metadata='{"features": ["a"]}')
REQUEST = RequestRecord(
    id=12,
    model_id=3,
    kind="statistic",
    client="0x" + "11" * 20,
    holders=["0x" + "22" * 20, "0x" + "33" * 20],
    epoch=2,
    deadline=1_000,
    submit_tx="0x" + "ab" * 32,
    gas={"submit": 90_000},
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "agent.sqlite3") as s:
        yield s


def test_records_round_trip_with_their_version(store: Store) -> None:
    records.save_model(store, MODEL)
    records.save_request(store, REQUEST)
    assert store.get_json("model/3")["v"] == ModelRecord.VERSION == 1
    assert records.load_model(store, 3) == MODEL
    assert records.load_request(store, 12) == REQUEST
    assert records.load_models(store) == [MODEL]
    assert records.load_model(store, 4) is None and records.load_request(store, 13) is None


def test_a_request_is_listed_as_pending_exactly_while_it_is(store: Store) -> None:
    records.save_request(store, REQUEST)
    records.save_request(store, replace(REQUEST, id=10))
    assert records.pending_requests(store) == [10, 12]
    records.save_request(store, replace(REQUEST, status=records.COMPLETED))
    assert records.pending_requests(store) == [10]
    assert records.load_request(store, 12).status == "completed"  # type: ignore[union-attr]


def test_a_document_written_before_versions_reads_as_version_1(store: Store) -> None:
    legacy = {
        "id": 12,
        "model_id": 3,
        "kind": "score",
        "client": REQUEST.client,
        "holders": REQUEST.holders,
        "epoch": 2,
        "deadline": 1_000,
        "status": "pending",
        "submit_tx": REQUEST.submit_tx,
        "gas": {"submit": 1},
        "submitted_at": 5.0,
        "query_bits": 20,
        "count_bound": 512,
    }  # no "v", no "rows", no "encrypt_to": as the agent before typed records wrote it
    store.put_json("request/12", legacy)
    request = records.load_request(store, 12)
    assert (
        request is not None and request.rows == 1 and request.encrypt_to is None and request.query_bits == 20
    )


def test_a_newer_agents_document_stops_this_one_naming_the_key(store: Store) -> None:
    store.put_json("model/3", MODEL.to_json() | {"v": 2})
    with pytest.raises(
        StoreError, match=r"'model/3' is a ModelRecord of version 2; this agent reads up to 1"
    ):
        records.load_model(store, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"owner": "x"}, "field 'owner' is none a RequestRecord has"),
        ({"status": "lost"}, "status 'lost' is none of pending, completed, refunded"),
        ({"v": "1"}, "of version '1'"),
    ],
)
def test_a_damaged_document_is_refused_with_the_culprit(store: Store, change: dict, message: str) -> None:
    store.put_json("request/12", REQUEST.to_json() | change)
    with pytest.raises(StoreError, match=message):
        records.load_request(store, 12)


def test_a_document_missing_a_field_is_refused(store: Store) -> None:
    data = REQUEST.to_json()
    del data["holders"]
    store.put_json("request/12", data)
    with pytest.raises(StoreError, match="'request/12' is not a whole RequestRecord"):
        records.load_request(store, 12)
    store.put_json("model/3", ["not", "a", "document"])
    with pytest.raises(StoreError, match="'model/3' is not a ModelRecord document"):
        records.load_models(store)


def test_rounds_and_the_membership_view_are_versioned_the_same_way() -> None:
    doc = RoundDoc(
        round_id=4,
        epoch=1,
        tag="t",
        participants=["0x" + "22" * 20],
        my_index=0,
        length=3,
        frac_bits=16,
        scheme="additive",
        encoding="seeded",
        modulus=2**64,
        threshold=1,
        posting_deadline=10,
        deadline=20,
        output_kind="statistic",
        min_contributors=1,
    )
    assert doc.to_json()["v"] == 1
    assert RoundDoc.from_json(doc.to_json(), "round/4") == doc
    with pytest.raises(StoreError, match="'round/4' is a RoundDoc of version 9"):
        RoundDoc.from_json(doc.to_json() | {"v": 9}, "round/4")
    view = MembershipView(epoch=3, synchronised_epoch=2, sync_deadline=10)
    assert view.to_json()["v"] == 1 and MembershipView.from_json(view.to_json()) == view
    with pytest.raises(StoreError, match="'membership' is a membership view of version 2"):
        MembershipView.from_json(view.to_json() | {"v": 2})


@pytest.mark.parametrize(
    ("key", "record"),
    [
        ("range/3", OwnRange('{"features": ["a"]}', published=True)),
        ("round/4/posting", Posting(commitment="ab" * 32, chunks=["00", "01"], key_table=["cd" * 32])),
        ("blame/4/0x22/wrong-partial/", Blame(4, "0x" + "22" * 20, "wrong-partial", "")),
    ],
)
def test_every_other_structured_document_is_a_record_too(store: Store, key: str, record: Record) -> None:
    records.save(store, key, record)
    assert records.load(store, type(record), key) == record
    store.put_json(key, record.to_json() | {"extra": 1})
    with pytest.raises(StoreError, match=f"'{key}': field 'extra'"):
        records.load(store, type(record), key)
