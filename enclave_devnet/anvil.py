"""A local chain node: ``with AnvilProcess() as node: ... node.url``.

Starts a node on a free local port, waits until its JSON-RPC answers and stops it on
exit: Anvil by default, or Ganache 7 or Hardhat's node (``engine``, or the
``ENCLAVE_CHAIN`` environment variable for the whole local consortium), all from the
project's npm packages. The default test mnemonic's accounts are unlocked and funded
on each; chain ids are 31337 (Anvil, Hardhat) and 1337 (Ganache). The contracts are
compiled for the newest fork all three run (shanghai). Only the ``evm_*`` methods
all three answer are used (``mine``, ``increase_time``).

Gas: anvil 1.7 runs a post-Osaka hardfork by default but enforces the EIP-7825
per-transaction cap of 2**24 gas only with ``--enable-tx-gas-limit``
(``TX_GAS_CAP_ARGS``). The local consortium passes it, so a transaction that a
public network would refuse fails here too; ``TxSender`` never asks for more.

History: by default anvil writes the state of every past block to
``~/.foundry/anvil/tmp/`` and never removes it (about 600 MB a minute under a load run;
it filled a 72 GB disk). ``HISTORY_ARGS`` keeps the last 128 states in memory and none
on disk, as a geth full node serves them, so the agents are also shown to need no
archive node.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from enclave_devnet.errors import AnvilError
from enclave_devnet.processes import REPO_ROOT, ChildProcess

log = logging.getLogger(__name__)

TX_GAS_CAP_ARGS = ("--enable-tx-gas-limit",)
HISTORY_ARGS = ("--prune-history", "128")
ENGINES = ("anvil", "ganache", "hardhat")
ENGINE_ENV = "ENCLAVE_CHAIN"
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def chain_engine() -> str:
    """The engine the local consortium runs on: ``$ENCLAVE_CHAIN`` or anvil."""
    engine = os.environ.get(ENGINE_ENV, "anvil") or "anvil"
    if engine not in ENGINES:
        raise AnvilError(f"{ENGINE_ENV} must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def _npm_binary(name: str) -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / name
    if not local.exists():
        raise AnvilError(f"{name} not found in node_modules: run `make setup`")
    return str(local)


def anvil_binary() -> str:
    """$ANVIL_BIN, else the project's node_modules copy, else anvil on PATH."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        return env
    local = REPO_ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if not found:
        raise AnvilError("anvil not found: run `make setup` or set ANVIL_BIN")
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AnvilProcess:
    """Context manager around one anvil process.

    ``args`` are extra anvil arguments (e.g. ``["--block-time", "1"]``); do not pass
    ``--port``. ``.url`` is the HTTP endpoint, ``.rpc(method, *params)`` a raw call.
    ``log_path`` keeps anvil's output in a file (default: a temporary one).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        startup_timeout: float = 20.0,
        attempts: int = 3,
        log_path: Path | None = None,
        engine: str = "anvil",
        accounts: int = 10,
    ) -> None:
        if engine not in ENGINES:
            raise AnvilError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self.accounts = accounts
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.log_path = log_path
        self.port = 0
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        if self._child is None:
            raise AnvilError("anvil is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    def __enter__(self) -> AnvilProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        last_error = "not started"
        # Another process may grab the free port between probe and bind: retry.
        for _ in range(self.attempts):
            self.port = free_port()
            self._child = ChildProcess(self.engine, self._command(), log=self.log_path, cwd=REPO_ROOT)
            self._child.start()
            try:
                self._wait_ready()
            except AnvilError as exc:
                last_error = f"{exc}; output: {self.output()[-2000:]}"
                self.stop()
                continue
            log.info("%s listening on %s (pid %s)", self.engine, self.url, self._child.pid)
            return
        raise AnvilError(f"{self.engine} did not start: {last_error}")

    def _command(self) -> list[str]:
        port = str(self.port)
        if self.engine == "ganache":
            return [
                _npm_binary("ganache"),
                *("--server.host", "127.0.0.1", "--server.port", port, "--logging.quiet"),
                *("--wallet.mnemonic", DEV_MNEMONIC, "--wallet.totalAccounts", str(self.accounts)),
                *("--miner.blockGasLimit", "100000000", "--chain.hardfork", "shanghai"),
                # One request at a time: concurrent senders otherwise race its nonce bookkeeping.
                *("--chain.asyncRequestProcessing", "false"),
                *self.args,
            ]
        if self.engine == "hardhat":  # accounts and gas limit: hardhat.config.js at the repo root
            return [_npm_binary("hardhat"), "node", "--hostname", "127.0.0.1", "--port", port, *self.args]
        return [
            anvil_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--accounts",
            str(self.accounts),
            *HISTORY_ARGS,
            *self.args,
        ]

    def _wait_ready(self) -> None:
        assert self._child is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self._child.running:
                raise AnvilError(f"{self.engine} exited with code {self._child.returncode}")
            try:
                self.rpc("eth_chainId")
                return
            except (OSError, AnvilError):
                time.sleep(0.05)
        raise AnvilError(f"no RPC answer on port {self.port} within {self.startup_timeout}s")

    def output(self) -> str:
        """What anvil printed so far (for failure messages)."""
        return "" if self._child is None else self._child.output()

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (e.g. ``evm_mine``, ``evm_setAutomine``)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            reply = json.loads(response.read())
        if "error" in reply:
            raise AnvilError(f"{method}: {reply['error']}")
        return reply.get("result")

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def increase_time(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block at the new time."""
        self.rpc("evm_increaseTime", seconds)
        self.mine()

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop(timeout=5)
