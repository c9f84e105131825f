"""Sessions: grouping events by identifier or window, idle close, the session table."""

from logwarden.sessions.grouping import (
    MAX_PENDING_UNTIMED,
    SESSION_PRESETS,
    UNIDENTIFIED_ID,
    FlatValues,
    Session,
    SessionConfig,
    SessionConfigError,
    Sessionizer,
    SessionTable,
    gather,
    group,
)

__all__ = [
    "MAX_PENDING_UNTIMED",
    "SESSION_PRESETS",
    "UNIDENTIFIED_ID",
    "FlatValues",
    "Session",
    "SessionConfig",
    "SessionConfigError",
    "SessionTable",
    "Sessionizer",
    "gather",
    "group",
]
