"""A local Tenios CDR API for tests, the demo and benchmarks: no account needed."""

from tap_tenios.emulator.data import Leg, generate, make_call
from tap_tenios.emulator.server import (
    BOUNDS,
    FAULT_KINDS,
    ORDERS,
    TIMESTAMP_STYLES,
    TRANSIENT_FAULTS,
    Behaviour,
    Emulator,
    RunningEmulator,
)

__all__ = [
    "BOUNDS",
    "FAULT_KINDS",
    "ORDERS",
    "TIMESTAMP_STYLES",
    "TRANSIENT_FAULTS",
    "Behaviour",
    "Emulator",
    "Leg",
    "RunningEmulator",
    "generate",
    "make_call",
]
