"""Contract reverts as typed Python exceptions.

``ErrorDecoder`` maps the 4-byte selector of every custom error in the given ABIs
(our contracts' errors and the OpenZeppelin ones they inherit) to its name and
arguments, plus Solidity's built-in ``Error(string)`` and ``Panic(uint256)``.
``decode`` returns an instance of one ``ContractRevert`` subclass per error name,
created once and shared through ``error_class``::

    try:
        sender.send(registry.functions.register(quote, sig), label="register")
    except error_class("RegistryNonceUsed") as exc:
        exc.error_args["nonce"]  # '0x…'

Bytes arguments are rendered as 0x-hex strings, addresses checksummed, structs as
dicts, arrays as lists.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import collapse_if_tuple, function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from enclave_agent.chain.manifest import CONTRACT_NAMES, Manifest
from enclave_agent.errors import ContractRevert

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
UNKNOWN_ERROR = "UnknownError"

# Solidity's panic codes (docs: "Panic via assert and Error via require").
PANIC_REASONS = {
    0x00: "generic compiler panic",
    0x01: "assert failed",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "too much memory allocated",
    0x51: "call to a zero-initialised internal function",
}

_classes: dict[str, type[ContractRevert]] = {}
_classes_lock = threading.Lock()


def _rebuild(name: str, args: dict[str, object], message: str) -> ContractRevert:
    return error_class(name)(name, args, message)


def _reduce(self: ContractRevert) -> tuple[Any, ...]:
    # Dynamic classes are not importable by name; rebuild through the registry.
    return (_rebuild, (self.error_name, self.error_args, str(self)))


def error_class(name: str) -> type[ContractRevert]:
    """The ``ContractRevert`` subclass for the Solidity error ``name`` (one per name)."""
    if not name.isidentifier():
        raise ValueError(f"not an error name: {name!r}")
    with _classes_lock:
        cls = _classes.get(name)
        if cls is None:
            namespace = {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": f"The contract reverted with the custom error {name}.",
                "__reduce__": _reduce,
            }
            cls = type(name, (ContractRevert,), namespace)
            _classes[name] = cls
        return cls


@dataclass(frozen=True)
class ErrorSpec:
    """One error of the ABIs: ``inputs`` are the ABI input entries."""

    name: str
    signature: str
    selector: bytes
    inputs: tuple[Mapping[str, Any], ...]

    @property
    def types(self) -> list[str]:
        return [collapse_if_tuple(dict(i)) for i in self.inputs]


def _plain(value: Any, param: Mapping[str, Any]) -> Any:
    """ABI-decoded value -> JSON-friendly: bytes as 0x-hex, structs as dicts."""
    typ = str(param["type"])
    if typ.endswith("]"):
        inner = dict(param, type=typ[: typ.rindex("[")])
        return [_plain(v, inner) for v in value]
    if typ == "tuple":
        components = param.get("components", [])
        return {
            (c.get("name") or f"arg{i}"): _plain(v, c)
            for i, (c, v) in enumerate(zip(components, value, strict=True))
        }
    if typ == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return value


def _spec_of(entry: Mapping[str, Any]) -> ErrorSpec:
    inputs = tuple(entry.get("inputs", ()))
    types = ",".join(collapse_if_tuple(dict(i)) for i in inputs)
    signature = f"{entry['name']}({types})"
    return ErrorSpec(
        name=str(entry["name"]),
        signature=signature,
        selector=function_signature_to_4byte_selector(signature),
        inputs=inputs,
    )


_BUILTIN = (
    ErrorSpec("Error", "Error(string)", ERROR_STRING_SELECTOR, ({"name": "reason", "type": "string"},)),
    ErrorSpec("Panic", "Panic(uint256)", PANIC_SELECTOR, ({"name": "code", "type": "uint256"},)),
)


class ErrorDecoder:
    """Selector -> error spec over a set of ABIs; decodes revert data."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self.errors: dict[bytes, ErrorSpec] = {spec.selector: spec for spec in _BUILTIN}
        for abi in abis:
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                spec = _spec_of(entry)
                known = self.errors.get(spec.selector)
                if known is not None and known.signature != spec.signature:
                    log.warning(
                        "error selector clash: %s and %s; keeping the first", known.signature, spec.signature
                    )
                    continue
                self.errors.setdefault(spec.selector, spec)
                error_class(spec.name)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ErrorDecoder:
        return cls(manifest.abi(name) for name in CONTRACT_NAMES)

    def spec(self, name: str) -> ErrorSpec:
        """The spec of the error called ``name`` (KeyError if none)."""
        for spec in self.errors.values():
            if spec.name == name:
                return spec
        raise KeyError(name)

    def selector(self, name: str) -> bytes:
        return self.spec(name).selector

    def decode(self, revert_data: bytes | str, *, context: str | None = None) -> ContractRevert:
        """The typed exception for ``revert_data`` (``context``, e.g. a tx label, prefixes the message)."""
        data = _to_bytes(revert_data)
        spec = self.errors.get(data[:4]) if len(data) >= 4 else None
        if spec is None:
            return self._unknown(data, context)
        try:
            values = abi_decode(spec.types, data[4:])
        except (DecodingError, ValueError, OverflowError):
            return self._unknown(data, context)
        args = {
            (param.get("name") or f"arg{i}"): _plain(value, param)
            for i, (param, value) in enumerate(zip(spec.inputs, values, strict=True))
        }
        text = f"{spec.name}({', '.join(f'{k}={v}' for k, v in args.items())})"
        if spec.selector == PANIC_SELECTOR:
            text += f": {PANIC_REASONS.get(int(args['code']), 'unknown panic code')}"
        return error_class(spec.name)(spec.name, args, f"{context}: {text}" if context else text)

    def from_exception(self, exc: BaseException, *, context: str | None = None) -> ContractRevert:
        """Decode the revert carried by a web3 ``ContractLogicError`` (or an RPC error with data)."""
        data = revert_data(exc)
        if data is None:
            reason = getattr(exc, "message", None) or "no revert data"
            error = self._unknown(b"", context)
            return type(error)(error.error_name, error.error_args, f"{error} ({reason})")
        return self.decode(data, context=context)

    @staticmethod
    def _unknown(data: bytes, context: str | None) -> ContractRevert:
        args: dict[str, object] = {"data": "0x" + data.hex()}
        text = f"{UNKNOWN_ERROR}(data=0x{data[:4].hex()}{'...' if len(data) > 4 else ''})"
        return error_class(UNKNOWN_ERROR)(UNKNOWN_ERROR, args, f"{context}: {text}" if context else text)


def _to_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        text = data.strip().removeprefix("0x")
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""
    return bytes(data)


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes a web3 exception carries, if any.

    Nodes report them as ``error.data`` in several shapes: ``"0x…"``, ``"Reverted 0x…"``,
    ``{"data": "0x…"}`` or Ganache's ``{"result": "0x…", "message": "revert"}``; web3
    keeps that value as ``exc.data``.
    """
    data: Any = getattr(exc, "data", None)
    if data is None:
        response = getattr(exc, "rpc_response", None)
        error = response.get("error") if isinstance(response, Mapping) else None
        data = error.get("data") if isinstance(error, Mapping) else None
    if isinstance(data, Mapping):
        data = data.get("data", data.get("result"))
    if not isinstance(data, str):
        return None
    text = data.strip().removeprefix("Reverted ").strip()
    if not text.startswith("0x"):
        return None
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        return None
