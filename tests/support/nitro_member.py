"""TEST TOOLING, NOT ENCLAVE CODE: an enclave agent process whose TEE backend is a
``HardwareTee`` over a fake Nitro Secure Module. The fake device answers each
attestation request with a Nitro-format COSE_Sign1 document (PCR0 from
``--pcr0``, ``user_data`` = the binding the agent asks for, ``nonce`` = its
challenge, timestamped now) signed by a test CA chain the test made and saved in
``--ca`` (``tests/support/nitro_documents.py``). Verifiers accept it only when they
pin that test root by SHA-256; nothing here is AWS hardware.

Run: ``python -m tests.support.nitro_member --config FILE --ca DIR --pcr0 HEX``
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
from enclave_agent.tee.hardware import HardwareTee
from tests.support.nitro_documents import DocumentSigner


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ca", type=Path, required=True, help="directory of DocumentSigner.save")
    parser.add_argument("--pcr0", required=True, help="PCR0 of the documents (96 hex digits)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"nitro_member: error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(config.name, False)
    tee = HardwareTee(FakeNsm(DocumentSigner.load(args.ca), bytes.fromhex(args.pcr0)))
    agent = Agent(config, tee=tee)
    return agent.run(_stop_on_signals())


if __name__ == "__main__":
    sys.exit(main())
