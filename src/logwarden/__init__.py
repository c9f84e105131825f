"""logwarden: DeepLog log anomaly detection."""

__version__ = "0.1.0"
