"""Operator tooling over web3: what governance and the coordinator do from the command
line (``enclave-agent model|stat|client|round``), and what the demo does through the
same functions. None of it runs inside an enclave; it only reads the chain and sends
transactions signed with a key file (or, in the local consortium, an unlocked account).

    session.py   the manifest's contracts, an optional sender, organisation names
    models.py    register (bound to a completed round), retire, list models and statistics
    clients.py   client access: grant, revoke, quota, fees, deposit
    rounds.py    open a round with defaults derived from its tag; show it; wait for it
"""
