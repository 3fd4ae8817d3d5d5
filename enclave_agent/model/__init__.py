"""Federated logistic regression: the data split of the demo, local training and
federated averaging over secure-aggregation vectors, metrics and the public model
description. Pure numpy in the agent path; scikit-learn only loads the bundled data
set and computes ROC AUC.
"""

from enclave_agent.model.data import SplitResult, csv_safe_name, read_table, split_breast_cancer
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
from enclave_agent.model.metrics import accuracy, auc, central_baseline, evaluate

__all__ = [
    "LINK_LOGISTIC",
    "ModelSpec",
    "SplitResult",
    "accuracy",
    "auc",
    "central_baseline",
    "column_stats",
    "contribution",
    "contribution_length",
    "csv_safe_name",
    "evaluate",
    "fedavg_plaintext",
    "global_model",
    "joint_scaling",
    "linear_parts",
    "log_loss",
    "predict_proba",
    "project_l1",
    "read_table",
    "sigmoid",
    "split_breast_cancer",
    "standardise",
    "train_local",
]
