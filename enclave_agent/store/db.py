"""The agent's durable state: one SQLite file per agent.

Holds the event checkpoint, the ids of processed events, sealed blobs (already
ciphertexts when they arrive here), JSON documents for round and request state, and
the transactions the agent sent. WAL mode lets ``enclave-agent status`` read while
the agent writes.

Durability: a commit survives the agent's crash at once (``synchronous=NORMAL``), and
a power loss once ``sync()`` has flushed the write-ahead log, which the sender does
before every transaction leaves the agent. So whatever the agent stored before it
posted (its sealed shares, the round's state) is on disk by then: a restarted agent
re-posts the same ciphertexts, never new ones. A power loss can take back only what
was committed after the last transaction sent, all of which the agent redoes from the
chain (the events of those blocks are read again). ``synchronous=FULL`` flushed every
commit instead: each block with an event of ours, for every agent.

One connection per ``Store``, shared by the threads of one process under a
re-entrant lock. ``transaction()`` is ``BEGIN IMMEDIATE ... COMMIT``; a nested
``transaction()`` (or any write method) on the same thread joins the open one
through a savepoint, so an exception rolls back exactly the block it left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from enclave_agent.errors import EnclaveAgentError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Index i holds the statements that take a store from version i to i + 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE checkpoints (name TEXT PRIMARY KEY, block INTEGER NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE processed_events (event_id TEXT PRIMARY KEY, processed_at REAL NOT NULL)",
        "CREATE TABLE blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE docs (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE txs (id INTEGER PRIMARY KEY AUTOINCREMENT, tx_hash TEXT NOT NULL UNIQUE,"
        " label TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL)",
        "CREATE INDEX txs_label ON txs (label)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


class StoreError(EnclaveAgentError):
    """The state file cannot be opened, is corrupt or was written by a newer agent."""


class Store:
    """Durable agent state over one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0  # nesting depth of transaction(); only touched under _lock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"state store {self.path} cannot be opened: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"state store {self.path} cannot be opened: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        with self.transaction():
            self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"state store {self.path} has schema version {current}, newer than {SCHEMA_VERSION} "
                    "which this agent understands; run the newer agent or restore a matching backup"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    self._conn.execute(statement)
            if current != SCHEMA_VERSION:
                self._conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                log.info("state store %s at schema version %d (was %d)", self.path, SCHEMA_VERSION, current)

    def check_integrity(self) -> None:
        """StoreError unless SQLite finds the file sound (``PRAGMA quick_check``)."""
        rows = self._query("PRAGMA quick_check")
        problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
        if problems:
            raise StoreError(f"state store {self.path} is damaged ({problems[0]}): restore a backup")

    def is_empty(self) -> bool:
        """Whether nothing was ever recorded (a new, lost or emptied store)."""
        return not self._query("SELECT 1 FROM processed_events LIMIT 1") and not self._query(
            "SELECT 1 FROM docs LIMIT 1"
        )

    def backup(self, out: Path) -> None:
        """A consistent snapshot into ``out`` (a new file, mode 0600) through SQLite's
        backup API, while the agent may keep writing. Blobs stay sealed."""
        out = Path(out)
        if out.exists():
            raise StoreError(f"backup target {out} exists already: choose a new file")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        target = sqlite3.connect(str(out))
        try:
            with self._lock:
                self._conn.backup(target)
        except sqlite3.Error as exc:
            raise StoreError(f"backup of {self.path} to {out} failed: {exc}") from exc
        finally:
            target.close()

    def sync(self) -> None:
        """Make every committed transaction survive a power loss: one flush of the
        write-ahead log (what a checkpoint moved into the database file was flushed by
        that checkpoint already)."""
        with self._lock:
            try:
                fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            except FileNotFoundError:
                return  # no log: everything is in the database file
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit. Holds the store's lock, so other threads wait; calls on
        the same thread inside it join it (savepoint) instead of committing early."""
        with self._lock:
            depth = self._depth
            savepoint = f"sp{depth}"
            self._execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth = depth + 1
            try:
                yield
            except BaseException:
                self._depth = depth
                # SQLite may have rolled back by itself already (e.g. disk full).
                if self._conn.in_transaction:
                    if depth == 0:
                        self._conn.execute("ROLLBACK")
                    else:
                        self._conn.execute(f"ROLLBACK TO {savepoint}")
                        self._conn.execute(f"RELEASE {savepoint}")
                raise
            self._depth = depth
            try:
                self._execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
            except StoreError:
                if depth == 0 and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """One statement; SQLite failures become StoreError naming the file."""
        try:
            return self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            hint = " (another process holds the write lock)" if "locked" in str(exc) else ""
            raise StoreError(f"state store {self.path}: {exc}{hint}") from exc

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._execute(sql, params).fetchall()
        return rows

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one write (joining an open transaction); returns the changed row count."""
        with self.transaction():
            return self._execute(sql, params).rowcount

    # ------------------------------------------------------------------ checkpoints

    def get_checkpoint(self, name: str) -> int | None:
        rows = self._query("SELECT block FROM checkpoints WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def set_checkpoint(self, name: str, block: int) -> None:
        self._write(
            "INSERT INTO checkpoints (name, block, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET block = excluded.block, updated_at = excluded.updated_at",
            (name, int(block), time.time()),
        )

    # ------------------------------------------------------------------ processed events

    def mark_processed(self, event_id: str) -> bool:
        """Record ``event_id``; True the first time, False if it was already recorded."""
        changed = self._write(
            "INSERT OR IGNORE INTO processed_events (event_id, processed_at) VALUES (?, ?)",
            (event_id, time.time()),
        )
        return changed == 1

    def is_processed(self, event_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)))

    # ------------------------------------------------------------------ sealed blobs

    def put_blob(self, key: str, value: bytes) -> None:
        self._write(
            "INSERT INTO blobs (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, bytes(value), time.time()),
        )

    def get_blob(self, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM blobs WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def delete_blob(self, key: str) -> None:
        self._write("DELETE FROM blobs WHERE key = ?", (key,))

    def blob_keys(self, prefix: str = "") -> list[str]:
        rows = self._query(
            "SELECT key FROM blobs WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------------ JSON documents

    def put_json(self, key: str, obj: Any) -> None:
        """Store a JSON-serialisable document (a TypeError names what is not)."""
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
        self._write(
            "INSERT INTO docs (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, text, time.time()),
        )

    def get_json(self, key: str) -> Any | None:
        rows = self._query("SELECT value FROM docs WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            return json.loads(rows[0][0])
        except ValueError:
            raise StoreError(
                f"state store {self.path}: document {key!r} is not valid JSON (the file was edited or "
                "damaged): restore a backup (enclave-agent restore)"
            ) from None

    def delete_json(self, key: str) -> None:
        self._write("DELETE FROM docs WHERE key = ?", (key,))

    def keys(self, prefix: str = "") -> list[str]:
        """Keys of the JSON documents starting with ``prefix``, sorted."""
        rows = self._query(
            "SELECT key FROM docs WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------------ transactions sent

    def record_tx(self, label: str, tx_hash: str, status: str) -> None:
        """Insert or update a sent transaction's status (keyed by its hash)."""
        now = time.time()
        self._write(
            "INSERT INTO txs (tx_hash, label, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tx_hash) DO UPDATE SET label = excluded.label, status = excluded.status,"
            " updated_at = excluded.updated_at",
            (tx_hash, label, status, now, now),
        )

    def txs(self, label_prefix: str = "") -> list[dict[str, Any]]:
        """Recorded transactions whose label starts with ``label_prefix``, oldest first."""
        rows = self._query(
            "SELECT label, tx_hash, status, created_at, updated_at FROM txs"
            " WHERE substr(label, 1, ?) = ? ORDER BY id",
            (len(label_prefix), label_prefix),
        )
        return [
            {"label": r[0], "tx_hash": r[1], "status": r[2], "created_at": r[3], "updated_at": r[4]}
            for r in rows
        ]


def set_aside(path: Path) -> Path:
    """Move a state file (and its WAL and shared-memory files) aside as
    ``<name>.reset-<UTC time>``, never deleting anything; returns the new path."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no agent state at {path}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.reset-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    return target


def restore(backup: Path, path: Path) -> Path | None:
    """Replace the state at ``path`` with ``backup`` (checked first: a sound store of a
    schema this agent reads); the current state, if any, is set aside. Returns where."""
    backup = Path(backup)
    if not backup.is_file():
        raise StoreError(f"no backup at {backup}")
    with Store(backup) as candidate:
        candidate.check_integrity()
        if candidate.is_empty():
            raise StoreError(f"backup {backup} holds no agent state")
    kept = set_aside(path) if Path(path).exists() else None
    tmp = Path(path).with_name(f".{Path(path).name}.restoring")
    shutil.copyfile(backup, tmp)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return kept
