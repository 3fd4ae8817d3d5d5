"""Federated logistic regression: input tables, local training, federated averaging
over secure-aggregation vectors and the public model description. Pure numpy; the
demo's data set and its evaluation (scikit-learn) live in ``enclave_devnet``.
"""

from enclave_agent.model.federated import LINK_LOGISTIC, ModelSpec, fedavg_plaintext
from enclave_agent.model.logistic import (
    column_stats,
    contribution,
    contribution_length,
    global_model,
    joint_scaling,
    linear_parts,
    log_loss,
    predict_proba,
    project_l1,
    sigmoid,
    standardise,
    train_local,
)
from enclave_agent.model.table import read_table

__all__ = [
    "LINK_LOGISTIC",
    "ModelSpec",
    "column_stats",
    "contribution",
    "contribution_length",
    "fedavg_plaintext",
    "global_model",
    "joint_scaling",
    "linear_parts",
    "log_loss",
    "predict_proba",
    "project_l1",
    "read_table",
    "sigmoid",
    "standardise",
    "train_local",
]
