"""Child processes of the local consortium, each in its own session and process group.

Why a group of its own: Ctrl-C in a terminal signals the whole foreground process
group. Children sharing it would die at the same moment as the parent, anvil under
agents that are still stopping; in their own group only the parent gets the signal
and stops them in order.

Cleanup does not depend on the caller reaching ``stop()``:

- every running child is registered and an ``atexit`` hook ends whatever is left
  (normal exit, an uncaught exception, KeyboardInterrupt);
- ``exit_on_termination()`` turns SIGTERM and SIGHUP into ``SystemExit`` so that
  ``finally`` blocks and context managers run (the default action would not);
- on Linux, children started from the main thread get ``PR_SET_PDEATHSIG(SIGTERM)``:
  the kernel stops them even when the parent is killed with SIGKILL. (The signal
  follows the thread that started the child, hence main thread only.)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from enclave_devnet.errors import LocalnetError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]  # holds enclave_devnet/ and node_modules/
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_LIVE: set[ChildProcess] = set()


class ChildProcess:
    """One child process in its own process group, its output in a log file.

    ``log`` is the file stdout and stderr are appended to; without one, a temporary
    file (gone after ``stop``) keeps the output for ``output()``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        log: Path | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp_log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ChildProcess({self.name!r}, pid={self.pid}, running={self.running})"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal); None while running or never started."""
        return None if self._proc is None else self._proc.poll()

    def start(self) -> None:
        if self.running:
            raise LocalnetError(f"{self.name} is already running (pid {self.pid})")
        handle: IO[bytes]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.log_path.open("ab")
        else:
            if self._tmp_log is None:
                self._tmp_log = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
            handle = self._tmp_log
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),  # only prctl: see the module docstring
            )
        finally:
            if handle is not self._tmp_log:
                handle.close()
        _LIVE.add(self)
        log.debug("started %s pid=%d", self.name, self._proc.pid)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's process group, if the child still runs."""
        # poll() reaps an exited child; an unreaped pid cannot be reused, so this is safe.
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit; ``subprocess.TimeoutExpired`` after ``timeout``."""
        if self._proc is None:
            raise LocalnetError(f"{self.name} was never started")
        return self._proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the group, then SIGKILL after ``timeout`` seconds. Returns the
        exit code (None if never started). Idempotent."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs after SIGTERM: killing it", self.name, timeout)
                self.kill()
        self._forget()
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL to the group (``kill -9``), then reap. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        self.signal(signal.SIGKILL)
        proc.wait(10)
        _LIVE.discard(self)
        return proc.returncode

    def output(self) -> str:
        """What the child printed so far (for messages and inspection)."""
        if self.log_path is not None:
            return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        if self._tmp_log is None:
            return ""
        # pread leaves the offset the child appends at untouched.
        fd = self._tmp_log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def _forget(self) -> None:
        _LIVE.discard(self)
        if self._tmp_log is not None:
            self._tmp_log.close()
            self._tmp_log = None


def python_child(name: str, module: str, *args: str | Path, log: Path | None = None) -> ChildProcess:
    """``python -m module args`` with this interpreter, importing the very
    ``enclave_agent`` package this process imported (it is first on PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
    return ChildProcess(name, [sys.executable, "-m", module, *args], log=log, cwd=REPO_ROOT, env=env)


def running_children() -> list[ChildProcess]:
    """Children started here and not stopped yet (for diagnostics)."""
    return [c for c in _LIVE if c.running]


def stop_all(timeout: float = 5.0) -> None:
    """Stop every child still registered: SIGTERM to all at once, SIGKILL after ``timeout``."""
    children = list(_LIVE)
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        child.stop(timeout=max(0.1, deadline - time.monotonic()))


atexit.register(stop_all)


@contextlib.contextmanager
def exit_on_termination() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise ``SystemExit(128 + signum)`` in the main
    thread, so cleanup code runs. Only replaces handlers still at their default, so an
    application's own handling wins; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        for other in previous:
            signal.signal(other, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        log.info("signal %d: stopping the local consortium", signum)
        raise SystemExit(128 + signum)

    for wanted in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(wanted) == signal.SIG_DFL:
            previous[wanted] = signal.signal(wanted, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when this thread dies."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    signum = int(signal.SIGTERM)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook
