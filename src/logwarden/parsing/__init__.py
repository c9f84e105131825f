"""Templates: masking, the streaming template miner and the structured CSV sink."""

from logwarden.parsing.miner import (
    CREATED,
    GENERALIZED,
    RULES,
    SCHEMA,
    UNCHANGED,
    WILDCARD,
    MaskRule,
    MinerConfig,
    ParseResult,
    ParserStateError,
    Slot,
    Template,
    TemplateMiner,
    classify,
)
from logwarden.parsing.structured import StructuredCsv

__all__ = [
    "CREATED",
    "GENERALIZED",
    "RULES",
    "SCHEMA",
    "UNCHANGED",
    "WILDCARD",
    "MaskRule",
    "MinerConfig",
    "ParseResult",
    "ParserStateError",
    "Slot",
    "StructuredCsv",
    "Template",
    "TemplateMiner",
    "classify",
]
