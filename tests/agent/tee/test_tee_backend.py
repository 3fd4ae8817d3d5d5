"""EnclaveKeys: derivation, serialisation, and that its repr never shows a secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount

from enclave_agent.errors import SealingError
from enclave_agent.tee.backend import EnclaveKeys, TeeBackend, new_secp256k1_key
from enclave_agent.tee.simulated import SimulatedTee

SECP256K1_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)


def secret_spellings(keys: EnclaveKeys) -> list[str]:
    x_raw = keys.x25519_private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    spellings = []
    for raw in (keys.signing_key, x_raw):
        spellings += [raw.hex(), raw.hex().upper(), repr(raw)[2:-1], str(int.from_bytes(raw, "big"))]
    return spellings


def test_generated_keys_are_consistent_and_fresh() -> None:
    keys = EnclaveKeys.generate()
    assert keys.address == Account.from_key(keys.signing_key).address
    assert isinstance(keys.account, LocalAccount) and keys.account.key == keys.signing_key
    expected_public = keys.x25519_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert keys.x25519_public == expected_public and len(keys.x25519_public) == 32
    other = EnclaveKeys.generate()
    assert other.signing_key != keys.signing_key and other.x25519_public != keys.x25519_public


def test_repr_and_str_show_public_parts_only(caplog: pytest.LogCaptureFixture) -> None:
    keys = EnclaveKeys.generate()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("keys: %s %r", keys, [keys])
    shown = [repr(keys), str(keys), f"{keys}", repr([keys]), caplog.text]
    for text in shown:
        assert keys.address in text
        for secret in secret_spellings(keys):
            assert secret not in text
    assert f"x25519_public=0x{keys.x25519_public.hex()}" in repr(keys)


def test_serialisation_round_trip() -> None:
    keys = EnclaveKeys.generate()
    data = keys.to_bytes()
    assert len(data) == 65
    again = EnclaveKeys.from_bytes(data)
    assert again.signing_key == keys.signing_key and again.x25519_public == keys.x25519_public
    with pytest.raises(SealingError, match="not a key pair"):
        EnclaveKeys.from_bytes(data[:-1])
    with pytest.raises(SealingError, match="not a key pair"):
        EnclaveKeys.from_bytes(b"\x02" + data[1:])


@pytest.mark.parametrize("bad", [b"\x00" * 32, SECP256K1_N.to_bytes(32, "big"), b"\x01" * 31])
def test_invalid_signing_keys_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="valid 32-byte secp256k1"):
        EnclaveKeys(bad, EnclaveKeys.generate().x25519_private)


def test_new_secp256k1_key_is_in_range() -> None:
    for _ in range(50):
        assert 0 < int.from_bytes(new_secp256k1_key(), "big") < SECP256K1_N


def test_simulated_tee_satisfies_the_protocol(tmp_path: Path, tiny_package: tuple[Path, Path]) -> None:
    package, lock = tiny_package
    tee: TeeBackend = SimulatedTee(tmp_path / "state", package_dir=package, lock_file=lock)
    assert isinstance(tee, TeeBackend)
    assert (tee.name, tee.simulated) == ("simulated", True)
