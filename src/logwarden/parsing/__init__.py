"""Templates: masking, the streaming template miner and the structured CSV sink."""

from logwarden.parsing.miner import (
    CREATED,
    GENERALIZED,
    SCHEMA,
    UNCHANGED,
    WILDCARD,
    MaskRule,
    MinerConfig,
    ParseResult,
    ParserStateError,
    Template,
    TemplateMiner,
    classify,
)
from logwarden.parsing.structured import StructuredCsv

__all__ = [
    "CREATED",
    "GENERALIZED",
    "SCHEMA",
    "UNCHANGED",
    "WILDCARD",
    "MaskRule",
    "MinerConfig",
    "ParseResult",
    "ParserStateError",
    "StructuredCsv",
    "Template",
    "TemplateMiner",
    "classify",
]
