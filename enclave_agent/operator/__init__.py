"""Operator tooling over web3: what governance and the coordinator do from the command
line (``enclave-agent model|stat|client|round``), and what the demo does through the
same functions. None of it runs inside an enclave; it only reads the chain and sends
transactions signed with a key file (or, in the local consortium, a dev account's key).

    session.py   the manifest's contracts, an optional sender, organisation names
    models.py    register (bound to a completed round), retire, list models and statistics
    clients.py   client access: grant, revoke, quota, fees, deposit
    rounds.py    defaults for opening a round from its tag; show one; wait for one
    registry.py  code measurements and attestation signers
"""

from enclave_agent.operator.models import (
    list_models,
    model_spec_for_round,
    register_model,
    register_statistic,
    retire_model,
)
from enclave_agent.operator.session import Sender, Session

__all__ = [
    "Sender",
    "Session",
    "list_models",
    "model_spec_for_round",
    "register_model",
    "register_statistic",
    "retire_model",
]
