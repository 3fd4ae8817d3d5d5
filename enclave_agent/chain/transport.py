"""The agent's JSON-RPC transport: web3's ``HTTPProvider`` with each request made by
urllib3 directly instead of through a ``requests`` session.

A session reads the whole environment twice per request (proxies, netrc, CA bundle)
and prepares cookies, hooks and auth the node never uses: 0.7 ms a request against
0.3 ms here, and an agent makes one or more requests per block. What a session took
from the environment is read once, when the provider is made: the proxy for the
endpoint (``http_proxy``/``https_proxy``/``no_proxy``), the CA bundle
(``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, else certifi's) and user info in the URL
(basic auth); a ``~/.netrc`` is not read. Failures surface as the built-in
``ConnectionError`` and ``TimeoutError`` or as ``NodeHTTPError`` (an HTTP error
status), which ``outage.unreachable`` and the sender tell apart. The methods on web3's
retry list (reads, and sends, whose repeat the node refuses as already known) are
retried as web3 retries them: after a timeout or an HTTP error, five attempts in all.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import make_headers, parse_url
from web3 import HTTPProvider, Web3
from web3.providers.rpc.utils import ExceptionRetryConfiguration, check_if_retry_on_failure
from web3.types import RPCEndpoint

from enclave_agent.errors import ChainError

POOL_SIZE = 10  # connections kept per endpoint: the gateway's threads share one provider


# A path segment this long is an API key (``https://host/v3/<key>``), not a route.
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_\-]{20,}")


def redact_url(url: str) -> str:
    """``url`` fit for messages and logs: no user info, query or key-like path segment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    path = "/".join("***" if _TOKEN_SEGMENT.fullmatch(seg) else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, host, path, "", ""))


class NodeRefused(ChainError):
    """The node answered a JSON-RPC request with an error."""


def rpc_result(w3: Web3, method: str, params: list[Any], what: str) -> Any:
    """One JSON-RPC call straight to the provider, its raw result: without web3's
    formatting of what the agent does not read (a block's every field, a log's every
    field); NodeRefused naming ``what`` if the node answers with an error."""
    response = w3.provider.make_request(RPCEndpoint(method), params)
    error = response.get("error")
    if error is not None or "result" not in response:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise NodeRefused(f"{method} for {what} failed: {str(message)[:300]}")
    return response["result"]


def block_timestamp(w3: Web3, block: str | int) -> int:
    """The timestamp of ``block`` (a tag such as "latest" or "pending", or a number),
    read raw; ChainError if the node has no such block."""
    tag = hex(block) if isinstance(block, int) else block
    found = rpc_result(w3, "eth_getBlockByNumber", [tag, False], f"block {block}")
    stamp = found.get("timestamp") if isinstance(found, dict) else None
    if isinstance(stamp, str):
        try:
            return int(stamp, 16)
        except ValueError:
            pass  # a node answering garbage is refused like one answering nothing
    raise ChainError(f"the node answered no block {block} with a timestamp")


class NodeHTTPError(OSError):
    """The JSON-RPC endpoint answered with an HTTP error status (``status``). An
    ``OSError``, as ``requests.HTTPError`` is, so that every handler of transport
    failures takes it."""

    def __init__(self, status: int, endpoint: str) -> None:
        super().__init__(f"JSON-RPC endpoint {endpoint} answered HTTP {status}")
        self.status = status


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an endpoint answered with, if ``exc`` is such an answer (ours,
    or a ``requests.HTTPError`` from a session some other code made)."""
    if isinstance(exc, NodeHTTPError):
        return exc.status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


class LeanHTTPProvider(HTTPProvider):
    """``HTTPProvider`` whose requests go straight through a urllib3 pool."""

    def __init__(self, endpoint_uri: str, *, timeout: float) -> None:
        super().__init__(
            endpoint_uri,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=ExceptionRetryConfiguration(errors=(TimeoutError, NodeHTTPError)),
        )
        url = parse_url(endpoint_uri)
        self._url = url._replace(auth=None).url
        self._redacted = redact_url(endpoint_uri)
        self._timeout = timeout
        self._headers = dict(self.get_request_headers())
        if url.auth:
            self._headers.update(make_headers(basic_auth=url.auth))
        env = os.environ
        ca_bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
        options: dict[str, Any] = {"maxsize": POOL_SIZE, "ca_certs": ca_bundle}
        proxy = select_proxy(self._url, get_environ_proxies(self._url))
        self._pool = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        config = self.exception_retry_configuration
        if check_if_retry_on_failure(method, config.method_allowlist):
            errors = tuple(config.errors)
            for attempt in range(config.retries - 1):
                try:
                    return self._post(request_data)
                except errors:
                    time.sleep(config.backoff_factor * 2**attempt)
        return self._post(request_data)

    def _post(self, body: bytes) -> bytes:
        try:
            response = self._pool.urlopen(
                "POST",
                self._url,
                body=body,
                headers=self._headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except NewConnectionError as exc:  # refused or no such host (a subclass of connect timeout)
            raise ConnectionError(f"JSON-RPC endpoint {self._redacted} cannot be connected to") from exc
        except Urllib3Timeout as exc:
            raise TimeoutError(
                f"JSON-RPC endpoint {self._redacted} did not answer within {self._timeout} s"
            ) from exc
        except Urllib3Error as exc:
            raise ConnectionError(
                f"JSON-RPC endpoint {self._redacted}: connection failed ({type(exc).__name__})"
            ) from exc
        if response.status >= 300:
            raise NodeHTTPError(response.status, self._redacted)
        return bytes(response.data)
