"""A real Anvil node for tests: ``with AnvilProcess() as node: ... node.url``.

Starts ``anvil`` on a free local port, waits until its JSON-RPC answers and kills
it on exit. The default mnemonic's accounts are unlocked and funded; the chain id
is 31337 unless ``--chain-id`` is passed in ``args``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


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
        raise RuntimeError("anvil not found: run `make setup` or set ANVIL_BIN")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AnvilError(RuntimeError):
    """Anvil did not start or an RPC call to it failed."""


class AnvilProcess:
    """Context manager around one anvil process.

    ``args`` are extra anvil arguments (e.g. ``["--block-time", "1"]``); do not pass
    ``--port``. ``.url`` is the HTTP endpoint, ``.rpc(method, *params)`` a raw call.
    """

    def __init__(self, args: Sequence[str] = (), *, startup_timeout: float = 20.0, attempts: int = 3) -> None:
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        if self._proc is None:
            raise AnvilError("anvil is not running")
        return f"http://127.0.0.1:{self.port}"

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
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the node
            self._proc = subprocess.Popen(
                [anvil_binary(), "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                self._wait_ready()
                return
            except AnvilError as exc:
                last_error = f"{exc}; output: {self.output()[-2000:]}"
                self.stop()
        raise AnvilError(f"anvil did not start: {last_error}")

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AnvilError(f"anvil exited with code {self._proc.returncode}")
            try:
                self.rpc("eth_chainId")
                return
            except (OSError, AnvilError):
                time.sleep(0.05)
        raise AnvilError(f"no RPC answer on port {self.port} within {self.startup_timeout}s")

    def output(self) -> str:
        """What anvil printed so far (for failure messages)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        text: str = self._log.read().decode(errors="replace")
        return text

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (e.g. ``evm_mine``, ``evm_setAutomine``)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise AnvilError(f"{method}: {reply['error']}")
        return reply.get("result")

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __del__(self) -> None:
        # Last resort so a crashed test session does not leak a node.
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
