"""The measured agent package never imports the development consortium (its tooling,
demo and demo data): the measurement covers the agent and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import enclave_agent

AGENT_DIR = Path(enclave_agent.__file__).parent
TOOLING = ("enclave_devnet", "enclave_console", "sklearn", "brownie", "playwright", "locust")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_agent_module_imports_tooling() -> None:
    offenders = {
        f"{path.relative_to(AGENT_DIR.parent)}: {name}"
        for path in AGENT_DIR.rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in TOOLING
    }
    assert not offenders, sorted(offenders)


def test_the_scan_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from enclave_devnet.processes import REPO_ROOT\n")
    assert "enclave_devnet.processes" in imported_modules(module)


def test_provider_code_does_not_import_the_gateway() -> None:
    """The layers below the gateway (protocol: what every provider runs; chain, crypto,
    store, model, tee) never import it."""
    offenders = {
        f"{path.relative_to(AGENT_DIR.parent)}: {name}"
        for layer in ("protocol", "chain", "crypto", "store", "model", "tee")
        for path in (AGENT_DIR / layer).rglob("*.py")
        for name in imported_modules(path)
        if name.startswith("enclave_agent.gateway")
    }
    assert not offenders, sorted(offenders)
