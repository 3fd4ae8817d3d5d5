"""``Client``: the consortium's gateway from a notebook.

    from enclave_client import Client

    gw = Client("http://127.0.0.1:8080", api_key=open("client-api.key").read().strip())
    model = gw.model("breast-cancer-fedavg")      # its card: units, bounds, rounds, classes
    scores = gw.predict(frame)                     # a DataFrame (other columns ignored) or rows
    mean = gw.statistic("mean_radius", "mean")

Batches of any length are cut into the calls the gateway takes (``max_batch`` rows a
call with an API key; ``rows_per_request`` rows, each signed, with a wallet account);
a call refused for its rate (429) or while the gateway drains or the chain is out of
reach (503 with ``retry_after``) is sent again after the wait the gateway names, up
to ``max_wait`` seconds in all; nothing was written or charged for those. Answers
are sealed end to end to an X25519 key this client makes (``sealed=True``): the
gateway's HTTP answer is ciphertext only this object opens. Refusals are typed
(``enclave_client.errors``), with row numbers counted over the caller's whole batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enclave_agent.errors import ConfigError
from enclave_agent.gateway import validation
from enclave_agent.gateway.client import GatewayClient, GatewayHTTPError, open_answer
from enclave_client.errors import (
    GatewayError,
    InvalidInput,
    OutOfRange,
    RateLimited,
    Unavailable,
    UnknownModel,
    UnsealedAnswer,
    from_http,
)

__all__ = ["STATISTICS", "Client", "Model"]

log = logging.getLogger(__name__)

STATISTICS = ("sum", "mean", "std", "count")
T = TypeVar("T")


@dataclass(frozen=True)
class Model:
    """A model or statistic the gateway serves, with its card (``GET /v1/models``)."""

    id: int
    name: str
    kind: str  # "shared-model" (scores rows) or "statistic" (column statistics)
    features: tuple[str, ...]
    fee_wei: int
    rows_per_request: int
    bounds: dict[str, float] | None  # |feature| <= bound; None for a statistic or until published
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def units(self) -> dict[str, str | None]:
        return dict(self.card.get("units") or {})

    @property
    def classes(self) -> dict[str, str]:
        """What labels "0" and "1" mean (score models)."""
        return dict(self.card.get("classes") or {})

    @property
    def threshold(self) -> float | None:
        """The label is 1 when the score is at least this (score models)."""
        value = self.card.get("threshold")
        return None if value is None else float(value)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        bounds = (data.get("input_range") or {}).get("bounds")
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            kind=str(data["kind"]),
            features=tuple(str(f) for f in data["features"]),
            fee_wei=int(data["fee_wei"]),
            rows_per_request=int(data["rows_per_request"]),
            bounds=None if bounds is None else {str(k): float(v) for k, v in bounds.items()},
            card=dict(data.get("card") or {}),
        )


E = TypeVar("E", bound=GatewayError)


def _local(cls: type[E], body: dict[str, Any], status: int = 422) -> E:
    """A refusal found before sending: the one the gateway would answer (never charged)."""
    return cls(status, body, before_sending=True)


def _key_of(account: Any) -> str:
    """A hex private key, or an eth_account LocalAccount (its ``key``)."""
    key = getattr(account, "key", account)
    if isinstance(key, bytes):
        return "0x" + key.hex()
    if isinstance(key, str):
        return key
    raise ConfigError("account must be a private key (hex) or an eth_account LocalAccount")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rows_of(data: Any, features: Sequence[str]) -> list[Any]:
    """The rows of ``data`` as the gateway takes them. A data frame (anything with
    ``columns`` and column access: pandas, polars) or a numpy structured array gives
    one {feature: value} per row, its other columns ignored; a 2-D array or a sequence
    gives its rows as they are (mappings by feature name, or values in feature order)."""
    names = getattr(getattr(data, "dtype", None), "names", None)
    columns = names if names else getattr(data, "columns", None)
    if columns is not None and not isinstance(data, list | tuple):
        present = {str(c) for c in columns}
        missing = [f for f in features if f not in present]
        if missing:
            raise _local(
                InvalidInput, {"error": "no such column in the data", "field": f"rows[0].{missing[0]}"}
            )
        values = []
        for name in features:
            try:
                values.append(np.asarray(data[name], dtype=np.float64).reshape(-1))
            except (TypeError, ValueError):
                raise _local(
                    InvalidInput, {"error": "column is not numeric", "field": f"rows[0].{name}"}
                ) from None
        return [
            {name: float(column[i]) for name, column in zip(features, values, strict=True)}
            for i in range(len(values[0]) if values else 0)
        ]
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise _local(
                InvalidInput, {"error": f"a 2-D array is needed, got {data.ndim}-D", "field": "rows"}
            )
        return [[float(v) for v in row] for row in data]
    if isinstance(data, Mapping) or not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise _local(
            InvalidInput,
            {"error": "give a data frame, a 2-D array or a list of rows (one mapping is one row: [row])"},
        )
    return [
        {str(k): _plain(v) for k, v in row.items()}
        if isinstance(row, Mapping)
        else [_plain(v) for v in row]
        if isinstance(row, Sequence) and not isinstance(row, str | bytes)
        else row
        for row in data
    ]


def check_rows(info: Model, rows: list[Any]) -> None:
    """The gateway's own checks, on the whole batch before anything is sent: every
    feature present and named right, finite numbers, each within the model's input
    range (fields named as the gateway names them)."""
    if not rows:
        raise _local(InvalidInput, {"error": "no rows to score", "field": "rows"})
    try:
        parsed = validation.parse_score_request({"rows": rows}, info.features, len(rows)).rows
    except validation.InvalidRequest as exc:
        raise _local(InvalidInput, {"error": exc.problem, "field": exc.field}, exc.status) from None
    if info.bounds is None:
        return  # not published yet: the gateway refuses with 503 (Unavailable)
    for i, row in enumerate(parsed):
        for k, (name, value) in enumerate(zip(info.features, row, strict=True)):
            bound = info.bounds[name]
            if bound == 0 or not abs(value) <= bound:
                where = f"rows[{i}].{name}" if isinstance(rows[i], Mapping) else f"rows[{i}][{k}]"
                raise _local(
                    OutOfRange,
                    {
                        "error": f"outside the range this model answers exactly: |{name}| must be at "
                        f"most {bound:g}",
                        "field": where,
                        "feature": name,
                        "bound": bound,
                    },
                )


class Client:
    """The gateway at ``url`` for one client: ``api_key`` (a custody account at the
    gateway) or ``account`` (a wallet key that signs every request itself, EIP-712)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        account: Any = None,
        sealed: bool = True,
        timeout: float = 120.0,
        max_wait: float = 120.0,
        batch_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (api_key is None) == (account is None):
            raise ConfigError("give exactly one of api_key= or account=")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size
        self.http = GatewayClient(
            url, api_key=api_key, wallet_key=None if account is None else _key_of(account), timeout=timeout
        )
        self.signed = account is not None
        self.sealed = sealed
        self.max_wait = max_wait
        self._sleep = sleep
        # Answers are sealed to this key; it never leaves this object.
        self._secret = X25519PrivateKey.generate() if sealed else None

    def __repr__(self) -> str:
        auth = "account" if self.signed else "api_key"
        return f"Client({self.http.url!r}, {auth}=..., sealed={self.sealed})"

    # ------------------------------------------------------------------ catalogue

    def _catalogue(self) -> dict[str, Any]:
        return self._retrying(self.http.catalogue)

    def models(self) -> list[Model]:
        """Every model and statistic the gateway serves, with its card."""
        return [Model.from_json(m) for m in self._catalogue()["models"]]

    def model(self, ref: int | str | None = None, kind: str | None = None) -> Model:
        """One model by id or name; with no ``ref``, the only one of ``kind``."""
        models = [m for m in self.models() if kind is None or m.kind == kind]
        if ref is None:
            if len(models) == 1:
                return models[0]
            names = ", ".join(m.name for m in models) or "none"
            raise UnknownModel(f"name the model: the gateway serves {len(models)} of kind {kind} ({names})")
        for m in models:
            if (isinstance(ref, int) and not isinstance(ref, bool) and m.id == ref) or m.name == ref:
                return m
        raise UnknownModel(f"the gateway serves no {kind or 'model'} {ref!r}")

    # ------------------------------------------------------------------ answers

    def predict(self, data: Any, model: int | str | None = None) -> np.ndarray:
        """Scores (the probability of class 1, see the model card) of every row of
        ``data``, in order."""
        return np.array([a["score"] for a in self.predict_answers(data, model)], dtype=np.float64)

    def predict_answers(self, data: Any, model: int | str | None = None) -> list[dict[str, Any]]:
        """Every row's whole answer: score, logit, label, request_id and the row in it,
        the transactions (tx.submit, tx.complete) and commitment; ``end_to_end`` when
        sealed. Each row costs the model's fee and a unit of quota.

        Every row is checked against the model's features and published input range
        before the first is sent, so bad input is refused whole and never charged. A
        refusal of a later part (quota, deposit) leaves the parts before it answered
        and charged: the exception's ``answered`` holds their answers."""
        info = self.model(model, "shared-model")
        rows = rows_of(data, info.features)
        check_rows(info, rows)
        size = info.rows_per_request if self.signed else int(self._catalogue().get("max_batch", 256))
        size = min(size, self.batch_size or size)
        answers: list[dict[str, Any]] = []
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            try:
                reply = self._infer(info, {"rows": part}, start)
            except GatewayError as exc:
                exc.answered = list(answers)
                raise
            answers.extend(reply["results"])
            log.info("scored rows %d..%d of %d", start, start + len(part) - 1, len(rows))
        return answers

    def statistic(self, column: str, kind: str = "mean", model: int | str | None = None) -> Any:
        """One statistic of a shared column over every contributor's rows: ``kind`` is
        sum, mean, std (population), count, or "all" for the whole answer."""
        if kind not in (*STATISTICS, "all"):
            raise ValueError(f"kind must be one of {', '.join(STATISTICS)} or all, not {kind!r}")
        info = self.model(model, "statistic")
        answer = self._infer(info, {"statistic": {"column": column}}, 0)
        answer["count"] = int(answer["count"])  # rows: a whole number
        return answer if kind == "all" else answer[kind]

    def request(self, request_id: int) -> dict[str, Any]:
        """A request this client made (``GET /v1/requests/{id}``): its status and, once
        answered, its results (opened, if they were sealed to this client)."""
        body = self._retrying(lambda: self.http.request_status(request_id))
        if self._secret is not None:
            if "result" in body:
                body["result"] = open_answer(body["result"], self._secret)
            if "results" in body:
                body = open_answer(body, self._secret)
        return body

    # ------------------------------------------------------------------ plumbing

    def _infer(self, info: Model, inputs: dict[str, Any], offset: int) -> dict[str, Any]:
        answer = self._retrying(
            lambda: self.http.infer(info.id, inputs, secret=self._secret), row_offset=offset
        )
        if self.sealed:
            results = answer.get("results", [answer])
            if not all(r.get("end_to_end") for r in results):
                raise UnsealedAnswer(f"the gateway answered model {info.name} in the clear: discarded")
        return answer

    def _retrying(self, call: Callable[[], T], row_offset: int = 0) -> T:
        """``call()``; a refusal that names a wait (rate limit, draining, chain out of
        reach: nothing was written) is retried after it, up to ``max_wait`` in all."""
        waited = 0.0
        while True:
            try:
                return call()
            except GatewayHTTPError as exc:
                error = exc if isinstance(exc, GatewayError) else from_http(exc, row_offset)
                wait = error.retry_after if isinstance(error, RateLimited | Unavailable) else None
                if wait is None or error.status not in (429, 503) or waited + wait > self.max_wait:
                    raise error from None
            log.info("gateway asked to wait %.1fs (%s); retrying", wait, error.message)
            self._sleep(wait)
            waited += wait
