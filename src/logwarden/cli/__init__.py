"""The command line: one module per command, ``main`` dispatches."""

from logwarden.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
