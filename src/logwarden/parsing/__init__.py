"""Templates: masking, the streaming template miner, its diagnostics and the structured CSV
sink."""

from logwarden.parsing.diagnostics import ShatterWarning, diagnose
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
    "ShatterWarning",
    "Slot",
    "StructuredCsv",
    "Template",
    "TemplateMiner",
    "classify",
    "diagnose",
]
