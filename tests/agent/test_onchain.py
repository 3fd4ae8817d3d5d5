"""enclave_agent.onchain is what tools/gen-onchain makes of the contracts today, and the
generator notices a contract change: the module cannot drift from the contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from enclave_agent.onchain import (
    CLIENT_ROLE,
    ERROR_SIGNATURES,
    ROLES,
    ConsortiumRegistryError,
    Role,
    RoundState,
    ShareExchangeError,
)
from enclave_agent.protocol import stages

REPO = Path(__file__).resolve().parents[2]


def gen(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "tools" / "gen-onchain"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_module_is_what_the_contracts_generate() -> None:
    done = gen(REPO, "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_contract_change_makes_the_module_stale(tmp_path: Path) -> None:
    for part in ("tools/gen-onchain", "contracts/types/Types.sol", "enclave_agent/onchain.py"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / part, tmp_path / part)
    for link in (".venv", ".solc", "build"):
        (tmp_path / link).symlink_to(REPO / link)
    types = tmp_path / "contracts" / "types" / "Types.sol"
    types.write_text(types.read_text().replace("    Aborted,\n", "    Aborted,\n    Paused,\n", 1))
    done = gen(tmp_path, "--check")
    assert done.returncode == 1
    assert "+    PAUSED = 5" in done.stdout and "stale" in done.stderr


def test_the_vocabulary_reads_as_before() -> None:
    assert ROLES == {"provider": Role.PROVIDER, "gateway": Role.GATEWAY} and Role.GATEWAY == 2
    assert stages.ROUND_STATES == (
        "none",
        "posting",
        "fusing",
        "completed",
        "aborted",
        "expired",
        "recovering",
    )
    assert stages.OUTPUT_KINDS == ("shared-model", "statistic", "intermediate")
    assert RoundState.from_label("completed") is RoundState.COMPLETED
    assert CLIENT_ROLE.hex() == "a5ff3ec7a96cdbba4d2d5172d66bbc73c6db3885f29b21be5da9fa7a7c025232"
    assert ConsortiumRegistryError.RegistrySyncStillOpen == "RegistrySyncStillOpen"
    assert (
        ERROR_SIGNATURES[ShareExchangeError.RoundUnexpectedState]
        == "RoundUnexpectedState(uint256,uint8,bytes32)"
    )
