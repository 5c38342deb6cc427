"""An OpenAI-compatible streaming simulator: a real HTTP server for tests, benchmarks and
running the chat without a key (`python -m llmsim`). See docs/llm.md ("The simulator").

A package of its own, beside `chat`: it needs only aiohttp, never Django, Chroma or `chat`."""

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
