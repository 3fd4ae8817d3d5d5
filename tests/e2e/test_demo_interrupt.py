"""`enclave-devnet demo` stops every process it started when interrupted (Ctrl-C)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_during_the_demo_leaves_nothing_running(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "enclave_devnet.cli", "demo", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    assert demo.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in demo.stdout:  # wait until anvil, the service and the agents run
        seen.append(line)
        if "attestation and key synchronisation" in line or time.monotonic() > deadline:
            break
    time.sleep(2)
    children = _descendants(demo.pid)
    assert len(children) >= 5, "".join(seen)  # anvil, the service, 3 providers, the gateway
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130
    assert "every process the demo started has been stopped" in output
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [p.cmdline() for p in alive]
