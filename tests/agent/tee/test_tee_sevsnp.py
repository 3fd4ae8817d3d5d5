"""AMD SEV-SNP reports: the two real Milan reports verify, with the README's values;
chain, chip, TCB and signature failures are refused and named."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509

from enclave_agent.tee.evidence import EvidenceVerifier
from enclave_agent.tee.sevsnp import (
    SnpCertificateError,
    SnpReportFormatError,
    SnpSignatureError,
    SnpTcbMismatchError,
    SnpVerifier,
    parse_report,
    vcek_identity,
)
from tests.support.tee_samples import SNP, SNP_AT, snp_report, snp_verifier

REPORTS = {
    "virtee_milan_report.hex": (
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
        {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        False,
        "0x30000",
    ),
    "gosevguest_milan_report.bin": (
        "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
        {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
        True,
        "0xb0000",
    ),
}


def certs(*names: str) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for name in names:
        data = (SNP / name).read_bytes()
        found += (
            x509.load_pem_x509_certificates(data)
            if name.endswith(".pem")
            else [SnpVerifier.from_paths([SNP / name]).certificates[0]]
        )
    return found


@pytest.mark.parametrize("name", REPORTS)
def test_real_reports_verify(name: str) -> None:
    measurement, tcb, debug, policy = REPORTS[name]
    verifier: EvidenceVerifier = snp_verifier()
    verified = verifier.verify(snp_report(name), at=SNP_AT)
    assert verified.platform == "amd-sev-snp"
    assert verified.platform_measurements["MEASUREMENT"].hex() == measurement
    assert (
        verified.measurement
        == hashlib.sha256(b"enclave-share/snp-measurement/v1\0" + bytes.fromhex(measurement)).digest()
    )
    assert dict(verified.tcb) == tcb and verified.debug is debug and verified.details["policy"] == policy
    assert verified.timestamp is None and verified.tcb_status is None


def test_readme_values_of_the_go_sev_guest_report() -> None:
    verified = snp_verifier().verify(snp_report("gosevguest_milan_report.bin"), at=SNP_AT)
    assert verified.report_data == bytes.fromhex("0102030405") + bytes(59)
    assert str(verified.details["chip_id"]).startswith("3ac3fe21e13fb099")


def test_hex_and_binary_reports_are_the_same() -> None:
    raw = snp_report("virtee_milan_report.hex")
    assert parse_report((SNP / "virtee_milan_report.hex").read_bytes()).raw == raw


def test_vcek_of_another_chip_is_refused() -> None:
    verifier = SnpVerifier(certs("gosevguest_milan_vcek.der", "amd_ask_ark_milan.pem"))
    with pytest.raises(SnpTcbMismatchError, match="no VCEK for this report's chip .*hwID"):
        verifier.verify(snp_report("virtee_milan_report.hex"), at=SNP_AT)


def test_unpinned_ark_is_refused() -> None:
    verifier = SnpVerifier(
        certs("virtee_milan_vcek.der", "amd_ask_ark_milan.pem"), ark_sha256={"Milan": bytes(32)}
    )
    with pytest.raises(SnpCertificateError, match="no pinned AMD ARK"):
        verifier.verify(snp_report("virtee_milan_report.hex"), at=SNP_AT)


def test_ask_of_another_family_does_not_chain() -> None:
    verifier = SnpVerifier(certs("virtee_milan_vcek.der", "amd_ask_ark_genoa.pem"))
    with pytest.raises(SnpCertificateError, match="no pinned ARK|no ASK for Milan"):
        verifier.verify(snp_report("virtee_milan_report.hex"), at=SNP_AT)


def test_expired_vcek_is_refused() -> None:
    with pytest.raises(SnpCertificateError, match="VCEK .* is not valid at 2031"):
        snp_verifier().verify(snp_report("virtee_milan_report.hex"), at=1924992000)


def test_byte_21_flip_fails_as_upstream() -> None:
    data = bytearray(snp_report("virtee_milan_report.hex"))
    data[21] ^= 0xFF
    with pytest.raises(SnpSignatureError, match="does not verify with the VCEK"):
        snp_verifier().verify(bytes(data), at=SNP_AT)


def test_reported_tcb_other_than_the_vceks_is_refused() -> None:
    data = bytearray(snp_report("virtee_milan_report.hex"))
    data[0x180 + 7] = 0x74  # microcode 116, the VCEK says 115
    with pytest.raises(SnpTcbMismatchError, match="SPLs .* are not the report's REPORTED_TCB"):
        snp_verifier().verify(bytes(data), at=SNP_AT)


def test_malformed_reports_are_named() -> None:
    data = snp_report("virtee_milan_report.hex")
    with pytest.raises(SnpReportFormatError, match="1183 bytes"):
        parse_report(data[:-1])
    with pytest.raises(SnpReportFormatError, match="version 7"):
        parse_report(b"\x07" + data[1:])
    with pytest.raises(SnpReportFormatError, match="signature algorithm 2"):
        parse_report(data[:0x34] + b"\x02" + data[0x35:])
    with pytest.raises(SnpReportFormatError, match="not zero"):
        parse_report(data[:-1] + b"\x01")
    with pytest.raises(SnpReportFormatError, match="not hex"):
        parse_report(b"zz" * 0x4A0)


def test_vcek_identity_and_turin_chain() -> None:
    product, hwid, spls = vcek_identity(certs("virtee_milan_vcek.der")[0])
    assert product == "Milan-B0" and len(hwid) == 64 and spls["microcode"] == 115
    product, hwid, _ = vcek_identity(certs("virtee_turin_vcek.der")[0])
    assert product == "Turin" and hwid.hex() == "1e550a8ee5cf9f4d"
