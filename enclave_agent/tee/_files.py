"""Private state files: created owner-only and atomically, never overwritten."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) if it does not exist; an existing one is left as is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_new_private_file(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (mode 0600) unless it already exists.

    Returns False when another writer got there first, so concurrent starts agree
    on one file instead of each overwriting the other's secret.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic and fails if path exists, unlike rename
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
