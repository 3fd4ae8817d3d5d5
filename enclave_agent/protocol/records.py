"""The documents an agent keeps in its store, typed: the models the consortium
registered, the requests a gateway recorded, a provider's own input ranges, the share
set a participant posts and the misbehaviour it reports here; rounds (``rounds.RoundDoc``) and
the membership view (``membership.MembershipView``) in their own modules, versioned
the same way. Each record is a dataclass written with its
schema version (``v``); reading checks the version and the fields, so a document of a
newer agent, a damaged one or a hand edit stops the agent with the key named instead
of failing later on a missing field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

from enclave_agent.store import Store, StoreError

PENDING = "pending"
COMPLETED = "completed"
REFUNDED = "refunded"
REQUEST_STATUSES = (PENDING, COMPLETED, REFUNDED)


def unversioned(data: Any, key: str, kind: str, version: int) -> dict[str, Any]:
    """``data`` without its version, once it is a ``kind`` document this agent reads
    (version 1 up to ``version``; documents written before versions existed have no
    ``v``: they are version 1). StoreError naming the key if not."""
    if not isinstance(data, dict):
        raise StoreError(f"stored {key!r} is not a {kind} document")
    found = data.get("v", 1)
    if not isinstance(found, int) or not 1 <= found <= version:
        raise StoreError(
            f"stored {key!r} is a {kind} of version {found!r}; this agent reads up to {version}: "
            "run the agent that wrote it or restore a matching backup"
        )
    return {k: v for k, v in data.items() if k != "v"}


class Record:
    """A persisted dataclass: ``to_json`` adds its version, ``from_json`` checks it and
    every field."""

    VERSION: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return {"v": self.VERSION} | data

    @classmethod
    def from_json(cls, data: Any, key: str = "") -> Self:
        key = key or cls.__name__
        values = unversioned(data, key, cls.__name__, cls.VERSION)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise StoreError(f"stored {key!r}: field {unknown[0]!r} is none a {cls.__name__} has")
        try:
            return cls(**values)
        except TypeError as exc:
            raise StoreError(f"stored {key!r} is not a whole {cls.__name__}: {exc}") from None


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class ModelRecord(Record):
    """A model or statistic registered for inference (``ModelRegistered``)."""

    id: int
    round_id: int
    kind: str  # "shared-model" or "statistic" (stages.OUTPUT_KINDS)
    fee: int  # wei per row
    name: str
    metadata: str  # JSON, see queries.parse_metadata
    active: bool = True  # False once retired (``ModelRetired``)

    def summary(self) -> dict[str, Any]:
        """What ``status`` shows of it."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "round_id": self.round_id,
            "active": self.active,
        }


@dataclass(frozen=True)
class RequestRecord(Record):
    """A request this gateway recorded on chain, from submission to completion or refund."""

    id: int
    model_id: int
    kind: str  # queries.KIND_SCORE or KIND_STATISTIC
    client: str
    holders: list[str]  # the model's shareholders the query went to, in round order
    epoch: int  # whose pairwise keys encrypt the query and the partials
    deadline: int  # chain time after which it can only be refunded
    submit_tx: str
    rows: int = 1
    query_bits: int | None = None  # the model's input range (score queries only)
    count_bound: int | None = None
    gas: dict[str, int] = field(default_factory=dict)
    submitted_at: float = 0.0  # wall clock, for the partial grace
    encrypt_to: str | None = None  # the client's X25519 key (hex) for answers sealed end to end
    status: str = PENDING
    inconsistent: str | None = None  # why its answer was refused (partials off one polynomial)
    withheld: str | None = None  # why its answer was withheld (it will be refunded)

    def __post_init__(self) -> None:
        if self.status not in REQUEST_STATUSES:
            raise StoreError(
                f"request {self.id}: status {self.status!r} is none of {', '.join(REQUEST_STATUSES)}"
            )

    @property
    def pending(self) -> bool:
        return self.status == PENDING


@dataclass(frozen=True)
class OwnRange(Record):
    """The input range this provider computed for a model it holds (``InputRange`` JSON)."""

    range: str
    published: bool = False


@dataclass(frozen=True)
class Posting(Record):
    """The share set a participant posts for a round, stored (its kept share sealed
    beside it) before the first chunk goes out: a restart re-posts these exact
    ciphertexts, never a second, different set."""

    commitment: str  # hex
    chunks: list[str]  # hex, one postShares call each
    key_table: list[str]  # hex


@dataclass(frozen=True)
class Blame(Record):
    """Misbehaviour this agent caught, queued until it is reported on chain."""

    round: int
    member: str
    reason: str  # one of stages.BLAME_REASONS
    evidence: str  # hex


# ---------------------------------------------------------------------------- accessors


def load(store: Store, cls: type[R], key: str) -> R | None:
    """The ``cls`` record stored under ``key``, or None."""
    data = store.get_json(key)
    return None if data is None else cls.from_json(data, key)


def save(store: Store, key: str, record: Record) -> None:
    store.put_json(key, record.to_json())


def model_key(model_id: int) -> str:
    return f"model/{int(model_id)}"


def load_model(store: Store, model_id: int) -> ModelRecord | None:
    return load(store, ModelRecord, model_key(model_id))


def save_model(store: Store, model: ModelRecord) -> None:
    save(store, model_key(model.id), model)


def load_models(store: Store) -> list[ModelRecord]:
    """Every registered model, retired ones too, by id."""
    models = [ModelRecord.from_json(store.get_json(k), k) for k in store.keys("model/")]
    return sorted(models, key=lambda m: m.id)


def request_key(request_id: int) -> str:
    return f"request/{int(request_id)}"


def load_request(store: Store, request_id: int) -> RequestRecord | None:
    return load(store, RequestRecord, request_key(request_id))


def save_request(store: Store, request: RequestRecord) -> None:
    """Store ``request``; it is listed by ``pending_requests`` exactly while pending."""
    with store.transaction():
        store.put_json(request_key(request.id), request.to_json())
        if request.pending:
            store.put_json(f"pending/{request.id}", request.id)
        else:
            store.delete_json(f"pending/{request.id}")


def pending_requests(store: Store) -> list[int]:
    """The ids of the requests still pending, oldest first."""
    return sorted(int(key.split("/")[1]) for key in store.keys("pending/"))
