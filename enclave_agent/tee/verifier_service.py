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

HTTP: ``POST /v1/verify`` ``{"quote": Quote JSON, "evidenceType": "aws-nitro",
"evidence": "<base64>"}`` -> 200 ``{"claim", "signature", "verifier"}``, 422
``{"verdict": "refused", "reasons": [{"rule", "value", "reason"}]}``, 400 for a
malformed request; ``GET /v1/verifier`` and ``/healthz`` name the signer and policy.

Run: ``enclave-agent evidence-verifier --key FILE --policy FILE [--nitro-root-sha256 HEX]``
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
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_account import Account

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee.attestation_service import load_or_create_service_key
from enclave_agent.tee.backend import is_secp256k1_key
from enclave_agent.tee.binding import BindingClaims
from enclave_agent.tee.evidence import EvidenceType, EvidenceVerifier, evidence_hash
from enclave_agent.tee.nitro import AWS_NITRO_ROOT_G1_SHA256, NitroVerifier
from enclave_agent.tee.policy import EvidenceRefused, Policy, Refusal, Verdict
from enclave_agent.tee.quote import ROLE_NAMES, MalformedQuoteError, Quote
from enclave_agent.tee.verified_evidence import (
    EvidenceClaim,
    policy_hash,
    recover_verifier,
    sign_verified_evidence,
)

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
    ) -> None:
        if not is_secp256k1_key(bytes(signing_key)):
            raise ConfigError("evidence verifier signing key must be a valid 32-byte secp256k1 key")
        self._key = bytes(signing_key)
        self.address = str(Account.from_key(self._key).address)
        self.policy = policy
        self.policy_hash = policy_hash(policy_bytes)
        self.verifiers = dict(verifiers)

    def __repr__(self) -> str:
        return f"EvidenceVerifierService(verifier={self.address})"

    def judge(self, quote: Quote, evidence_type: str, evidence: bytes, *, now: int) -> Verdict:
        """Every refusal of ``evidence`` presented for ``quote`` (none: accepted)."""
        verifier = self.verifiers.get(evidence_type)
        if verifier is None:
            return Verdict(
                (Refusal("type", evidence_type, f"this verifier checks {', '.join(sorted(self.verifiers))}"),)
            )
        try:
            verified = verifier.verify(evidence)
        except AttestationError as exc:
            return Verdict((Refusal("verification", type(exc).__name__, str(exc)),))
        claims = BindingClaims(
            enclave=quote.enclave,
            x25519_key=quote.x25519_key,
            chain_id=quote.chain_id,
            registry=quote.registry,
        )
        role = ROLE_NAMES.get(quote.role, str(quote.role))
        verdict = self.policy.evaluate(verified, role=role, claims=claims, now=now)
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
) -> dict[str, EvidenceVerifier]:
    """The platform verifiers a service (or a peer) runs without collateral: AWS Nitro,
    pinned to ``nitro_roots_sha256`` (default AWS's root). DCAP and SNP verifiers need
    collateral: pass them in."""
    first, *others = nitro_roots_sha256
    return {"aws-nitro": NitroVerifier(root_sha256=first, also_trust=others)}


def parse_roots(values: Sequence[str] | None, what: str) -> tuple[bytes, ...]:
    """Pinned root fingerprints from hex strings (none given: AWS's root)."""
    roots = []
    for value in values or [AWS_NITRO_ROOT_G1_SHA256.hex()]:
        try:
            root = bytes.fromhex(str(value).removeprefix("0x"))
        except ValueError:
            root = b""
        if len(root) != 32:
            raise ConfigError(f"{what}: expected 32 bytes of hex, got {value!r}")
        roots.append(root)
    return tuple(roots)


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
    except EvidenceRefused as exc:
        return web.json_response(
            {"verdict": "refused", "reasons": [r.to_json() for r in exc.verdict.refusals]}, status=422
        )
    return web.json_response(
        {"claim": claim.to_json(), "signature": "0x" + signature.hex(), "verifier": service.address}
    )


def _identity(service: EvidenceVerifierService) -> dict[str, Any]:
    nitro = service.verifiers.get("aws-nitro")
    roots = sorted(getattr(nitro, "roots_sha256", ()))
    return {
        "verifier": service.address,
        "policyHash": "0x" + service.policy_hash.hex(),
        "policy": service.policy.source,
        "types": sorted(service.verifiers),
        "nitroRootsSha256": [root.hex() for root in roots],
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
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"evidence verifier URL must be http(s): {url!r}")
    body = {
        "quote": quote.to_json(),
        "evidenceType": evidence_type,
        "evidence": base64.b64encode(evidence).decode(),
    }
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url.rstrip("/") + "/v1/verify",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked)
            reply = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        if exc.code == 422:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                raise EvidenceRefusedByVerifier(url, list(json.loads(detail)["reasons"])) from None
        raise AttestationError(f"evidence verifier at {url} failed: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AttestationError(f"evidence verifier at {url} unreachable or answered garbage: {exc}") from None
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


def run(args: argparse.Namespace) -> int:
    from enclave_agent.tee.policy_file import load_policy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    roots = parse_roots(args.nitro_root_sha256, "--nitro-root-sha256")
    try:
        policy_bytes = Path(args.policy).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.policy}: cannot read policy: {exc.strerror}") from None
    service = EvidenceVerifierService(
        load_or_create_service_key(args.key),
        policy=load_policy(args.policy),
        policy_bytes=policy_bytes,
        verifiers=verifiers_for(roots),
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
