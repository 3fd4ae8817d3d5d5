"""The agent's SQLite store: persistence, atomicity, idempotence, threads, schema."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from enclave_agent.errors import EnclaveAgentError
from enclave_agent.store import SCHEMA_VERSION, Store, StoreError


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "agent.sqlite3"


def test_everything_persists_across_reopen(path: Path) -> None:
    with Store(path) as store:
        store.set_checkpoint("main", 42)
        assert store.mark_processed("0xabc:1")
        store.put_blob("keys/sealed", b"\x00\x01sealed\xff")
        store.put_json("round/7", {"status": "posting", "ids": [1, 2]})
        store.record_tx("post-7", "0x01", "pending")
        store.record_tx("post-7", "0x01", "mined")
    with Store(path) as store:
        assert store.get_checkpoint("main") == 42
        assert store.is_processed("0xabc:1")
        assert not store.mark_processed("0xabc:1")
        assert store.get_blob("keys/sealed") == b"\x00\x01sealed\xff"
        assert store.get_json("round/7") == {"status": "posting", "ids": [1, 2]}
        assert [(t["label"], t["tx_hash"], t["status"]) for t in store.txs()] == [("post-7", "0x01", "mined")]
        assert store.schema_version() == SCHEMA_VERSION


def test_missing_values_are_none(path: Path) -> None:
    with Store(path) as store:
        assert store.get_checkpoint("main") is None
        assert store.get_blob("nope") is None
        assert store.get_json("nope") is None
        assert not store.is_processed("0x00:0")
        assert store.keys("") == []


def test_checkpoint_overwrites(path: Path) -> None:
    with Store(path) as store:
        store.set_checkpoint("main", 5)
        store.set_checkpoint("main", 9)
        store.set_checkpoint("other", 1)
        assert (store.get_checkpoint("main"), store.get_checkpoint("other")) == (9, 1)


def test_wal_mode_is_on(path: Path) -> None:
    Store(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_commits_are_not_flushed_one_by_one_and_sync_flushes_the_log(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit survives the agent's crash (it is in the log); ``sync`` makes every one
    so far survive a power loss with one flush of the write-ahead log."""
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    with Store(path) as store:
        assert store._query("PRAGMA synchronous") == [(1,)]  # NORMAL: no flush per commit
        store.put_blob("round/7/kept", b"sealed share")
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > 0  # committed: in the log, which a crash keeps
        store.sync()
        assert flushed == [str(wal)]
        # Another process reading the file sees every commit (the log is shared).
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT value FROM blobs WHERE key = 'round/7/kept'").fetchone()[0] == (
                b"sealed share"
            )
        finally:
            other.close()


def test_exception_rolls_back_the_whole_transaction(path: Path) -> None:
    with Store(path) as store:
        store.put_json("kept", 1)
        with pytest.raises(RuntimeError), store.transaction():
            store.put_json("kept", 2)
            store.set_checkpoint("main", 10)
            store.mark_processed("0xdead:0")
            store.put_blob("b", b"x")
            raise RuntimeError("handler failed")
        assert store.get_json("kept") == 1
        assert store.get_checkpoint("main") is None
        assert store.mark_processed("0xdead:0")  # first time again: the mark was rolled back
        assert store.get_blob("b") is None
    with Store(path) as store:
        assert store.get_json("kept") == 1


def test_nested_transaction_joins_the_outer_one(path: Path) -> None:
    store = Store(path)
    observer = Store(path)  # a second connection sees only committed data
    try:
        with store.transaction():
            store.put_json("a", 1)  # a write method inside: must not commit early
            with store.transaction():
                store.put_json("b", 2)
            assert observer.get_json("a") is None
            assert observer.get_json("b") is None
        assert observer.get_json("a") == 1
        assert observer.get_json("b") == 2
    finally:
        store.close()
        observer.close()


def test_caught_inner_failure_rolls_back_only_the_inner_block(path: Path) -> None:
    with Store(path) as store:
        with store.transaction():
            store.put_json("outer", "yes")
            try:
                with store.transaction():
                    store.put_json("inner", "no")
                    raise ValueError("inner failed")
            except ValueError:
                pass
            store.put_json("after", "yes")
        assert store.get_json("outer") == "yes"
        assert store.get_json("inner") is None
        assert store.get_json("after") == "yes"


def test_mark_processed_is_idempotent(path: Path) -> None:
    with Store(path) as store:
        assert store.mark_processed("0xaa:0") is True
        assert store.mark_processed("0xaa:0") is False
        assert store.mark_processed("0xaa:1") is True
        with store.transaction():
            assert store.mark_processed("0xaa:0") is False
        assert store.is_processed("0xaa:0") and store.is_processed("0xaa:1")
        assert not store.is_processed("0xaa:2")


def test_blobs_round_trip_and_delete(path: Path) -> None:
    with Store(path) as store:
        value = bytes(range(256)) * 40
        store.put_blob("round/1/kept", value)
        store.put_blob("round/1/chunk/0", b"c0")
        store.put_blob("round/2/kept", b"other")
        assert store.get_blob("round/1/kept") == value
        assert store.blob_keys("round/1/") == ["round/1/chunk/0", "round/1/kept"]
        store.delete_blob("round/1/kept")
        store.delete_blob("never-there")
        assert store.get_blob("round/1/kept") is None
        store.put_blob("round/2/kept", b"replaced")
        assert store.get_blob("round/2/kept") == b"replaced"


