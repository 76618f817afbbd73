"""The live service: the engine loop (ticks, checkpoints), its alert policy, and the
scheduler that runs it. It drives the models of ``forecaster`` against the database;
``forecaster`` never imports it."""

from engine.config import EngineConfig
from engine.loop import LiveEngine, TickReport
from engine.run import run_engine

__all__ = ["EngineConfig", "LiveEngine", "TickReport", "run_engine"]
