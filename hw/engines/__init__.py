"""Compute engines: one per layer type, each driven by a command stream.

- :class:`~hw.engines.conv.ConvEngine` — Pi x Po KxK convolvers, output buffer across
  input-channel tiles, fused bias / requantization / activation / pooling;
- :class:`~hw.engines.depthwise.DepthwiseEngine` — per-channel KxK convolution;
- :class:`~hw.engines.pointwise.PointwiseEngine` — Pi x Po MAC array for 1x1
  convolutions and fully connected layers;
- :class:`~hw.engines.eltwise.EltwiseAddEngine` — rescaled residual add.

Every engine elaborates from an :class:`~hw.arch.ArchConfig` (plus field overrides).
Without ``config`` it takes one job per beat of its ``cmd`` stream (SEML: one engine
serves many layers); with ``config`` the job description is a constant and the engine
repeats it (SESL: one engine per layer). ``busy`` is high while a job runs and ``done``
pulses once after its last output beat.
"""

from .conv import ConvEngine
from .depthwise import DepthwiseEngine
from .eltwise import EltwiseAddEngine
from .pointwise import PointwiseEngine

__all__ = ["ConvEngine", "DepthwiseEngine", "EltwiseAddEngine", "PointwiseEngine"]
