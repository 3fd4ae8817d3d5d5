"""The deployment manifest: addresses, chain id and ABI locations that agents,
scripts and the web page read."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from enclave_agent.errors import ConfigError

CONTRACT_NAMES = ("ConsortiumRegistry", "ShareExchange", "InferenceGateway")


@dataclass(frozen=True)
class Manifest:
    chain_id: int
    rpc_url: str
    deployed_block: int
    governor: str
    contracts: dict[str, str]
    abi_dir: str
    extra: dict[str, Any] = field(default_factory=dict)
    genesis_hash: str = ""  # hex without 0x; empty in manifests written before it existed
    deployed_block_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["abi_paths"] = {name: str(Path(self.abi_dir) / f"{name}.json") for name in self.contracts}
        return data

    def abi(self, name: str) -> list[dict[str, Any]]:
        path = Path(self.abi_dir) / f"{name}.json"
        try:
            return read_abi(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read ABI of {name} from {path}: {exc}") from exc


# A compiler artifact (brownie's: 3.9 MB with the AST and source maps) starts with its
# ABI (a few tens of KB): read that and stop, rather than parse the whole file.
_ABI_FIRST = re.compile(r'\s*\{\s*"abi"\s*:\s*')
_abis: dict[tuple[str, int, int], list[dict[str, Any]]] = {}  # (path, mtime, size) -> ABI


def read_abi(path: Path) -> list[dict[str, Any]]:
    """The ``abi`` of a compiler artifact (or of a file holding only ``{"abi": [...]}``);
    read once per process while the file is unchanged (an agent reads each one twice)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    abi = _abis.get(key)
    if abi is None:
        text = path.read_text()
        head = _ABI_FIRST.match(text)
        parsed: Any = None
        if head is not None:
            try:
                parsed, _ = json.JSONDecoder().raw_decode(text, head.end())
            except ValueError:
                parsed = None  # not what it seemed: the whole file decides
        if not isinstance(parsed, list):
            parsed = json.loads(text)["abi"]
        if not isinstance(parsed, list):
            raise TypeError(f"its abi is a {type(parsed).__name__}, not a list")
        abi = _abis[key] = parsed
    return copy.deepcopy(abi)  # the caller's to change


def write_manifest(manifest: Manifest, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    tmp.replace(path)


def load_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"deployment manifest {path} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"deployment manifest {path} is not JSON: {exc}") from exc
    missing = [k for k in ("chain_id", "rpc_url", "contracts", "abi_dir") if k not in data]
    if missing:
        raise ConfigError(f"deployment manifest {path} lacks {', '.join(missing)}")
    absent = [name for name in CONTRACT_NAMES if name not in data["contracts"]]
    if absent:
        raise ConfigError(f"deployment manifest {path} lacks contract address for {', '.join(absent)}")
    return Manifest(
        chain_id=int(data["chain_id"]),
        rpc_url=str(data["rpc_url"]),
        deployed_block=int(data.get("deployed_block", 0)),
        governor=str(data.get("governor", "")),
        contracts=dict(data["contracts"]),
        abi_dir=str(data["abi_dir"]),
        extra=dict(data.get("extra", {})),
        genesis_hash=str(data.get("genesis_hash", "")),
        deployed_block_hash=str(data.get("deployed_block_hash", "")),
    )
