"""Pairwise key derivation, AEAD and the share associated data."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclave_agent.crypto import aead
from enclave_agent.crypto.aead import PairContext
from enclave_agent.errors import CryptoError, DecryptionError

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
BOB = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
CAROL = "0x4B20993Bc481177ec7E8f571ceCaE8A9e22C02db"
REGISTRY = "0xd9145CCE52D386f254917e481eB44e9943F39138"
CONTRACT = "0xd8b934580fcE35a11B58C6D73aDeE468a2833fa8"
CTX = PairContext(chain_id=31337, registry=REGISTRY, epoch=3)

# Low-order points of Curve25519 (RFC 7748 section 6.1 / libsodium's blocklist).
LOW_ORDER_POINTS = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@pytest.fixture
def keys() -> tuple[X25519PrivateKey, X25519PrivateKey]:
    return X25519PrivateKey.generate(), X25519PrivateKey.generate()


def pub(k: X25519PrivateKey) -> bytes:
    return aead.public_key_bytes(k)


def test_both_sides_derive_the_same_key(keys: tuple[X25519PrivateKey, X25519PrivateKey]) -> None:
    a, b = keys
    ka = aead.derive_pairwise_key(a, pub(b), ALICE, BOB, CTX)
    kb = aead.derive_pairwise_key(b, pub(a), BOB, ALICE, CTX)
    assert ka == kb
    assert isinstance(ka, bytes)
    assert len(ka) == 32


def test_address_case_does_not_matter(keys: tuple[X25519PrivateKey, X25519PrivateKey]) -> None:
    a, b = keys
    ka = aead.derive_pairwise_key(a, pub(b), ALICE, BOB, CTX)
    kb = aead.derive_pairwise_key(b, pub(a), BOB.lower(), ALICE.lower(), CTX)
    ctx_lower = PairContext(CTX.chain_id, REGISTRY.lower(), CTX.epoch)
    assert ka == kb == aead.derive_pairwise_key(a, pub(b), ALICE.upper().replace("0X", "0x"), BOB, ctx_lower)


def test_key_matches_the_documented_construction(keys: tuple[X25519PrivateKey, X25519PrivateKey]) -> None:
    a, b = keys
    shared = a.exchange(X25519PublicKey.from_public_bytes(pub(b)))
    salt = hashlib.sha256(
        b"enclave-share/pairwise-salt/v1"
        + (31337).to_bytes(32, "big")
        + bytes.fromhex(REGISTRY[2:])
        + (3).to_bytes(32, "big")
    ).digest()
    # Canonical order: by address bytes, so ALICE (0x5b...) comes before BOB (0xab...).
    members = sorted([(bytes.fromhex(ALICE[2:]), pub(a)), (bytes.fromhex(BOB[2:]), pub(b))])
    info = b"enclave-share/pairwise/v1" + b"".join(addr + key for addr, key in members)
    expected = HKDF(hashes.SHA256(), 32, salt=salt, info=info).derive(shared)
    assert aead.derive_pairwise_key(a, pub(b), ALICE, BOB, CTX) == expected
    assert members[0][0] == bytes.fromhex(ALICE[2:])


def test_context_and_identity_separate_keys(keys: tuple[X25519PrivateKey, X25519PrivateKey]) -> None:
    a, b = keys
    base = aead.derive_pairwise_key(a, pub(b), ALICE, BOB, CTX)
    variants = [
        dataclasses.replace(CTX, epoch=4),
        dataclasses.replace(CTX, chain_id=1),
        dataclasses.replace(CTX, registry=CONTRACT),
    ]
    derived = {aead.derive_pairwise_key(a, pub(b), ALICE, BOB, ctx) for ctx in variants}
    # Same keys and context, other claimed identity.
    derived.add(aead.derive_pairwise_key(a, pub(b), ALICE, CAROL, CTX))
    derived.add(aead.derive_pairwise_key(a, pub(b), CAROL, BOB, CTX))
    assert base not in derived
    assert len(derived) == 5


def test_a_third_member_gets_another_key(keys: tuple[X25519PrivateKey, X25519PrivateKey]) -> None:
    a, b = keys
    c = X25519PrivateKey.generate()
    ab = aead.derive_pairwise_key(a, pub(b), ALICE, BOB, CTX)
    ac = aead.derive_pairwise_key(a, pub(c), ALICE, CAROL, CTX)
    assert ac == aead.derive_pairwise_key(c, pub(a), CAROL, ALICE, CTX)
    assert ab != ac


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_points_are_refused(point: bytes) -> None:
    with pytest.raises(CryptoError, match="low-order|all-zero"):
        aead.derive_pairwise_key(X25519PrivateKey.generate(), point, ALICE, BOB, CTX)


def test_derivation_argument_errors(keys: tuple[X25519PrivateKey, X25519PrivateKey]) -> None:
    a, b = keys
    with pytest.raises(CryptoError, match="32 bytes"):
        aead.derive_pairwise_key(a, pub(b)[:31], ALICE, BOB, CTX)
    with pytest.raises(CryptoError, match="oneself"):
        aead.derive_pairwise_key(a, pub(b), ALICE, ALICE.lower(), CTX)
    with pytest.raises(CryptoError, match="hex address"):
        aead.derive_pairwise_key(a, pub(b), ALICE, "0x1234", CTX)
    with pytest.raises(CryptoError, match="checksum"):
        # One letter's case flipped: a typo the EIP-55 checksum catches.
        aead.derive_pairwise_key(a, pub(b), ALICE, BOB.replace("Ab84", "ab84"), CTX)


@pytest.mark.parametrize(
    "kwargs",
    [{"chain_id": -1}, {"chain_id": 2**256}, {"epoch": -1}, {"registry": "registry"}, {"chain_id": True}],
)
def test_pair_context_is_validated(kwargs: dict[str, object]) -> None:
    fields = {"chain_id": 1, "registry": REGISTRY, "epoch": 0, **kwargs}
    with pytest.raises(CryptoError):
        PairContext(**fields)  # type: ignore[arg-type]


def test_pair_context_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CTX.epoch = 9  # type: ignore[misc]


# --- AEAD ----------------------------------------------------------------------

KEY = bytes(range(32))
PLAINTEXT = b"\x01share bytes that must stay secret"
AD = aead.share_ad(31337, CONTRACT, 7, ALICE, BOB)


def test_encrypt_decrypt_round_trip() -> None:
    blob = aead.encrypt(KEY, PLAINTEXT, AD)
    assert len(blob) == 12 + len(PLAINTEXT) + 16
    assert PLAINTEXT not in blob
    assert aead.decrypt(KEY, blob, AD) == PLAINTEXT
    assert aead.decrypt(KEY, aead.encrypt(KEY, b"", AD), AD) == b""


def test_nonces_are_fresh() -> None:
    blobs = {aead.encrypt(KEY, PLAINTEXT, AD) for _ in range(20)}
    assert len(blobs) == 20
    assert len({b[:12] for b in blobs}) == 20


def assert_refused(key: bytes, blob: bytes, ad: bytes) -> None:
    with pytest.raises(DecryptionError) as info:
        aead.decrypt(key, blob, ad)
    msg = str(info.value)
    for secret in (KEY.hex(), key.hex(), PLAINTEXT.decode("latin-1"), PLAINTEXT.hex()):
        assert secret not in msg


def test_wrong_key_is_refused() -> None:
    blob = aead.encrypt(KEY, PLAINTEXT, AD)
    assert_refused(bytes(32), blob, AD)
    assert_refused(KEY[:-1] + bytes([KEY[-1] ^ 1]), blob, AD)


@pytest.mark.parametrize(
    "changed",
    [
        {"chain_id": 1},
        {"contract": REGISTRY},
        {"round_id": 8},
        {"sender": CAROL},
        {"recipient": CAROL},
        {"sender": BOB, "recipient": ALICE},
        {"purpose": "partial"},
    ],
)
def test_wrong_associated_data_is_refused(changed: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "chain_id": 31337,
        "contract": CONTRACT,
        "round_id": 7,
        "sender": ALICE,
        "recipient": BOB,
        "purpose": "share",
    }
    blob = aead.encrypt(KEY, PLAINTEXT, aead.share_ad(**fields))  # type: ignore[arg-type]
    other = aead.share_ad(**{**fields, **changed})  # type: ignore[arg-type]
    assert other != AD
    assert_refused(KEY, blob, other)


def test_every_flipped_bit_is_refused() -> None:
    blob = aead.encrypt(KEY, PLAINTEXT, AD)
    # Every byte of the nonce, the ciphertext and the tag, each bit position once.
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 1 << (index % 8)
        assert_refused(KEY, bytes(tampered), AD)


def test_truncated_or_extended_blobs_are_refused() -> None:
    blob = aead.encrypt(KEY, PLAINTEXT, AD)
    for length in range(len(blob)):
        assert_refused(KEY, blob[:length], AD)
    assert_refused(KEY, blob + b"\x00", AD)
    with pytest.raises(DecryptionError, match="too short"):
        aead.decrypt(KEY, blob[:27], AD)


def test_decryption_error_is_a_crypto_error() -> None:
    with pytest.raises(CryptoError):
        aead.decrypt(KEY, bytes(40), AD)


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), "k" * 32])
def test_bad_key_length_is_a_usage_error_not_a_decryption_error(key: object) -> None:
    with pytest.raises(CryptoError, match="32 bytes") as info:
        aead.encrypt(key, PLAINTEXT, AD)  # type: ignore[arg-type]
    assert not isinstance(info.value, DecryptionError)
    with pytest.raises(CryptoError, match="32 bytes"):
        aead.decrypt(key, bytes(40), AD)  # type: ignore[arg-type]


# --- associated data -----------------------------------------------------------


def test_share_ad_layout() -> None:
    ad = aead.share_ad(5, CONTRACT, 2**255, ALICE, BOB, "share")
    expected = (
        b"enclave-share/share-ad/v1"
        + (5).to_bytes(32, "big")
        + bytes.fromhex(CONTRACT[2:])
        + (2**255).to_bytes(32, "big")
        + bytes.fromhex(ALICE[2:])
        + bytes.fromhex(BOB[2:])
        + b"\x00\x05share"
    )
    assert ad == expected


def test_share_ad_normalises_address_case() -> None:
    assert aead.share_ad(1, CONTRACT.lower(), 7, ALICE.lower(), BOB.lower()) == aead.share_ad(
        1, CONTRACT, 7, ALICE, BOB
    )


def test_share_ad_distinguishes_every_field() -> None:
    base = (31337, CONTRACT, 7, ALICE, BOB, "share")
    variants = [
        (31338, CONTRACT, 7, ALICE, BOB, "share"),
        (31337, REGISTRY, 7, ALICE, BOB, "share"),
        (31337, CONTRACT, 8, ALICE, BOB, "share"),
        (31337, CONTRACT, 7, CAROL, BOB, "share"),
        (31337, CONTRACT, 7, ALICE, CAROL, "share"),
        (31337, CONTRACT, 7, BOB, ALICE, "share"),
        (31337, CONTRACT, 7, ALICE, BOB, "shares"),
        (31337, CONTRACT, 7, ALICE, BOB, "query"),
    ]
    ads = {aead.share_ad(*v) for v in variants}
    assert len(ads) == len(variants)
    assert aead.share_ad(*base) not in ads


@pytest.mark.parametrize(
    "args",
    [
        (-1, CONTRACT, 7, ALICE, BOB, "share"),
        (1, CONTRACT, 2**256, ALICE, BOB, "share"),
        (1, CONTRACT, -7, ALICE, BOB, "share"),
        (1, "0xabc", 7, ALICE, BOB, "share"),
        (1, CONTRACT, 7, ALICE, "not an address", "share"),
        (1, CONTRACT, 7, ALICE, BOB, ""),
        (1, CONTRACT, 7, ALICE, BOB, "x" * 70000),
        (1, CONTRACT, "7", ALICE, BOB, "share"),
    ],
)
def test_share_ad_rejects_bad_fields(args: tuple[object, ...]) -> None:
    with pytest.raises(CryptoError):
        aead.share_ad(*args)  # type: ignore[arg-type]


def test_all_zero_shared_secret_is_refused_even_if_the_backend_returns_it() -> None:
    # OpenSSL already refuses low-order points; this checks the second line of defence.
    real = X25519PrivateKey.generate()

    class ZeroExchange:
        def exchange(self, peer: X25519PublicKey) -> bytes:
            return bytes(32)

        def public_key(self) -> X25519PublicKey:
            return real.public_key()

    with pytest.raises(CryptoError, match="all-zero shared secret"):
        aead.derive_pairwise_key(ZeroExchange(), pub(real), ALICE, BOB, CTX)  # type: ignore[arg-type]


# ------------------------------------------------------------------ message keys


def test_message_keys_are_per_message_and_reveal_nothing_else() -> None:
    from enclave_agent.crypto.aead import decrypt, derive_message_key, encrypt, share_ad

    pairwise = bytes(range(32))
    ad1 = share_ad(1, "0x" + "11" * 20, 5, "0x" + "22" * 20, "0x" + "33" * 20)
    ad2 = share_ad(1, "0x" + "11" * 20, 6, "0x" + "22" * 20, "0x" + "33" * 20)
    ad3 = share_ad(1, "0x" + "11" * 20, 5, "0x" + "33" * 20, "0x" + "22" * 20)
    k1, k2, k3 = (derive_message_key(pairwise, ad) for ad in (ad1, ad2, ad3))
    assert len({k1, k2, k3, pairwise}) == 4
    assert derive_message_key(pairwise, ad1) == k1  # deterministic: both sides derive it
    blob = encrypt(k1, b"share", ad1)
    assert decrypt(k1, blob, ad1) == b"share"
    with pytest.raises(DecryptionError):
        decrypt(k2, blob, ad1)  # a revealed key opens its own message only
    with pytest.raises(CryptoError, match="32 bytes"):
        derive_message_key(b"short", ad1)
    with pytest.raises(CryptoError, match="non-empty"):
        derive_message_key(pairwise, b"")
