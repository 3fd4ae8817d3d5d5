"""The set-up steps `make` runs stop with one clear line naming the step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_failing_step_prints_one_line_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(REPO / "tools" / "step"),
            "npm-ci",
            "sh",
            "-c",
            "echo noise; echo 'npm ERR! network down' >&2; exit 7",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "setup failed at step 'npm-ci': npm ERR! network down" in result.stderr
    assert (tmp_path / ".stamps" / "npm-ci.log").read_text().startswith("noise")


def test_a_passing_step_is_silent(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / "tools" / "step"), "ok", "true"], capture_output=True, text=True, cwd=tmp_path
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_missing_node_is_named(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "bash", "env"):
        # This interpreter for python3: a `python3` on PATH may be a pyenv shim needing pyenv.
        found = sys.executable if tool == "python3" else shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        [str(REPO / "tools" / "check-tools"), "3.11"],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root")},
    )
    assert result.returncode == 1
    assert result.stdout.strip() == "node not found: install Node.js >= 20"


def test_too_old_python_is_named() -> None:
    result = subprocess.run([str(REPO / "tools" / "check-tools"), "99.0"], capture_output=True, text=True)
    assert result.returncode == 1 and "need >= 99.0" in result.stdout


def test_port_check_names_a_busy_port() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        busy = subprocess.run(
            [str(REPO / "tools" / "port-free"), str(port), "why"], capture_output=True, text=True
        )
        assert busy.returncode == 1 and f"port {port} is in use: why" in busy.stderr
    free = subprocess.run(
        [str(REPO / "tools" / "port-free"), str(port), "why"], capture_output=True, text=True
    )
    assert free.returncode == 0 and free.stderr == ""


def _vendor_tree(tmp_path: Path, content: bytes, pin: str) -> Path:
    """A copy of tools/vendor-web in a tree with one npm file and its pin."""
    (tmp_path / "tools").mkdir(parents=True)
    shutil.copy(REPO / "tools" / "vendor-web", tmp_path / "tools" / "vendor-web")
    web = tmp_path / "enclave_agent" / "gateway" / "web"
    web.mkdir(parents=True)
    (tmp_path / "node_modules" / "lib").mkdir(parents=True)
    (tmp_path / "node_modules" / "lib" / "lib.js").write_bytes(content)
    pins = {"files": {"lib.js": {"from": "node_modules/lib/lib.js", "sha256": pin}}}
    (web / "vendor.json").write_text(json.dumps(pins))
    return web


def test_vendor_web_copies_only_what_matches_its_pin(tmp_path: Path) -> None:
    good = hashlib.sha256(b"chart();").hexdigest()
    web = _vendor_tree(tmp_path / "ok", b"chart();", good)
    result = subprocess.run(
        [sys.executable, str(web.parents[2] / "tools" / "vendor-web")], capture_output=True, text=True
    )
    assert result.returncode == 0 and (web / "vendor" / "lib.js").read_bytes() == b"chart();"
    web = _vendor_tree(tmp_path / "bad", b"evil();", good)
    result = subprocess.run(
        [sys.executable, str(web.parents[2] / "tools" / "vendor-web")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "vendor.json pins" in result.stderr and "not copied" in result.stderr
    assert not (web / "vendor" / "lib.js").exists()
