"""Inputs: raw lines with their position, log formats, dataset loaders and raw ingest.

``sources`` reads lines (files, globs, gzip, stdin, follow); ``formats`` splits a line into
header fields, timestamp and content; ``datasets`` loads the benchmark forms (DeepLog
sequences, labelled JSONL, label CSVs); ``ingest`` drives a raw log through the parser into
sessions (import it as ``logwarden.io.ingest``: it pulls in the parser and sessions).
"""

from logwarden.io.datasets import (
    DataError,
    LabeledSession,
    LineLabels,
    iter_jsonl,
    iter_sequences,
    load_jsonl,
    load_labels,
    load_line_labels,
    load_sequences,
    split_in_order,
)
from logwarden.io.formats import PRESETS, FormatError, JsonFormat, LogFormat, get_format
from logwarden.io.sources import (
    FollowConfig,
    Follower,
    LineReader,
    SourceConfig,
    follow,
    read_lines,
)

__all__ = [
    "PRESETS",
    "DataError",
    "FollowConfig",
    "Follower",
    "FormatError",
    "JsonFormat",
    "LabeledSession",
    "LineLabels",
    "LineReader",
    "LogFormat",
    "SourceConfig",
    "follow",
    "get_format",
    "iter_jsonl",
    "iter_sequences",
    "load_jsonl",
    "load_labels",
    "load_line_labels",
    "load_sequences",
    "read_lines",
    "split_in_order",
]
