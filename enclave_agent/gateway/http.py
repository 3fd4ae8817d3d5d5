"""The gateway's HTTP API (OpenAPI document: ``GET /openapi.json``).

Every request is validated and authenticated here, before anything touches the chain;
the decisions on an inference call are ``agent.answering``'s (``gateway.answering``),
whose outcomes this module maps to status codes. The contract then enforces role,
fee, quota and replay once more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from eth_utils.address import is_address, to_checksum_address

from enclave_agent.chain.outage import unreachable
from enclave_agent.crypto.sealed_box import seal
from enclave_agent.errors import (
    EXIT_ERROR,
    ProtocolError,
)
from enclave_agent.gateway import auth, cards, validation, vendor
from enclave_agent.gateway.answering import Ask, Refused, Unanswered, blocking
from enclave_agent.gateway.metrics import prometheus_text
from enclave_agent.gateway.service import GatewayAgent
from enclave_agent.listener import listen
from enclave_agent.protocol import queries
from enclave_agent.protocol.health import health_report
from enclave_agent.protocol.records import ModelRecord

log = logging.getLogger(__name__)

AGENT: web.AppKey[GatewayAgent] = web.AppKey("agent", GatewayAgent)
MAX_BODY = 1 << 20
BODY_TIMEOUT = 10.0  # seconds a client has to send its body

# The gateway's own refusals (answering.REASONS) and the contract's as HTTP answers.
REFUSAL_STATUS = {
    "too_many_rows": 413,
    "rate_limited": 429,
    "forbidden": 403,
    "quota": 429,
    "fee": 402,
    "InsufficientFunds": 503,
    "InconsistentPartials": 502,
    "error": 502,
}
NAMED_REASONS = ("InsufficientFunds", "InconsistentPartials")
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


def _model_ref(agent: GatewayAgent, ref: Any) -> ModelRecord:
    models = [m for m in agent.models() if m.active]
    for model in models:
        if (isinstance(ref, int) and not isinstance(ref, bool) and model.id == ref) or model.name == ref:
            return model
    raise validation.InvalidRequest(404, "model", f"no active model {ref!r}")


def _api_key(request: web.Request) -> str:
    header = request.headers.get("X-API-Key") or request.headers.get("Authorization", "").removeprefix(
        "Bearer "
    )
    return header.strip()


def _caller(api_key: str, body: dict[str, Any], agent: GatewayAgent, ask: Ask) -> auth.Caller:
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
            model_id=int(ask.model.id),
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
    """One inference call: parse and authenticate here, decide in ``agent.answering``,
    map the outcome to a status."""
    started = time.monotonic()
    try:
        response = await _inference(request, agent, started)
    except validation.InvalidRequest as exc:
        agent.metrics.count(f"invalid_{exc.status}")
        return _error(exc.status, exc.problem, exc.field, **exc.extra)
    except auth.AuthError as exc:
        agent.metrics.count("unauthenticated")
        return _error(401, str(exc))
    if response.status == 200:
        agent.metrics.observe(time.monotonic() - started)
    return response


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


def _ask(agent: GatewayAgent, body: dict[str, Any]) -> Ask:
    model = _model_ref(agent, body.get("model"))
    features = list(queries.parse_metadata(model.metadata)["features"])
    if model.kind == "statistic":
        stat = validation.parse_statistic_request(body, features)
        query = queries.Query(queries.KIND_STATISTIC, column=stat.column)
        return Ask(model, query, batch=False, encrypt_to=validation.parse_x25519_key(body.get("encrypt_to")))
    max_batch = agent.config.gateway.max_batch if agent.config.gateway else 256
    score = validation.parse_score_request(body, features, max_batch)
    bounds = agent.requests.input_range(model)
    validation.check_range(body, score, bounds)
    query = queries.Query(queries.KIND_SCORE, rows=tuple(tuple(row) for row in score.rows))
    encrypt_to = validation.parse_x25519_key(body.get("encrypt_to"))
    return Ask(model, query, score.batch, bounds, encrypt_to)


async def _inference(request: web.Request, agent: GatewayAgent, started: float) -> web.Response:
    body = await _json_body(request)
    if not agent.requests.is_ready():
        return _error(
            503, "the gateway enclave is not synchronised with the consortium yet", stage=agent.stage
        )
    ask = _ask(agent, body)
    caller = await blocking(_caller, _api_key(request), body, agent, ask)
    outcome = await agent.answering.answer(ask, caller, started)
    if isinstance(outcome, Refused):
        return _refusal(outcome)
    if isinstance(outcome, Unanswered):
        return _error(
            504,
            "providers have not answered yet; the request stays open until it expires on chain "
            "(chain time expires_at): answered by then, it is charged and its answer is at "
            "GET /v1/requests/{id}; otherwise its fee is refunded"
            if outcome.still_open
            else "providers did not answer before the request expired on chain; its fee goes back to the "
            "client's deposit (refundExpired)",
            outcome="pending" if outcome.still_open else "expired",
            request_ids=outcome.request_ids,
            expires_at=outcome.expires_at,
        )
    answers = [_deliver(row, ask.encrypt_to) for row in outcome.results]
    return web.json_response({"results": answers} if outcome.batch else answers[0])


def _refusal(refused: Refused) -> web.Response:
    status = REFUSAL_STATUS.get(refused.reason) or REVERT_STATUS.get(refused.reason, 502)
    # The contract's refusals and the two a client may act on name their reason.
    named = refused.reason not in REFUSAL_STATUS or refused.reason in (
        "InsufficientFunds",
        "InconsistentPartials",
    )
    extra = ({"reason": refused.reason} if named else {}) | refused.details
    response = _error(status, refused.message, refused.field, **extra)
    if refused.retry_after is not None:
        response.headers["Retry-After"] = str(refused.retry_after)
    return response


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
    record = await blocking(agent.requests.request, request_id)
    if record is None:
        return _error(404, f"no request {request_id} at this gateway")
    body: dict[str, Any] = {
        "id": record.id,
        "model_id": record.model_id,
        "status": record.status,
        "deadline": record.deadline,
        "submit_tx": record.submit_tx,
        "rows": record.rows,
    }
    sealed_to = bytes.fromhex(record.encrypt_to) if record.encrypt_to else None
    api_key = _api_key(request)
    if api_key and agent.config.gateway:
        try:
            caller = auth.authenticate_api_key(api_key, agent.config.gateway.api_keys)
        except auth.AuthError as exc:
            return _error(401, str(exc))
        if caller.client != record.client:
            return _error(403, "this request belongs to another client")
    elif sealed_to is None:
        return web.json_response(body)  # an unsealed answer goes to its API-key client only
    # A sealed answer is sealed again, to the key it was asked for: only that client opens it.
    results = await blocking(agent.requests.result, request_id)
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
        too_many = await blocking(agent.answering.signable, ask)
    except validation.InvalidRequest as exc:
        return _error(exc.status, exc.problem, exc.field, **exc.extra)
    if too_many is not None:
        return _refusal(too_many)
    nonce = secrets.randbits(256)
    deadline = await blocking(agent.chain_now) + auth.SIGNATURE_TTL  # the contract checks chain time
    max_fee = int(ask.model.fee) * ask.query.row_count
    typed = auth.typed_request(
        chain_id=agent.chain_id,
        gateway_contract=agent.gateway_address,
        client=to_checksum_address(client),
        model_id=int(ask.model.id),
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
    access = await blocking(agent.client_has_access, client)
    quota, used, balance = await blocking(agent.quota_and_balance, client)
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
        if not model.active:
            continue
        try:
            metadata = queries.parse_metadata(model.metadata)
        except ProtocolError:
            continue
        bounds = await blocking(agent.requests.input_range, model) if model.kind == "shared-model" else None
        out.append(
            {
                "id": model.id,
                "name": model.name,
                "kind": model.kind,
                "round_id": model.round_id,
                "fee_wei": model.fee,
                "features": metadata["features"],
                "link": metadata.get("link"),
                "rows_per_request": await blocking(agent.requests.rows_per_request, model),
                # Statistics take no numbers; a score model's range appears once its
                # holders published it (until then queries get 503).
                "input_range": None if bounds is None else bounds.public(),
                "card": await blocking(
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
        agent.load_rounds(),  # not the loop's cached documents: this is another thread
        agent.requests.is_ready(),
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
    data = await blocking(vendor.read, name)
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
