"""Root test configuration: the repository root on sys.path (for ``tests.support``)
and a per-module Anvil node for tests that ask for ``anvil_node``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.anvil import AnvilProcess  # noqa: E402 - needs the path above


@pytest.fixture(scope="module")
def anvil_node() -> Iterator[AnvilProcess]:
    """One fresh Anvil per test module (chain id 31337, default accounts unlocked)."""
    with AnvilProcess() as node:
        yield node
