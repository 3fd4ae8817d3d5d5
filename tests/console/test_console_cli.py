"""``enclave-console``: refusals are one line and exit 2; --help shows the defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enclave_console", *args], capture_output=True, text=True, timeout=60
    )


def test_help_shows_every_default() -> None:
    out = _run("--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for default in ("(default: 127.0.0.1)", "(default: 8600)", "(default: 0.5)", "(default: None)"):
        assert default in text, default


def test_an_unreadable_manifest_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = _run("--manifest", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    path = tmp_path / "nope.json"
    assert missing.stderr.strip().splitlines() == [
        f"enclave-console: deployment manifest {path} cannot be read: No such file or directory"
    ]
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    out = _run("--manifest", str(garbage))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "is not JSON" in out.stderr


def test_bad_port_or_poll_is_refused(tmp_path: Path) -> None:
    for args in (("--port", "70000"), ("--poll", "0"), ("--poll", "1e9")):
        out = _run("--manifest", str(tmp_path / "m.json"), *args)
        assert out.returncode == 2, args
        assert out.stderr.strip() == "enclave-console: --port must be 0..65535 and --poll 0.05..60 seconds"
