"""DeepLog's models: the log-key LSTM, the parameter-value models, thresholds."""

from logwarden.models.keys import (
    END,
    FIRST_KEY,
    PAD,
    RESERVED,
    UNK,
    KeyModel,
    KeyModelConfig,
    KeyNetNumpy,
    Scores,
    Threshold,
    choose_threshold,
    fit_key_model,
    session_rows,
)
from logwarden.models.params import ParamModelConfig, ParamModels, ParamScores
from logwarden.models.supervised import SupervisedConfig, SupervisedDeepLog

__all__ = [
    "END",
    "FIRST_KEY",
    "PAD",
    "RESERVED",
    "UNK",
    "KeyModel",
    "KeyModelConfig",
    "KeyNetNumpy",
    "ParamModelConfig",
    "ParamModels",
    "ParamScores",
    "Scores",
    "SupervisedConfig",
    "SupervisedDeepLog",
    "Threshold",
    "choose_threshold",
    "fit_key_model",
    "session_rows",
]
