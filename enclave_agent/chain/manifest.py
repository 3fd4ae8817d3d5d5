"""The deployment manifest: addresses, chain id and ABI locations that agents,
scripts and the web page read."""

from __future__ import annotations

import json
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
            abi: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read ABI of {name} from {path}: {exc}") from exc
        return abi


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
