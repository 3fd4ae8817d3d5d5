"""enclave-share for analysts: ask the consortium's gateway from Python.

``Client(url, api_key=...)`` or ``Client(url, account=...)`` lists the models with
their cards, scores rows (a data frame or a list of rows, batched for you) and asks
column statistics; answers are sealed end to end by default and refusals are typed
(``enclave_client.errors``). This package is not enclave code: it is outside the
code measurement that governance approves (``enclave_agent.tee.measure``).
"""

from __future__ import annotations

from enclave_client.client import STATISTICS, Client, Model
from enclave_client.errors import (
    AccessDenied,
    AnswerTimeout,
    AuthenticationError,
    Conflict,
    GatewayError,
    GatewayHTTPError,
    GatewayUnreachable,
    InvalidInput,
    NotFound,
    OutOfRange,
    PaymentRequired,
    QuotaExhausted,
    RateLimited,
    Unavailable,
    UnknownModel,
    UnsealedAnswer,
)

__all__ = [
    "STATISTICS",
    "AccessDenied",
    "AnswerTimeout",
    "AuthenticationError",
    "Client",
    "Conflict",
    "GatewayError",
    "GatewayHTTPError",
    "GatewayUnreachable",
    "InvalidInput",
    "Model",
    "NotFound",
    "OutOfRange",
    "PaymentRequired",
    "QuotaExhausted",
    "RateLimited",
    "Unavailable",
    "UnknownModel",
    "UnsealedAnswer",
]
