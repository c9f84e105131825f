"""logwarden: DeepLog log anomaly detection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["DeepLog", "__version__"]

if TYPE_CHECKING:
    from logwarden.detect import DeepLog


def __getattr__(name: str) -> Any:
    # Lazy, so that `import logwarden` (and the CLI) stays light.
    if name == "DeepLog":
        from logwarden.detect import DeepLog

        return DeepLog
    raise AttributeError(name)
