"""Online learning: operator feedback, updates from it, lineage of versions, drift.

``feedback``: :class:`Feedback` records and the :class:`Lineage` of model versions;
``update``: what ``DeepLog.partial_fit`` is built from (:class:`Memory` kept from training,
:class:`UpdatePolicy`, fine-tuning, threshold re-check, parameter model updates);
``drift``: the streaming :class:`DriftTracker` that ``detect`` (and a service) runs.
"""

from logwarden.online.drift import DriftBaseline, DriftConfig, DriftTracker, DriftWarning
from logwarden.online.feedback import LABELS, Feedback, Lineage, Version, read_id_file
from logwarden.online.update import (
    Memory,
    UpdatePolicy,
    fine_tune,
    recheck_threshold,
    update_param_models,
)

__all__ = [
    "LABELS",
    "DriftBaseline",
    "DriftConfig",
    "DriftTracker",
    "DriftWarning",
    "Feedback",
    "Lineage",
    "Memory",
    "UpdatePolicy",
    "Version",
    "fine_tune",
    "read_id_file",
    "recheck_threshold",
    "update_param_models",
]
