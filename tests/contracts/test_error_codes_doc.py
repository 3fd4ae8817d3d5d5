"""docs/error_codes.md documents every custom error of every contract, in its own section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from brownie import ConsortiumRegistry, InferenceGateway, ShareExchange

DOC = Path(__file__).resolve().parents[2] / "docs" / "error_codes.md"


def _sections() -> dict[str, str]:
    text = DOC.read_text()
    parts = re.split(r"^## (\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize(
    "container", [ConsortiumRegistry, ShareExchange, InferenceGateway], ids=lambda c: c._name
)
def test_every_error_is_documented(container):
    section = _sections()[container._name]
    documented = set(re.findall(r"`(\w+)\(", section))
    errors = {item["name"] for item in container.abi if item["type"] == "error"}
    assert errors - documented == set()
    # and the documented signatures have the ABI's arity
    for item in container.abi:
        if item["type"] == "error":
            match = re.search(rf"`{item['name']}\(([^)]*)\)`", section)
            args = [a for a in match.group(1).split(",") if a.strip()]
            assert len(args) == len(item["inputs"]), item["name"]
