"""A provider's state store is lost (emptied) while the chain still lists its enclave:
the agent refuses to start (exit 7) instead of claiming a membership whose keys and
shares it no longer holds; a backup taken while it ran restores it, and it then takes
part in a round as before."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from enclave_devnet import COMPLETED, REPO_ROOT, Consortium, wait_until
from tests.integration.conftest import aggregate, distinctive_inputs, synchronised_consortium

N, D, FRAC = 3, 8, 16
INPUTS = distinctive_inputs(N, D, seed=77)
EXIT_STATE_LOST = 7


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    yield from synchronised_consortium(tmp_path_factory, "state", "v", INPUTS)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enclave_agent.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_an_emptied_store_is_refused_and_a_backup_restores_it(consortium: Consortium, tmp_path: Path) -> None:
    c = consortium
    agent = c.agents["provider-0"]
    backup = tmp_path / "provider-0.backup"
    taken = cli("backup", "--config", agent.config, "--out", backup)  # while the agent runs
    assert taken.returncode == 0, taken.stderr
    agent.stop()
    db = agent.state_dir / "agent.sqlite3"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(b"")  # the store is lost

    for _ in range(2):  # refused every time, not only the first
        refused = cli("run", "--config", agent.config)
        assert refused.returncode == EXIT_STATE_LOST, refused.stderr[-2000:]
        assert "is an active member on chain but its state store" in refused.stderr
        assert "enclave-agent restore" in refused.stderr
    assert cli("restore", "--config", agent.config, "--from", backup).returncode == 2  # needs --yes
    restored = cli("restore", "--config", agent.config, "--from", backup, "--yes")
    assert restored.returncode == 0, restored.stderr
    agent.start()
    started = time.monotonic()
    round_id = c.open_round("v", D, scheme="additive", encoding="seeded")
    assert c.wait_round(round_id) == COMPLETED
    print(f"restored: a round with provider-0 completed {time.monotonic() - started:.1f} s after its restart")
    assert np.max(np.abs(aggregate(c, round_id, FRAC) - np.sum(INPUTS, axis=0))) <= N * 2.0 ** -(FRAC + 1)
    wait_until(lambda: (agent.status() or {}).get("stage") == "synchronised", 30, "provider-0 synchronised")
