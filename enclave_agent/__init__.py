"""enclave-share enclave agent: attestation, key synchronisation, secret sharing
and gated inference for a consortium that meets only through an EVM chain."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
