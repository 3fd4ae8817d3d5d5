"""A one-byte change anywhere in a document, quote or report is refused: a property
over every position (and every non-zero XOR mask) of one real sample per format,
each verified as of its own time. Refused means an ``AttestationError``: never
accepted, never another exception."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.errors import AttestationError
from enclave_agent.tee.evidence import VerifiedEvidence
from enclave_agent.tee.nitro import NitroVerifier
from tests.support.tee_samples import DCAP_VECTORS, SNP_AT, nitro_sample, quote, snp_report, snp_verifier

BY_ROW = {v.row: v for v in DCAP_VECTORS}


def _dcap(row: str) -> tuple[bytes, Callable[[bytes], VerifiedEvidence]]:
    vector = BY_ROW[row]
    verifier = vector.verifier()
    return quote(vector.quote), lambda data: verifier.verify(data, at=vector.at)


def _nitro(name: str) -> tuple[bytes, Callable[[bytes], VerifiedEvidence]]:
    verifier = NitroVerifier()
    return nitro_sample(name), lambda data: verifier.verify(data)


def _snp(name: str) -> tuple[bytes, Callable[[bytes], VerifiedEvidence]]:
    verifier = snp_verifier()
    return snp_report(name), lambda data: verifier.verify(data, at=SNP_AT)


CASES = {
    "nitro-cose": lambda: _nitro("anchorage_2022-11-09_eu-west-1.cose"),
    "nitro-debug": lambda: _nitro("evervault_2022-10-12_debug.cose"),
    "sgx-v3": lambda: _dcap("1"),
    "sgx-v3-processor-ca": lambda: _dcap("5"),
    "tdx-v4-padded": lambda: _dcap("7"),
    "tdx-v5": lambda: _dcap("3"),
    "snp-milan": lambda: _snp("virtee_milan_report.hex"),
}
_LOADED: dict[str, tuple[bytes, Callable[[bytes], VerifiedEvidence]]] = {}


def case(name: str) -> tuple[bytes, Callable[[bytes], VerifiedEvidence]]:
    if name not in _LOADED:
        _LOADED[name] = CASES[name]()
    return _LOADED[name]


@pytest.mark.parametrize("name", CASES)
def test_the_untouched_sample_verifies(name: str) -> None:
    data, verify = case(name)
    verify(data)


@pytest.mark.parametrize("name", CASES)
@settings(max_examples=120, deadline=None)
@given(position=st.floats(min_value=0, max_value=1, exclude_max=True), mask=st.integers(1, 255))
def test_a_one_byte_flip_anywhere_is_refused(name: str, position: float, mask: int) -> None:
    data, verify = case(name)
    index = int(position * len(data))
    tampered = bytearray(data)
    tampered[index] ^= mask
    with pytest.raises(AttestationError):
        verify(bytes(tampered))


@pytest.mark.parametrize("name", ["tdx-v4-padded", "sgx-v3", "snp-milan"])
def test_every_position_of_the_signed_header_region(name: str) -> None:
    # Exhaustively, the first 700 bytes (header, body and the signature's start).
    data, verify = case(name)
    for index in range(min(700, len(data))):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        with pytest.raises(AttestationError):
            verify(bytes(tampered))


# Positions in the Nitro samples where a flip once escaped as another exception:
# a timestamp past year 9999, an X.509 version of 3 or 18, a name attribute parsed
# as a BitString, a duplicated extension (cryptography parses certificates lazily).
@pytest.mark.parametrize("name", ["nitro-cose", "nitro-debug"])
@pytest.mark.parametrize(
    ("index", "mask"),
    [(87, 1), (88, 255), (89, 255), (944, 1), (944, 16), (1164, 16), (2558, 1), (2589, 1), (2589, 16)],
)
def test_nitro_flips_that_once_escaped_are_refused(name: str, index: int, mask: int) -> None:
    data, verify = case(name)
    tampered = bytearray(data)
    tampered[index] ^= mask
    with pytest.raises(AttestationError):
        verify(bytes(tampered))


# The same in the PCK chains of DCAP quotes (an X.509 version of 3 or 66, a name
# attribute parsed as a BitString): found by flipping every byte of every sample.
@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("sgx-v3", 1096),
        ("sgx-v3", 1097),
        ("sgx-v3", 3258),
        ("sgx-v3-processor-ca", 1493),
        ("tdx-v4-padded", 1302),
        ("tdx-v4-padded", 3460),
        ("tdx-v5", 1373),
        ("tdx-v5", 3530),
    ],
)
def test_dcap_flips_that_once_escaped_are_refused(name: str, index: int) -> None:
    data, verify = case(name)
    tampered = bytearray(data)
    tampered[index] ^= 0x10
    with pytest.raises(AttestationError):
        verify(bytes(tampered))


# A certificate's signature BIT STRING with an unused-bits count of 1 (a flip in the
# PEM text of the PCK chain): cryptography verifies the same signature bytes, so
# nothing but a strict DER check refuses it.
@pytest.mark.parametrize(("name", "index"), [("sgx-v3-processor-ca", 2567), ("tdx-v5", 2977)])
def test_a_certificate_signature_with_unused_bits_is_refused(name: str, index: int) -> None:
    data, verify = case(name)
    tampered = bytearray(data)
    tampered[index] ^= 0x10
    with pytest.raises(AttestationError, match="BIT STRING"):
        verify(bytes(tampered))
