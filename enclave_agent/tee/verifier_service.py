"""The evidence verifier service: checks an enclave's hardware evidence for a quote
and, only if it is accepted, signs EIP-712 ``VerifiedEvidence`` for the registry
(``enclave_agent.tee.verified_evidence``).

A verifier is a role of its own in the registry (``setEvidenceVerifier``), distinct
from the SIMULATED attestation signers: it never vouches for code it measured itself,
only for evidence it verified with the platform verifiers (``nitro``, ``dcap``,
``sevsnp``), judged under its policy file (``policy_file``) and found bound
(``binding``) to the quote's enclave account, X25519 key, chain and registry. It also
checks that the quote names the measurement the evidence proves. A refusal names every
rule and the offending value (``Refusal``); nothing is signed then.

What stays trusted: the verifier's signing key and its pinned roots (AWS Nitro root
by SHA-256, default AWS's; Intel and AMD roots through their collateral), and the
collateral's freshness. Peers do not rely on it: they re-verify the evidence bytes the
registry emits (``enclave_agent.protocol.evidence``).

HTTP: ``POST /v1/verify`` ``{"quote": Quote JSON, "evidenceType": "aws-nitro" (or
"intel-sgx", "intel-tdx", "amd-sev-snp" where collateral is configured),
"evidence": "<base64>"}`` -> 200 ``{"claim", "signature", "verifier"}``, 422
``{"verdict": "refused", "reasons": [{"rule", "value", "reason"}]}``, 400 for a
malformed request; ``GET /v1/verifier`` and ``/healthz`` name the signer and policy.

Run: ``enclave-agent evidence-verifier --key FILE --policy FILE [--nitro-root-sha256 HEX]
[--dcap-collateral DIR] [--snp-collateral DIR [--amd-ark-sha256 FAMILY=HEX]] [--rpc-url URL]``
(DCAP and SNP evidence is fresh only through a chain-anchored challenge: ``--rpc-url``)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_account import Account

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee._service_http import ServiceRefused, post_json
from enclave_agent.tee.anchor import BlockTime, block_time_on, challenge_time
from enclave_agent.tee.backend import is_secp256k1_key
from enclave_agent.tee.binding import BindingClaims
from enclave_agent.tee.evidence import (
    EvidenceType,
    EvidenceTypeError,
    EvidenceVerifier,
    evidence_hash,
    verify_presented,
)
from enclave_agent.tee.nitro import AWS_NITRO_ROOT_G1_SHA256, NitroVerifier
from enclave_agent.tee.policy import EvidenceRefused, Policy, Refusal, Verdict
from enclave_agent.tee.quote import ROLE_NAMES, MalformedQuoteError, Quote
from enclave_agent.tee.service_key import load_or_create_service_key
from enclave_agent.tee.verified_evidence import (
    EvidenceClaim,
    policy_hash,
    recover_verifier,
    sign_verified_evidence,
)
from enclave_agent.tee.verify import hex32

logger = logging.getLogger(__name__)

MAX_EVIDENCE = 64 * 1024


class EvidenceVerifierService:
    """Verifies evidence for a quote and signs ``VerifiedEvidence`` when accepted."""

    def __init__(
        self,
        signing_key: bytes,
        *,
        policy: Policy,
        policy_bytes: bytes,
        verifiers: Mapping[str, EvidenceVerifier],
        chain: tuple[int, BlockTime] | None = None,
    ) -> None:
        """``chain``: (chain id, block lookup) of the consortium's chain, to anchor the
        challenge of evidence that signs no time (``enclave_agent.tee.anchor``); without
        it, DCAP and SNP evidence is refused for want of freshness."""
        if not is_secp256k1_key(bytes(signing_key)):
            raise ConfigError("evidence verifier signing key must be a valid 32-byte secp256k1 key")
        self._key = bytes(signing_key)
        self.address = str(Account.from_key(self._key).address)
        self.policy = policy
        self.policy_hash = policy_hash(policy_bytes)
        self.verifiers = dict(verifiers)
        self.chain = chain

    def __repr__(self) -> str:
        return f"EvidenceVerifierService(verifier={self.address})"

    def judge(self, quote: Quote, evidence_type: str, evidence: bytes, *, now: int) -> Verdict:
        """Every refusal of ``evidence`` presented for ``quote`` (none: accepted)."""
        try:
            verified = verify_presented(self.verifiers, evidence_type, evidence, now=now)
        except EvidenceTypeError as exc:
            return Verdict((Refusal("type", evidence_type, str(exc)),))
        except AttestationError as exc:
            return Verdict((Refusal("verification", type(exc).__name__, str(exc)),))
        claims = BindingClaims(
            enclave=quote.enclave,
            x25519_key=quote.x25519_key,
            chain_id=quote.chain_id,
            registry=quote.registry,
        )
        role = ROLE_NAMES.get(quote.role, str(quote.role))
        block_time = self.chain[1] if self.chain and self.chain[0] == quote.chain_id else None
        anchored = challenge_time(verified, block_time)
        verdict = self.policy.evaluate(
            verified,
            role=role,
            claims=claims,
            now=now,
            challenge=None if anchored is None else verified.nonce,
            challenge_time=anchored,
        )
        refusals = list(verdict.refusals)
        if verified.measurement != quote.measurement:
            refusals.append(
                Refusal(
                    "quote",
                    "0x" + quote.measurement.hex(),
                    f"the quote names another measurement than the evidence proves "
                    f"(0x{verified.measurement.hex()})",
                )
            )
        if quote.expiry < now:
            refusals.append(Refusal("quote", f"expiry={quote.expiry}", f"the quote expired before {now}"))
        return Verdict(tuple(refusals))

    def verify_and_sign(
        self, quote: Quote, evidence_type: str, evidence: bytes, *, now: int | None = None
    ) -> tuple[EvidenceClaim, bytes]:
        """(claim, signature) for accepted evidence; ``EvidenceRefused`` listing every reason."""
        now = int(time.time()) if now is None else now
        verdict = self.judge(quote, evidence_type, bytes(evidence), now=now)
        if not verdict.accepted:
            logger.info(
                "evidence refused: enclave=%s type=%s reasons=%s",
                quote.enclave,
                evidence_type,
                "; ".join(str(r) for r in verdict.refusals),
            )
            verdict.raise_if_refused()
        claim = EvidenceClaim(
            EvidenceType.from_label(evidence_type), evidence_hash(evidence), self.policy_hash
        )
        signature = sign_verified_evidence(quote, claim, self._key)
        logger.info(
            "evidence verified and signed: enclave=%s type=%s measurement=0x%s evidenceHash=0x%s",
            quote.enclave,
            evidence_type,
            quote.measurement.hex(),
            claim.evidence_hash.hex(),
        )
        return claim, signature


def verifiers_for(
    nitro_roots_sha256: Sequence[bytes] = (AWS_NITRO_ROOT_G1_SHA256,),
    *,
    dcap_collateral: Path | None = None,
    snp_collateral: Path | None = None,
    amd_ark_sha256: Mapping[str, bytes] | None = None,
) -> dict[str, EvidenceVerifier]:
    """The platform verifiers a service (or a peer) runs: AWS Nitro always, pinned to
    ``nitro_roots_sha256`` (default AWS's root); Intel SGX and TDX given a DCAP
    collateral directory (TCB Info, QE Identity, CRLs, TCB signing certificate; the
    Intel root is pinned); AMD SEV-SNP given a directory of VCEKs and ASK/ARK chains,
    pinning ``amd_ark_sha256`` per product family (default AMD's ARKs)."""
    from enclave_agent.tee.verify import dcap_verifier, snp_verifier

    first, *others = nitro_roots_sha256
    verifiers: dict[str, EvidenceVerifier] = {
        "aws-nitro": NitroVerifier(root_sha256=first, also_trust=others)
    }
    if dcap_collateral is not None:
        dcap = dcap_verifier(dcap_collateral, "DCAP collateral")
        verifiers |= {"intel-sgx": dcap, "intel-tdx": dcap}
    if snp_collateral is not None:
        verifiers["amd-sev-snp"] = snp_verifier(snp_collateral, "SNP collateral", amd_ark_sha256)
    elif amd_ark_sha256:
        raise ConfigError("AMD ARK pins are given but no SNP collateral directory")
    return verifiers


def parse_ark_pins(values: Mapping[str, str] | None, what: str) -> dict[str, bytes] | None:
    """Pinned AMD ARKs ``{family: SHA-256 hex}`` (None or empty: AMD's own)."""
    from enclave_agent.tee.sevsnp import AMD_ARK_SHA256

    if not values:
        return None
    pins = {}
    for family, value in values.items():
        if family not in AMD_ARK_SHA256:
            raise ConfigError(f"{what}: unknown product family {family!r} ({', '.join(AMD_ARK_SHA256)})")
        pins[family] = hex32(value, what)
    return pins


def parse_roots(values: Sequence[str] | None, what: str) -> tuple[bytes, ...]:
    """Pinned root fingerprints from hex strings (none given: AWS's root)."""
    return tuple(hex32(value, what) for value in values or [AWS_NITRO_ROOT_G1_SHA256.hex()])


# ---------------------------------------------------------------------- HTTP server

SERVICE = web.AppKey("evidence_verifier_service", EvidenceVerifierService)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _parse_request(body: Any) -> tuple[Quote, str, bytes]:
    if not isinstance(body, dict) or set(body) != {"quote", "evidenceType", "evidence"}:
        raise ValueError("expected a JSON object with exactly quote, evidenceType and evidence")
    quote = Quote.from_json(body["quote"])
    evidence_type = body["evidenceType"]
    if not isinstance(evidence_type, str):
        raise ValueError("evidenceType must be a string")
    try:
        evidence = base64.b64decode(str(body["evidence"]), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("evidence must be base64") from None
    if not 0 < len(evidence) <= MAX_EVIDENCE:
        raise ValueError(f"evidence must be 1..{MAX_EVIDENCE} bytes")
    return quote, evidence_type, evidence


async def _post_verify(request: web.Request) -> web.Response:
    try:
        quote, evidence_type, evidence = _parse_request(await request.json())
    except (ValueError, MalformedQuoteError) as exc:
        return _bad_request(str(exc))
    service = request.app[SERVICE]
    try:
        claim, signature = await asyncio.to_thread(service.verify_and_sign, quote, evidence_type, evidence)
    except ChainUnreachable as exc:
        return web.json_response({"error": str(exc)}, status=503, headers={"Retry-After": "5"})
    except EvidenceRefused as exc:
        return web.json_response(
            {"verdict": "refused", "reasons": [r.to_json() for r in exc.verdict.refusals]}, status=422
        )
    return web.json_response(
        {"claim": claim.to_json(), "signature": "0x" + signature.hex(), "verifier": service.address}
    )


def _identity(service: EvidenceVerifierService) -> dict[str, Any]:
    nitro = service.verifiers.get("aws-nitro")
    snp = service.verifiers.get("amd-sev-snp")
    return {
        "verifier": service.address,
        "policyHash": "0x" + service.policy_hash.hex(),
        "policy": service.policy.source,
        "types": sorted(service.verifiers),
        "nitroRootsSha256": [root.hex() for root in sorted(getattr(nitro, "roots_sha256", ()))],
        "amdArksSha256": {k: v.hex() for k, v in sorted(getattr(snp, "ark_sha256", {}).items())},
        "anchorChainId": None if service.chain is None else service.chain[0],
    }


async def _get_verifier(request: web.Request) -> web.Response:
    return web.json_response(_identity(request.app[SERVICE]))


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"} | _identity(request.app[SERVICE]))


def build_app(service: EvidenceVerifierService) -> web.Application:
    app = web.Application(client_max_size=2 * MAX_EVIDENCE)
    app[SERVICE] = service
    app.router.add_post("/v1/verify", _post_verify)
    app.router.add_get("/v1/verifier", _get_verifier)
    app.router.add_get("/healthz", _healthz)
    return app


# ---------------------------------------------------------------------- client


class EvidenceRefusedByVerifier(AttestationError):
    """A verifier service refused the evidence; ``reasons`` are its refusals (JSON)."""

    def __init__(self, url: str, reasons: list[dict[str, str]]) -> None:
        self.reasons = reasons
        shown = "; ".join(f"{r.get('rule')}: {r.get('reason')} ({r.get('value')})" for r in reasons)
        super().__init__(f"evidence verifier at {url} refused the evidence: {shown}")


def request_verification(
    url: str, quote: Quote, evidence_type: str, evidence: bytes, *, timeout: float = 30.0
) -> tuple[EvidenceClaim, bytes, str]:
    """Ask the verifier at ``url`` to sign ``evidence`` for ``quote``: (claim, signature,
    verifier address), the signature checked to come from that address for this quote
    and this evidence. Whether the verifier is trusted is the registry's business."""
    body = {
        "quote": quote.to_json(),
        "evidenceType": evidence_type,
        "evidence": base64.b64encode(evidence).decode(),
    }
    try:
        reply = post_json("evidence verifier", url, "/v1/verify", body, timeout)
    except ServiceRefused as exc:
        if exc.status == 422:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                raise EvidenceRefusedByVerifier(url, list(json.loads(exc.detail)["reasons"])) from None
        raise
    try:
        claim = EvidenceClaim.from_json(reply["claim"])
        signature = bytes.fromhex(str(reply["signature"]).removeprefix("0x"))
        signer = recover_verifier(quote, claim, signature)
    except (KeyError, TypeError, ValueError, MalformedQuoteError) as exc:
        raise AttestationError(f"evidence verifier at {url} returned a malformed answer: {exc}") from None
    if signer.lower() != str(reply.get("verifier", "")).lower() or claim.evidence_hash != evidence_hash(
        evidence
    ):
        raise AttestationError(f"evidence verifier at {url} signed something else than asked")
    return claim, signature, signer


# ---------------------------------------------------------------------- process entry


async def _serve(service: EvidenceVerifierService, host: str, port: int) -> None:
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    print(
        f"evidence verifier verifier={service.address} policyHash=0x{service.policy_hash.hex()} "
        f"listening on http://{host}:{bound_port}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    logger.info("evidence verifier stopped")


class ChainUnreachable(AttestationError):
    """The chain that anchors challenges did not answer: try again (HTTP 503)."""


def _reachable(block_time: BlockTime, url: str) -> BlockTime:
    def lookup(block_hash: bytes) -> int | None:
        try:
            return block_time(block_hash)
        except Exception as exc:
            raise ChainUnreachable(f"chain at {url} unreachable ({type(exc).__name__})") from None

    return lookup


def run(args: argparse.Namespace) -> int:
    from enclave_agent.tee.policy_file import load_policy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    roots = parse_roots(args.nitro_root_sha256, "--nitro-root-sha256")
    try:
        policy_bytes = Path(args.policy).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.policy}: cannot read policy: {exc.strerror}") from None
    chain = None
    if args.rpc_url:
        from web3 import HTTPProvider, Web3

        w3 = Web3(HTTPProvider(args.rpc_url, request_kwargs={"timeout": 10}))
        try:
            chain = (int(w3.eth.chain_id), _reachable(block_time_on(w3), args.rpc_url))
        except Exception as exc:
            raise ConfigError(f"--rpc-url {args.rpc_url}: chain unreachable ({type(exc).__name__})") from None
    service = EvidenceVerifierService(
        load_or_create_service_key(args.key),
        chain=chain,
        policy=load_policy(args.policy),
        policy_bytes=policy_bytes,
        verifiers=verifiers_for(
            roots,
            dcap_collateral=args.dcap_collateral,
            snp_collateral=args.snp_collateral,
            amd_ark_sha256=parse_ark_pins(dict(args.amd_ark_sha256 or ()), "--amd-ark-sha256"),
        ),
    )
    try:
        asyncio.run(_serve(service, args.host, args.port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enclave_agent.tee.verifier_service",
        description="Evidence verifier: verifies hardware evidence for a quote and signs EIP-712 "
        "VerifiedEvidence for the registry when the policy accepts it.",
    )
    from enclave_agent.tee.verifier_cli import add_arguments

    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
