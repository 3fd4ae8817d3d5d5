"""TEST TOOLING, NOT ENCLAVE CODE: an enclave agent process whose TEE backend is a
``HardwareTee`` over a fake device, for integration tests of hardware members.

- ``--nitro-ca DIR --pcr0 HEX``: a fake Nitro Secure Module answering each request with
  a Nitro-format COSE_Sign1 document (``user_data`` = the binding the agent asks for,
  ``nonce`` = its challenge, timestamped now) signed by the test CA chain saved in DIR
  (``tests/support/nitro_documents.py``).
- ``--snp-chip DIR [--measurement HEX]``: a fake ``/dev/sev-guest`` answering with an
  SNP report over the agent's report data, signed by the test chip saved in DIR
  (``tests/support/snp_reports.py``).

Verifiers accept this evidence only when they pin the test root or ARK; nothing here
is AWS or AMD hardware.

Run: ``python -m tests.support.hardware_member --config FILE (--nitro-ca DIR --pcr0 HEX | --snp-chip DIR)``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from enclave_agent.cli import _configure_logging, _stop_on_signals
from enclave_agent.config import load_config
from enclave_agent.errors import ConfigError
from enclave_agent.protocol.agent import Agent
from enclave_agent.tee.hardware import EvidenceDevice, HardwareTee
from tests.support.nitro_documents import DocumentSigner
from tests.support.snp_reports import ReportSigner


class FakeNsm:
    """An ``EvidenceDevice`` standing in for ``/dev/nsm``: 64 bytes of report data ->
    a document with user_data = the first 32 and nonce = the last 32."""

    evidence_type = "aws-nitro"

    def __init__(self, signer: DocumentSigner, pcr0: bytes) -> None:
        self.signer = signer
        self.pcr0 = pcr0

    def evidence(self, report_data: bytes) -> bytes:
        return self.signer.document(
            pcr0=self.pcr0,
            user_data=report_data[:32],
            nonce=report_data[32:],
            timestamp_ms=int(time.time() * 1000),
        )


class FakeSevGuest:
    """An ``EvidenceDevice`` standing in for ``/dev/sev-guest``: a report over the 64
    bytes of report data, with this guest's launch measurement."""

    evidence_type = "amd-sev-snp"

    def __init__(self, signer: ReportSigner, measurement: bytes) -> None:
        self.signer = signer
        self.measurement = measurement

    def evidence(self, report_data: bytes) -> bytes:
        return self.signer.report(report_data, measurement=self.measurement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--nitro-ca", type=Path, help="directory of DocumentSigner.save")
    parser.add_argument("--pcr0", help="PCR0 of the documents (96 hex digits)")
    parser.add_argument("--snp-chip", type=Path, help="directory of ReportSigner.save")
    parser.add_argument("--measurement", default="05" * 48, help="the SNP MEASUREMENT (96 hex digits)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hardware_member: error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(config.name, False)
    device: EvidenceDevice
    if args.snp_chip is not None:
        device = FakeSevGuest(ReportSigner.load(args.snp_chip), bytes.fromhex(args.measurement))
    else:
        device = FakeNsm(DocumentSigner.load(args.nitro_ca), bytes.fromhex(args.pcr0))
    agent = Agent.open(config, tee=HardwareTee(device))
    return agent.run(_stop_on_signals())


if __name__ == "__main__":
    sys.exit(main())
