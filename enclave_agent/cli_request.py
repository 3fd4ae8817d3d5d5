"""``enclave-agent request``: a client of the gateway's HTTP API. Listing the models
is public (no credentials); an answer that does not come within ``--timeout`` is one
line and exit 11, since the gateway may still answer the request later."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from enclave_agent.cli_common import print_json
from enclave_agent.errors import EXIT_ERROR, EXIT_TIMEOUT, ConfigError, EnclaveAgentError


def list_models(url: str, timeout: float) -> list[dict[str, Any]]:
    """GET /v1/models (public)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"gateway URL must be http(s): {url!r}")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=timeout) as response:  # noqa: S310
            return list(json.loads(response.read())["models"])
    except urllib.error.HTTPError as exc:
        raise EnclaveAgentError(f"gateway {url} answered /v1/models with HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise EnclaveAgentError(f"gateway {url} does not answer: {exc.reason}") from None
    except TimeoutError:
        raise EnclaveAgentError(f"gateway {url} did not answer /v1/models within {timeout:g} s") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise EnclaveAgentError(f"gateway {url} answered /v1/models with something else than models") from exc


def send_request(args: argparse.Namespace, inputs: dict[str, object]) -> int:
    from enclave_agent.config import read_secret
    from enclave_agent.gateway.client import GatewayClient, GatewayHTTPError, GatewayUnreachable

    api_key = args.api_key
    if args.api_key_file:
        api_key = read_secret(args.api_key_file, "API key")
    wallet = read_secret(args.key_file, "wallet key") if args.key_file else None
    client = GatewayClient(args.url, api_key=api_key, wallet_key=wallet, timeout=args.timeout)
    model: int | str = int(args.model) if args.model.isdigit() else args.model
    try:
        answer = client.infer(model, inputs, encrypt=args.encrypt)
    except GatewayHTTPError as exc:
        print_json({"status": exc.status} | exc.body)
        return EXIT_ERROR
    except (GatewayUnreachable, TimeoutError) as exc:
        if not _timed_out(exc):
            raise
        print(
            f"enclave-agent: error: no answer from {args.url} within --timeout {args.timeout:g} s; "
            "the gateway may still answer the request (it waits until the request's on-chain "
            "deadline): ask with a longer --timeout",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    print_json(answer)
    return 0


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a socket timeout, not a refused connection."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return True
        if isinstance(cause, urllib.error.URLError) and isinstance(cause.reason, TimeoutError):
            return True
        cause = cause.__cause__
    return False
