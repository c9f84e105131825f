"""The built-in workload simulator: HDFS-, OpenStack- and HTTP-like logs with known truth."""

from logwarden.sim.simulator import (
    ANOMALY_KINDS,
    CONCURRENT_STEPS,
    PATH_KINDS,
    SIM_FORMAT,
    SIM_SESSION_REGEX,
    TASKS,
    VERSIONS,
    SessionTruth,
    SimConfig,
    SimConfigError,
    SimulatedLog,
    StepClassifier,
    iter_lines,
    simulate,
    task_paths,
)

__all__ = [
    "ANOMALY_KINDS",
    "CONCURRENT_STEPS",
    "PATH_KINDS",
    "SIM_FORMAT",
    "SIM_SESSION_REGEX",
    "TASKS",
    "VERSIONS",
    "SessionTruth",
    "SimConfig",
    "SimConfigError",
    "SimulatedLog",
    "StepClassifier",
    "iter_lines",
    "simulate",
    "task_paths",
]
