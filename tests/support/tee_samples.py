"""The real evidence samples in data/ (provenance in each folder's README) and the
verdicts those READMEs give, as of each sample's own time."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from enclave_agent.tee.dcap import DcapVerifier
from enclave_agent.tee.dcap_collateral import Collateral
from enclave_agent.tee.sevsnp import SnpVerifier

DATA = Path(__file__).resolve().parents[1] / "agent" / "tee" / "data"
DCAP = DATA / "intel-dcap"
SNP = DATA / "amd-sev-snp"
NITRO = DATA / "aws-nitro"
TCB_SIGNING = DCAP / "certs" / "intel_sgx_tcb_signing.der"
ROOT_CRL = DCAP / "crl" / "intel_sgx_root_ca_2025-03-20.crl.der"


def nitro_sample(name: str) -> bytes:
    data = (NITRO / name).read_bytes()
    return base64.b64decode(data.strip()) if name.endswith(".b64") else data


def quote(name: str) -> bytes:
    data = (DCAP / "quotes" / name).read_bytes()
    return bytes.fromhex(data.decode().strip()) if name.endswith(".hex") else data


def snp_report(name: str) -> bytes:
    data = (SNP / name).read_bytes()
    return bytes.fromhex(data.decode().strip()) if name.endswith(".hex") else data


@dataclass(frozen=True)
class DcapVector:
    """One row of intel-dcap/README.md's test-vector table."""

    row: str
    quote: str
    collateral: tuple[str, ...]  # paths under intel-dcap/
    at: int
    platform: str
    status: str | None  # None: refused for want of a matching TCB level
    advisories: tuple[str, ...] = ()
    debug: bool = False

    def collateral_paths(self) -> list[Path]:
        return [TCB_SIGNING, ROOT_CRL, *(DCAP / c for c in self.collateral)]

    def verifier(self) -> DcapVerifier:
        return DcapVerifier(Collateral.from_paths(self.collateral_paths()))


_A06 = ("collateral/automata-2025-06/tcbinfov3_90C06F000000.json", "collateral/automata-2025-06/qe_td.json")
_CRL06 = "crl/pck_platform_ca_2025-06-04.crl.der"
DCAP_VECTORS = [
    DcapVector(
        "1",
        "automata_sgx_v3_fmspc00606a000000.hex",
        (
            "collateral/automata-2025-08/sgx_tcbinfov3_00606a000000.json",
            "collateral/automata-2025-08/sgx_qeidentity_v4.json",
            "crl/pck_platform_ca_2025-08-15.crl.der",
        ),
        1755236700,
        "intel-sgx",
        "SWHardeningNeeded",
        ("INTEL-SA-00615",),
    ),
    DcapVector(
        "2",
        "automata_tdx_v4_fmspc00806f050000.bin",
        (
            "collateral/automata-2025-06/tcbinfov3_00806f050000.json",
            "collateral/automata-2025-06/qe_td.json",
            _CRL06,
        ),
        1749095100,
        "intel-tdx",
        "OutOfDate",
        ("INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"),
    ),
    DcapVector(
        "2b",
        "automata_tdx_v4_fmspc00806f050000.bin",
        (
            "collateral/automata-2025-07-solana/tcb_info_v3_with_tdx_module.json",
            "collateral/automata-2025-07-solana/qe_identity.json",
            "crl/pck_platform_ca_2025-07-07.crl.der",
        ),
        1751932800,
        "intel-tdx",
        "OutOfDate",
        ("INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"),
    ),
    DcapVector(
        "2c",
        "automata_tdx_v4_fmspc00806f050000.bin",
        (
            "collateral/automata-2025-10/tcb_info.json",
            "collateral/automata-2025-10/identity.json",
            "crl/pck_platform_ca_2025-10-13.crl.der",
        ),
        1760918400,
        "intel-tdx",
        "OutOfDate",
        ("INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"),
    ),
    DcapVector(
        "3",
        "automata_tdx_v5_alibaba_fmspc90c06f000000.bin",
        (*_A06, _CRL06),
        1749945600,
        "intel-tdx",
        "UpToDate",
    ),
    DcapVector(
        "4",
        "automata_tdx_v5_fmspc90c06f000000_no-tcb-match.bin",
        (*_A06, _CRL06),
        1749945600,
        "intel-tdx",
        None,
    ),
    DcapVector(
        "5",
        "phala_sgx_v3_fmspc00a067110000.bin",
        ("collateral/phala/sgx_quote_collateral.json",),
        1752919277,
        "intel-sgx",
        "ConfigurationAndSWHardeningNeeded",
        ("INTEL-SA-00289", "INTEL-SA-00615"),
    ),
    DcapVector(
        "6",
        "automata_sgx_v3_fmspc00a067110000.bin",
        ("collateral/phala/sgx_quote_collateral.json",),
        1752919277,
        "intel-sgx",
        "ConfigurationAndSWHardeningNeeded",
        ("INTEL-SA-00289", "INTEL-SA-00615"),
        debug=True,
    ),
    DcapVector(
        "7",
        "phala_tdx_v4_fmspcb0c06f000000.bin",
        ("collateral/phala/tdx_quote_collateral.json",),
        1752919234,
        "intel-tdx",
        "UpToDate",
    ),
    DcapVector(
        "8",
        "phala_tdx_v5_fmspc90c06f000000_outdated.bin",
        ("collateral/phala/tdx_quote_outdated_collateral.json",),
        1774003274,
        "intel-tdx",
        None,
    ),
]
ACCEPTED_DCAP = [v for v in DCAP_VECTORS if v.status is not None]
# A time inside every SNP certificate's validity (the VCEKs live 7 years).
SNP_AT = 1735689600  # 2025-01-01


def snp_verifier() -> SnpVerifier:
    return SnpVerifier.from_paths(sorted(p for p in SNP.iterdir() if p.suffix in (".der", ".pem")))
