"""The measurement covers the agent and nothing else: the same value from a checkout and
from an installed wheel; unchanged by edits to the demo or a test helper; changed by an
edit to agent code or to a pinned runtime dependency."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from enclave_agent.errors import ConfigError
from enclave_agent.tee.measure import LOCK_NAME, manifest_entries, measure_package

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("enclave_agent", "enclave_client", "enclave_console", "enclave_devnet")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the source tree's packages, tests helpers and build files."""
    root = tmp_path_factory.mktemp("checkout")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=IGNORED)
    shutil.copytree(REPO / "tests" / "support", root / "tests" / "support", ignore=IGNORED)
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, root / name)
    return root


def test_an_installed_wheel_measures_as_the_checkout(checkout: Path, tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", str(tmp_path / "dist"), str(checkout), cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("enclave_agent-*.whl")
    site = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
        str(wheel), cwd=tmp_path)  # fmt: skip
    probe = (
        "import enclave_agent, sys; from enclave_agent.tee.measure import measure_package; "
        "print(enclave_agent.__file__); print(measure_package().hex())"
    )
    out = run(sys.executable, "-c", probe, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""})
    where, value = out.split()
    assert where.startswith(str(site))  # the wheel's copy, not the checkout
    assert value == measure_package().hex() == measure_package(checkout / "enclave_agent").hex()


def test_tooling_edits_leave_it_and_agent_edits_change_it(checkout: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(checkout, tree)
    agent = tree / "enclave_agent"
    before = measure_package(agent)
    for tooling in ("enclave_devnet/demo.py", "tests/support/anvil.py", "enclave_devnet/data.py"):
        (tree / tooling).write_text((tree / tooling).read_text() + "\n# edited\n")
    (agent / "__pycache__").mkdir(exist_ok=True)
    (agent / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert measure_package(agent) == before
    participation = agent / "protocol" / "participation.py"
    participation.write_text(participation.read_text() + "\n")
    edited = measure_package(agent)
    assert edited != before
    lock = agent / LOCK_NAME
    lock.write_text(lock.read_text().replace("numpy==", "numpy==0", 1))
    assert measure_package(agent) not in (before, edited)


def test_the_lock_is_the_agents_own_and_current() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen-runtime-lock"), "--check"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    pinned = {
        line.split("==")[0].lower() for line in (REPO / "enclave_agent" / LOCK_NAME).read_text().splitlines()
    }
    assert {"web3", "cryptography", "numpy", "aiohttp"} <= pinned
    assert not {"scikit-learn", "eth-brownie", "playwright", "locust", "pytest"} & pinned
    assert manifest_entries()[-1][0] == LOCK_NAME


def test_a_package_without_its_lock_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "enclave_agent"
    package.mkdir()
    (package / "__init__.py").write_text("")
    with pytest.raises(ConfigError, match="dependency lock is missing"):
        measure_package(package)
