"""DeepLog's models: the log-key LSTM, the parameter-value models, thresholds."""

from logwarden.models.calibration import TailModel
from logwarden.models.keys import (
    END,
    FIRST_KEY,
    PAD,
    PROB_FLOOR,
    RESERVED,
    UNK,
    Assessment,
    KeyCalibration,
    KeyModel,
    KeyModelConfig,
    KeyNetNumpy,
    Scores,
    Threshold,
    fit_key_model,
    session_rows,
    session_statistic,
    vocabulary,
)
from logwarden.models.params import ParamModelConfig, ParamModels, ParamScores
from logwarden.models.supervised import SupervisedConfig, SupervisedDeepLog

__all__ = [
    "END",
    "FIRST_KEY",
    "PAD",
    "PROB_FLOOR",
    "RESERVED",
    "UNK",
    "Assessment",
    "KeyCalibration",
    "KeyModel",
    "KeyModelConfig",
    "KeyNetNumpy",
    "ParamModelConfig",
    "ParamModels",
    "ParamScores",
    "Scores",
    "SupervisedConfig",
    "SupervisedDeepLog",
    "TailModel",
    "Threshold",
    "fit_key_model",
    "session_rows",
    "session_statistic",
    "vocabulary",
]
