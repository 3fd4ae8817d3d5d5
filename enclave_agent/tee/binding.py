"""Key binding: the one report-data layout that ties evidence to an enclave's keys
and to one consortium, for every evidence type.

The binding is 32 bytes::

    binding = SHA-256( "enclave-share/evidence-binding/v1" 0x00
                       || enclave chain address        20 bytes
                       || enclave X25519 public key    32 bytes
                       || chain id                     32 bytes, big-endian
                       || registry contract address    20 bytes )

Every field has a fixed length, so no two claims share an input. Where it goes:

===============  ==========================================================
evidence type    placement
===============  ==========================================================
aws-nitro        ``user_data`` = binding (exactly 32 bytes); the document's
                 own ``nonce`` field carries a verifier's challenge
intel-sgx        ``REPORTDATA`` (64 bytes) = binding || challenge
intel-tdx        ``REPORTDATA`` (64 bytes) = binding || challenge
amd-sev-snp      ``REPORT_DATA`` (64 bytes) = binding || challenge
simulated        no report data: the EIP-712 quote names every field itself
===============  ==========================================================

The challenge half of a 64-byte report data is a verifier's 32-byte nonce, the hash
of a recent block of the consortium's chain (registration: ``enclave_agent.tee.anchor``),
or 32 zero bytes when none was asked for. It is the only freshness a DCAP quote or an
SNP report can prove: neither carries a signed time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from eth_utils.address import is_address, to_canonical_address, to_checksum_address

from enclave_agent.errors import AttestationError

BINDING_DOMAIN = b"enclave-share/evidence-binding/v1\0"
NO_CHALLENGE = bytes(32)
_UINT256_LIMIT = 2**256


class BindingError(AttestationError):
    """Evidence's report data does not commit to the claimed keys and consortium,
    or the claims themselves are malformed."""


@dataclass(frozen=True)
class BindingClaims:
    """What an enclave claims its evidence binds: its chain account, its X25519 key
    and the consortium (chain id, registry)."""

    enclave: str
    x25519_key: bytes
    chain_id: int
    registry: str

    def __post_init__(self) -> None:
        for name in ("enclave", "registry"):
            value = getattr(self, name)
            if not isinstance(value, str) or not is_address(value):
                raise BindingError(f"binding claim {name} is not an address: {value!r}")
            object.__setattr__(self, name, str(to_checksum_address(value)))
        key = self.x25519_key
        if not isinstance(key, bytes | bytearray) or len(key) != 32:
            raise BindingError("binding claim x25519_key must be 32 bytes")
        object.__setattr__(self, "x25519_key", bytes(key))
        chain_id = self.chain_id
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < _UINT256_LIMIT:
            raise BindingError(f"binding claim chain_id must be a positive uint256, got {chain_id!r}")

    def digest(self) -> bytes:
        """The 32-byte binding."""
        return hashlib.sha256(
            BINDING_DOMAIN
            + to_canonical_address(self.enclave)
            + self.x25519_key
            + self.chain_id.to_bytes(32, "big")
            + to_canonical_address(self.registry)
        ).digest()

    def report_data(self, challenge: bytes = NO_CHALLENGE) -> bytes:
        """The 64-byte report data of an SGX, TDX or SNP enclave: binding || challenge."""
        if len(challenge) != 32:
            raise BindingError(f"a challenge is 32 bytes, got {len(challenge)}")
        return self.digest() + bytes(challenge)

    def to_json(self) -> dict[str, object]:
        return {
            "enclave": self.enclave,
            "x25519Key": "0x" + self.x25519_key.hex(),
            "chainId": self.chain_id,
            "registry": self.registry,
        }

    @classmethod
    def from_json(cls, data: Any) -> BindingClaims:
        """Claims from ``to_json`` output; ``BindingError`` naming the first bad field."""
        if not isinstance(data, dict):
            raise BindingError("binding claims must be a JSON object")
        missing = [k for k in ("enclave", "x25519Key", "chainId", "registry") if k not in data]
        if missing:
            raise BindingError(f"binding claims lack {', '.join(missing)}")
        key = data["x25519Key"]
        try:
            key_bytes = bytes.fromhex(key.removeprefix("0x")) if isinstance(key, str) else b""
        except ValueError:
            key_bytes = b""
        if len(key_bytes) != 32:
            raise BindingError("binding claim x25519Key must be 32 bytes of hex")
        return cls(
            enclave=data["enclave"], x25519_key=key_bytes, chain_id=data["chainId"], registry=data["registry"]
        )


def evidence_binding(*, enclave: str, x25519_key: bytes, chain_id: int, registry: str) -> bytes:
    """The 32-byte binding of ``enclave``'s keys to one consortium (see module doc)."""
    return BindingClaims(
        enclave=enclave, x25519_key=x25519_key, chain_id=chain_id, registry=registry
    ).digest()


def split_report_data(report_data: bytes | None) -> tuple[bytes, bytes | None]:
    """(binding, challenge) of a report data laid out as above: 32 bytes are the
    binding alone (Nitro ``user_data``), 64 bytes are binding || challenge (SGX, TDX,
    SNP). Any other length cannot carry a binding."""
    if report_data is None:
        raise BindingError("the evidence carries no report data, so it binds no keys")
    if len(report_data) == 32:
        return bytes(report_data), None
    if len(report_data) == 64:
        return bytes(report_data[:32]), bytes(report_data[32:])
    raise BindingError(f"report data of {len(report_data)} bytes cannot carry a binding (32 or 64 bytes)")


def check_binding(report_data: bytes | None, claims: BindingClaims) -> bytes | None:
    """Raise ``BindingError`` unless ``report_data`` binds ``claims``; return its challenge."""
    binding, challenge = split_report_data(report_data)
    if binding != claims.digest():
        raise BindingError(
            f"report data binds 0x{binding.hex()}, not enclave {claims.enclave}, its X25519 key "
            f"0x{claims.x25519_key.hex()}, chain {claims.chain_id} and registry {claims.registry} "
            f"(0x{claims.digest().hex()})"
        )
    return challenge
