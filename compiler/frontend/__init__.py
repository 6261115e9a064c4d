"""Model frontends: translate a model file into the compiler's IR (:mod:`compiler.ir`)."""

from compiler.frontend.onnx import (
    ModelFileError,
    format_issues,
    import_onnx,
    legality_issues,
    load_model,
)
from compiler.frontend.ops import Issue

__all__ = [
    "Issue",
    "ModelFileError",
    "format_issues",
    "import_onnx",
    "legality_issues",
    "load_model",
]
