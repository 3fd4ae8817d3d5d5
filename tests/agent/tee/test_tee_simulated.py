"""The simulated TEE: measurement-bound sealing and persistent enclave keys."""

from __future__ import annotations

import logging
import shutil
import stat
from pathlib import Path

import pytest

from enclave_agent.errors import SealingError
from enclave_agent.tee._files import write_new_private_file
from enclave_agent.tee.measure import measure_package
from enclave_agent.tee.simulated import KEYS_LABEL, SimulatedTee


def flip_byte(path: Path, index: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def tee(tmp_path: Path, tiny_package: tuple[Path, Path]) -> SimulatedTee:
    package, lock = tiny_package
    return SimulatedTee(tmp_path / "state", package_dir=package, lock_file=lock)


def altered_copy(tmp_path: Path, tiny_package: tuple[Path, Path]) -> tuple[Path, Path]:
    """The same package with one byte changed in one file."""
    package, lock = tiny_package
    copy = tmp_path / "altered" / "enclave_agent"
    shutil.copytree(package, copy)
    flip_byte(copy / "tee" / "logic.py", 9)
    return copy, lock


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_measurement_and_identity(tee: SimulatedTee, tiny_package: tuple[Path, Path]) -> None:
    assert tee.measurement() == measure_package(*tiny_package)
    assert (tee.name, tee.simulated) == ("simulated", True)
    assert "measurement=0x" + tee.measurement().hex() in repr(tee)


def test_start_is_logged_once_as_simulated(
    tmp_path: Path, tiny_package: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="enclave_agent.tee.simulated"):
        tee = SimulatedTee(tmp_path / "state", package_dir=tiny_package[0], lock_file=tiny_package[1])
        tee.load_or_create_keys()
    expected = f"TEE backend: SIMULATED (no hardware isolation) measurement=0x{tee.measurement().hex()}"
    starts = [r for r in caplog.records if r.getMessage().startswith("TEE backend:")]
    assert [r.getMessage() for r in starts] == [expected]
    assert starts[0].levelno == logging.INFO


def test_seal_round_trip(tee: SimulatedTee) -> None:
    for plaintext in (b"", b"share material", bytes(range(256)) * 100):
        blob = tee.seal("round/7/share", plaintext)
        assert tee.unseal("round/7/share", blob) == plaintext
    # Fresh nonce each time: sealing twice gives different blobs, neither shows the plaintext.
    first, second = tee.seal("x", b"secret-share-123"), tee.seal("x", b"secret-share-123")
    assert first != second
    assert b"secret-share-123" not in first


def test_wrong_label_is_refused(tee: SimulatedTee) -> None:
    blob = tee.seal("keys", b"payload")
    with pytest.raises(SealingError, match="cannot unseal 'other-label'") as err:
        tee.unseal("other-label", blob)
    assert "sealed under another label" in str(err.value)


@pytest.mark.parametrize("index", [1, 5, 13, -1])  # nonce, nonce, ciphertext, tag
def test_tampered_blob_is_refused(tee: SimulatedTee, index: int) -> None:
    blob = bytearray(tee.seal("keys", b"payload"))
    blob[index] ^= 0x80
    with pytest.raises(SealingError, match="cannot unseal 'keys'.*tampered"):
        tee.unseal("keys", bytes(blob))


def test_truncated_or_unknown_format_is_refused(tee: SimulatedTee) -> None:
    blob = tee.seal("keys", b"payload")
    with pytest.raises(SealingError, match="malformed"):
        tee.unseal("keys", blob[:20])
    with pytest.raises(SealingError, match="malformed"):
        tee.unseal("keys", b"\x02" + blob[1:])


def test_other_code_cannot_unseal(tmp_path: Path, tiny_package: tuple[Path, Path], tee: SimulatedTee) -> None:
    blob = tee.seal("keys", b"payload")
    package, lock = altered_copy(tmp_path, tiny_package)
    # Same platform (same secret), one byte of code changed.
    other = SimulatedTee(tee.state_dir, package_dir=package, lock_file=lock)
    assert other.measurement() != tee.measurement()
    with pytest.raises(SealingError, match="code measurement") as err:
        other.unseal("keys", blob)
    assert f"0x{other.measurement().hex()}" in str(err.value)
    # The unchanged code still opens it.
    again = SimulatedTee(tee.state_dir, package_dir=tiny_package[0], lock_file=lock)
    assert again.unseal("keys", blob) == b"payload"


def test_changed_lock_file_cannot_unseal(
    tmp_path: Path, tiny_package: tuple[Path, Path], tee: SimulatedTee
) -> None:
    blob = tee.seal("keys", b"payload")
    package, lock = tiny_package
    # Same file name (it is part of the manifest), one byte of content changed.
    altered_lock = tmp_path / "other" / lock.name
    altered_lock.parent.mkdir()
    shutil.copy(lock, altered_lock)
    flip_byte(altered_lock, 3)
    other = SimulatedTee(tee.state_dir, package_dir=package, lock_file=altered_lock)
    assert other.measurement() != tee.measurement()
    with pytest.raises(SealingError, match="code measurement"):
        other.unseal("keys", blob)


def test_other_platform_cannot_unseal(
    tmp_path: Path, tiny_package: tuple[Path, Path], tee: SimulatedTee
) -> None:
    blob = tee.seal("keys", b"payload")
    elsewhere = SimulatedTee(tmp_path / "elsewhere", package_dir=tiny_package[0], lock_file=tiny_package[1])
    assert elsewhere.measurement() == tee.measurement()
    with pytest.raises(SealingError, match="platform secret"):
        elsewhere.unseal("keys", blob)


def test_keys_persist_across_instances(
    tee: SimulatedTee, tiny_package: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    keys = tee.load_or_create_keys()
    assert tee.load_or_create_keys() is keys
    assert tee.keys_path.is_file()
    with caplog.at_level(logging.INFO, logger="enclave_agent.tee.simulated"):
        restarted = SimulatedTee(tee.state_dir, package_dir=tiny_package[0], lock_file=tiny_package[1])
        again = restarted.load_or_create_keys()
    assert again.address == keys.address
    assert again.x25519_public == keys.x25519_public
    assert again.signing_key == keys.signing_key
    assert "enclave keys unsealed" in caplog.text
    assert keys.signing_key.hex() not in caplog.text


def test_keys_of_other_code_are_refused_not_replaced(
    tmp_path: Path, tiny_package: tuple[Path, Path], tee: SimulatedTee
) -> None:
    tee.load_or_create_keys()
    sealed = tee.keys_path.read_bytes()
    package, lock = altered_copy(tmp_path, tiny_package)
    other = SimulatedTee(tee.state_dir, package_dir=package, lock_file=lock)
    with pytest.raises(SealingError) as err:
        other.load_or_create_keys()
    assert str(tee.keys_path) in str(err.value) and repr(KEYS_LABEL) in str(err.value)
    assert tee.keys_path.read_bytes() == sealed


def test_state_file_permissions(tmp_path: Path, tee: SimulatedTee) -> None:
    tee.load_or_create_keys()
    assert mode(tee.state_dir) == 0o700
    assert mode(tee.platform_secret_path) == 0o600
    assert mode(tee.keys_path) == 0o600
    assert len(tee.platform_secret_path.read_bytes()) == 32
    assert sorted(p.name for p in tee.state_dir.iterdir()) == ["keys.sealed", "platform.secret"]


def test_custom_platform_secret_path(tmp_path: Path, tiny_package: tuple[Path, Path]) -> None:
    secret = tmp_path / "platform" / "fused.key"
    one = SimulatedTee(
        tmp_path / "a", package_dir=tiny_package[0], lock_file=tiny_package[1], platform_secret_path=secret
    )
    assert secret.is_file() and mode(secret) == 0o600
    assert not (tmp_path / "a" / "platform.secret").exists()
    # Another state dir on the same "platform" opens what the first sealed.
    two = SimulatedTee(
        tmp_path / "b", package_dir=tiny_package[0], lock_file=tiny_package[1], platform_secret_path=secret
    )
    assert two.unseal("x", one.seal("x", b"v")) == b"v"


def test_corrupt_platform_secret_is_refused(tmp_path: Path, tiny_package: tuple[Path, Path]) -> None:
    secret = tmp_path / "state" / "platform.secret"
    secret.parent.mkdir()
    secret.write_bytes(b"short")
    with pytest.raises(SealingError, match=r"platform secret .* corrupt: expected 32 bytes, found 5"):
        SimulatedTee(tmp_path / "state", package_dir=tiny_package[0], lock_file=tiny_package[1])


def test_private_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert write_new_private_file(path, b"first")
    assert not write_new_private_file(path, b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temp files left behind