def test_keys_match_the_prefix_literally(path: Path) -> None:
    with Store(path) as store:
        for key in ("round/1", "round/10", "round/1/posting", "roundX", "round_%/1", "stage"):
            store.put_json(key, key)
        assert store.keys("round/") == ["round/1", "round/1/posting", "round/10"]
        assert store.keys("round_%/") == ["round_%/1"]  # LIKE wildcards are not wildcards here
        assert store.keys("") == sorted(
            ["round/1", "round/10", "round/1/posting", "roundX", "round_%/1", "stage"]
        )
        store.delete_json("round/10")
        assert "round/10" not in store.keys("round/")


def test_json_documents_keep_types(path: Path) -> None:
    with Store(path) as store:
        doc = {"n": 3, "x": 1.5, "s": "t", "l": [1, None, True], "d": {"k": "v"}}
        store.put_json("doc", doc)
        assert store.get_json("doc") == doc
        store.put_json("scalar", 0)
        assert store.get_json("scalar") == 0


def test_unserialisable_json_is_refused_and_nothing_stored(path: Path) -> None:
    with Store(path) as store:
        with pytest.raises(TypeError):
            store.put_json("bad", {"raw": b"bytes"})
        with pytest.raises(ValueError):
            store.put_json("nan", float("nan"))
        assert store.keys("") == []


def test_txs_filter_by_label_prefix_oldest_first(path: Path) -> None:
    with Store(path) as store:
        store.record_tx("post-1", "0x01", "pending")
        store.record_tx("fuse-1", "0x02", "pending")
        store.record_tx("post-2", "0x03", "pending")
        store.record_tx("post-1", "0x01", "mined")
        posts = store.txs("post-")
        assert [(t["tx_hash"], t["status"]) for t in posts] == [("0x01", "mined"), ("0x03", "pending")]
        assert posts[0]["updated_at"] >= posts[0]["created_at"]
        assert [t["tx_hash"] for t in store.txs()] == ["0x01", "0x02", "0x03"]


def test_two_threads_one_store_do_not_lose_updates(path: Path) -> None:
    with Store(path) as store:
        store.put_json("counter", 0)
        rounds = 150

        def work() -> None:
            for _ in range(rounds):
                with store.transaction():
                    value = store.get_json("counter")
                    store.put_json("counter", value + 1)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.get_json("counter") == 2 * rounds


def test_two_connections_serialise_their_transactions(path: Path) -> None:
    Store(path).close()
    stores = [Store(path), Store(path)]
    rounds = 60
    try:
        stores[0].put_json("counter", 0)

        def work(store: Store) -> None:
            for _ in range(rounds):
                with store.transaction():  # BEGIN IMMEDIATE: the read is inside the write lock
                    store.put_json("counter", store.get_json("counter") + 1)

        threads = [threading.Thread(target=work, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stores[1].get_json("counter") == 2 * rounds
    finally:
        for s in stores:
            s.close()


def test_newer_schema_version_is_refused(path: Path) -> None:
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(
        StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than {SCHEMA_VERSION}"
    ):
        Store(path)


def test_a_file_that_is_not_a_database_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot be opened") as info:
        Store(path)
    assert isinstance(info.value, EnclaveAgentError)


def test_a_writer_blocked_by_another_process_gets_a_store_error(path: Path) -> None:
    holder = Store(path)
    waiter = Store(path, busy_timeout=0.2)
    try:
        with holder.transaction():
            holder.put_json("x", 1)
            with pytest.raises(StoreError, match="write lock"):
                waiter.put_json("x", 2)
        waiter.put_json("x", 3)  # free again once the holder committed
        assert holder.get_json("x") == 3
    finally:
        holder.close()
        waiter.close()


def test_a_damaged_document_names_its_key_instead_of_a_traceback(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.put_json("view", {"epoch": 3})
    store._execute("UPDATE docs SET value = '{not json' WHERE key = 'view'")
    with pytest.raises(StoreError, match="document 'view' is not valid JSON .*restore a backup"):
        store.get_json("view")


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite3"
    path.write_bytes(b"this is not an SQLite file at all" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        Store(path)


def test_backup_is_a_consistent_owner_only_snapshot_and_restore_sets_the_current_aside(
    tmp_path: Path,
) -> None:
    import stat

    from enclave_agent.store.db import restore

    path = tmp_path / "agent.sqlite3"
    store = Store(path)
    store.put_json("stage", "synchronised")
    store.put_blob("keys/3", b"sealed")
    store.mark_processed("0xabc:0")
    backup = tmp_path / "backup.sqlite3"
    store.backup(backup)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with pytest.raises(StoreError, match="exists already"):
        store.backup(backup)
    store.put_json("stage", "later")  # written after the snapshot
    store.close()
    path.write_bytes(b"")  # the state is lost
    assert Store(path).is_empty()
    kept = restore(backup, path)
    assert kept is not None and kept.name.startswith("agent.sqlite3.reset-")
    restored = Store(path)
    restored.check_integrity()
    assert restored.get_json("stage") == "synchronised" and restored.get_blob("keys/3") == b"sealed"
    assert restored.is_processed("0xabc:0") and not restored.is_empty()
    empty = tmp_path / "empty.sqlite3"
    Store(empty).close()
    with pytest.raises(StoreError, match="holds no agent state"):
        restore(empty, path)
    with pytest.raises(StoreError, match="no backup at"):
        restore(tmp_path / "missing", path)
