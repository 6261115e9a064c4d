"""Mapping: the cycle model and the tiling of layers onto an arch's buffers and engines."""
