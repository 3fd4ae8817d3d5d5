"""One demo consortium (three providers, the gateway, Anvil) shared by the end-to-end
modules: starting it and training the model takes most of a minute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from enclave_agent.model.table import read_table
from enclave_devnet.demo import Demo, DemoConfig


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    d = Demo(
        DemoConfig(workdir=tmp_path_factory.mktemp("e2e"), fedavg_rounds=2, gateway_timeout=15, out=print)
    )
    try:
        d.start()
        d.train()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def row(demo: Demo) -> dict[str, float]:
    names, x, _ = read_table(demo._result.split.holdout_path, demo._result.split.label_column)
    return dict(zip(names, map(float, x[0]), strict=True))
