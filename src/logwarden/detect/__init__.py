"""Detection: the DeepLog estimator, its explained verdicts, and the deployable Detector."""

from logwarden.detect.detector import Detector, Inputs, InputSpec
from logwarden.detect.estimator import REASONS, DeepLog, Verdict, key_reason
from logwarden.detect.lines import LineVerdicts, SupervisedDetector, window_line_verdicts

__all__ = [
    "REASONS",
    "DeepLog",
    "Detector",
    "InputSpec",
    "Inputs",
    "LineVerdicts",
    "SupervisedDetector",
    "Verdict",
    "key_reason",
    "window_line_verdicts",
]
