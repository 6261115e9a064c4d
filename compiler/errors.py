"""User-facing errors of the compiler, the ISS and the command line."""

__all__ = [
    "ConvForgeError",
    "MappingError",
    "ModelFileError",
    "ProgramFormatError",
    "QuantizationError",
    "UnsupportedModelError",
]


class ConvForgeError(Exception):
    """An error the user can fix; its message names the node, layer, parameter or
    resource at fault and what to do."""


class ModelFileError(ConvForgeError):
    """The model file is missing, unreadable or not a valid ONNX model."""


class UnsupportedModelError(ConvForgeError):
    """The model contains nodes ConvForge cannot map; lists every one of them."""


class QuantizationError(ConvForgeError):
    """Quantization cannot meet the requested widths (e.g. an accumulator would overflow)."""


class MappingError(ConvForgeError):
    """A layer cannot be mapped or tiled onto the chosen arch."""


class ProgramFormatError(ConvForgeError):
    """A program binary is truncated, corrupted, or built for another arch."""
