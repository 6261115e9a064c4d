"""Tiling: split one layer into output tiles that fit the on-chip buffers.

A windowed layer (conv, depthwise, pointwise, fully connected, pooling) is cut
into tiles of ``m_tile`` output channels x ``row_tile`` output rows, over the full
width (or column tiles with their halos when the engine frame is wider than the
line buffers, or a pointwise row holds more pixels than one engine job) and, for
conv / pointwise, over **all** input channels (the engines accumulate across
input channels internally, so no partial sum ever leaves the chip). Each input
row tile carries the ``k - stride`` halo rows its window needs. Depthwise and
pooling tiles take the same channels in and out.

Every tile respects the engine limits of ``docs/isa.md``: the conv and depthwise
engines run a ``k_h x k_w`` kernel as ``K x K`` (:func:`hw.isa.engine_kernel`), so
their frame is the padded tile plus ``K - k_h`` rows and ``K - k_w`` columns and
must fit ``max_height x max_width``; a pointwise tile has at most
``max_width * max_height`` output pixels; conv and pointwise engines count at most
4095 input-channel tiles; conv and depthwise strides are 1 or 2, equal on both axes
(:func:`engine_stride`).

:func:`plan_window` picks the tile sizes, the loop order and single or double
buffering that minimise the predicted cycles (:mod:`compiler.mapping.cost_model`),
or raises :class:`~compiler.errors.MappingError` naming the layer, the buffer or
limit, the sizes and what to change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from compiler.errors import MappingError
from compiler.mapping.cost_model import window_tile_cycles
from hw.arch import ArchConfig
from hw.engine_kinds import EngineKind, engine_kind
from hw.isa import (
    CIN_TILES_MAX,
    PBUF_ENTRY_BYTES,
    Engine,
    element_bytes,
    engine_kernel,
    weight_element_bytes,
    window_out,
)
from sim.timing import dma_cycles, fetch_cycles

__all__ = [
    "CIN_TILES_MAX",
    "ColTile",
    "RowTile",
    "Tiling",
    "WindowOp",
    "chunk_elements",
    "col_tiles",
    "distinct_splits",
    "engine_stride",
    "max_col_tile",
    "plan_window",
    "row_tiles",
]


@dataclass(frozen=True)
class WindowOp:
    """The geometry of one windowed layer as an engine sees it.

    Parameters
    ----------
    name : str
        Layer name (for messages).
    engine : Engine
    in_c, in_h, in_w : int
        Input feature map (a fully connected layer is ``(K, 1, 1)``).
    out_c : int
        Output channels.
    kernel, stride : (int, int)
    pads : (int, int, int, int)
        ``(top, left, bottom, right)``.
    fpool : (int, int)
        Fused max-pool window (= stride); ``(1, 1)`` for none.
    channelwise : bool
        Input channel ``c`` feeds only output channel ``c`` (depthwise, pooling).
    w_per_out : int
        Weight elements per output channel (0 without weights).
    params : bool
        Whether the engine reads PBUF entries.
    """
    name: str
    engine: Engine
    in_c: int
    in_h: int
    in_w: int
    out_c: int
    kernel: tuple
    stride: tuple
    pads: tuple
    fpool: tuple = (1, 1)
    channelwise: bool = False
    w_per_out: int = 0
    params: bool = True

    @cached_property
    def kind(self) -> EngineKind:
        """The descriptor of the engine (:mod:`hw.engine_kinds`)."""
        return engine_kind(self.engine)

    @cached_property
    def conv_h(self) -> int:
        return window_out(self.in_h, self.kernel[0], self.stride[0], self.pads[0], self.pads[2])

    @cached_property
    def conv_w(self) -> int:
        return window_out(self.in_w, self.kernel[1], self.stride[1], self.pads[1], self.pads[3])

    @cached_property
    def out_h(self) -> int:
        return self.conv_h // self.fpool[0]

    @cached_property
    def out_w(self) -> int:
        return self.conv_w // self.fpool[1]

    @cached_property
    def padded_w(self) -> int:
        return self.in_w + self.pads[1] + self.pads[3]

    @cached_property
    def line_buffered(self) -> bool:
        return self.kind.windowed

    @cached_property
    def engine_k(self) -> int | None:
        """Side of the square kernel an engine with ``square_kernel`` runs (``None`` for
        others)."""
        if self.kind.square_kernel:
            return engine_kernel(*self.kernel)
        return None

    @cached_property
    def grow(self) -> tuple:
        """Rows and columns the engine frame adds to the padded tile (``K - k_h, K - k_w``)."""
        if self.engine_k is None:
            return (0, 0)
        return (self.engine_k - self.kernel[0], self.engine_k - self.kernel[1])

    def in_rows(self, rows: int) -> int:
        """Input rows (halo included, padding excluded) a tile of ``rows`` output rows needs."""
        conv_rows = rows * self.fpool[0]
        return min(self.in_h, (conv_rows - 1) * self.stride[0] + self.kernel[0])

    def padded_rows(self, rows: int) -> int:
        """Padded tile height of a tile of ``rows`` output rows."""
        return (rows * self.fpool[0] - 1) * self.stride[0] + self.kernel[0]

    def frame_rows(self, rows: int) -> int:
        """Height of the frame a tile of ``rows`` output rows streams through the engine."""
        return self.padded_rows(rows) + self.grow[0]

    def frame_cols(self, cols: int) -> int:
        """Width of the frame a tile of ``cols`` output columns streams through the engine."""
        return (cols * self.fpool[1] - 1) * self.stride[1] + self.kernel[1] + self.grow[1]


def engine_stride(op: WindowOp, single_row: bool, single_col: bool) -> tuple | None:
    """``(stride_h, stride_w)`` a COMPUTE of ``op`` is emitted with, or ``None`` if none runs.

    Engines with a set of strides (:attr:`hw.engine_kinds.EngineKind.strides`: conv and
    depthwise, 1 or 2) run one stride for both axes. A tile with a single output row
    computed from a padded tile exactly ``k_h`` rows high (``single_row``) has the same
    result for every ``stride_h``, so it may take ``stride_w`` for both axes (a 1-D
    convolution with stride ``(1, 2)``); likewise ``single_col``. Other engines keep
    ``op.stride``.
    """
    allowed = op.kind.strides
    if allowed is None:
        return op.stride
    sh, sw = op.stride
    options = [(sh, sw)]
    if single_row:
        options.append((sw, sw))
    if single_col:
        options.append((sh, sh))
    if single_row and single_col:
        options.append((1, 1))
    for a, b in options:
        if a == b and a in allowed:
            return (a, b)
    return None


@dataclass(frozen=True)
class RowTile:
    """One row tile: output rows ``[out_row, out_row + out_rows)`` and its input window."""
    out_row: int
    out_rows: int
    in_row: int
    in_rows: int
    pad_top: int
    pad_bottom: int


@dataclass(frozen=True)
class ColTile:
    """One column tile: output columns ``[out_col, out_col + out_cols)`` and its input."""
    out_col: int
    out_cols: int
    in_col: int
    in_cols: int
    pad_left: int
    pad_right: int


@dataclass(frozen=True)
class Tiling:
    """How a windowed layer is cut.

    Members
    -------
    m_tile, row_tile : int
        Output channels and output rows per tile.
    rows_outer : bool
        Loop over row tiles outside channel tiles (input loaded once per row tile)
        rather than inside (weights loaded once per channel tile).
    double : bool
        Buffers split in two slots so loads overlap compute.
    cycles : int
        Predicted cycles of the layer.
    col_tile : int
        Output columns per tile: the full width unless the padded input is wider
        than the line buffers (``max_width``).
    """
    m_tile: int
    row_tile: int
    rows_outer: bool
    double: bool
    cycles: int
    col_tile: int


#: Output-channel tile sizes evaluated per buffering mode, largest fitting first: the
#: best tile is among the largest (fewest weight and input reloads), and the search
#: must stay fast for networks with thousands of channels.
_M_CANDIDATES = 12


def distinct_splits(n: int) -> list[int]:
    """Every distinct ``ceil(n / k)`` for ``k = 1 .. n``, largest first."""
    sizes = []
    k = 1
    while k <= n:
        size = -(-n // k)
        sizes.append(size)
        # next k giving a smaller ceil(n / k)
        k = -(-n // (size - 1)) if size > 1 else n + 1
    return sizes


def _axis_tiles(out_size, tile, k, stride, pad_before, pool, in_size):
    """``(out0, outs, in0, ins, pad_before, pad_after)`` of each tile along one axis."""
    for o0 in range(0, out_size, tile):
        n = min(tile, out_size - o0)
        first = o0 * pool * stride - pad_before
        last = ((o0 + n) * pool - 1) * stride - pad_before + k - 1
        i0, i1 = max(0, first), min(in_size - 1, last)
        yield o0, n, i0, i1 - i0 + 1, i0 - first, last - i1


def row_tiles(op: WindowOp, row_tile: int) -> list[RowTile]:
    """The row tiles of ``op`` for ``row_tile`` output rows per tile."""
    return [RowTile(*t) for t in _axis_tiles(op.out_h, row_tile, op.kernel[0], op.stride[0],
                                             op.pads[0], op.fpool[0], op.in_h)]


def col_tiles(op: WindowOp, col_tile: int) -> list[ColTile]:
    """The column tiles of ``op`` for ``col_tile`` output columns per tile."""
    return [ColTile(*t) for t in _axis_tiles(op.out_w, col_tile, op.kernel[1], op.stride[1],
                                             op.pads[1], op.fpool[1], op.in_w)]


def max_col_tile(op: WindowOp, arch: ArchConfig) -> int:
    """Most output columns per tile whose engine frame fits the line buffers, or (pointwise)
    that one engine job holds (0: none)."""
    if op.kind.pixel_job:
        return min(op.out_w, arch.max_width * arch.max_height)
    if not op.line_buffered or op.padded_w + op.grow[1] <= arch.max_width:
        return op.out_w
    (_, kw), (_, sw), pw = op.kernel, op.stride, op.fpool[1]
    width = arch.max_width - op.grow[1]
    conv_cols = (width - kw) // sw + 1 if width >= kw else 0
    return min(op.out_w, conv_cols // pw)


def _sizes(op: WindowOp, arch: ArchConfig, m_tile: int, row_tile: int):
    return dict(zip(("IBUF", "OBUF", "WBUF", "PBUF"),
                    _size_tuple(op, m_tile, row_tile, element_bytes(arch.act_bits),
                                weight_element_bytes(arch))))


def _size_tuple(op, m_tile, row_tile, e, we):
    cin = m_tile if op.channelwise else op.in_c
    return (cin * op.in_rows(row_tile) * op.in_w * e, m_tile * row_tile * op.out_w * e,
            m_tile * op.w_per_out * we, m_tile if op.params else 0)


def _capacity(arch: ArchConfig, slots: int):
    return {"IBUF": arch.ibuf_bytes // slots, "OBUF": arch.obuf_bytes // slots,
            "WBUF": arch.wbuf_bytes // slots, "PBUF": arch.pbuf_entries // slots}


def _fits(op, arch, m_tile, row_tile, cap, e, we):
    if op.line_buffered and op.frame_rows(row_tile) > arch.max_height:
        return False
    if op.kind.pixel_job and row_tile * op.out_w > arch.max_width * arch.max_height:
        return False
    ib, ob, wb, pb = _size_tuple(op, m_tile, row_tile, e, we)
    return ib <= cap[0] and ob <= cap[1] and wb <= cap[2] and pb <= cap[3]


def _cost(op: WindowOp, arch: ArchConfig, m_tile: int, row_tile: int, rows_outer: bool,
          double: bool, e: int, we: int, n_cols: int = 1) -> int:
    """Predicted cycles of one column tile of ``n_cols``."""
    n_m = -(-op.out_c // m_tile)
    n_r = -(-op.out_h // row_tile)
    tiles = n_m * n_r
    compute = tiles * window_tile_cycles(op, arch, m_tile, row_tile)
    cin = m_tile if op.channelwise else op.in_c
    if op.channelwise:
        in_loads, w_loads = tiles, n_m
    elif rows_outer:
        in_loads, w_loads = n_r, tiles if n_m > 1 else n_m
    else:
        in_loads, w_loads = tiles if n_r > 1 else n_r, n_m
    in_rows = op.in_rows(row_tile)
    load = (in_loads * dma_cycles(cin, in_rows * op.in_w * e, arch)
            + w_loads * ((dma_cycles(1, m_tile * op.w_per_out * we, arch) if op.w_per_out else 0)
                         + (dma_cycles(1, m_tile * PBUF_ENTRY_BYTES, arch) if op.params else 0)))
    store = tiles * dma_cycles(m_tile, row_tile * op.out_w * e, arch, write=True)
    instrs = in_loads + 2 * w_loads + 2 * tiles
    issue = instrs * fetch_cycles(arch)
    if double:
        # the phases overlap tile by tile (across the column tiles too): the slowest
        # sets the pace, and the layer's first load and last store stay exposed
        return max(load, compute, store) + issue + (load + store) // (tiles * n_cols)
    return load + compute + store + issue


def _embedded(op: WindowOp, axis: int) -> str:
    if not op.grow[axis]:
        return ""
    (kh, kw), k = op.kernel, op.engine_k
    return f" (the {kh}x{kw} kernel runs as {k}x{k} on the engine)"


def _explain(op: WindowOp, arch: ArchConfig) -> str:
    if max_col_tile(op, arch) < 1:
        need = op.frame_cols(1)
        return (f"one output column needs a {need}-column window{_embedded(op, 1)} but the "
                f"line buffers hold max_width={arch.max_width}; increase max_width to at "
                f"least {need}")
    if op.line_buffered and op.frame_rows(1) > arch.max_height:
        need = op.frame_rows(1)
        return (f"one output row needs a {need}-row window{_embedded(op, 0)} but "
                f"max_height={arch.max_height}; increase max_height to at least {need}")
    sizes = _sizes(op, arch, 1, 1)
    cap = _capacity(arch, 1)
    cin = 1 if op.channelwise else op.in_c
    what = {"IBUF": ("ibuf_bytes", "bytes", (f"the input of one output row ({cin} channels x "
                     f"{op.in_rows(1)} rows x {op.in_w} columns = {sizes['IBUF']} bytes)")),
            "OBUF": ("obuf_bytes", "bytes",
                     f"one output row of one channel ({sizes['OBUF']} bytes)"),
            "WBUF": ("wbuf_bytes", "bytes",
                     f"the weights of one output channel ({sizes['WBUF']} bytes)"),
            "PBUF": ("pbuf_entries", "entries", "one parameter entry")}
    for buf, (param, unit, desc) in what.items():
        if sizes[buf] > cap[buf]:
            return (f"{desc} does not fit {buf} ({cap[buf]} {unit}); increase {param} to at "
                    f"least {sizes[buf]}")
    return "no tile fits the buffers"


def plan_window(op: WindowOp, arch: ArchConfig) -> Tiling:
    """Choose the tiling of ``op`` with the least predicted cycles.

    Raises
    ------
    MappingError
        If not even one output row of one output channel fits, the engine frame of
        one output column exceeds the line buffers, the input channels are more
        tiles than the engines count, or the strides are not ones the conv and
        depthwise engines run.
    """
    kind = op.engine.name.lower()
    if engine_stride(op, op.conv_h == 1, op.conv_w == 1) is None:
        raise MappingError(
            f"Layer {op.name!r} ({kind}) has stride ({op.stride[0]}, {op.stride[1]}), but the "
            f"conv and depthwise engines run strides 1 or 2, equal on both axes; change the "
            f"layer's strides")
    if op.kind.cin_tiled:
        param = op.kind.lanes[0]
        pi = getattr(arch, param)
        tiles = -(-op.in_c // pi)
        if tiles > CIN_TILES_MAX:
            raise MappingError(
                f"Layer {op.name!r} ({kind}) cannot be mapped: its {op.in_c} input channels are "
                f"{tiles} tiles of {param}={pi}, more than the {CIN_TILES_MAX} the {kind} "
                f"engine counts; increase {param} to at least {-(-op.in_c // CIN_TILES_MAX)} "
                f"or reduce the layer's input channels")
    col_tile = max_col_tile(op, arch)
    if col_tile < 1:
        raise MappingError(f"Layer {op.name!r} ({kind}) cannot be mapped: {_explain(op, arch)}")
    n_cols = -(-op.out_w // col_tile)
    col_tile = -(-op.out_w // n_cols)  # balance the tiles
    full = op
    if n_cols > 1:
        # plan on the widest column tile; every tile has the same rows and channels
        (_, kw), (_, sw), pw = op.kernel, op.stride, op.fpool[1]
        op = dataclasses.replace(op, in_w=(col_tile * pw - 1) * sw + kw,
                                 pads=(op.pads[0], 0, op.pads[2], 0))
    best = None
    e, we = element_bytes(arch.act_bits), weight_element_bytes(arch)
    for double in (True, False):
        cap = tuple(_capacity(arch, 2 if double else 1).values())
        tried = 0
        for m_tile in distinct_splits(op.out_c):
            if not _fits(op, arch, m_tile, 1, cap, e, we):
                continue
            tried += 1
            if tried > _M_CANDIDATES:
                break
            lo, hi = 1, op.out_h
            if _fits(op, arch, m_tile, hi, cap, e, we):
                lo = hi
            while lo < hi:  # largest row tile that fits
                mid = (lo + hi + 1) // 2
                if _fits(op, arch, m_tile, mid, cap, e, we):
                    lo = mid
                else:
                    hi = mid - 1
            row_tile = -(-op.out_h // -(-op.out_h // lo))  # balance the tiles
            for rows_outer in (True, False):
                cycles = n_cols * _cost(op, arch, m_tile, row_tile, rows_outer, double, e, we,
                                       n_cols)
                if best is None or cycles < best.cycles:
                    best = Tiling(m_tile, row_tile, rows_outer, double, cycles, col_tile)
    if best is None:
        raise MappingError(f"Layer {full.name!r} ({full.engine.name.lower()}) cannot be tiled: "
                           f"{_explain(op, arch)}")
    return best


def chunk_elements(arch: ArchConfig, total: int, operands: int, double: bool) -> int:
    """Elements per chunk of an element-wise pass with ``operands`` IBUF operands."""
    e = element_bytes(arch.act_bits)
    slots = 2 if double else 1
    per = min(arch.ibuf_bytes // (operands * slots), arch.obuf_bytes // slots) // e
    return max(1, min(total, per - per % 64 if per >= 64 else per))

