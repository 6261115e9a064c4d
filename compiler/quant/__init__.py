"""Numerics of quantization: scales, multipliers, weight schemes, overflow proof.

These helpers know nothing of the IR; :mod:`compiler.passes.quantize` applies
them layer by layer.
"""

from compiler.quant.multiplier import (
    decompose_multiplier,
    decompose_multipliers,
    decompose_shared_shift,
)
from compiler.quant.overflow import accumulator_bounds, check_bias, prove_accumulator, prove_sum
from compiler.quant.scales import (
    MAX_BITS,
    MIN_BITS,
    check_width,
    float_scale,
    frac_bits_for,
    pot_scale,
    qmax,
    qrange,
    tensor_range,
)
from compiler.quant.weights import (
    WEIGHT_SCHEMES,
    project_to_levels,
    quantize_weights,
    weight_levels,
)

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "WEIGHT_SCHEMES",
    "accumulator_bounds",
    "check_bias",
    "check_width",
    "decompose_multiplier",
    "decompose_multipliers",
    "decompose_shared_shift",
    "float_scale",
    "frac_bits_for",
    "pot_scale",
    "project_to_levels",
    "prove_accumulator",
    "prove_sum",
    "qmax",
    "qrange",
    "quantize_weights",
    "tensor_range",
    "weight_levels",
]
