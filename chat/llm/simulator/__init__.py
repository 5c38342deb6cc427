"""An OpenAI-compatible streaming simulator: a real HTTP server for tests, benchmarks and
running the chat without a key. See docs/llm.md ("The simulator")."""

from .config import FAULTS, SimConfig
from .runner import SimulatorServer, SimulatorThread, running_simulator
from .state import RequestRecord
from .text import simulated_text, simulated_tokens

__all__ = [
    "FAULTS",
    "RequestRecord",
    "SimConfig",
    "SimulatorServer",
    "SimulatorThread",
    "running_simulator",
    "simulated_text",
    "simulated_tokens",
]
