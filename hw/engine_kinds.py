"""The engine kinds of a COMPUTE instruction, one descriptor each.

:data:`ENGINE_KINDS` maps every :class:`hw.isa.Engine` to an :class:`EngineKind`: which
arch parameters give its lanes, which buffers it reads, the legality rules of its
instructions, the geometry the tiler must respect and its cycle model. The
instruction-set simulator, the compiler's tiler, cost model and code generator and the
core's engine units ask this table instead of naming engine kinds, so a new kind is one
:class:`EngineKind` (:func:`register_engine_kind`) plus its golden operation
(:func:`sim.engine_ops.register_golden_op`) plus its hardware.

Plain Python: importable wherever ``hw.isa`` is, without elaborating anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hw import timing
from hw.isa import (
    CIN_TILES_MAX,
    ENGINE_STRIDES,
    Engine,
    Pool,
    element_bytes,
    engine_kernel,
    weight_element_bytes,
    window_out,
)

__all__ = [
    "ENGINE_KINDS",
    "EngineKind",
    "buffer_banks",
    "check_compute",
    "compute_cycles",
    "engine_kind",
    "engine_unit_cycles",
    "pointwise_jumps",
    "pointwise_packed",
    "pool_lanes",
    "pool_unit_cycles",
    "register_engine_kind",
    "weight_elements",
]


@dataclass(frozen=True)
class EngineKind:
    """What the tools know about one engine kind.

    Parameters
    ----------
    engine : Engine
        The ``engine`` field value of its COMPUTE instructions.
    lanes : (str, str) or None
        Names of the :class:`hw.arch.ArchConfig` parameters giving its input lanes (channels
        per input tile) and output lanes (channels per job); ``None`` for a unit without
        such lanes.
    weighted : bool
        Reads weights from WBUF and per-channel parameters from PBUF.
    channelwise : bool
        Input channel ``c`` feeds output channel ``c`` only (one input tile per job).
    windowed : bool
        Streams each input tile as a frame through line buffers of ``max_height x
        max_width`` (the padded tile must fit them).
    square_kernel : bool
        Runs a ``k_h x k_w`` kernel as the ``K x K`` one of :func:`hw.isa.engine_kernel`
        on ``conv_k_max`` convolvers (kernel at most ``conv_k_max``; the frame grows by
        ``K - k_h`` rows and ``K - k_w`` columns).
    strides : tuple of int or None
        Strides it runs, equal on both axes; ``None``: any stride on each axis.
    pool_op : bool
        The ``pool`` field selects its operation (``MAX`` or ``AVG``).
    fused_pool : bool
        ``pool = MAX`` fuses a 2x2 stride-2 max pool after requantization.
    pixel_job : bool
        One job holds at most ``max_width * max_height`` output pixels.
    cin_tiled : bool
        Counts input-channel tiles of ``lanes[0]`` channels (at most
        :data:`hw.isa.CIN_TILES_MAX`).
    rules : tuple of callables
        More legality rules: ``rule(instr, arch)`` returns a message or ``None``.
    cycles : callable
        ``cycles(instr, arch)``: cycles a COMPUTE keeps the unit busy.
    latency : callable or None
        ``latency(arch)``: pipeline latency of the engine (for :attr:`cycles`).
    """
    engine: Engine
    lanes: tuple | None
    weighted: bool
    channelwise: bool
    windowed: bool
    cycles: Callable
    square_kernel: bool = False
    strides: tuple | None = None
    pool_op: bool = False
    fused_pool: bool = False
    pixel_job: bool = False
    cin_tiled: bool = False
    rules: tuple = field(default=())
    latency: Callable | None = None

    @property
    def name(self) -> str:
        """Lower-case name (for messages and reports)."""
        return self.engine.name.lower()

    def lane_counts(self, arch) -> tuple[int, int]:
        """``(input lanes, output lanes)`` of ``arch`` for this kind."""
        return getattr(arch, self.lanes[0]), getattr(arch, self.lanes[1])


def _cdiv(a, b):
    return -(-a // b)


def _pow2_at_least(n):
    p = 1
    while p < n:
        p *= 2
    return p


def buffer_banks(arch) -> int:
    """Byte-wide banks of the core's IBUF, WBUF and OBUF (a power of two): the width of
    their one wide read and write port.

    Wide enough that one read or write per cycle serves every consumer: a bus word (LOAD,
    STORE); one element per output lane (the OBUF stager); the pixel lanes of every engine
    with two runs to spare (:class:`hw.seml.buffers.LaneFetcher` keeps lanes that read
    consecutive elements fed with ``width >= (lanes + 2) * elem``); the ``K x K`` taps of
    a windowed weight lane and the ``Pi`` weights of a pointwise lane (one run each); the
    POOL unit's lanes at stride 1 or 2 (one word per window step); ADD's two operand
    streams.
    """
    e = element_bytes(arch.act_bits)
    we = weight_element_bytes(arch)
    out_lanes = max(arch.conv_po, arch.dw_channels, arch.pw_po)
    need = [arch.axi_data_bytes, out_lanes * e,
            (arch.conv_pi + 2) * e, (arch.dw_channels + 2) * e, (arch.pw_pi + 2) * e,
            arch.conv_k_max * arch.conv_k_max * we, arch.pw_pi * we,
            (2 * timing.POOL_LANES - 1) * e, 4 * timing.add_lanes(arch) * e]
    return _pow2_at_least(max(need))


#: Cycles a lane refill of the engine units' fetchers (:class:`hw.seml.buffers.LaneFetcher`
#: with ``eager``) takes beyond one: its read address and enable are registered, so the
#: read reaches the buffer a cycle after its grant, and the buffer's read stages
#: (:data:`hw.timing.BUFFER_READ_STAGES`) add theirs.
FETCH_LAG = 1 + timing.BUFFER_READ_STAGES


def pointwise_jumps(instr, arch) -> bool:
    """Whether a POINTWISE COMPUTE's pixel lanes prefetch the next input-channel tile
    while a tile runs (:class:`hw.seml.buffers.LaneFetcher` with ``jump``), so that only
    the job's first tile waits for the lanes' refills: unstrided, with each lane's channel
    plane (``e * out_h * out_w`` bytes) in one run (at most :func:`buffer_banks` bytes),
    the next tile's plane past the run (``Pi`` planes at least ``banks`` bytes) and a tile
    of at least ``Pi + 2 + FETCH_LAG`` pixels (the lanes' prefetches, one wide read each,
    and the read's ``1 + FETCH_LAG`` cycles: :data:`FETCH_LAG`)."""
    if instr.stride_h != 1 or instr.stride_w != 1:
        return False
    e = element_bytes(arch.act_bits)
    pi = arch.pw_pi
    n = buffer_banks(arch)
    plane = e * instr.out_h * instr.out_w
    return max(_cdiv(n, pi), (pi + 2 + FETCH_LAG) * e) <= plane <= n


def pointwise_packed(instr, arch) -> bool:
    """Whether a POINTWISE COMPUTE's pixel lanes read through lane 0
    (:class:`hw.seml.buffers.LaneFetcher` with ``packed``): unstrided one-pixel tiles
    (a fully connected layer), whose ``Pi`` lanes read ``Pi`` consecutive elements, a
    whole number of them in a run (``Pi * e`` divides :func:`buffer_banks`). Lane 0's
    runs and their sequential prefetches then serve every tile after the job's first
    read."""
    e = element_bytes(arch.act_bits)
    pi = arch.pw_pi
    return (instr.stride_h == 1 and instr.stride_w == 1 and instr.out_h * instr.out_w == 1
            and pi > 1 and buffer_banks(arch) % (pi * e) == 0)


def engine_unit_cycles(instr, arch) -> int:
    """Cycles a COMPUTE keeps an engine unit (:class:`hw.seml.engine_units.EngineUnit`)
    busy.

    The model of the engines' timing (measured on the RTL): every group of output lanes is
    one job of :data:`hw.timing.JOB_CYCLES` plus the engine latency plus its stream time.
    An engine without line buffers streams ``tiles * pixels`` beats. A windowed one streams
    each input-channel tile (one for a channel-wise engine) as one frame of the
    ``conv_k_max`` window generator: one cycle per pixel, ``in_w`` per bottom-padding row
    the windows reach, the right-padding columns the last window reaches, and
    :data:`hw.timing.FRAME_CYCLES`; the ``K * K`` weight beats of a tile overlap the
    pixels streamed before the first window is complete. When ``pad_left + pad_right >=
    conv_k_max`` or ``in_w < pad_right`` (padding as the generator sees it), each output
    row but the last flushes its right padding as well.

    The unit reads IBUF and WBUF through one wide port each
    (:class:`hw.seml.buffers.LaneFetcher`, :func:`buffer_banks` bytes): a run of reads
    that starts after a jump waits while every lane refills, one wide read per lane plus
    ``1 + FETCH_LAG`` cycles (the read address is a register: :data:`FETCH_LAG`). A job's first pixels
    wait ``Pi`` cycles beyond its start and its first weights ``W + 1`` (the weight
    lanes: ``Pi x Po`` for CONV, ``C`` for DEPTHWISE, ``Po`` for POINTWISE); a windowed
    engine fetches the next tile's weights once the current tile has taken its own,
    ``W + 2`` cycles, which a tile shorter than that waits for. A
    POINTWISE stream refills its pixels at each later tile (and, strided, each output
    row; with a column stride each run of ``(banks - e) // (stride_w * e) + 1`` pixels),
    ``Pi + 2`` cycles each, but none when it prefetches the next tile's planes
    (:func:`pointwise_jumps`) or reads one-pixel tiles through lane 0
    (:func:`pointwise_packed`, whose first pixels wait two cycles), and its weights every
    ``(banks - Pi * we) // (Pi * we) + 1`` tiles (``W + 2`` cycles, fetched during the two
    tiles before, or the one before when
    every tile refills). The fetchers refill a lane as soon as its next read misses, and
    the pixel feeder holds two beats the engine has not taken: while a tile waits for its
    weights, the runs of the next two beats' reads refill (the next two runs of one-pixel
    runs, the next run of two-pixel runs).

    Exact for DEPTHWISE and POINTWISE and for CONV without a fused pool on frames wider
    than their padding; within 6 % otherwise (``tests/hw/test_seml_engine_units.py``
    compares it with the RTL on random instructions).

    ``instr`` has the COMPUTE fields as attributes (an :class:`hw.isa.Instruction`).
    """
    kind = engine_kind(instr.engine)
    if kind.latency is None or kind.lanes is None:
        raise ValueError(f"Engine {instr.engine!r} does not run on an engine unit")
    pi, po = kind.lane_counts(arch)
    # the fetchers' extra cycle from a refill's grant to its landing (their registered
    # read address)
    lag = FETCH_LAG
    groups = _cdiv(instr.out_c, po)
    tiles = 1 if kind.channelwise else _cdiv(instr.in_c, pi)
    w_lanes = po if kind.channelwise or not kind.windowed else pi * po
    if not kind.windowed:
        pixels = instr.out_h * instr.out_w
        e = element_bytes(arch.act_bits)
        first = pi + lag
        seg_len = pixels     # pixels of a tile's first run of reads
        if pointwise_packed(instr, arch):
            # lane 0 reads every lane's element, one run for many tiles, prefetched
            segments, first = 1, 1 + lag
        elif pointwise_jumps(instr, arch):
            # the next tile's planes are prefetched while a tile runs: no refill
            segments = 1
        elif instr.stride_h == 1 and instr.stride_w == 1:
            segments = tiles
        else:
            per_row, seg_len = 1, instr.out_w
            if instr.stride_w != 1:
                run = (buffer_banks(arch) - e) // (instr.stride_w * e) + 1
                per_row, seg_len = _cdiv(instr.out_w, run), min(run, instr.out_w)
            segments = tiles * instr.out_h * per_row
        stream = tiles * pixels + max(first, w_lanes + lag) + (segments - 1) * (pi + 1 + lag)
        # The lanes refill as soon as their next read misses (``eager`` fetchers), and
        # the feeder reads two beats ahead of the engine: runs of reads that wait for
        # their tile's weights refill the runs of the next two beats meanwhile.
        runs_ahead = min(2 if seg_len == 1 else 1 if seg_len == 2 else 0, segments - 1)

        def hidden(wait):
            return min(runs_ahead * (pi + 1 + lag), wait)

        stream -= hidden(max(0, w_lanes + lag - first))
        # A weight lane's run holds the weights of ``run_w`` tiles. Its refill starts
        # when the lanes move past it, as the tile before the refilled one takes its
        # weights: two tiles ahead of need (one when every tile refills).
        we = weight_element_bytes(arch)
        run_w = (buffer_banks(arch) - pi * we) // (pi * we) + 1
        tile = pixels + (segments // tiles) * (pi + 1 + lag) - 1
        wait = max(0, w_lanes + 1 + lag - (2 * tile if run_w > 1 else tile))
        refills = (tiles - 1) // run_w
        # (the last tile hides nothing when its one run of reads is the job's last)
        last_alone = refills and (tiles - 1) % run_w == 0 and segments == tiles
        stream += refills * wait - (refills - last_alone) * hidden(wait)
    else:
        kh, kw = instr.k_h, instr.k_w
        k = engine_kernel(kh, kw)
        km = arch.conv_k_max
        off = (km - k) // 2
        pt, pl = instr.pad_top + off, instr.pad_left + off
        pb, pr = instr.pad_bottom + k - kh + off, instr.pad_right + k - kw + off
        h, w, s = instr.in_h, instr.in_w, instr.stride_h
        oh = window_out(h, km, s, pt, pb)
        ow = window_out(w, km, s, pl, pr)
        bottom = max(0, (oh - 1) * s + km - pt - h)
        right = max(0, (ow - 1) * s + km - pl - w)
        frame = h * w + bottom * w + right + timing.FRAME_CYCLES
        if pl + pr >= km or w < pr:
            frame += (min(oh, h) - 1) * pr
        first = (km - 1 - pt) * w + (km - 1 - pl) + timing.FRAME_CYCLES
        tile = frame + max(0, k * k - first)
        stream = tiles * tile
        # the job's first pixels and weights wait for the lanes' first runs; a later
        # tile's weights are fetched once the tile before has taken its own
        stream += max(pi - 1 + lag, w_lanes + lag + k * k - first) - max(0, k * k - first)
        stream += (tiles - 1) * max(0, k * k + w_lanes + 1 + lag - tile)
        if kind.fused_pool and instr.pool is Pool.MAX and oh % 2:
            stream -= timing.DROPPED_TAIL_CYCLES
    job = timing.JOB_CYCLES + kind.latency(arch)
    return timing.UNIT_OVERHEAD_CYCLES + groups * (job + stream)


def pool_lanes(arch, stride_w, lanes=None) -> int:
    """Output columns the POOL unit computes per window step at column stride
    ``stride_w``: its ``lanes`` (:data:`hw.timing.POOL_LANES`), or as many as one IBUF
    word (:func:`buffer_banks` bytes) holds the inputs of, ``(banks - e) // (stride_w *
    e) + 1``."""
    lanes = timing.POOL_LANES if lanes is None else lanes
    e = element_bytes(arch.act_bits)
    return max(1, min(lanes, (buffer_banks(arch) - e) // (stride_w * e) + 1))


def pool_unit_cycles(instr, arch) -> int:
    """Cycles a POOL COMPUTE keeps the pool unit busy: one window step per cycle on
    :func:`pool_lanes` output columns of one channel, then the drain."""
    return timing.DRAIN_CYCLES + timing.pool_steps(
        instr.in_c, instr.out_h, instr.out_w, instr.k_h, instr.k_w,
        pool_lanes(arch, instr.stride_w))


def _same_channels(i, arch):
    if i.out_c != i.in_c:
        return f"{i.engine.name} needs out_c == in_c"
    return None


def _one_by_one(i, arch):
    if (i.k_h, i.k_w) != (1, 1) or any((i.pad_top, i.pad_left, i.pad_bottom, i.pad_right)):
        return f"{i.engine.name} needs a 1x1 kernel and no pads"
    return None


#: Every engine kind, keyed by its ``engine`` field value.
ENGINE_KINDS: dict = {
    Engine.CONV: EngineKind(
        Engine.CONV, ("conv_pi", "conv_po"), weighted=True, channelwise=False, windowed=True,
        square_kernel=True, strides=ENGINE_STRIDES, fused_pool=True, cin_tiled=True,
        cycles=engine_unit_cycles,
        latency=lambda arch: timing.conv_engine_latency(arch.conv_pi, arch.conv_k_max, True)),
    Engine.DEPTHWISE: EngineKind(
        Engine.DEPTHWISE, ("dw_channels", "dw_channels"), weighted=True, channelwise=True,
        windowed=True, square_kernel=True, strides=ENGINE_STRIDES, rules=(_same_channels,),
        cycles=engine_unit_cycles,
        latency=lambda arch: timing.depthwise_engine_latency(arch.conv_k_max)),
    Engine.POINTWISE: EngineKind(
        Engine.POINTWISE, ("pw_pi", "pw_po"), weighted=True, channelwise=False,
        windowed=False, pixel_job=True, cin_tiled=True, rules=(_one_by_one,),
        cycles=engine_unit_cycles,
        latency=lambda arch: timing.pointwise_engine_latency(arch.pw_pi)),
    Engine.POOL: EngineKind(
        Engine.POOL, None, weighted=False, channelwise=True, windowed=True, pool_op=True,
        cycles=pool_unit_cycles),
}


def engine_kind(engine) -> EngineKind:
    """The descriptor of ``engine``.

    Raises
    ------
    ValueError
        If no kind is registered for ``engine``.
    """
    try:
        return ENGINE_KINDS[engine]
    except (KeyError, TypeError):
        raise ValueError(f"No engine kind is registered for {engine!r}") from None


def register_engine_kind(kind: EngineKind) -> None:
    """Add ``kind`` to :data:`ENGINE_KINDS` (replacing the descriptor of its engine)."""
    if not isinstance(kind, EngineKind):
        raise TypeError(f"kind must be an EngineKind, not {kind!r}")
    ENGINE_KINDS[kind.engine] = kind


def compute_cycles(instr, arch) -> int:
    """Cycles a COMPUTE ``instr`` keeps its unit busy (its kind's cycle model)."""
    return engine_kind(instr.engine).cycles(instr, arch)


def weight_elements(instr) -> int:
    """Weight elements a COMPUTE ``instr`` reads from WBUF (0 for a kind without weights)."""
    kind = engine_kind(instr.engine)
    if not kind.weighted:
        return 0
    per = instr.k_h * instr.k_w * (1 if kind.channelwise else instr.in_c)
    return instr.out_c * per


def check_compute(i, arch) -> str | None:
    """The first legality rule of ``docs/isa.md`` the COMPUTE ``i`` breaks on ``arch``,
    as a message, or ``None`` when it is legal. Buffer ranges are not checked here."""
    if min(i.in_c, i.out_c, i.in_h, i.in_w, i.k_h, i.k_w, i.stride_h, i.stride_w) < 1:
        return "channels, sizes, kernel and stride must be at least 1"
    pads = (i.pad_top, i.pad_left, i.pad_bottom, i.pad_right)
    if max(i.pad_top, i.pad_bottom) >= i.k_h or max(i.pad_left, i.pad_right) >= i.k_w:
        return f"pads {pads} must be smaller than the kernel {i.k_h}x{i.k_w}"
    hp, wp = i.in_h + i.pad_top + i.pad_bottom, i.in_w + i.pad_left + i.pad_right
    oh = window_out(i.in_h, i.k_h, i.stride_h, i.pad_top, i.pad_bottom)
    ow = window_out(i.in_w, i.k_w, i.stride_w, i.pad_left, i.pad_right)
    if oh < 1 or ow < 1:
        return "kernel larger than the padded tile"
    try:
        kind = engine_kind(i.engine)
    except ValueError as exc:
        return str(exc)
    name = i.engine.name
    if kind.square_kernel and max(i.k_h, i.k_w) > arch.conv_k_max:
        return f"kernel {i.k_h}x{i.k_w} exceeds conv_k_max {arch.conv_k_max}"
    if kind.strides is not None and (i.stride_h != i.stride_w or i.stride_h not in kind.strides):
        allowed = " or ".join(str(s) for s in kind.strides)
        return (f"stride_h x stride_w is {i.stride_h}x{i.stride_w}; the {name} engine runs "
                f"stride {allowed}, equal on both axes")
    if kind.square_kernel:
        k = engine_kernel(i.k_h, i.k_w)
        frame_h, frame_w = hp + k - i.k_h, wp + k - i.k_w
        if frame_w > arch.max_width or frame_h > arch.max_height:
            return (f"engine frame {frame_h}x{frame_w} (padded tile {hp}x{wp}, the "
                    f"{i.k_h}x{i.k_w} kernel run as {k}x{k}) exceeds max_height x "
                    f"max_width {arch.max_height}x{arch.max_width}")
    elif kind.windowed and (wp > arch.max_width or hp > arch.max_height):
        return (f"padded tile {hp}x{wp} exceeds max_height x max_width "
                f"{arch.max_height}x{arch.max_width}")
    fh = fw = 1
    if kind.pool_op:
        if i.pool is not Pool.MAX and i.pool is not Pool.AVG:
            return f"the {name} engine needs pool MAX or AVG"
        if i.pool is Pool.AVG and (i.shift >= 1 << arch.shift_bits
                                   or i.mult >= 1 << arch.mult_bits):
            return "mult / shift wider than mult_bits / shift_bits"
    else:
        if i.pool is Pool.AVG:
            return "only a max pool can be fused into an engine"
        if i.pool is Pool.MAX:
            if not kind.fused_pool:
                return f"the {name} engine has no fused pool: pool must be NONE, not MAX"
            if (i.fpool_h, i.fpool_w) != (2, 2):
                return (f"fused max pool fpool_h x fpool_w is {i.fpool_h}x{i.fpool_w}; the "
                        f"{name} engine fuses a 2x2 stride-2 max pool only")
            fh = fw = 2
            if oh < fh or ow < fw:
                return f"fused pool {fh}x{fw} does not fit the {oh}x{ow} result"
        for rule in kind.rules:
            message = rule(i, arch)
            if message:
                return message
        if kind.cin_tiled:
            param = kind.lanes[0]
            pi = getattr(arch, param)
            tiles = _cdiv(i.in_c, pi)
            if tiles > CIN_TILES_MAX:
                return (f"in_c {i.in_c} is {tiles} input-channel tiles of {param}={pi}; "
                        f"the {name} engine counts at most {CIN_TILES_MAX}")
    if (oh // fh, ow // fw) != (i.out_h, i.out_w):
        return (f"out_h x out_w is {i.out_h}x{i.out_w}, but the fields give "
                f"{oh // fh}x{ow // fw}")
    if kind.pixel_job and i.out_h * i.out_w > arch.max_width * arch.max_height:
        return (f"out_h x out_w {i.out_h}x{i.out_w} is {i.out_h * i.out_w} pixels, more than "
                f"the max_width x max_height = {arch.max_width * arch.max_height} a "
                f"{name} job holds")
    return None
