"""Persistence: model bundles (manifest, checksums, schema) without pickle."""

from logwarden.persist.bundle import SCHEMA, BundleError, load_bundle, save_bundle, umask_mode

__all__ = ["SCHEMA", "BundleError", "load_bundle", "save_bundle", "umask_mode"]
