"""The built-in workload simulator: HDFS-, OpenStack- and HTTP-like logs with known truth."""

from logwarden.sim.simulator import (
    ANOMALY_KINDS,
    PATH_KINDS,
    SIM_FORMAT,
    SIM_SESSION_REGEX,
    TASKS,
    SessionTruth,
    SimConfig,
    SimConfigError,
    SimulatedLog,
    iter_lines,
    simulate,
)

__all__ = [
    "ANOMALY_KINDS",
    "PATH_KINDS",
    "SIM_FORMAT",
    "SIM_SESSION_REGEX",
    "TASKS",
    "SessionTruth",
    "SimConfig",
    "SimConfigError",
    "SimulatedLog",
    "iter_lines",
    "simulate",
]
