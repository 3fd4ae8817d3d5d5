"""The gateway's HTTP API (OpenAPI document: ``GET /openapi.json``).

Every request is validated and authenticated before anything touches the chain;
the contract then enforces role, fee, quota and replay once more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any, TypeVar

from aiohttp import web
from eth_utils.address import is_address, to_checksum_address

from enclave_agent.chain.outage import unreachable
from enclave_agent.crypto.sealed_box import seal
from enclave_agent.errors import (
    EXIT_ERROR,
    ContractRevert,
    EnclaveAgentError,
    InsufficientFunds,
    ProtocolError,
)
from enclave_agent.gateway import auth, cards, scoring, validation, vendor
from enclave_agent.gateway.listener import listen
from enclave_agent.gateway.metrics import prometheus_text
from enclave_agent.gateway.service import GatewayAgent
from enclave_agent.model.ranges import InputRange
from enclave_agent.protocol import queries
from enclave_agent.protocol.funding import CHECK_EVERY
from enclave_agent.protocol.health import health_report

log = logging.getLogger(__name__)

AGENT: web.AppKey[GatewayAgent] = web.AppKey("agent", GatewayAgent)
MAX_BODY = 1 << 20
BODY_TIMEOUT = 10.0  # seconds a client has to send its body
T = TypeVar("T")

# Contract refusals as HTTP answers.
REVERT_STATUS = {
    "InferenceClientNotAuthorised": 403,
    "InferenceTooFewContributors": 403,
    "InferenceQuotaExhausted": 429,
    "InferenceFeeUnpaid": 402,
    "InferenceRequestReplayed": 409,
    "InferenceInvalidClientSignature": 401,
    "InferenceSignatureExpired": 401,
    "InferenceFeeAboveCap": 402,
    "InferenceUnknownModel": 404,
    "InferenceRegistryPaused": 503,
    "InferenceNotGateway": 503,
}
WEB_FILES = {
    "index.html": "text/html",
    "wallet.js": "text/javascript",
    "analysis.js": "text/javascript",
    "card.js": "text/javascript",
    "charts.js": "text/javascript",
    "wallet.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, error: str, field: str = "", **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": error} | extra
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))


def _model_ref(agent: GatewayAgent, ref: Any) -> dict[str, Any]:
    models = [m for m in agent.models() if m.get("active")]
    for model in models:
        if (isinstance(ref, int) and not isinstance(ref, bool) and model["id"] == ref) or model[
            "name"
        ] == ref:
            return model
    raise validation.InvalidRequest(404, "model", f"no active model {ref!r}")


def _api_key(request: web.Request) -> str:
    header = request.headers.get("X-API-Key") or request.headers.get("Authorization", "").removeprefix(
        "Bearer "
    )
    return header.strip()


def _caller(api_key: str, body: dict[str, Any], agent: GatewayAgent, ask: _Ask) -> auth.Caller:
    """An API-key client (a custody account) or the client's own EIP-712 signature
    over exactly this request (blocking: a contract wallet's code is looked up)."""
    if api_key:
        return auth.authenticate_api_key(
            api_key, agent.config.gateway.api_keys if agent.config.gateway else {}
        )
    if "signature" in body:
        return auth.authenticate_signature(
            body,
            chain_id=agent.chain_id,
            gateway_contract=agent.gateway_address,
            model_id=int(ask.model["id"]),
            query=ask.query,
            now=int(time.time()),
            has_code=agent.has_code,
        )
    raise auth.AuthError("send an API key (X-API-Key) or the client's EIP-712 signature")


async def inference(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    if agent.draining:
        response = _error(503, "the gateway is shutting down; try again shortly", retry_after=5)
        response.headers["Retry-After"] = "5"
        return response
    with agent.metrics.lock:
        agent.metrics.in_flight += 1
    try:
        return await _answer(request, agent)
    finally:
        with agent.metrics.lock:
            agent.metrics.in_flight -= 1


async def _answer(request: web.Request, agent: GatewayAgent) -> web.Response:
    """One inference call, every refusal mapped to its status."""
    started = time.monotonic()
    try:
        response = await _inference(request, agent, started)
    except validation.InvalidRequest as exc:
        agent.metrics.count(f"invalid_{exc.status}")
        return _error(exc.status, exc.problem, exc.field, **exc.extra)
    except auth.AuthError as exc:
        agent.metrics.count("unauthenticated")
        return _error(401, str(exc))
    except scoring.InconsistentPartials as exc:
        log.error("inference refused: %s", exc)
        return _error(
            502,
            "the providers' partial results disagree and too few agree to correct them: no answer is "
            "given, and the request's fee is refunded when it expires",
            reason="InconsistentPartials",
        )
    except ContractRevert as exc:
        status = REVERT_STATUS.get(exc.error_name, 502)
        agent.metrics.count(f"refused_{exc.error_name}")
        return _error(
            status, "refused by the InferenceGateway contract", reason=exc.error_name, args=exc.error_args
        )
    except InsufficientFunds as exc:
        agent.metrics.count("unfunded")
        log.error("inference not served: %s", exc)
        response = _error(
            503,
            "the gateway's enclave account cannot pay for its transactions right now; its operator tops it "
            "up: try again later (a request already recorded is completed once it can be, or refunded)",
            reason="InsufficientFunds",
        )
        response.headers["Retry-After"] = str(math.ceil(CHECK_EVERY))
        return response
    except EnclaveAgentError as exc:
        agent.metrics.count("error")
        log.error("inference failed: %s", exc)
        return _error(502, "the gateway could not complete the request", detail=type(exc).__name__)
    agent.metrics.observe(time.monotonic() - started)
    return response


@dataclass(frozen=True)
class _Ask:
    """A validated inference body: the model and the query (what a signature covers)."""

    model: dict[str, Any]
    query: queries.Query
    batch: bool
    bounds: InputRange | None = None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await asyncio.wait_for(request.json(loads=json.loads), BODY_TIMEOUT)
    except (ValueError, UnicodeDecodeError) as exc:
        raise validation.InvalidRequest(422, "body", "is not valid JSON") from exc
    except RecursionError:
        raise validation.InvalidRequest(422, "body", "is nested too deeply") from None
    except TimeoutError:
        raise validation.InvalidRequest(408, "body", f"not received within {BODY_TIMEOUT:g} s") from None
    if not isinstance(body, dict):
        raise validation.InvalidRequest(422, "body", "must be a JSON object")
    return body


def _ask(agent: GatewayAgent, body: dict[str, Any]) -> _Ask:
    model = _model_ref(agent, body.get("model"))
    features = list(queries.parse_metadata(model["metadata"])["features"])
    if model["kind"] == "statistic":
        stat = validation.parse_statistic_request(body, features)
        query = queries.Query(queries.KIND_STATISTIC, column=stat.column)
        return _Ask(model, query, batch=False)
    max_batch = agent.config.gateway.max_batch if agent.config.gateway else 256
    score = validation.parse_score_request(body, features, max_batch)
    bounds = agent.input_range(model)
    validation.check_range(body, score, bounds)
    query = queries.Query(queries.KIND_SCORE, rows=tuple(tuple(row) for row in score.rows))
    return _Ask(model, query, score.batch, bounds)


def _one_signed_request(agent: GatewayAgent, ask: _Ask) -> None:
    """A signature covers one on-chain request: at most ``rows_per_request`` rows."""
    size = agent.rows_per_request(ask.model)
    if ask.query.row_count > size:
        raise validation.InvalidRequest(
            413,
            "rows",
            f"a signed request carries at most {size} rows of model {ask.model['id']} "
            f"(rows_per_request), got {ask.query.row_count}: sign several requests",
        )


async def _inference(request: web.Request, agent: GatewayAgent, started: float) -> web.Response:
    body = await _json_body(request)
    if not agent.is_ready():
        return _error(
            503, "the gateway enclave is not synchronised with the consortium yet", stage=agent.stage
        )
    ask = _ask(agent, body)
    model, rows = ask.model, ask.query.row_count
    encrypt_to = validation.parse_x25519_key(body.get("encrypt_to"))
    caller = await _blocking(_caller, _api_key(request), body, agent, ask)
    if caller.signed is not None:
        await _blocking(_one_signed_request, agent, ask)

    # Refusals we can see before writing anything on chain.
    wait = agent.limiter.take(caller.client, rows)
    if wait:
        agent.metrics.count("rate_limited")
        response = _error(
            429,
            f"rate limit: {agent.limiter.per_minute} requests a minute per client",
            retry_after=math.ceil(wait),
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if not await _blocking(agent.client_has_access, caller.client):
        agent.metrics.count("forbidden")
        return _error(403, "client has no access (CLIENT_ROLE) on chain", client=caller.client)
    # One on-chain request is left to the contract, which refuses it during gas
    # estimation (nothing is sent); a batch that needs several is checked as a whole
    # first so that it is all or nothing.
    if rows > 1:
        quota, used, balance = await _blocking(agent.quota_and_balance, caller.client)
        if quota - used < rows:
            agent.metrics.count("quota")
            return _error(429, "quota exhausted", quota=quota, used=used, requested=rows)
        if balance < int(model["fee"]) * rows:
            agent.metrics.count("fee")
            return _error(
                402,
                "fee unpaid: deposit to the InferenceGateway",
                balance=balance,
                fee=int(model["fee"]) * rows,
            )

    # Replays and the client's signature are the contract's to refuse (409, 401).
    request_ids = []
    if caller.signed is not None:
        request_ids.append(
            await _blocking(agent.submit, model, caller.signed, ask.query, ask.bounds, encrypt_to)
        )
    else:
        size = await _blocking(agent.rows_per_request, model)
        for query in ask.query.split(size):
            signed = await _blocking(agent.custody_request, caller.client, model, query)
            request_ids.append(await _blocking(agent.submit, model, signed, query, ask.bounds, encrypt_to))
    # Wait as long as the chain gives the providers (a request answered after the HTTP
    # call gave up is charged, so the call never gives up first) unless the operator
    # chose a shorter wait; then the 504 says the request is still open.
    expires = max(int((agent.request(i) or {}).get("deadline", 0)) for i in request_ids)
    configured = agent.config.gateway.request_timeout if agent.config.gateway else None
    on_chain = expires - await _blocking(agent.chain_now) + 2
    results = await _collect(agent, request_ids, started + (configured or on_chain))
    if any(r is None for r in results):
        agent.metrics.count("timeout")
        still_open = configured is not None and configured < on_chain
        return _error(
            504,
            "providers have not answered yet; the request stays open until it expires on chain "
            "(chain time expires_at): answered by then, it is charged and its answer is at "
            "GET /v1/requests/{id}; otherwise its fee is refunded"
            if still_open
            else "providers did not answer before the request expired on chain; its fee goes back to the "
            "client's deposit (refundExpired)",
            outcome="pending" if still_open else "expired",
            request_ids=request_ids,
            expires_at=expires,
        )
    agent.metrics.count("ok")
    answers = [_deliver(row, encrypt_to) for request_rows in results if request_rows for row in request_rows]
    body_out: dict[str, Any] = {"results": answers} if ask.batch else answers[0]
    return web.json_response(body_out)


async def _collect(
    agent: GatewayAgent, request_ids: list[int], deadline: float
) -> list[list[dict[str, Any]] | None]:
    results: dict[int, list[dict[str, Any]]] = {}
    while True:
        for request_id in request_ids:
            if request_id not in results:
                result = await _blocking(agent.try_complete, request_id)
                if result is not None:
                    results[request_id] = result
        if len(results) == len(request_ids) or time.monotonic() > deadline:
            return [results.get(i) for i in request_ids]
        await asyncio.sleep(0.1)


def _deliver(result: dict[str, Any], encrypt_to: bytes | None) -> dict[str, Any]:
    if encrypt_to is None:
        return result
    public = {k: result[k] for k in ("request_id", "model_id", "row", "tx", "commitment") if k in result}
    ad = queries.result_ad(int(result["request_id"]), int(result.get("row", 0)))
    ephemeral, ciphertext = seal(encrypt_to, json.dumps(result).encode(), ad)
    return public | {
        "sealed": {"ephemeral_public": "0x" + ephemeral.hex(), "ciphertext": "0x" + ciphertext.hex()}
    }


async def get_request(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    try:
        request_id = int(request.match_info["request_id"])
    except ValueError:
        return _error(422, "must be an integer", "request_id")
    record = await _blocking(agent.request, request_id)
    if record is None:
        return _error(404, f"no request {request_id} at this gateway")
    body: dict[str, Any] = {k: record[k] for k in ("id", "model_id", "status", "deadline", "submit_tx")}
    body["rows"] = int(record.get("rows", 1))
    sealed_to = bytes.fromhex(record["encrypt_to"]) if record.get("encrypt_to") else None
    api_key = _api_key(request)
    if api_key and agent.config.gateway:
        try:
            caller = auth.authenticate_api_key(api_key, agent.config.gateway.api_keys)
        except auth.AuthError as exc:
            return _error(401, str(exc))
        if caller.client != record["client"]:
            return _error(403, "this request belongs to another client")
    elif sealed_to is None:
        return web.json_response(body)  # an unsealed answer goes to its API-key client only
    # A sealed answer is sealed again, to the key it was asked for: only that client opens it.
    results = await _blocking(agent.result, request_id)
    if results is not None:  # one row: "result"; several: "results", in row order
        delivered = [_deliver(row, sealed_to) for row in results]
        body.update({"result": delivered[0]} if len(delivered) == 1 else {"results": delivered})
    return web.json_response(body)


async def typed_data(request: web.Request) -> web.Response:
    """The EIP-712 request a wallet signs for this body (the wallet page's first step):
    exactly this query, at exactly the model's fee for its rows. Writes nothing."""
    agent = request.app[AGENT]
    try:
        body = await _json_body(request)
        ask = _ask(agent, body)
        client = body.get("client")
        if not isinstance(client, str) or not is_address(client):
            raise validation.InvalidRequest(422, "client", "must be an address")
        await _blocking(_one_signed_request, agent, ask)
    except validation.InvalidRequest as exc:
        return _error(exc.status, exc.problem, exc.field, **exc.extra)
    nonce = secrets.randbits(256)
    deadline = await _blocking(agent.chain_now) + auth.SIGNATURE_TTL  # the contract checks chain time
    max_fee = int(ask.model["fee"]) * ask.query.row_count
    typed = auth.typed_request(
        chain_id=agent.chain_id,
        gateway_contract=agent.gateway_address,
        client=to_checksum_address(client),
        model_id=int(ask.model["id"]),
        rows=ask.query.row_count,
        inputs_hash=auth.input_hash(ask.query),
        nonce=nonce,
        deadline=deadline,
        max_fee=max_fee,
    )
    return web.json_response(
        {
            "typed_data": auth.wallet_typed_data(typed),
            "nonce": str(nonce),
            "deadline": deadline,
            "max_fee": str(max_fee),
        }
    )


async def client_status(request: web.Request) -> web.Response:
    """A client's access, quota and deposit as the InferenceGateway contract has them."""
    agent = request.app[AGENT]
    address = request.match_info["address"]
    if not is_address(address):
        return _error(422, "must be an address", "address")
    client = to_checksum_address(address)
    access = await _blocking(agent.client_has_access, client)
    quota, used, balance = await _blocking(agent.quota_and_balance, client)
    return web.json_response(
        {"client": client, "access": access, "quota": quota, "used": used, "balance_wei": balance}
    )


async def deployment(request: web.Request) -> web.Response:
    """What a wallet needs from the deployment manifest: chain and its RPC URL (to
    add the chain to a wallet that lacks it), contracts, the EIP-712 domain and the
    calldata of ``deposit()``."""
    agent = request.app[AGENT]
    contracts = agent.contracts
    return web.json_response(
        {
            "chain_id": agent.chain_id,
            "rpc_url": agent.manifest.rpc_url,
            "contracts": {name: to_checksum_address(c.address) for name, c in contracts.by_name.items()},
            "eip712_domain": {
                "name": auth.DOMAIN_NAME,
                "version": auth.DOMAIN_VERSION,
                "chainId": agent.chain_id,
                "verifyingContract": agent.gateway_address,
            },
            "deposit": {"to": agent.gateway_address, "data": contracts.gateway.encode_abi("deposit", [])},
        }
    )


async def list_models(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    out = []
    for model in agent.models():
        if not model.get("active"):
            continue
        try:
            metadata = queries.parse_metadata(model["metadata"])
        except ProtocolError:
            continue
        bounds = await _blocking(agent.input_range, model) if model["kind"] == "shared-model" else None
        out.append(
            {
                "id": model["id"],
                "name": model["name"],
                "kind": model["kind"],
                "round_id": model["round_id"],
                "fee_wei": model["fee"],
                "features": metadata["features"],
                "link": metadata.get("link"),
                "rows_per_request": await _blocking(agent.rows_per_request, model),
                # Statistics take no numbers; a score model's range appears once its
                # holders published it (until then queries get 503).
                "input_range": None if bounds is None else bounds.public(),
                "card": await _blocking(
                    cards.model_card, model, metadata, agent.round_doc, agent.organisation_name
                ),
            }
        )
    max_batch = agent.config.gateway.max_batch if agent.config.gateway else 256
    return web.json_response({"models": out, "max_batch": max_batch})


async def healthz(request: web.Request) -> web.Response:
    """The provider's health report (``protocol.health``) plus the gateway contract:
    "ok" exactly when the gateway can serve (node reachable, keys of a synchronised epoch)."""
    agent = request.app[AGENT]
    healthy, report = await asyncio.to_thread(health_report, agent)
    report["inference_gateway"] = agent.gateway_address
    return web.json_response(report, status=200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    text = prometheus_text(
        agent.metrics,
        agent.rounds(),
        agent.is_ready(),
        agent.view.epoch,
        (agent.funding.balance, agent.funding.topups),
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    text = resources.files("enclave_agent.gateway").joinpath("openapi.json").read_text()
    return web.Response(text=text, content_type="application/json")


async def wallet_page(request: web.Request) -> web.Response:
    """The wallet web page: static files, no inline script, talking only to this origin."""
    name = request.match_info.get("name") or "index.html"
    content_type = WEB_FILES.get(name)
    if content_type is None:
        return _error(404, f"no page {name!r}")
    text = resources.files("enclave_agent.gateway").joinpath("web", name).read_text()
    return web.Response(text=text, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)


async def vendor_file(request: web.Request) -> web.Response:
    """The page's third-party code (a charting library and its licence), only as pinned."""
    name = request.match_info["name"]
    data = await _blocking(vendor.read, name)
    content_type = vendor.content_type(name)
    if data is None or content_type is None:
        return _error(404, f"no vendored file {name!r}")
    return web.Response(body=data, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)


def _chain_unreachable(agent: GatewayAgent) -> web.Response:
    wait = agent.outage.retry_after()
    response = _error(503, "the chain is unreachable; try again later", retry_after=wait)
    response.headers["Retry-After"] = str(wait)
    return response


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    agent = request.app[AGENT]
    if agent.outage.down and request.path.startswith("/v1/"):
        return _chain_unreachable(agent)
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body larger than {MAX_BODY} bytes", "body")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except Exception as exc:
        if not unreachable(exc):
            raise
        agent.metrics.count("chain_unreachable")
        return _chain_unreachable(agent)


def build_app(agent: GatewayAgent) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors])
    app[AGENT] = agent
    app.router.add_post("/v1/inference", inference)
    app.router.add_get("/v1/requests/{request_id}", get_request)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/v1/inference/typed-data", typed_data)
    app.router.add_get("/v1/clients/{address}", client_status)
    app.router.add_get("/v1/deployment", deployment)
    app.router.add_get("/", wallet_page)
    app.router.add_get("/web/{name}", wallet_page)
    app.router.add_get("/web/vendor/{name}", vendor_file)
    return app


def serve(agent: GatewayAgent) -> int:
    """Run the agent loop in a thread and the HTTP API in this one until SIGTERM/SIGINT."""
    assert agent.config.gateway is not None
    stop = threading.Event()
    outcome: dict[str, int] = {}

    def run_agent() -> None:
        try:
            outcome["code"] = agent.run(stop)
        except BaseException:
            # The loop died of something it does not turn into an exit code: the process
            # must not then exit 0 as if it had been asked to stop.
            log.exception("agent loop failed")
            outcome["code"] = EXIT_ERROR

    worker = threading.Thread(target=run_agent, name="agent-loop", daemon=True)
    worker.start()

    async def main() -> None:
        gateway = agent.config.gateway
        assert gateway is not None
        listener = await listen(build_app(agent), gateway.host, gateway.port)
        log.info("gateway API listening on http://%s:%d (tee=SIMULATED)", gateway.host, listener.port)
        loop = asyncio.get_running_loop()
        shutdown = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, shutdown.set)
        while not shutdown.is_set() and worker.is_alive():
            await asyncio.sleep(0.2)
        # Drain: no new connections or calls; the agent loop keeps reading the chain so
        # that the calls in flight get their answers, up to the grace period.
        agent.draining = True
        listener.server.close()
        deadline = time.monotonic() + gateway.shutdown_grace
        while agent.metrics.in_flight and worker.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        left = agent.metrics.in_flight
        log.info(
            "stopping: %s", f"{left} calls still in flight after the grace period" if left else "drained"
        )
        await listener.close()

    asyncio.run(main())
    stop.set()
    worker.join(15)
    if worker.is_alive():
        log.error("agent loop did not stop within 15 s")
        return EXIT_ERROR
    return outcome["code"]
