"""The gateway process's exit code: an agent loop that dies of an unexpected error
must not leave the process exiting 0 as if it had been asked to stop (a supervisor
would then not restart it, and the operator would see a clean exit)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from enclave_agent.errors import EXIT_ERROR, EXIT_OK
from enclave_agent.gateway import http


class _Listener:
    port = 0

    def __init__(self) -> None:
        self.server = SimpleNamespace(close=lambda: None)

    async def close(self) -> None:
        return None


def _agent(run: Any) -> Any:
    config = SimpleNamespace(gateway=SimpleNamespace(host="127.0.0.1", port=0, shutdown_grace=0.1))
    return SimpleNamespace(config=config, run=run, metrics=SimpleNamespace(in_flight=0), draining=False)


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    async def listen(*_: Any) -> _Listener:
        return _Listener()

    monkeypatch.setattr(http, "listen", listen)
    monkeypatch.setattr(http, "build_app", lambda agent: None)


def test_an_agent_loop_that_crashes_makes_the_gateway_exit_1(caplog: pytest.LogCaptureFixture) -> None:
    def run(stop: threading.Event) -> int:
        raise RuntimeError("an error no handler turns into an exit code")

    assert http.serve(_agent(run)) == EXIT_ERROR
    assert "agent loop failed" in caplog.text


def test_an_agent_loop_that_returns_gives_its_code() -> None:
    assert http.serve(_agent(lambda stop: 4)) == 4
    assert http.serve(_agent(lambda stop: EXIT_OK)) == EXIT_OK
