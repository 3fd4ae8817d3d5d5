"""The consortium on the two other local chains users run: Ganache 7 and Hardhat's
node (Anvil is the default of every other test). On each: three provider processes
and the gateway attest and synchronise, the joint scaling and a federated-averaging
round complete, and one held-out row is answered through the gateway with the
plaintext joint model's probability."""

from __future__ import annotations

import numpy as np
import pytest

from enclave_agent.model.federated import fedavg_plaintext
from enclave_agent.model.logistic import predict_proba
from enclave_agent.model.table import read_table
from enclave_agent.protocol.inputs import TRAIN_EPOCHS, TRAIN_L2, TRAIN_LR
from enclave_devnet.demo import SCORE_TOLERANCE, Demo, DemoConfig

CHAIN_IDS = {"ganache": 1337, "hardhat": 31337}


@pytest.mark.parametrize("engine", ["ganache", "hardhat"])
def test_a_round_and_an_inference_on_each_engine(
    engine: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    demo = Demo(
        DemoConfig(
            workdir=tmp_path_factory.mktemp(engine),
            fedavg_rounds=1,
            gateway_timeout=60,
            engine=engine,
            out=print,
        )
    )
    try:
        result = demo.start()
        assert demo.c.manifest.chain_id == CHAIN_IDS[engine]
        demo.train()
        names, x, _ = read_table(result.split.holdout_path, result.split.label_column)
        answer = demo.client().infer(
            result.model_id, {"features": dict(zip(names, map(float, x[0]), strict=True))}
        )
        assert answer["partials"] >= 2
        split = result.split
        tables = [read_table(p, split.label_column)[1:] for p in split.provider_paths]
        kwargs = {"epochs": TRAIN_EPOCHS, "lr": TRAIN_LR, "l2": TRAIN_L2}
        reference = predict_proba(x[:1], *fedavg_plaintext(tables, 1, **kwargs))[0]
        assert abs(answer["score"] - reference) <= SCORE_TOLERANCE, (answer["score"], reference)
        assert int(demo.c.gateway.functions.state(answer["request_id"]).call()) == 2  # completed on chain
        assert np.isfinite(answer["logit"])
    finally:
        demo.stop()
