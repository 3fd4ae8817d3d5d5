"""Code measurement: SHA-256 over a canonical manifest of the agent's code.

What is measured (``manifest_entries``; ``enclave-agent measure --list`` prints it):

- every ``*.py`` file of the ``enclave_agent`` package, ``py.typed``,
  ``gateway/openapi.json`` and the files directly in ``gateway/web/`` (the wallet page:
  the attested gateway serves it and its script seals clients' requests, so it is part
  of the gateway's code identity on purpose), in sorted relative POSIX paths;
- then ``runtime.lock``: the pinned runtime dependencies of the agent alone
  (``tools/gen-runtime-lock``; no demo, test or tooling packages).

These are exactly the files the built wheel installs, so a checkout and an installed
wheel measure the same; anything else in a checkout (bytecode caches, editor files)
is not code identity. Each entry is ``path NUL length NUL bytes`` so that no two
different trees share a manifest. A package without its ``runtime.lock`` is refused,
never measured without it.

``gateway/web/vendor/`` is not measured: ``make setup`` copies the wallet page's
third-party browser code there from ``node_modules`` (git-ignored). That code is still
bound to the measurement: ``gateway/web/vendor.json`` (measured) pins the SHA-256 of
every file the gateway may serve from that folder, and it serves none whose bytes
differ (``enclave_agent.gateway.vendor``).

The development consortium (``enclave_devnet``: local chain, demo, demo data), the
client, the consortium page, tests and tools are other packages: editing them leaves
the measurement alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from enclave_agent.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
LOCK_NAME = "runtime.lock"
MEASURED_FILES = ("py.typed", "gateway/openapi.json")
MEASURED_DIRS = ("gateway/web",)  # the files directly inside; not vendor/ below it


def is_measured(relative: PurePosixPath) -> bool:
    """Whether a file at ``relative`` (to the package) is part of the code identity."""
    if "__pycache__" in relative.parts or relative.as_posix() == LOCK_NAME:
        return False
    if relative.suffix == ".py":
        return True
    return relative.as_posix() in MEASURED_FILES or relative.parent.as_posix() in MEASURED_DIRS


def manifest_entries(
    package_dir: Path = PACKAGE_DIR, lock_file: Path | None = None
) -> list[tuple[str, Path]]:
    """The (canonical name, file) pairs that a measurement covers, in order."""
    lock = lock_file if lock_file is not None else package_dir / LOCK_NAME
    if not lock.is_file():
        raise ConfigError(f"{lock}: the agent's dependency lock is missing; cannot measure {package_dir}")
    entries = sorted(
        (f"{package_dir.name}/{relative.as_posix()}", path)
        for path in package_dir.rglob("*")
        if path.is_file() and is_measured(relative := PurePosixPath(path.relative_to(package_dir).as_posix()))
    )
    entries.append((LOCK_NAME, lock))
    return entries


def measure_package(package_dir: Path = PACKAGE_DIR, lock_file: Path | None = None) -> bytes:
    """The 32-byte measurement of the agent code in ``package_dir`` plus its lock
    (``package_dir/runtime.lock`` unless ``lock_file`` is given)."""
    digest = hashlib.sha256(b"enclave-share/measurement/v2\0")
    for name, path in manifest_entries(package_dir, lock_file):
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.digest()
