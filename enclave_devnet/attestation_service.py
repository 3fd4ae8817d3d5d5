"""The simulated attestation service: a separate process that signs EIP-712 quotes
for the agent build it runs itself.

It stands where a hardware vendor's attestation (AWS Nitro document, DCAP quote)
and its verifier stand on real TEEs. It never takes a measurement, a code path or
a file from the caller: at start-up it measures the ``enclave_agent`` package and
lock it was installed with (``measure_package()``, printed, logged and served at
``/healthz``), and ``issue`` signs that measurement for whoever asks. In simulated
mode the service is therefore a TRUSTED STAND-IN for hardware: it vouches that the
caller runs the service's own build, which nothing checks (the operator of a
simulated enclave could run other code). Governance trusts a signer only for a
service it runs itself from the approved build. ``issue_from_evidence`` is the
hardware path: the measurement comes from evidence an ``EvidenceVerifier`` checked
(e.g. ``enclave_agent.tee.nitro.NitroVerifier``).

Run: ``enclave-devnet attestation-service --key FILE --port N`` (or
``python -m enclave_devnet.attestation_service``). It is development tooling, outside
the agent's measurement; the agent's side is ``enclave_agent.tee.attestation_client``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_account import Account
from eth_utils.address import is_address, to_checksum_address

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee.attestation_client import RequestFieldError, check_role
from enclave_agent.tee.backend import is_secp256k1_key
from enclave_agent.tee.binding import BindingClaims, BindingError, check_binding
from enclave_agent.tee.evidence import EvidenceVerifier
from enclave_agent.tee.measure import measure_package
from enclave_agent.tee.quote import Quote, sign_quote
from enclave_agent.tee.service_key import load_or_create_service_key

logger = logging.getLogger(__name__)

_ZERO_ADDRESS = "0x" + "00" * 20
_CLOCK_SKEW = 60  # seconds evidence may appear to come from the future
# JSON field -> issue() keyword
_REQUEST_FIELDS = {
    "role": "role",
    "operator": "operator",
    "enclave": "enclave",
    "x25519Key": "x25519_key",
    "chainId": "chain_id",
    "registry": "registry",
}


def _check_address(value: Any, field: str, *, nonzero: bool = False) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise RequestFieldError(field, f"is not an address (0x + 40 hex, valid checksum): {value!r}")
    if nonzero and value.lower() == _ZERO_ADDRESS:
        raise RequestFieldError(field, "must not be the zero address")
    return str(to_checksum_address(value))


def _check_key(value: Any) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise RequestFieldError("x25519Key", "is not hex") from None
    if not isinstance(value, bytes) or len(value) != 32:
        raise RequestFieldError("x25519Key", "must be 32 bytes (64 hex digits)")
    if value == bytes(32):
        raise RequestFieldError("x25519Key", "must not be all zero")
    return value


def _check_chain_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**256:
        raise RequestFieldError("chainId", f"must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class _Target:
    """The validated identity fields a quote is issued for."""

    role: int
    operator: str
    enclave: str
    x25519_key: bytes
    chain_id: int
    registry: str

    @classmethod
    def check(
        cls, *, role: Any, operator: Any, enclave: Any, x25519_key: Any, chain_id: Any, registry: Any
    ) -> _Target:
        return cls(
            role=check_role(role),
            operator=_check_address(operator, "operator", nonzero=True),
            enclave=_check_address(enclave, "enclave", nonzero=True),
            x25519_key=_check_key(x25519_key),
            chain_id=_check_chain_id(chain_id),
            registry=_check_address(registry, "registry", nonzero=True),
        )


class AttestationService:
    """Signs quotes with its own secp256k1 key: for the build it measured itself
    (``issue``, SIMULATED: ``measurement``, by default this installed package's) or
    for verified hardware evidence (``issue_from_evidence``)."""

    def __init__(
        self, signing_key: bytes, *, default_ttl: int = 3600, measurement: bytes | None = None
    ) -> None:
        if not is_secp256k1_key(bytes(signing_key)):
            raise ConfigError("attestation service signing key must be a valid 32-byte secp256k1 key")
        if default_ttl <= 0:
            raise ConfigError(f"attestation service default_ttl must be positive, got {default_ttl}")
        self._key = bytes(signing_key)
        self._signer = str(Account.from_key(self._key).address)
        self.default_ttl = default_ttl
        self.measurement = measure_package() if measurement is None else bytes(measurement)
        if len(self.measurement) != 32:
            raise ConfigError("attestation service measurement must be 32 bytes")

    def __repr__(self) -> str:
        return f"AttestationService(signer={self._signer})"

    @property
    def signer_address(self) -> str:
        return self._signer

    def issue(
        self,
        *,
        role: int,
        operator: str,
        enclave: str,
        x25519_key: bytes,
        chain_id: int,
        registry: str,
        nonce: bytes | None = None,
        now: int | None = None,
    ) -> tuple[Quote, bytes]:
        """SIMULATED attestation: sign a quote for the service's own build (``measurement``).

        Raises ``RequestFieldError`` naming the first invalid field.
        """
        target = _Target.check(
            role=role,
            operator=operator,
            enclave=enclave,
            x25519_key=x25519_key,
            chain_id=chain_id,
            registry=registry,
        )
        quote, signature = self._sign(target, self.measurement, nonce=nonce, now=now)
        logger.info(
            "issued SIMULATED quote: role=%s enclave=%s measurement=0x%s chain=%d expiry=%d",
            quote.role_name,
            quote.enclave,
            quote.measurement.hex(),
            quote.chain_id,
            quote.expiry,
        )
        return quote, signature

    def issue_from_evidence(
        self,
        verifier: EvidenceVerifier,
        evidence: bytes,
        *,
        role: int,
        operator: str,
        enclave: str,
        x25519_key: bytes,
        chain_id: int,
        registry: str,
        max_age: int = 600,
        allow_debug: bool = False,
        expected_nonce: bytes | None = None,
        now: int | None = None,
    ) -> tuple[Quote, bytes]:
        """Hardware attestation: verify ``evidence`` and sign a quote for the
        measurement it proves. The evidence must be recent (``max_age`` seconds), not
        from a debug-mode enclave unless ``allow_debug``, carry
        ``evidence_binding(enclave, x25519_key, chain_id, registry)`` in its report data
        (layout: ``enclave_agent.tee.binding``) and, if ``expected_nonce`` is given,
        that challenge. Evidence without a signed time (DCAP, SNP) needs the challenge.
        """
        target = _Target.check(
            role=role,
            operator=operator,
            enclave=enclave,
            x25519_key=x25519_key,
            chain_id=chain_id,
            registry=registry,
        )
        verified = verifier.verify(evidence)
        now = int(time.time()) if now is None else now
        source = f"{verified.platform} evidence from {verified.identity or 'unknown module'}"
        if verified.debug and not allow_debug:
            raise AttestationError(
                f"{source} comes from a debug-mode enclave "
                f"(measurement 0x{verified.measurement.hex()}): refused"
            )
        if verified.timestamp is None:
            if expected_nonce is None:
                raise AttestationError(
                    f"{source} carries no signed time: only a challenge (expected_nonce) can show it is fresh"
                )
        elif not -_CLOCK_SKEW <= now - verified.timestamp <= max_age:
            raise AttestationError(
                f"{source} was produced at {verified.timestamp}, not within {max_age}s before now ({now})"
            )
        claims = BindingClaims(
            enclave=target.enclave,
            x25519_key=target.x25519_key,
            chain_id=target.chain_id,
            registry=target.registry,
        )
        try:
            check_binding(verified.report_data, claims)
        except BindingError:
            raise AttestationError(
                f"{source}: report data does not bind enclave {target.enclave}, its X25519 key, "
                f"chain {target.chain_id} and registry {target.registry}"
            ) from None
        if expected_nonce is not None and verified.nonce != expected_nonce:
            raise AttestationError(f"{source}: nonce does not match the challenge")
        quote, signature = self._sign(target, verified.measurement, nonce=None, now=now)
        logger.info(
            "issued quote from %s: role=%s enclave=%s measurement=0x%s expiry=%d",
            source,
            quote.role_name,
            quote.enclave,
            quote.measurement.hex(),
            quote.expiry,
        )
        return quote, signature

    def _sign(
        self, target: _Target, measurement: bytes, *, nonce: bytes | None, now: int | None
    ) -> tuple[Quote, bytes]:
        if nonce is not None and len(nonce) != 32:
            raise RequestFieldError("nonce", "must be 32 bytes")
        issued_at = int(time.time()) if now is None else now
        quote = Quote(
            role=target.role,
            measurement=measurement,
            operator=target.operator,
            enclave=target.enclave,
            x25519_key=target.x25519_key,
            chain_id=target.chain_id,
            registry=target.registry,
            nonce=os.urandom(32) if nonce is None else nonce,
            expiry=issued_at + self.default_ttl,
        )
        return quote, sign_quote(quote, self._key)


# ---------------------------------------------------------------------- HTTP server

SERVICE = web.AppKey("attestation_service", AttestationService)


def _bad_request(message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=400)


def _issue_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(_REQUEST_FIELDS))
    if unknown:
        raise RequestFieldError(unknown[0], f"unknown field (expected {', '.join(_REQUEST_FIELDS)})")
    missing = [name for name in _REQUEST_FIELDS if name not in body]
    if missing:
        raise RequestFieldError(missing[0], "missing")
    return {keyword: body[name] for name, keyword in _REQUEST_FIELDS.items()}


async def _post_quote(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _bad_request("request body is not valid JSON")
    if not isinstance(body, dict):
        return _bad_request("request body must be a JSON object")
    service = request.app[SERVICE]
    try:
        quote, signature = service.issue(**_issue_kwargs(body))
    except RequestFieldError as exc:
        return _bad_request(str(exc), exc.field)
    return web.json_response(
        {"quote": quote.to_json(), "signature": "0x" + signature.hex(), "signer": service.signer_address}
    )


SIMULATED_NOTE = (
    "SIMULATED attestation: this service is a trusted stand-in for TEE hardware; "
    "it signs quotes for the agent build it runs itself, and nothing checks that the caller runs it"
)


def _identity(service: AttestationService) -> dict[str, Any]:
    return {
        "signer": service.signer_address,
        "measurement": "0x" + service.measurement.hex(),
        "simulated": True,
        "note": SIMULATED_NOTE,
    }


async def _get_signer(request: web.Request) -> web.Response:
    return web.json_response(_identity(request.app[SERVICE]))


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"} | _identity(request.app[SERVICE]))


def build_app(service: AttestationService) -> web.Application:
    app = web.Application()
    app[SERVICE] = service
    app.router.add_post("/v1/quote", _post_quote)
    app.router.add_get("/v1/signer", _get_signer)
    app.router.add_get("/healthz", _healthz)
    return app


# ---------------------------------------------------------------------- process entry


async def _serve(service: AttestationService, host: str, port: int) -> None:
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    print(
        f"attestation service (SIMULATED: a trusted stand-in for TEE hardware) "
        f"measurement=0x{service.measurement.hex()} signer={service.signer_address} "
        f"listening on http://{host}:{bound_port}",
        flush=True,
    )
    logger.warning("%s; measurement 0x%s", SIMULATED_NOTE, service.measurement.hex())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    logger.info("attestation service stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enclave_devnet.attestation_service",
        description="Simulated attestation service (a trusted stand-in for TEE hardware): measures the "
        "agent build it is installed with, once, and signs EIP-712 quotes for that measurement.",
    )
    parser.add_argument("--key", required=True, type=Path, help="signing key file (hex; created if absent)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--ttl", type=int, default=3600, help="quote lifetime in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service = AttestationService(load_or_create_service_key(args.key), default_ttl=args.ttl)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(service, args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
