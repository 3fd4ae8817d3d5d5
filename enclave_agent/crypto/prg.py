"""Cryptographic pseudo-random ring/field elements.

Both generators run an AES-256-CTR keystream (AES-NI through ``cryptography``, a few
milliseconds per million elements) and read it as little-endian 64-bit words:

- ``random_elements`` keys the stream with 32 fresh bytes from the OS CSPRNG, so
  every call is independent (used for random shares and polynomial coefficients);
- ``expand_seed`` keys it with HKDF-SHA256(seed, info = "enclave-share/prg/v1" ||
  context): the same (seed, context) always gives the same elements (seeded shares),
  and different contexts give independent streams. Each derived key encrypts one
  keystream starting at counter zero; the key is never used for anything else.

Mapping to the field PRIME61 = 2**61 - 1: a word is masked to its low 61 bits
(uniform on [0, 2**61 - 1] = [0, p]) and the single value p is folded to 0. Zero then
has probability 2**-60 and every other element 2**-61: the statistical distance to
uniform is 2**-61 per element (< 2**-41 over a million elements), negligible. For
RING64 the words are used as they are (exactly uniform).

numpy's random generators are never used: they are not cryptographic.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclave_agent.crypto.field import PRIME61, RING64, Elements, check_modulus
from enclave_agent.errors import CryptoError

__all__ = ["PRG_INFO", "SEED_BYTES", "expand_seed", "new_seed", "random_elements"]

logger = logging.getLogger(__name__)

PRG_INFO = b"enclave-share/prg/v1"
SEED_BYTES = 32
_KEY_BYTES = 32
_AES_BLOCK = 16
_P = np.uint64(PRIME61)


def new_seed() -> bytes:
    """A fresh 32-byte seed from the OS CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def _check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or int(length) < 0:
        raise CryptoError(f"length must be a non-negative int, got {length!r}")
    return int(length)


_zeros = bytes(1 << 20)  # the plaintext of the keystream, shared by every call (grown on demand)


def _zero_plaintext(nbytes: int) -> memoryview:
    global _zeros
    if len(_zeros) < nbytes:
        _zeros = bytes(max(nbytes, 2 * len(_zeros)))
    return memoryview(_zeros)[:nbytes]


def _keystream_words(key: bytes, length: int) -> Elements:
    """``length`` little-endian uint64 words of the AES-256-CTR keystream under ``key``."""
    nbytes = 8 * length
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(_AES_BLOCK))).encryptor()
    # update_into writes straight into the (uninitialised) words it returns, with the
    # block - 1 bytes of slack it asks for; the all-zero plaintext is shared by every call.
    out = np.empty(length + 2, dtype="<u8")
    encryptor.update_into(_zero_plaintext(nbytes), out.data.cast("B"))
    return out[:length].astype(np.uint64, copy=False)


def _to_modulus(words: Elements, m: int) -> Elements:
    if m == RING64:
        return words
    x = words & _P
    x -= (x == _P).astype(np.uint64) * _P  # fold the one out-of-field value p to 0
    return x


def random_elements(length: int, m: int, *, rng_bytes: Callable[[int], bytes] | None = None) -> Elements:
    """``length`` uniformly random elements mod ``m`` from a freshly keyed AES-CTR stream.

    ``rng_bytes(n)`` supplies the 32-byte key (default: ``secrets.token_bytes``); tests
    may inject a deterministic source, production code never does.
    """
    m = check_modulus(m)
    length = _check_length(length)
    key = (rng_bytes or secrets.token_bytes)(_KEY_BYTES)
    if not isinstance(key, bytes | bytearray) or len(key) != _KEY_BYTES:
        raise CryptoError("rng_bytes must return exactly the number of bytes requested")
    return _to_modulus(_keystream_words(bytes(key), length), m)


def expand_seed(seed: bytes, length: int, m: int, context: bytes) -> Elements:
    """Deterministic ``length`` elements mod ``m`` from a 32-byte seed and a context.

    A shorter expansion of the same (seed, context) is a prefix of a longer one.
    """
    m = check_modulus(m)
    length = _check_length(length)
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_BYTES:
        raise CryptoError(f"seed must be {SEED_BYTES} bytes")
    if not isinstance(context, bytes | bytearray):
        raise CryptoError("context must be bytes")
    key = HKDF(
        algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=PRG_INFO + bytes(context)
    ).derive(bytes(seed))
    return _to_modulus(_keystream_words(key, length), m)
