"""Child processes of the local consortium stop, whatever way the parent ends:
stop(), SIGTERM, normal exit without stop(), and (Linux) SIGKILL of the parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from enclave_agent.config import load_config
from enclave_devnet import ChildProcess, exit_on_termination, wait_until, write_agent_config
from enclave_devnet.processes import REPO_ROOT

# A child that starts a grandchild, prints both pids and sleeps.
FAMILY = textwrap.dedent(
    """
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(__import__("os").getpid(), grandchild.pid, flush=True)
    time.sleep(60)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its reaper no longer runs.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def pids_from(child: ChildProcess) -> list[int]:
    line = wait_until(lambda: child.output().strip(), 20, "the child's pids", interval=0.05)
    return [int(p) for p in line.split()]


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    child = ChildProcess("family", [sys.executable, "-c", FAMILY])
    child.start()
    pid, grandchild = pids_from(child)
    assert os.getpgid(pid) == pid != os.getpgid(0), "the child leads a process group of its own"
    assert os.getpgid(grandchild) == pid
    assert child.stop(timeout=5) == -signal.SIGTERM
    wait_until(lambda: not alive(grandchild), 5, "the grandchild to end")
    assert child.stop() == -signal.SIGTERM  # idempotent
    assert not child.running


def test_kill_is_sigkill_and_output_lands_in_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = ChildProcess(
        "printer", [sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(60)"], log=log
    )
    child.start()
    wait_until(lambda: "hello" in child.output(), 20, "output")
    assert child.kill() == -signal.SIGKILL
    assert log.read_text() == "hello\n"


def run_parent(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    """A parent process that starts the family child, writes its pids to a file, then runs ``body``."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from enclave_devnet import ChildProcess, exit_on_termination, wait_until
        child = ChildProcess("family", [sys.executable, "-c", {FAMILY!r}])
        child.start()
        pids = wait_until(lambda: child.output().split(), 20, "pids", interval=0.05)
        Path({str(tmp_path / "pids.json")!r}).write_text(json.dumps([int(p) for p in pids]))
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, text=True, stderr=subprocess.PIPE)


def family_of(tmp_path: Path, parent: subprocess.Popen[str]) -> list[int]:
    path = tmp_path / "pids.json"
    wait_until(lambda: path.exists() or parent.poll() is not None, 30, "the parent to start its child")
    assert path.exists(), parent.stderr.read() if parent.stderr else ""
    pids: list[int] = json.loads(path.read_text())
    return pids


def test_sigterm_to_the_parent_runs_its_cleanup(tmp_path: Path) -> None:
    parent = run_parent(
        tmp_path,
        """
        with exit_on_termination():
            try:
                time.sleep(60)
            finally:
                child.stop(timeout=5)
        """,
    )
    pids = family_of(tmp_path, parent)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(20) == 128 + signal.SIGTERM
    for pid in pids:
        wait_until(lambda pid=pid: not alive(pid), 5, f"pid {pid} to end")


def test_children_left_running_are_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    parent = run_parent(tmp_path, "pass  # exits without stop()\n")
    pids = family_of(tmp_path, parent)
    assert parent.wait(20) == 0
    for pid in pids:
        wait_until(lambda pid=pid: not alive(pid), 5, f"pid {pid} to end")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    parent = run_parent(tmp_path, "time.sleep(60)\n")
    pid, grandchild = family_of(tmp_path, parent)
    parent.kill()
    parent.wait(10)
    wait_until(lambda: not alive(pid), 10, "the child to end with its parent")
    # The child's SIGTERM default action ends it alone; its own grandchild is
    # outside what the parent started and may outlive it: clean it up here.
    if alive(grandchild):
        os.kill(grandchild, signal.SIGKILL)


def test_exit_on_termination_keeps_an_application_handler() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    before = signal.signal(signal.SIGTERM, mine)
    # SIGHUP at its default, whatever this run inherited (under nohup it is ignored,
    # which exit_on_termination rightly leaves alone).
    hup_before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with exit_on_termination():
            assert signal.getsignal(signal.SIGTERM) is mine
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, mine)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGHUP, hup_before)


def test_exit_on_termination_leaves_an_ignored_hangup_ignored() -> None:
    """Started under nohup, a hangup must stay ignored."""
    hup_before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with exit_on_termination():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, hup_before)


def test_agent_config_is_accepted_by_the_agent(tmp_path: Path) -> None:
    vector = tmp_path / "v.npy"
    vector.write_bytes(b"")
    path = write_agent_config(
        tmp_path / "a b" / "agent.toml",
        name="bank-a",
        state_dir=tmp_path / 'state "x"',
        manifest=tmp_path / "manifest.json",
        operator_key_file=tmp_path / "op.key",
        attestation_url="http://127.0.0.1:9",
        inputs={"vec": [1.5, -2.0], "big": vector},
        poll_interval=0.3,
    )
    config = load_config(path)
    assert config.name == "bank-a" and config.role == "provider"
    assert config.state_dir == tmp_path / 'state "x"'
    assert config.poll_interval == 0.3
    assert config.inputs["vec"].values == (1.5, -2.0)
    assert config.inputs["big"].file == vector
    assert config.attestation_url == "http://127.0.0.1:9"
