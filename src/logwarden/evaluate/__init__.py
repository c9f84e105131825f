"""Evaluation: grouping accuracy, confusion counts and detection reports."""

from logwarden.evaluate.metrics import (
    Confusion,
    Detections,
    LineReport,
    Report,
    SessionGroup,
    VerdictLike,
    confusion,
    grouping_accuracy,
)

__all__ = [
    "Confusion",
    "Detections",
    "LineReport",
    "Report",
    "SessionGroup",
    "VerdictLike",
    "confusion",
    "grouping_accuracy",
]
