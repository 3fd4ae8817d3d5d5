"""A local Anvil node: ``with AnvilProcess() as node: ... node.url``.

Starts ``anvil`` on a free local port, waits until its JSON-RPC answers and stops
it on exit. The default mnemonic's accounts are unlocked and funded; the chain id
is 31337 unless ``--chain-id`` is passed in ``args``.

Gas: anvil 1.7 runs a post-Osaka hardfork by default but enforces the EIP-7825
per-transaction cap of 2**24 gas only with ``--enable-tx-gas-limit``
(``TX_GAS_CAP_ARGS``). The local consortium passes it, so a transaction that a
public network would refuse fails here too; ``TxSender`` never asks for more.
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

from enclave_agent.localnet.errors import AnvilError
from enclave_agent.localnet.processes import REPO_ROOT, ChildProcess

log = logging.getLogger(__name__)

TX_GAS_CAP_ARGS = ("--enable-tx-gas-limit",)


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
    ) -> None:
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
        binary = anvil_binary()
        # Another process may grab the free port between probe and bind: retry.
        for _ in range(self.attempts):
            self.port = free_port()
            self._child = ChildProcess(
                "anvil",
                [binary, "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                log=self.log_path,
            )
            self._child.start()
            try:
                self._wait_ready()
            except AnvilError as exc:
                last_error = f"{exc}; output: {self.output()[-2000:]}"
                self.stop()
                continue
            log.info("anvil listening on %s (pid %s)", self.url, self._child.pid)
            return
        raise AnvilError(f"anvil did not start: {last_error}")

    def _wait_ready(self) -> None:
        assert self._child is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self._child.running:
                raise AnvilError(f"anvil exited with code {self._child.returncode}")
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
        self.rpc("anvil_mine", hex(blocks))

    def increase_time(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block at the new time."""
        self.rpc("evm_increaseTime", seconds)
        self.mine()

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop(timeout=5)
