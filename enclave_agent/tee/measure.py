"""Code measurement: SHA-256 over a canonical manifest of the agent's code.

The manifest is every file of the ``enclave_agent`` package (sorted relative POSIX
paths; bytecode caches excluded) followed by the dependency lock. Each entry is
``path NUL length NUL bytes`` so that no two different trees share a manifest.

One folder is left out: ``gateway/web/vendor/``, where ``make setup`` copies the
wallet page's third-party browser code from ``node_modules`` (git-ignored, so a
tree measures the same before and after the copy). That code is still bound to the
measurement: ``gateway/web/vendor.json`` (measured) pins the SHA-256 of every file
the gateway may serve from that folder, and it serves none whose bytes differ
(``enclave_agent.gateway.vendor``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_LOCK = PACKAGE_DIR.parent / "requirements.lock"
_SKIPPED_PARTS = {"__pycache__"}
UNMEASURED_DIRS = ("gateway/web/vendor",)  # relative to the package; pinned by gateway/web/vendor.json
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _package_files(package_dir: Path) -> Iterator[tuple[str, Path]]:
    for path in package_dir.rglob("*"):
        if not path.is_file() or path.suffix in _SKIPPED_SUFFIXES:
            continue
        relative = path.relative_to(package_dir)
        if _SKIPPED_PARTS.intersection(relative.parts):
            continue
        if any(relative.as_posix().startswith(d + "/") for d in UNMEASURED_DIRS):
            continue
        yield f"{package_dir.name}/{relative.as_posix()}", path


def manifest_entries(
    package_dir: Path = PACKAGE_DIR, lock_file: Path = DEFAULT_LOCK
) -> list[tuple[str, Path]]:
    """The (canonical name, file) pairs that a measurement covers, in order."""
    entries = sorted(_package_files(package_dir))
    if lock_file.is_file():
        entries.append((lock_file.name, lock_file))
    return entries


def measure_package(package_dir: Path = PACKAGE_DIR, lock_file: Path = DEFAULT_LOCK) -> bytes:
    """The 32-byte measurement of the agent code in ``package_dir`` plus ``lock_file``."""
    digest = hashlib.sha256(b"enclave-share/measurement/v1\0")
    for name, path in manifest_entries(package_dir, lock_file):
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.digest()
