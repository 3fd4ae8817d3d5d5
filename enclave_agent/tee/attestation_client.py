"""The agent's side of the simulated attestation service (``enclave_devnet``): ask it for
a quote and check that the quote is for what was asked. Whether its signer is trusted
is ``verify_quote``'s job."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from eth_utils.address import to_checksum_address

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee._service_http import ServiceRefused, post_json
from enclave_agent.tee.quote import ROLE_NAMES, MalformedQuoteError, Quote, recover_signer

__all__ = ["RequestFieldError", "check_role", "request_quote"]


class RequestFieldError(ConfigError):
    """A quote request field is missing or invalid; ``field`` names it (JSON name)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


def check_role(value: Any) -> int:
    if isinstance(value, str):
        by_name = {name: role for role, name in ROLE_NAMES.items()}
        if value in by_name:
            return by_name[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in ROLE_NAMES:
        return value
    choices = ", ".join(f"{role} ({name})" for role, name in ROLE_NAMES.items())
    raise RequestFieldError("role", f"must be one of {choices}, got {value!r}")


def request_quote(
    url: str,
    *,
    role: int,
    operator: str,
    enclave: str,
    x25519_key: bytes,
    chain_id: int,
    registry: str,
    timeout: float = 30.0,
) -> tuple[Quote, bytes]:
    """Ask the service at ``url`` (base URL) for a quote; checks that the quote is
    for what was asked. Whether its signer is trusted is ``verify_quote``'s job."""
    body = {
        "role": role,
        "operator": operator,
        "enclave": enclave,
        "x25519Key": "0x" + bytes(x25519_key).hex(),
        "chainId": chain_id,
        "registry": registry,
    }
    try:
        reply = post_json("attestation service", url, "/v1/quote", body, timeout)
    except ServiceRefused as exc:
        detail = exc.detail
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]
        if exc.status == 400:
            raise ConfigError(f"attestation service refused the quote request: {detail}") from None
        raise AttestationError(f"attestation service at {url} failed: HTTP {exc.status} {detail}") from None
    try:
        quote = Quote.from_json(reply["quote"])
        signature = bytes.fromhex(str(reply["signature"]).removeprefix("0x"))
        recover_signer(quote, signature)  # well-formed signature, or raise
    except MalformedQuoteError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise AttestationError(f"attestation service at {url} returned a malformed answer: {exc}") from None
    asked = (
        check_role(role),
        to_checksum_address(operator),
        to_checksum_address(enclave),
        bytes(x25519_key),
    )
    got = (quote.role, quote.operator, quote.enclave, quote.x25519_key)
    if asked != got or quote.chain_id != chain_id or quote.registry != to_checksum_address(registry):
        raise AttestationError(f"attestation service at {url} returned a quote for something else than asked")
    return quote, signature
