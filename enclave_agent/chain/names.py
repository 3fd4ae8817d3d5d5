"""Organisation display names for enclave and operator addresses, as the registry
records them: what operator commands print and agents log next to an address."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_utils.address import to_checksum_address
from web3.exceptions import Web3Exception

from enclave_agent.chain.client import Contracts

log = logging.getLogger(__name__)

_LOOKUP_ERRORS = (Web3Exception, requests.RequestException, OSError, ValueError)


@dataclass
class NameBook:
    """Cached lookups (one per address); a lookup the node cannot answer gives None and
    is tried again next time, so naming never stops the caller."""

    contracts: Contracts
    _cache: dict[str, str | None] = field(default_factory=dict)

    def operator_name(self, operator: str) -> str | None:
        key = "op:" + operator
        if key not in self._cache:
            try:
                name = str(self.contracts.registry.functions.organisation(operator).call()[4])
            except _LOOKUP_ERRORS:
                return None
            self._cache[key] = name or None
        return self._cache[key]

    def enclave_name(self, enclave: str) -> str | None:
        key = "enclave:" + enclave
        if key not in self._cache:
            try:
                operator = str(self.contracts.registry.functions.member(enclave).call()[2])
            except _LOOKUP_ERRORS:
                return None
            if int(operator, 16) == 0:
                return None  # not registered (yet): ask again later
            name = self.operator_name(operator)
            if name is None:
                return None
            self._cache[key] = name
        return self._cache[key]

    def enclave(self, address: str) -> dict[str, Any]:
        """``{"name": organisation name or None, "enclave": address}``."""
        address = str(to_checksum_address(address))
        return {"name": self.enclave_name(address), "enclave": address}

    def label(self, address: str) -> str:
        """``bank-a`` when the registry knows the enclave's organisation, else the address."""
        return self.enclave_name(str(to_checksum_address(address))) or str(address)

    def describe(self, address: str) -> str:
        """``0x… (bank-a)`` for logs: the address first, then the organisation if known."""
        address = str(to_checksum_address(address))
        name = self.enclave_name(address)
        return f"{address} ({name})" if name else address
