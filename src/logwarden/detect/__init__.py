"""Detection: the DeepLog estimator and its explained verdicts."""

from logwarden.detect.estimator import REASONS, DeepLog, Verdict

__all__ = ["REASONS", "DeepLog", "Verdict"]
