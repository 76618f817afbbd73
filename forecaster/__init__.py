"""Forecasting core: batched link-load models, intervals, drift detection and metrics.

Everything here is pure numpy/torch (no database, no HTTP). The live engine and the
offline evaluation both drive :class:`forecaster.suite.ModelSuite`.
"""

from forecaster.base import MODEL_NAMES, Forecaster
from forecaster.baselines import PersistenceForecaster, SeasonalForecaster
from forecaster.drift import DriftEvent, DriftMonitor, DriftResolved, RerouteEvent
from forecaster.hybrid import HybridForecaster
from forecaster.incremental import IncrementalForecaster, WindowMLP
from forecaster.intervals import AdaptiveConformal
from forecaster.liquid import LiquidForecaster, LiquidNet
from forecaster.suite import ModelSuite, StepOutput

__all__ = [
    "MODEL_NAMES",
    "AdaptiveConformal",
    "DriftEvent",
    "DriftMonitor",
    "DriftResolved",
    "Forecaster",
    "HybridForecaster",
    "IncrementalForecaster",
    "LiquidForecaster",
    "LiquidNet",
    "ModelSuite",
    "PersistenceForecaster",
    "RerouteEvent",
    "SeasonalForecaster",
    "StepOutput",
    "WindowMLP",
]
