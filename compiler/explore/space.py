"""The search space of ``convforge explore`` and the registry of accelerator modes.

A design point is a flat dict of named choices (what Optuna samples):

``mode``
    A key of :data:`MODES` (``seml``, ``sesl``; further modes register themselves with
    :func:`register_mode` and may add their own dimensions, e.g. a split point).
``conv_pi``, ``conv_po``, ``pw_pi``, ``pw_po``, ``dw``
    SEML engine parallelism: conv engine input x output channels, pointwise array
    input x output channels (the array need not be square), depthwise channels.
``buf_kib``
    SEML feature-map buffers (IBUF = OBUF = ``buf_kib`` KiB, WBUF half of it, at least
    8 KiB).
``conv_k_max``
    The kernel set of the conv and depthwise engines: every odd size up to it (at
    least the model's largest kernel).
``sesl_dsp_share``
    SESL: the fraction of the DSP budget the folding may spend.
``weight_scheme``
    ``uniform``, ``pot`` or ``apot``.
``act_bits``, ``weight_bits``
    Word sizes, 4 to 16.
``prune.<group>``
    Per-layer pruning: the fraction of weights zeroed in each layer of a group
    (one group per weighted layer when the model has at most
    :data:`MAX_PRUNE_GROUPS` of them, else one per layer kind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hw.arch import KERNEL_SIZES, WEIGHT_SCHEMES

__all__ = ["MODES", "Dimension", "Mode", "SearchSpace", "register_mode"]

#: Dimensions that only some modes read (see :attr:`Mode.uses`).
MODE_DIMENSIONS = ("conv_pi", "conv_po", "pw_pi", "pw_po", "dw", "buf_kib", "conv_k_max",
                   "sesl_dsp_share")

#: Most pruning groups before layers are grouped by kind.
MAX_PRUNE_GROUPS = 8

PRUNE_LEVELS = (0.0, 0.3, 0.5, 0.65, 0.83, 0.91, 0.95)
WORD_SIZES = tuple(range(4, 17))


@dataclass(frozen=True)
class Dimension:
    """One categorical dimension: ``name`` and its ``choices`` (JSON scalars)."""

    name: str
    choices: tuple

    def __post_init__(self):
        if not self.choices:
            raise ValueError(f"Dimension {self.name!r} has no choices")


@dataclass(frozen=True)
class Mode:
    """An accelerator mode the explorer can evaluate.

    ``evaluate(problem, point, qgraph, arch) -> dict`` returns ``cycles_per_frame``,
    ``latency_cycles``, ``clock_mhz``, ``resources`` (lut, ff, dsp, bram36),
    ``mac_units`` and ``mac_utilization`` for a quantized graph (``problem`` holds it
    per point); ``compile(problem, point, qgraph, out_dir)`` writes its compile
    output; ``uses`` names the mode-specific dimensions it reads (the others are not
    sampled for it); ``schemes`` restricts the weight schemes it can map (``None``:
    all); ``dimensions(problem)`` lists its extra dimensions (e.g. a split point).
    """

    name: str
    evaluate: Callable
    compile: Callable
    uses: tuple = ()
    schemes: tuple | None = None
    dimensions: Callable = field(default=lambda problem: ())


#: Registered modes by name.
MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> None:
    """Make ``mode`` a choice of the ``mode`` dimension."""
    if not isinstance(mode, Mode):
        raise TypeError(f"register_mode needs a Mode, not {mode!r}")
    MODES[mode.name] = mode


@dataclass
class SearchSpace:
    """The dimensions of one exploration (choices depend on the model and target)."""

    dimensions: list

    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def sample(self, trial) -> dict:
        """Ask an Optuna trial for a point: the mode first, then every dimension that
        mode reads (mode-specific dimensions of other modes are ``None``; a weight
        scheme is fixed when the mode maps one only)."""
        by_name = {d.name: d for d in self.dimensions}
        mode = MODES[trial.suggest_categorical("mode", list(by_name["mode"].choices))]
        specific = set(MODE_DIMENSIONS)
        for other in MODES.values():
            specific.update(other.uses)
        point = {"mode": mode.name}
        for d in self.dimensions:
            if d.name == "mode":
                continue
            if d.name in specific and d.name not in mode.uses:
                point[d.name] = None
                continue
            if d.name == "weight_scheme" and mode.schemes is not None:
                allowed = [c for c in d.choices if c in mode.schemes]
                if len(allowed) == 1:
                    point[d.name] = allowed[0]
                    continue
            point[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        return point

    def to_dict(self) -> dict:
        return {d.name: list(d.choices) for d in self.dimensions}


def build_space(problem, *, modes=None, schemes=None, word_sizes=None) -> SearchSpace:
    """The search space for a prepared problem (:class:`compiler.explore.evaluate.Problem`).

    ``modes``, ``schemes``, ``word_sizes`` restrict the mode, weight-scheme and
    word-size dimensions (default: every registered mode, every scheme, 4 to 16).
    """
    explicit = modes is not None
    modes = tuple(MODES) if modes is None else tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"Unknown mode(s) {', '.join(unknown)}; available: "
                         f"{', '.join(MODES)}")
    schemes = WEIGHT_SCHEMES if schemes is None else tuple(schemes)
    bad = [s for s in schemes if s not in WEIGHT_SCHEMES]
    if bad:
        raise ValueError(f"Unknown weight scheme(s) {', '.join(bad)}; known: "
                         f"{', '.join(WEIGHT_SCHEMES)}")
    words = WORD_SIZES if word_sizes is None else tuple(word_sizes)
    if any(not 4 <= w <= 16 for w in words):
        raise ValueError(f"Word sizes must lie in 4..16, not {words}")
    kmax = problem.max_kernel
    kernels = tuple(k for k in KERNEL_SIZES if k >= max(kmax, 1) and k > 1) or (max(kmax, 1),)
    dims = [
        Dimension("conv_pi", (1, 2, 4, 8, 16)),
        Dimension("conv_po", (1, 2, 4, 8, 16)),
        Dimension("pw_pi", (2, 4, 8, 16, 32)),
        Dimension("pw_po", (2, 4, 8, 16, 32)),
        Dimension("dw", (2, 4, 8, 16, 32)),
        Dimension("buf_kib", problem.buffer_choices),
        Dimension("conv_k_max", kernels),
        Dimension("sesl_dsp_share", (0.25, 0.5, 0.75, 1.0)),
        Dimension("weight_scheme", schemes),
        Dimension("act_bits", words),
        Dimension("weight_bits", words),
    ]
    for group in problem.prune_groups:
        dims.append(Dimension(f"prune.{group}", PRUNE_LEVELS))
    for name in modes:
        dims.extend(MODES[name].dimensions(problem))
    # a mode whose own dimensions have no choice on this model (e.g. no split point for
    # the hybrid mode) cannot map it
    have = {d.name for d in dims}
    usable = []
    for name in modes:
        missing = [u for u in MODES[name].uses if u not in have]
        if not missing:
            usable.append(name)
        elif explicit:
            raise ValueError(f"Mode {name} cannot map this model: it has no choice of "
                             f"{', '.join(missing)} (the hybrid mode needs a single-tensor "
                             f"cut after layers that have SESL stages)")
    if not usable:
        raise ValueError("No mode can map this model")
    return SearchSpace([Dimension("mode", tuple(usable)), *dims])
