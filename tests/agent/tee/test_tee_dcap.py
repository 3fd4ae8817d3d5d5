"""Intel DCAP quotes: every vector of data/intel-dcap/README.md gets its verdict as
of its own time; each verification step refuses what it must, naming itself."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from enclave_agent.errors import AttestationError
from enclave_agent.tee.dcap import (
    DcapCertificateError,
    DcapCollateralError,
    DcapSignatureError,
    DcapTcbError,
    DcapVerifier,
    sgx_measurement,
    tdx_measurement,
)
from enclave_agent.tee.dcap_collateral import Collateral, signed_member
from enclave_agent.tee.dcap_pck import DcapCertificateError as PckError
from enclave_agent.tee.dcap_pck import parse_sgx_extension
from enclave_agent.tee.dcap_quote import DcapQuoteFormatError, parse_quote
from enclave_agent.tee.dcap_tcb import TcbResult, converge
from enclave_agent.tee.evidence import EvidenceType, EvidenceVerifier
from tests.support.tee_samples import ACCEPTED_DCAP, DCAP, DCAP_VECTORS, DcapVector, quote

BY_ROW = {v.row: v for v in DCAP_VECTORS}


@pytest.mark.parametrize("vector", ACCEPTED_DCAP, ids=lambda v: f"row{v.row}")
def test_accepted_vectors_get_their_tcb_status(vector: DcapVector) -> None:
    verifier: EvidenceVerifier = vector.verifier()
    verified = verifier.verify(quote(vector.quote), at=vector.at)
    assert verified.platform == vector.platform
    assert verified.tcb_status == vector.status
    assert verified.advisories == vector.advisories
    assert verified.debug is vector.debug
    assert verified.timestamp is None and verified.verified_at == vector.at
    assert len(verified.report_data or b"") == 64 and verified.nonce == (verified.report_data or b"")[32:]
    assert verified.record().evidence_type in (EvidenceType.INTEL_SGX, EvidenceType.INTEL_TDX)
    assert verified.evidence_hash == verified.record().evidence_hash and len(verified.evidence_hash) == 32


@pytest.mark.parametrize("vector", [v for v in DCAP_VECTORS if v.status is None], ids=lambda v: f"row{v.row}")
def test_quotes_below_every_tcb_level_are_refused(vector: DcapVector) -> None:
    with pytest.raises(DcapTcbError, match="no TCB level matches the platform .*TCB unrecognized"):
        vector.verifier().verify(quote(vector.quote), at=vector.at)


def test_expected_measurements_of_the_readme() -> None:
    sgx = BY_ROW["1"].verifier().verify(quote(BY_ROW["1"].quote), at=BY_ROW["1"].at)
    m = sgx.platform_measurements
    assert m["MRENCLAVE"].hex() == "a4f45c39dac622cb1dd32ddb35a52ec92db41d0fa88a1c911c49e59c534f61cd"
    assert m["MRSIGNER"].hex() == "8f2dbc0f9c5d3378d596974b2deed1f93223cc49242899f83809bcc92546132c"
    assert (
        sgx.measurement
        == hashlib.sha256(b"enclave-share/sgx-measurement/v1\0" + m["MRENCLAVE"] + m["MRSIGNER"]).digest()
    )
    assert sgx.details["qe_status"] == "UpToDate" and sgx.details["platform_status"] == "SWHardeningNeeded"
    tdx = BY_ROW["3"].verifier().verify(quote(BY_ROW["3"].quote), at=BY_ROW["3"].at)
    t = tdx.platform_measurements
    assert t["MRTD"].hex().startswith("157768a71a6a31f5561978c4cde66580")
    assert t["RTMR0"].hex().startswith("cdf337cef3d59099c809ca0dd38c7ba7")
    assert t["RTMR3"] == bytes(48) and "MRSERVICETD" in t
    assert (tdx.report_data or b"").hex().startswith("83ded8a0ee745596")
    assert (
        tdx.measurement
        == hashlib.sha256(
            b"enclave-share/tdx-measurement/v1\0"
            + t["MRTD"]
            + t["RTMR0"]
            + t["RTMR1"]
            + t["RTMR2"]
            + t["RTMR3"]
        ).digest()
    )
    assert tdx.details["tdx_module_status"] == "UpToDate"
    parsed = parse_quote(quote(BY_ROW["3"].quote))
    assert tdx_measurement(parsed.body) == tdx.measurement  # type: ignore[arg-type]
    parsed_sgx = parse_quote(quote(BY_ROW["1"].quote))
    assert sgx_measurement(parsed_sgx.body) == sgx.measurement  # type: ignore[arg-type]


def test_debug_enclave_is_reported_not_refused_by_the_verifier() -> None:
    vector = BY_ROW["6"]
    verified = vector.verifier().verify(quote(vector.quote), at=vector.at)
    assert verified.debug and verified.platform_measurements["ATTRIBUTES"][0] & 0x02


def test_collateral_outside_its_window_is_refused() -> None:
    vector = BY_ROW["7"]
    with pytest.raises(DcapCollateralError, match="not current|no TDX TCB Info .* is current"):
        vector.verifier().verify(quote(vector.quote), at=vector.at + 40 * 86400)
    with pytest.raises(AttestationError):
        vector.verifier().verify(quote(vector.quote))  # now: long after the collateral's window


def test_missing_collateral_is_named() -> None:
    vector = BY_ROW["2"]
    data = quote(vector.quote)
    paths = vector.collateral_paths()
    for dropped, message in [
        ("tcbinfov3", "no TDX TCB Info for FMSPC 00806f050000"),
        ("qe_td", "no TD_QE Identity"),
        ("pck_platform", "no current CRL of Intel SGX PCK Platform CA"),
        ("root_ca", "no current CRL of Intel SGX Root CA"),
        ("tcb_signing", "no valid Intel SGX TCB Signing certificate"),
    ]:
        kept = [p for p in paths if dropped not in p.name]
        with pytest.raises(DcapCollateralError, match=message):
            DcapVerifier(Collateral.from_paths(kept)).verify(data, at=vector.at)


def test_collateral_for_another_platform_does_not_apply() -> None:
    # Row 1's SGX collateral cannot judge row 2's TDX quote.
    paths = [*BY_ROW["1"].collateral_paths(), DCAP / "crl" / "pck_platform_ca_2025-06-04.crl.der"]
    with pytest.raises(DcapCollateralError, match="no TDX TCB Info for FMSPC 00806f050000"):
        DcapVerifier(Collateral.from_paths(paths)).verify(quote(BY_ROW["2"].quote), at=BY_ROW["2"].at)


def test_tampered_tcb_info_is_refused(tmp_path: Path) -> None:
    vector = BY_ROW["2"]
    original = DCAP / vector.collateral[0]
    text = original.read_text()
    forged = tmp_path / "tcbinfo.json"
    forged.write_text(text.replace('"tcbStatus":"OutOfDate"', '"tcbStatus":"UpToDate"', 1))
    paths = [forged if p == original else p for p in vector.collateral_paths()]
    with pytest.raises(DcapSignatureError, match="TCB Info for FMSPC 00806f050000 signature does not verify"):
        DcapVerifier(Collateral.from_paths(paths)).verify(quote(vector.quote), at=vector.at)


def test_signed_member_is_sliced_not_reencoded() -> None:
    text = '{ "tcbInfo" : {"b":1, "a" : [1,2]} , "signature":"ab"}'
    assert signed_member(text, "tcbInfo") == ('{"b":1, "a" : [1,2]}', "ab")
    with pytest.raises(ValueError):
        signed_member('{"tcbInfo": {}}', "tcbInfo")


def test_other_root_pin_is_refused() -> None:
    vector = BY_ROW["7"]
    verifier = DcapVerifier(Collateral.from_paths(vector.collateral_paths()), root_sha256=bytes(32))
    with pytest.raises(DcapCertificateError, match="not the pinned Intel SGX Root CA"):
        verifier.verify(quote(vector.quote), at=vector.at)


def test_certificates_outside_their_validity_are_refused() -> None:
    vector = BY_ROW["1"]
    with pytest.raises(DcapCertificateError, match="is not valid at 2017"):
        vector.verifier().verify(quote(vector.quote), at=1500000000)


def _resign_free(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def test_malformed_quotes_are_named() -> None:
    data = quote(BY_ROW["7"].quote)
    with pytest.raises(DcapQuoteFormatError, match="version 9"):
        parse_quote(_resign_free(data, 0, struct.pack("<H", 9)))
    with pytest.raises(DcapQuoteFormatError, match="key type 3"):
        parse_quote(_resign_free(data, 2, struct.pack("<H", 3)))
    with pytest.raises(DcapQuoteFormatError, match="TEE type 0x1"):
        parse_quote(_resign_free(data, 4, struct.pack("<I", 1)))
    with pytest.raises(DcapQuoteFormatError, match="QE vendor id"):
        parse_quote(_resign_free(data, 12, bytes(16)))
    with pytest.raises(DcapQuoteFormatError, match="truncated"):
        parse_quote(data[:600])
    with pytest.raises(DcapQuoteFormatError, match="runs past the end"):
        parse_quote(data[:4900])
    with pytest.raises(DcapQuoteFormatError, match="are not zero"):
        parse_quote(data[:-1] + b"\x01")
    with pytest.raises(DcapQuoteFormatError, match="over 65536"):
        parse_quote(data + bytes(70000))


def test_quote_signature_and_qe_binding_are_checked() -> None:
    vector = BY_ROW["5"]
    data = quote(vector.quote)
    parsed = parse_quote(data)
    body_at = 48 + 320  # first byte of the SGX REPORTDATA
    with pytest.raises(DcapSignatureError, match="quote signature does not verify"):
        vector.verifier().verify(_resign_free(data, body_at, b"\x99"), at=vector.at)
    sig_start = len(parsed.signed) + 4
    qe_report_at = sig_start + 128  # v3: the QE report follows signature and key
    with pytest.raises(DcapSignatureError, match="QE report signature does not verify"):
        vector.verifier().verify(_resign_free(data, qe_report_at + 64, b"\x00"), at=vector.at)
    auth_at = qe_report_at + 384 + 64 + 2
    with pytest.raises(DcapSignatureError, match="QE report data does not bind the attestation key"):
        vector.verifier().verify(_resign_free(data, auth_at, bytes([data[auth_at] ^ 1])), at=vector.at)


def test_pck_extension_parser_refuses_malformed_der() -> None:
    assert parse_quote(quote(BY_ROW["7"].quote)).pck_chain_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    for bad in (
        b"",
        b"\x30",
        b"\x30\x81\x05",
        b"\x30\x05\x30\x03\x06\x01\x2a",
        b"\x31\x00",
        b"\x30\x80\x00\x00",
    ):
        with pytest.raises(PckError):
            parse_sgx_extension(bad)


def test_convergence_follows_intel() -> None:
    up, old, rev = TcbResult("UpToDate"), TcbResult("OutOfDate", ("SA-1",)), TcbResult("Revoked")
    assert converge(TcbResult("SWHardeningNeeded"), [up]).status == "SWHardeningNeeded"
    assert converge(TcbResult("SWHardeningNeeded"), [old]).status == "OutOfDate"
    assert converge(TcbResult("ConfigurationNeeded"), [old]).status == "OutOfDateConfigurationNeeded"
    assert converge(up, [up, rev]).status == "Revoked"
    assert converge(TcbResult("OutOfDate", ("SA-2",)), [old]).advisories == ("SA-2", "SA-1")


def test_collateral_files_are_recognised_or_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(DcapCollateralError, match="neither JSON, a CRL nor a certificate"):
        Collateral.from_paths([bad])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"foo": 1}))
    with pytest.raises(DcapCollateralError, match="neither TCB Info"):
        Collateral.from_paths([other])
    everything = Collateral.from_dir(DCAP / "collateral")
    assert len(everything.documents) >= 16 and everything.crls
    with pytest.raises(DcapCollateralError, match="does not exist"):
        Collateral.from_dir(tmp_path / "missing")


def test_a_whole_collateral_cache_picks_the_current_items() -> None:
    # Every sample's collateral in one directory, as a PCCS cache holds it: each
    # accepted vector still gets its own verdict at its own time.
    collateral = Collateral.from_paths([*(DCAP / "certs").iterdir(), *(DCAP / "crl").iterdir()])
    bundles = Collateral.from_dir(DCAP / "collateral")
    collateral.documents += bundles.documents
    collateral.crls += bundles.crls
    collateral.certificates += bundles.certificates
    for vector in ACCEPTED_DCAP:
        if vector.row in ("2b", "2c"):
            continue  # same quote as row 2 at other times: checked below
        verified = DcapVerifier(collateral).verify(quote(vector.quote), at=vector.at)
        assert verified.tcb_status == vector.status, vector.row
    for row in ("2b", "2c"):
        assert (
            DcapVerifier(collateral).verify(quote(BY_ROW[row].quote), at=BY_ROW[row].at).tcb_status
            == "OutOfDate"
        )
