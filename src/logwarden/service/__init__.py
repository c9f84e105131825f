"""The streaming service: a streaming detector, its store, the HTTP API and dashboard."""

from logwarden.service.stream import STATE_SCHEMA, Emitted, StreamConfig, StreamDetector

__all__ = ["STATE_SCHEMA", "Emitted", "StreamConfig", "StreamDetector"]
