"""Provider agent processes of the local consortium: their TOML config, the
``enclave-agent run`` process, its log, and (simulated mode only) a look at its
sealed state from outside.

``AgentProcess.unseal`` opens what the agent sealed, reading the simulated
platform secret from the agent's state directory. That works only because the
simulated TEE offers no isolation: its documented assumption is that operators do
not do this, which real hardware enforces. It exists so tests and the benchmark
can check results (e.g. that the fused shares add up); nothing in the protocol
relies on it.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account

from enclave_agent.store import Store
from enclave_agent.tee.simulated import SimulatedTee
from enclave_devnet.anvil import DEV_MNEMONIC
from enclave_devnet.processes import ChildProcess, python_child

log = logging.getLogger(__name__)


# An input is a list of numbers (written into the config) or a .npy/.csv file.
InputValue = Sequence[float] | np.ndarray | Path


@cache
def dev_key(index: int) -> str:
    """Private key (hex) of Anvil's default-mnemonic account ``index``."""
    Account.enable_unaudited_hdwallet_features()
    key: str = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()
    return key


def _toml_string(value: str | Path) -> str:
    # A JSON string literal is a valid TOML basic string (same escapes).
    return json.dumps(str(value))


def write_agent_config(
    path: Path,
    *,
    name: str,
    state_dir: Path,
    manifest: Path,
    operator_key_file: Path,
    attestation_url: str,
    role: str = "provider",
    inputs: Mapping[str, InputValue] | None = None,
    poll_interval: float = 0.2,
    extra: str = "",
    rpc_url: str | None = None,
    confirmations: int = 0,
) -> Path:
    """Write one agent's TOML config (see ``enclave_agent.config``); ``extra`` is raw
    TOML appended verbatim (e.g. a ``[data]`` or ``[gateway]`` table); ``rpc_url``
    overrides the manifest's endpoint."""
    lines = [
        "[agent]",
        f"name = {_toml_string(name)}",
        f"role = {_toml_string(role)}",
        f"state_dir = {_toml_string(state_dir)}",
        "[chain]",
        f"manifest = {_toml_string(manifest)}",
        f"poll_interval = {float(poll_interval)!r}",
        f"confirmations = {int(confirmations)}",
        *([f"rpc_url = {_toml_string(rpc_url)}"] if rpc_url else []),
        "[operator]",
        f"key_file = {_toml_string(operator_key_file)}",
        "[attestation]",
        f"service_url = {_toml_string(attestation_url)}",
    ]
    for tag, value in (inputs or {}).items():
        lines.append(f"[inputs.{_toml_string(tag)}]")
        if isinstance(value, Path):
            lines.append(f"file = {_toml_string(value)}")
        else:
            lines.append("values = [" + ", ".join(repr(float(v)) for v in value) + "]")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@dataclass
class AgentProcess:
    """One agent process (``enclave-agent run``, or ``gateway`` for the gateway role)
    with its config, state directory and log."""

    name: str
    config: Path
    state_dir: Path
    log: Path
    command: str = "run"  # `enclave-agent run` (providers) or `gateway`
    _child: ChildProcess | None = field(default=None, init=False, repr=False)
    _tee: SimulatedTee | None = field(default=None, init=False, repr=False)
    _address: str | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def returncode(self) -> int | None:
        """Exit code of the last run (negative: killed by that signal); None while running."""
        return None if self._child is None else self._child.returncode

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    def start(self) -> None:
        """Start (or restart) the agent; it resumes from its persisted state."""
        self._child = python_child(
            f"agent {self.name}", "enclave_agent.cli", self.command, "--config", self.config, log=self.log
        )
        self._child.start()
        log.info("started agent %s (pid %s)", self.name, self._child.pid)

    def terminate(self) -> None:
        """Ask the agent to stop (SIGTERM) without waiting; ``stop`` waits."""
        if self._child is not None:
            self._child.signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL after ``timeout``; returns the exit code."""
        return None if self._child is None else self._child.stop(timeout)

    def kill9(self) -> None:
        """``kill -9`` the agent (a crash: nothing is flushed or closed)."""
        assert self._child is not None, f"agent {self.name} was never started"
        self._child.kill()
        log.info("killed agent %s with SIGKILL", self.name)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def status(self) -> dict[str, Any] | None:
        """The status the agent persists after every step (None before its first)."""
        db = self.state_dir / "agent.sqlite3"
        if not db.exists():
            return None
        with Store(db) as store:
            status: dict[str, Any] | None = store.get_json("status")
        return status

    # -- simulated mode only: inspection from outside the "enclave" ----------------

    def _simulated_tee(self) -> SimulatedTee:
        if self._tee is None:
            self._tee = SimulatedTee(self.state_dir)
        return self._tee

    def unseal(self, key: str) -> bytes | None:
        """Simulated mode only: open this agent's sealed state entry ``key`` from
        outside (see the module docstring); None if the agent has not stored it."""
        db = self.state_dir / "agent.sqlite3"
        if not db.exists():
            return None
        with Store(db) as store:
            blob = store.get_blob(key)
        return None if blob is None else self._simulated_tee().unseal(key, blob)

    def blob(self, key: str) -> bytes | None:
        """This agent's public (unsealed) state entry ``key``, or None."""
        db = self.state_dir / "agent.sqlite3"
        if not db.exists():
            return None
        with Store(db) as store:
            return store.get_blob(key)

    def fused(self, round_id: int) -> np.ndarray | None:
        """Simulated mode only: this agent's fused share of ``round_id``."""
        raw = self.unseal(f"round/{round_id}/fused")
        return None if raw is None else np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def enclave_address(self) -> str:
        """The enclave account's address (simulated mode: read from the sealed keys;
        creates them if the agent has not run yet, which it then adopts)."""
        if self._address is None:
            self._address = self._simulated_tee().load_or_create_keys().address
        return self._address
