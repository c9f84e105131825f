"""Detection: the DeepLog estimator, its explained verdicts, and the deployable Detector."""

from logwarden.detect.detector import Detector, Inputs, InputSpec
from logwarden.detect.estimator import REASONS, DeepLog, Verdict

__all__ = ["REASONS", "DeepLog", "Detector", "InputSpec", "Inputs", "Verdict"]
