"""SESL: a streaming pipeline with one dedicated stage per layer (see docs/sesl.md)."""

from .config import JOIN_LATENCY, WINDOW_LATENCY, PipelineConfig, StageConfig
from .pipeline import SeslPipeline
from .stage import Fork, JoinStage, StreamFIFO, WindowStage

__all__ = ["JOIN_LATENCY", "WINDOW_LATENCY", "Fork", "JoinStage", "PipelineConfig",
           "SeslPipeline", "StageConfig", "StreamFIFO", "WindowStage"]
