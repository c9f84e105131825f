"""One error hierarchy, so that the CLI and the service each map errors in one place.

Every error logwarden raises on purpose is a :class:`LogwardenError` of one of four kinds:

- :class:`DataError`: the input data is malformed (a bad line in a dataset file, a label
  file that does not match the log);
- :class:`ConfigError`: a setting cannot be used (a hyperparameter out of range, a format
  string, a session regex); ``field`` names the setting, so a front end can name its own
  flag or form field for it;
- :class:`BundleError`: a model bundle is missing, foreign, of another schema or tampered;
- :class:`StateError`: saved state other than a bundle (parser state) cannot be loaded.

:class:`UpdateRefusedError` is an online update that would break what an operator
confirmed (a confirmed anomaly no longer flagged); nothing is changed.

:class:`NotFittedError` is a use of an estimator before ``fit``. The kinds also derive from
``ValueError`` (``RuntimeError`` for NotFittedError), so code that caught the built-in
types keeps working.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "LogwardenError",
    "NotFittedError",
    "StateError",
    "UpdateRefusedError",
]


class LogwardenError(Exception):
    """Base of every error logwarden raises on purpose; the message is one line for a user."""


class DataError(LogwardenError, ValueError):
    """Input data that cannot be read as the format it claims to be."""


class ConfigError(LogwardenError, ValueError):
    """A setting that cannot be used; ``field`` names it (a parameter name) when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BundleError(LogwardenError, ValueError):
    """A model bundle that is missing, foreign, of an unknown schema or modified."""


class StateError(LogwardenError, ValueError):
    """Saved state (parser state, stores) that is foreign, of another version or corrupt."""


class NotFittedError(LogwardenError, RuntimeError):
    """An estimator used before ``fit`` (or ``load``)."""


class UpdateRefusedError(LogwardenError):
    """An online update refused because it would silence a confirmed anomaly."""
