"""The analysts' client's exceptions: one class per kind of refusal, mapped from the
gateway's HTTP status and answer (``from_http``). Every one is an
``enclave_agent.gateway.GatewayHTTPError`` too (``status``, ``body``), so code that
caught that keeps working.

    EnclaveAgentError                       [enclave_agent.errors]
    ├── GatewayUnreachable (ConnectionError)  no answer at all [enclave_agent.gateway.client]
    ├── UnknownModel (LookupError)          no such model, or not of the kind asked
    ├── UnsealedAnswer                      asked sealed, the gateway answered in the clear
    └── GatewayHTTPError                    an error answer [enclave_agent.gateway.client]
        └── GatewayError                    ... with a message, and the field it names
            ├── AuthenticationError         401: wrong API key, bad or expired signature
            ├── AccessDenied                403: no CLIENT_ROLE, too few contributors,
            │                               another client's request
            ├── PaymentRequired             402: the deposit does not cover the fee
            ├── QuotaExhausted              429: the client's quota on chain is used up
            ├── RateLimited                 429: too fast; ``retry_after`` seconds
            ├── NotFound                    404: no such model or request
            ├── Conflict                    409: a replayed request
            ├── InvalidInput (ValueError)   408, 413, 422: ``field`` names the input
            │   └── OutOfRange              422: ``feature`` beyond ``bound``
            └── Unavailable                 502, 503: ``retry_after`` when worth retrying
                └── AnswerTimeout           504: ``request_ids`` still open or expired

Refusals before anything is written on chain (4xx, 503) are never charged. A 504
names the requests that were recorded: answered before their on-chain deadline they
are charged and their answers are at ``Client.request(id)``; otherwise refunded.
"""

from __future__ import annotations

import re
from typing import Any

from enclave_agent.errors import EnclaveAgentError
from enclave_agent.gateway.client import GatewayHTTPError, GatewayUnreachable

__all__ = [
    "AccessDenied",
    "AnswerTimeout",
    "AuthenticationError",
    "Conflict",
    "GatewayError",
    "GatewayHTTPError",
    "GatewayUnreachable",
    "InvalidInput",
    "NotFound",
    "OutOfRange",
    "PaymentRequired",
    "QuotaExhausted",
    "RateLimited",
    "Unavailable",
    "UnknownModel",
    "UnsealedAnswer",
    "from_http",
]


class UnknownModel(EnclaveAgentError, LookupError):
    """The gateway serves no active model of that name or id (or not of that kind)."""


class UnsealedAnswer(EnclaveAgentError):
    """The answer was asked sealed to this client's key and came back in the clear:
    the gateway did not honour ``encrypt_to`` (the answer is discarded)."""


class GatewayError(GatewayHTTPError):
    """An error answer of the gateway: ``message`` (its ``error``), ``field`` (the input
    it names, row numbers counted over the caller's whole batch) and ``reason`` (the
    contract's custom error, when the contract refused)."""

    def __init__(self, status: int, body: dict[str, Any], *, before_sending: bool = False) -> None:
        super().__init__(status, body)
        self.message = str(body.get("error", "request failed"))
        self.field: str | None = body.get("field")
        self.reason: str | None = body.get("reason")
        # Found by the client before anything was sent (``status`` is the gateway's answer to it).
        self.before_sending = before_sending
        # Answers to the parts of the caller's batch sent before this refusal (charged).
        self.answered: list[dict[str, Any]] = []
        prefix = "refused before sending" if before_sending else f"HTTP {status}"
        text = f"{prefix}: " + (f"{self.field}: " if self.field else "") + self.message
        if self.reason:
            text += f" [{self.reason}]"
        self.args = (text,)

    def __str__(self) -> str:
        return str(self.args[0])


class AuthenticationError(GatewayError):
    pass


class AccessDenied(GatewayError):
    pass


class PaymentRequired(GatewayError):
    pass


class QuotaExhausted(GatewayError):
    pass


class RateLimited(GatewayError):
    @property
    def retry_after(self) -> float:
        return float(self.body.get("retry_after", 1))


class NotFound(GatewayError):
    pass


class Conflict(GatewayError):
    pass


class InvalidInput(GatewayError, ValueError):
    @property
    def row(self) -> int | None:
        """The caller's row the field is in (0-based), if it names one."""
        match = re.match(r"rows\[(\d+)\]", self.field or "")
        return int(match.group(1)) if match else None


class OutOfRange(InvalidInput):
    @property
    def feature(self) -> str:
        return str(self.body["feature"])

    @property
    def bound(self) -> float:
        return float(self.body["bound"])


class Unavailable(GatewayError):
    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again; None when retrying will not help."""
        value = self.body.get("retry_after")
        return None if value is None else float(value)


class AnswerTimeout(Unavailable):
    @property
    def request_ids(self) -> list[int]:
        return [int(i) for i in self.body.get("request_ids", [])]

    @property
    def outcome(self) -> str:
        """ "pending" (may still be answered, then charged) or "expired" (refunded)."""
        return str(self.body.get("outcome", "expired"))


_BY_STATUS: dict[int, type[GatewayError]] = {
    401: AuthenticationError,
    402: PaymentRequired,
    403: AccessDenied,
    404: NotFound,
    408: InvalidInput,
    409: Conflict,
    413: InvalidInput,
    422: InvalidInput,
    502: Unavailable,
    503: Unavailable,
    504: AnswerTimeout,
}


def _shift_rows(field: str | None, offset: int) -> str | None:
    """``rows[3].x`` of a part that starts at row ``offset`` is the caller's ``rows[3 + offset].x``."""
    if not field or not offset:
        return field
    return re.sub(r"^rows\[(\d+)\]", lambda m: f"rows[{int(m.group(1)) + offset}]", field)


def from_http(error: GatewayHTTPError, row_offset: int = 0) -> GatewayError:
    """The typed exception for an error answer of the gateway (a part of a batch that
    started at the caller's row ``row_offset``)."""
    body = dict(error.body)
    field = _shift_rows(body.get("field"), row_offset)
    if field is not None:
        body["field"] = field
    status = error.status
    if status == 429:
        cls: type[GatewayError] = RateLimited if "retry_after" in body else QuotaExhausted
    elif status == 422 and "bound" in body and "feature" in body:
        cls = OutOfRange
    else:
        cls = _BY_STATUS.get(status, Unavailable if status >= 500 else GatewayError)
    return cls(status, body)
