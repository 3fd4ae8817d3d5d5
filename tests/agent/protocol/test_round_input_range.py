"""A round input that could overflow the modulus once summed is refused before any
share exists, with an error naming the round, the input, the element and the bound
(never the value): never wrapped silently."""

from __future__ import annotations

import numpy as np
import pytest

from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.fixed_point import max_abs_value
from enclave_agent.errors import FixedPointRangeError
from enclave_agent.protocol.rounds import RoundContext, RoundDoc, build_posting

MEMBERS = ["0x" + f"{i:02x}" * 20 for i in (1, 2, 3)]
KEYS = {m: bytes([i]) * 32 for i, m in enumerate(MEMBERS)}
CTX = RoundContext(31337, "0x" + "ee" * 20)


def _doc(modulus: int, frac_bits: int = 20) -> RoundDoc:
    scheme = "additive" if modulus == RING64 else "shamir"
    return RoundDoc(
        round_id=7,
        epoch=1,
        tag="column-stats",
        participants=MEMBERS,
        my_index=0,
        length=3,
        frac_bits=frac_bits,
        scheme=scheme,
        encoding="seeded",
        modulus=modulus,
        threshold=3 if scheme == "additive" else 2,
        posting_deadline=0,
        deadline=0,
        output_kind="statistic",
        min_contributors=3,
    )


@pytest.mark.parametrize("modulus", [RING64, PRIME61])
def test_an_input_that_could_overflow_once_summed_is_refused_by_name(modulus: int) -> None:
    limit = max_abs_value(20, modulus, headroom=3)  # a third of the range: three of them still fit
    build_posting(_doc(modulus), np.array([limit, -limit, 1.0]), KEYS, CTX)
    huge = 1.0001 * limit
    with pytest.raises(FixedPointRangeError) as refused:
        build_posting(_doc(modulus), np.array([1.0, 2.0, huge]), KEYS, CTX)
    message = str(refused.value)
    assert message.startswith("round 7: input 'column-stats': fixed-point value at index 2 is out of range")
    assert "headroom 3" in message and repr(huge) not in message
