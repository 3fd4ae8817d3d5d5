"""Private state files: created owner-only and atomically, never overwritten."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from enclave_agent.errors import ConfigError

log = logging.getLogger(__name__)

INSECURE_KEYS_ENV = "ENCLAVE_INSECURE_KEY_FILES"  # "warn": load a key file others can read, loudly


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


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` owner-only (mode 0600), replacing any older file
    atomically (a file left by an earlier run may have been readable by others)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_owner_only(path: Path, what: str) -> None:
    """Refuse a key file others can read (``chmod 600`` it), or only warn about it
    when ``ENCLAVE_INSECURE_KEY_FILES=warn`` is set. ConfigError if it cannot be read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what} file {path} cannot be read: {exc.strerror}") from exc
    if not mode & 0o077:
        return
    problem = f"{what} file {path} is readable by group or others (mode {stat.S_IMODE(mode):04o})"
    if os.environ.get(INSECURE_KEYS_ENV) != "warn":
        raise ConfigError(f"{problem}: chmod 600 {path} (or set {INSECURE_KEYS_ENV}=warn)")
    log.warning("%s: loading it anyway because %s=warn", problem, INSECURE_KEYS_ENV)
