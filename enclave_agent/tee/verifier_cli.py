"""``enclave-agent evidence-verifier``: the subcommand, kept out of ``cli.py`` (which
only calls ``add_evidence_verifier``) and light to import (the service loads on run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser, *, port: int = 0) -> None:
    parser.add_argument("--key", required=True, type=Path, help="signing key file (hex; created if absent)")
    parser.add_argument("--policy", required=True, type=Path, help="evidence policy file (TOML)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=port, help=f"0 picks a free port (printed); default {port}"
    )
    parser.add_argument(
        "--nitro-root-sha256",
        action="append",
        default=None,
        help="SHA-256 (hex) of a pinned AWS Nitro root certificate; repeat to pin several "
        "(default: AWS Nitro Root-G1 only; tests pin a root they made)",
    )
    parser.add_argument(
        "--dcap-collateral",
        type=Path,
        metavar="DIR",
        help="verify Intel SGX and TDX quotes with the collateral under DIR (TCB Info, QE Identity, "
        "CRLs, TCB signing certificate; PCS or PCCS output, kept current by the operator)",
    )
    parser.add_argument(
        "--snp-collateral",
        type=Path,
        metavar="DIR",
        help="verify AMD SEV-SNP reports with the certificates under DIR (VCEKs, AMD's ASK/ARK chains)",
    )
    parser.add_argument(
        "--rpc-url",
        metavar="URL",
        help="the consortium chain's JSON-RPC: DCAP and SNP evidence signs no time, so its challenge "
        "must be the hash of a recent block of this chain (without it such evidence is refused)",
    )
    parser.add_argument(
        "--amd-ark-sha256",
        action="append",
        type=_family_pin,
        metavar="FAMILY=HEX",
        help="pin the AMD ARK of a product family (Milan, Genoa, Turin) by SHA-256; repeat per family "
        "(default: AMD's own ARKs; tests pin an ARK they made)",
    )


def _family_pin(value: str) -> tuple[str, str]:
    family, sep, digest = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FAMILY=HEX, got {value!r}")
    return family, digest


def _cmd_evidence_verifier(args: argparse.Namespace) -> int:
    from enclave_agent.tee import verifier_service

    return verifier_service.run(args)


def add_evidence_verifier(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evidence-verifier",
        help="run an evidence verifier: verify hardware evidence, sign VerifiedEvidence for the registry",
        description="Verifies posted hardware evidence (AWS Nitro; Intel SGX and TDX with "
        "--dcap-collateral; AMD SEV-SNP with --snp-collateral) for a quote with the platform verifier, "
        "the policy file and the key binding, and only if accepted signs EIP-712 VerifiedEvidence; a "
        "refusal names every rule and offending value. Governance trusts its address with "
        "setEvidenceVerifier.",
    )
    add_arguments(p, port=8700)
    p.set_defaults(func=_cmd_evidence_verifier)
