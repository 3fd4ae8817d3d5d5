"""Model cards (``GET /v1/models``): built from the model's metadata and the rounds
the gateway followed, organisations by name; no weight, mean or std in them."""

from __future__ import annotations

import json

from enclave_agent.gateway.cards import model_card
from enclave_agent.model.federated import ModelSpec
from enclave_agent.protocol.queries import statistic_metadata
from enclave_agent.protocol.records import ModelRecord
from enclave_agent.protocol.rounds import RoundDoc

MEMBERS = ["0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40]
NAMES = {MEMBERS[0]: "Bank A", MEMBERS[1]: "Bank B", MEMBERS[2]: "Insurer C"}


def _model(model_id: int, kind: str, round_id: int) -> ModelRecord:
    return ModelRecord(id=model_id, round_id=round_id, kind=kind, fee=0, name="m", metadata="{}")


def _doc(round_id: int, contributors: int, kind: str = "shared-model", floor: int = 2) -> RoundDoc:
    return RoundDoc(
        round_id=round_id,
        epoch=1,
        tag="t",
        participants=list(MEMBERS),
        my_index=None,
        length=4,
        frac_bits=16,
        scheme="shamir",
        encoding="seeded",
        modulus=2**61 - 1,
        threshold=2,
        posting_deadline=0,
        deadline=0,
        output_kind=kind,
        min_contributors=3 if kind == "statistic" else 0,
        floor=floor,
        status="completed",
        contributors=contributors,
        completed_at=1_700_000_000 + round_id,
    )


DOCS = {1: _doc(1, 0b111), 2: _doc(2, 0b011), 3: _doc(3, 0b111), 4: _doc(4, 0b101, "statistic")}


def test_a_score_model_card_names_rounds_contributors_units_and_classes() -> None:
    spec = ModelSpec(
        features=["age", "income"],
        stats_round=1,
        train_rounds=[2, 3],
        units={"age": "years"},
        classes={"1": "defaults"},
        description="Credit risk",
    )
    model = _model(7, "shared-model", 3)
    card = model_card(model, json.loads(spec.to_metadata()), DOCS.get, NAMES.__getitem__)
    assert card["description"] == "Credit risk"
    assert card["units"] == {"age": "years", "income": None}
    assert card["classes"] == {"0": "class 0", "1": "defaults"} and card["threshold"] == 0.5
    assert card["link"] == "logistic" and "probability of class 1" in card["score"]
    assert [(r["id"], r["purpose"]) for r in card["rounds"]] == [
        (1, "joint scaling"),
        (2, "training 1/2"),
        (3, "training 2/2"),
    ]
    assert [c["organisation"] for c in card["rounds"][1]["contributors"]] == ["Bank A", "Bank B"]
    assert card["rounds"][2]["completed_at"] == 1_700_000_003
    assert "weights" not in json.dumps(card) and "mean" not in json.dumps(card)


def test_a_statistic_card_says_its_floor_and_that_std_is_the_population_std() -> None:
    metadata = json.loads(statistic_metadata(["age"], {"age": "years"}, "Ages"))
    card = model_card(_model(8, "statistic", 4), metadata, DOCS.get, NAMES.__getitem__)
    assert card["min_contributors"] == 3 and "population" in card["values"]["std"]
    assert card["units"] == {"age": "years"} and card["description"] == "Ages"
    assert [c["organisation"] for c in card["rounds"][0]["contributors"]] == ["Bank A", "Insurer C"]
    assert "classes" not in card and "threshold" not in card


def test_a_round_the_gateway_did_not_follow_is_unknown_not_an_error() -> None:
    metadata = {"features": ["x"], "train_rounds": [9], "scaling": {"stats_round": 8}}
    card = model_card(_model(1, "shared-model", 9), metadata, DOCS.get, NAMES.__getitem__)
    assert [r["status"] for r in card["rounds"]] == ["unknown", "unknown"]
    assert card["classes"] == {"0": "class 0", "1": "class 1"} and card["units"] == {"x": None}
