"""The CSPRNG and the seed expander: determinism, independence, uniformity, construction."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclave_agent.crypto import prg
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import CryptoError

MODULI = [RING64, PRIME61]
SEED = bytes(range(32))


def chi_square(values: np.ndarray, buckets: int, top: int) -> float:
    """Chi-square statistic of ``values`` over ``buckets`` equal ranges of [0, top)."""
    counts = np.bincount((values // (top // buckets)).astype(np.int64), minlength=buckets)[:buckets]
    expected = values.size / buckets
    return float(((counts - expected) ** 2 / expected).sum())


def test_new_seed_is_32_fresh_bytes() -> None:
    seeds = {prg.new_seed() for _ in range(50)}
    assert len(seeds) == 50
    assert all(isinstance(s, bytes) and len(s) == 32 for s in seeds)


@pytest.mark.parametrize("m", MODULI)
def test_expand_seed_is_deterministic(m: int) -> None:
    a = prg.expand_seed(SEED, 1000, m, b"round-1")
    b = prg.expand_seed(SEED, 1000, m, b"round-1")
    assert a.dtype == np.uint64
    assert a.shape == (1000,)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("m", MODULI)
def test_different_seed_or_context_gives_unrelated_output(m: int) -> None:
    base = prg.expand_seed(SEED, 256, m, b"ctx")
    other_seed = prg.expand_seed(bytes([1]) + SEED[1:], 256, m, b"ctx")
    other_ctx = prg.expand_seed(SEED, 256, m, b"ctx2")
    empty_ctx = prg.expand_seed(SEED, 256, m, b"")
    for other in (other_seed, other_ctx, empty_ctx):
        # Unrelated streams agree on an element with probability ~2**-61.
        assert int((base == other).sum()) == 0


def test_shorter_expansion_is_a_prefix() -> None:
    long = prg.expand_seed(SEED, 1001, PRIME61, b"c")
    short = prg.expand_seed(SEED, 17, PRIME61, b"c")
    assert np.array_equal(long[:17], short)
    assert prg.expand_seed(SEED, 0, PRIME61, b"c").shape == (0,)


@pytest.mark.parametrize("m", MODULI)
def test_expand_seed_matches_the_documented_construction(m: int) -> None:
    context = b"chain 1 / contract / round 7"
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"enclave-share/prg/v1" + context).derive(SEED)
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(8 * 300))
    words = [int.from_bytes(stream[8 * i : 8 * i + 8], "little") for i in range(300)]
    if m == PRIME61:
        words = [w & PRIME61 for w in words]
        words = [0 if w == PRIME61 else w for w in words]
    got = prg.expand_seed(SEED, 300, m, context)
    assert [int(v) for v in got] == words


def test_field_mapping_masks_and_folds_p_to_zero() -> None:
    words = np.array([PRIME61, 2**64 - 1, 2**61, 2**61 + 5, PRIME61 - 1, 0], dtype=np.uint64)
    got = prg._to_modulus(words.copy(), PRIME61)
    assert [int(v) for v in got] == [0, 0, 0, 5, PRIME61 - 1, 0]
    assert np.array_equal(prg._to_modulus(words.copy(), RING64), words)


def test_field_elements_are_reduced() -> None:
    for x in (prg.expand_seed(SEED, 10**5, PRIME61, b""), prg.random_elements(10**5, PRIME61)):
        assert int(x.max()) < PRIME61
        # The top of the field is reached: the mask keeps all 61 bits.
        assert int(x.max()) > PRIME61 - 2**50


def test_ring_elements_use_all_64_bits() -> None:
    x = prg.random_elements(10**4, RING64)
    assert int(x.max()) >= 2**63
    assert int((x >> np.uint64(63)).sum()) > 4000


@pytest.mark.parametrize("m", MODULI)
def test_rough_uniformity_of_the_seeded_stream(m: int) -> None:
    # Fixed seed: the statistics are deterministic, no flakiness.
    x = prg.expand_seed(SEED, 2**18, m, b"uniformity")
    top = m if m == RING64 else 2**61
    # 15 degrees of freedom: 60 is far in the tail (p < 1e-6).
    assert chi_square(x, 16, top) < 60
    bits = np.unpackbits(x.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    used = 64 if m == RING64 else 61
    # Little-endian bytes with big-endian bits inside: gather per value bit.
    per_bit = np.array([bits[8 * (b // 8) + 7 - b % 8] for b in range(64)])
    assert np.all(np.abs(per_bit[:used] - 0.5) < 0.01)
    assert np.all(per_bit[used:] == 0)


@pytest.mark.parametrize("m", MODULI)
def test_rough_uniformity_of_random_elements(m: int) -> None:
    x = prg.random_elements(2**18, m)
    top = m if m == RING64 else 2**61
    # Fresh randomness each run: use a threshold with p ~ 1e-12 against false alarms.
    assert chi_square(x, 16, top) < 100
    assert abs(float(x.astype(np.float64).mean()) / top - 0.5) < 0.01


def test_random_elements_are_fresh_each_call() -> None:
    a = prg.random_elements(64, PRIME61)
    b = prg.random_elements(64, PRIME61)
    assert int((a == b).sum()) == 0


def test_random_elements_take_their_key_from_rng_bytes() -> None:
    calls: list[int] = []

    def fixed(n: int) -> bytes:
        calls.append(n)
        return bytes(n)

    a = prg.random_elements(50, RING64, rng_bytes=fixed)
    b = prg.random_elements(50, RING64, rng_bytes=fixed)
    assert calls == [32, 32]
    assert np.array_equal(a, b)
    expected = Cipher(algorithms.AES(bytes(32)), modes.CTR(bytes(16))).encryptor().update(bytes(400))
    assert a.tobytes() == expected
    c = prg.random_elements(50, RING64, rng_bytes=lambda n: b"\x01" * n)
    assert not np.array_equal(a, c)


def test_rng_bytes_must_return_the_requested_length() -> None:
    with pytest.raises(CryptoError, match="rng_bytes"):
        prg.random_elements(10, RING64, rng_bytes=lambda n: bytes(n - 1))


def test_outputs_are_writable_arrays() -> None:
    for x in (prg.random_elements(8, RING64), prg.expand_seed(SEED, 8, PRIME61, b"")):
        x += np.uint64(1)  # would raise on a read-only buffer
        assert x.flags.writeable


@pytest.mark.parametrize("length", [10**6])
def test_speed_smoke_one_million_elements(length: int) -> None:
    # No timing assert: this only has to finish quickly in the normal test run.
    assert prg.random_elements(length, PRIME61).shape == (length,)
    assert prg.expand_seed(SEED, length, RING64, b"speed").shape == (length,)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "0" * 32])
def test_bad_seed_is_refused(seed: object) -> None:
    with pytest.raises(CryptoError, match="seed must be 32 bytes"):
        prg.expand_seed(seed, 4, RING64, b"")  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(CryptoError, match="length"):
        prg.expand_seed(SEED, -1, RING64, b"")
    with pytest.raises(CryptoError, match="length"):
        prg.random_elements(2.5, RING64)  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="context"):
        prg.expand_seed(SEED, 4, RING64, "ctx")  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="unsupported modulus"):
        prg.expand_seed(SEED, 4, 2**32, b"")
    with pytest.raises(CryptoError, match="unsupported modulus"):
        prg.random_elements(4, 2**61)
