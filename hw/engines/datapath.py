"""Datapath pieces shared by the engines.

The compute part of the conv, depthwise and pointwise engines is one pipeline that never
stalls: every stage register loads in every cycle, and a beat enters only when the
engine's output queue (:class:`OutputQueue`, a FIFO behind the requantizer) has room
for every output beat already on its way. Back-pressure from the consumer fills the
queue instead of holding the pipeline, so no enable fans out from the output handshake
to the stage registers, the multipliers and the window generator: the pipeline's input
handshake starts at registers (the queue's room flag and the engine's own state). Flags
(first pixel, last tile) travel beside the data in plain registers, and the
read-modify-write of an output buffer stays hazard free: the sums a beat's read misses
(written in the cycle of the read or after it) are forwarded (:func:`accumulate`).

The element-wise engine keeps a pipeline that advances as a whole on one enable,
``en = ~o.valid | o.ready`` (:func:`shift_tail`): three stages, a handful of lanes.

The pieces here add logic to an engine's :class:`~amaranth.hdl.Module`:

- :class:`Pipeline` — stage registers, delays and a pipelined adder tree on one enable
  (by default none: a free-running pipeline);
- :class:`OutputQueue` — a free-running pipeline's output FIFO and its room flag;
- :func:`multiply` — a registered activation x weight product, any weight scheme;
- :func:`requant_tail` — ``clamp(round_shift(acc * m, s), lo, hi)`` into the queue;
- :func:`shift_tail` — ``clamp(round_shift(x, s), lo, hi)`` of already scaled sums;
- :class:`JobControl` — the command handshake (run-time configuration or constants);
- :func:`frame_fields` / :func:`window_config` — the run-time frame geometry of a window
  engine, and its mapping onto :class:`hw.blocks.line_buffer.WindowGenerator`;
- :func:`accumulate` — the output buffer that sums partial results over input tiles.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.utils import bits_for

from .. import isa, weight_codes
from ..arch import ArchConfig
from ..blocks.pe import MultiplierElement
from ..blocks.requant import RequantUnit

__all__ = [
    "REQUANT_LATENCY",
    "TILE_BITS",
    "JobControl",
    "KernelLoader",
    "OutputQueue",
    "Pipeline",
    "accumulate",
    "check_arch",
    "check_fixed",
    "check_frame",
    "count_done",
    "frame_checks",
    "frame_fields",
    "multiply",
    "output_size",
    "param_layout",
    "requant_tail",
    "shift_tail",
    "weight_shape",
    "weight_zero",
    "window_config",
]

#: Width of the input-channel tile count of a job (up to 4095 tiles of Pi channels).
TILE_BITS = isa.TILE_BITS

#: Pipeline stages of :func:`requant_tail`.
REQUANT_LATENCY = RequantUnit.latency


def check_arch(arch, overrides):
    """Return ``arch`` (default ``ArchConfig()``) with ``overrides`` applied, validating both."""
    if arch is None:
        arch = ArchConfig()
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"arch must be an ArchConfig, not {arch!r}")
    return arch.replace(**overrides) if overrides else arch


class Pipeline:
    """Registers of a pipeline that advances as a whole when ``en`` is high.

    Parameters
    ----------
    m : Module
    en : Value or None
        The common stage enable; ``None`` (the default) for a pipeline that advances in
        every cycle (its output goes into an :class:`OutputQueue`).
    """

    def __init__(self, m: Module, en=None):
        self.m = m
        self.en = Const(1) if en is None else en
        self.valids = []

    def reg(self, value, name, shape=None):
        """A stage register loading ``value`` whenever the pipeline advances."""
        sig = Signal(shape if shape is not None else value.shape(), name=name)
        with self.m.If(self.en):
            self.m.d.sync += sig.eq(value)
        return sig

    def valid(self, value, name):
        """A stage's valid bit; :attr:`empty` watches every one of them."""
        sig = self.reg(value, name, shape=1)
        self.valids.append(sig)
        return sig

    def delay(self, value, stages, name):
        for i in range(stages):
            value = self.reg(value, f"{name}_d{i}")
        return value

    def valid_delay(self, value, stages, name):
        """:meth:`delay` of a valid bit, every stage watched by :attr:`empty`."""
        for i in range(stages):
            value = self.valid(value, f"{name}_d{i}")
        return value

    def tree(self, values, name):
        """Sum of ``values`` with one register per adder level (exact bit growth).

        Returns ``(sum, latency)``; a single value passes through with latency 0.
        """
        values = list(values)
        level = 0
        while len(values) > 1:
            pairs = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
            if len(values) % 2:
                pairs.append(values[-1])
            values = [self.reg(v, f"{name}_l{level}_{i}") for i, v in enumerate(pairs)]
            level += 1
        return values[0], level

    @property
    def empty(self):
        """High when no stage holds a beat."""
        return ~Cat(*self.valids).any()


def weight_shape(arch: ArchConfig):
    """Shape of one weight code on a weight stream of ``arch``."""
    if arch.weight_scheme == "uniform":
        return signed(arch.weight_bits)
    return unsigned(weight_codes.code_width(arch.weight_scheme, arch.weight_bits,
                                            arch.pot_exp_bits))


def multiply(m: Module, pipe: Pipeline, x, code, arch: ArchConfig, name):
    """Registered product ``x * decode(code)`` (one stage), any weight scheme.

    Uses :class:`hw.blocks.pe.MultiplierElement`: a multiplier for uniform weights,
    shifters for PoT / APoT codes.
    """
    me = MultiplierElement(arch.weight_scheme, arch.act_bits, arch.weight_bits,
                           arch.pot_exp_bits, registered=True)
    m.submodules[name] = me
    m.d.comb += [me.a.eq(x), me.w.eq(code), me.en.eq(pipe.en)]
    return me.p


class OutputQueue:
    """The output of a free-running :class:`Pipeline`: a FIFO with room for every beat on
    its way, and the flag that admits beats into the pipeline.

    The queue is an Amaranth :class:`~amaranth.lib.fifo.SyncFIFOBuffered` of ``depth``
    entries (:func:`hw.timing.output_queue_depth`: the cycles from a beat entering the
    pipeline to its write into the queue, plus :data:`hw.timing.OUTPUT_QUEUE_SLACK`),
    its read data registered. :attr:`owed` counts the output beats promised: beats that entered and
    will produce an output (``produces`` of :meth:`admit`), less the beats taken from
    ``o``. :attr:`room` is a register, high while one more such beat may enter: the
    queue then never overflows, and while ``o`` is taken in every cycle the pipeline
    takes a beat in every cycle.

    Members
    -------
    w_en, w_data
        The pipeline's last stage writes here (:func:`requant_tail`).
    room : Signal
        A beat that will produce an output may enter in this cycle.
    busy : Value
        An output beat is promised and not yet taken.
    """

    def __init__(self, m: Module, o, *, depth: int, name: str = "queue"):
        self.depth = depth
        width = len(Value.cast(o.payload))
        m.submodules[name] = fifo = SyncFIFOBuffered(width=width, depth=self.depth)
        self.o = o
        self.w_en = fifo.w_en
        self.w_data = fifo.w_data
        self.owed = Signal(range(self.depth + 1), name=f"{name}_owed")
        self.room = Signal(init=1, name=f"{name}_room")
        self._m = m
        self._admitted = False
        m.d.comb += [
            o.valid.eq(fifo.r_rdy),
            Value.cast(o.payload).eq(fifo.r_data),
            fifo.r_en.eq(o.ready),
        ]

    def admit(self, produces):
        """Count ``produces``: a beat enters the pipeline in this cycle and will write an
        output beat into the queue. Call once, with a beat only while :attr:`room` or
        for a beat that produces no output."""
        if self._admitted:
            raise RuntimeError("OutputQueue.admit() may be called once")
        self._admitted = True
        m = self._m
        taken = self.o.valid & self.o.ready
        owed = Signal.like(self.owed, name=f"{self.owed.name}_next")
        m.d.comb += owed.eq(self.owed + produces - taken)
        m.d.sync += self.owed.eq(owed)
        # ``room`` is ``owed_next < depth`` without the sum on its path: both compares
        # are of the ``owed`` register with constants, and the handshake only selects.
        below_full = Signal(name=f"{self.owed.name}_below_full")
        below_last = Signal(name=f"{self.owed.name}_below_last")
        m.d.comb += [below_full.eq(self.owed < self.depth),
                     below_last.eq(self.owed < self.depth - 1)]
        with m.If(produces & ~taken):
            m.d.sync += self.room.eq(below_last)
        with m.Elif(taken & ~produces):
            m.d.sync += self.room.eq(1)
        with m.Else():
            m.d.sync += self.room.eq(below_full)

    @property
    def busy(self):
        return self.owed != 0


def requant_tail(m: Module, pipe: Pipeline, *, acc, valid, lo, hi, queue: OutputQueue,
                 mult=None, shift=None, layer_mult=None, layer_shift=None, acc_bits: int,
                 arch: ArchConfig):
    """Requantize ``acc`` lanes into ``queue`` (an :class:`OutputQueue`).

    A :class:`hw.blocks.requant.RequantUnit` holds the last :data:`REQUANT_LATENCY`
    stages of the free-running ``pipe``; its output is always taken (the queue has room
    for it). Per-lane ``mult`` / ``shift`` lists, or one ``layer_mult`` /
    ``layer_shift`` for every lane.
    """
    if not isinstance(pipe.en, Const) or pipe.en.value != 1:
        raise ValueError("requant_tail needs a free-running Pipeline (en=None)")
    per_channel = mult is not None
    rq = RequantUnit(len(acc), acc_bits, arch.act_bits, arch.mult_bits, arch.shift_bits,
                     per_channel=per_channel)
    m.submodules.requant = rq
    m.d.comb += [
        rq.i.valid.eq(valid),
        rq.lo.eq(lo),
        rq.hi.eq(hi),
        rq.o.ready.eq(1),
        queue.w_en.eq(rq.o.valid),
        queue.w_data.eq(rq.o.payload.y.as_value()),
    ]
    for i, a in enumerate(acc):
        m.d.comb += rq.i.payload.acc[i].eq(a)
        if per_channel:
            m.d.comb += [rq.i.payload.m[i].eq(mult[i]), rq.i.payload.s[i].eq(shift[i])]
    if not per_channel:
        m.d.comb += [rq.m.eq(layer_mult), rq.s.eq(layer_shift)]


def shift_tail(m: Module, pipe: Pipeline, *, values, valid, shift, lo, hi, o, shift_bits: int):
    """``clamp(round_shift(value, shift), lo, hi)`` per lane into ``o``, driving ``pipe.en``.

    For sums that are already scaled (the residual add); three stages, the last being the
    output register: the shift, the rounding increment and the clamp each end at
    registers. ``round_shift(x, s)`` is ``(p + 1) >> 1`` with ``p = x >> (s - 1)``, and
    with ``p = 2 * x`` for ``s == 0``; the same rounding as :class:`RequantUnit`
    (:func:`hw.blocks.requant.round_shift`). ``shift`` is a job's configuration:
    ``shift - 1`` and ``shift == 0`` are taken into registers a cycle behind it, so the
    shifter starts at registers (``shift`` must hold from the cycle before the first
    beat reaches the first stage; so must ``lo`` and ``hi``, whose ``min`` is a register
    too, so that the clamp's two compares run side by side).
    """
    m.d.comb += pipe.en.eq(~o.valid | o.ready)
    s_m1 = Signal(shift_bits, name="shift_m1")
    s_zero = Signal(name="shift_zero")
    m.d.sync += [s_m1.eq(shift - 1), s_zero.eq(shift == 0)]
    vp = pipe.valid(valid, "shift_v")
    pre = [pipe.reg(Mux(s_zero, v << 1, v >> s_m1), f"shift_p{i}", signed(len(v) + 1))
           for i, v in enumerate(values)]
    vr = pipe.valid(vp, "round_v")
    rounded = [pipe.reg((p + 1) >> 1, f"shift_r{i}", signed(len(p)))
               for i, p in enumerate(pre)]
    # The clamp's two compares side by side: ``min(max(r, lo), hi)`` is ``hi`` above
    # ``hi``, else ``lo'`` below ``lo' = min(lo, hi)`` (a register behind the bounds),
    # else ``r``.
    lo_eff = Signal.like(lo, name="clamp_lo")
    m.d.sync += lo_eff.eq(Mux(lo > hi, hi, lo))
    with m.If(pipe.en):
        m.d.sync += o.valid.eq(vr)
        for i, r in enumerate(rounded):
            m.d.sync += o.payload[i].eq(Mux(r > hi, hi, Mux(r < lo_eff, lo_eff, r)))
    pipe.valids.append(o.valid)


def job_total(m: Module, a, b, shape, name):
    """``(total, last)``: registers holding ``a * b`` and ``a * b - 1`` for factors ``a``
    and ``b`` of the job's configuration (e.g. ``out_w`` and ``out_h``), two and three
    cycles behind them: the factors' arithmetic, the multiplier and the subtraction each
    end at registers instead of reaching a counter's compare (or one another). A job
    takes its first window or beat more than three cycles after its configuration is set
    (parameters and weights come first, and the line buffers fill)."""
    a_r = Signal(Value.cast(a).shape(), name=f"{name}_a")
    b_r = Signal(Value.cast(b).shape(), name=f"{name}_b")
    total = Signal(shape, name=name)
    last = Signal(shape, name=f"{name}_last")
    m.d.sync += [a_r.eq(a), b_r.eq(b), total.eq(a_r * b_r), last.eq(total - 1)]
    return total, last


def count_done(m: Module, *, o, start, draining, beats, done):
    """Drive ``done`` one cycle after the job's last output beat, ``beats``, is taken.

    For engines whose input and output beat counts differ (windows, pooling), so that the
    job ends on output beats rather than on an empty pipeline. The count restarts on
    ``start``; ``draining`` is cleared together with ``done``.
    """
    sent = Signal.like(beats, name="sent")
    sending = o.valid & o.ready
    done_r = Signal(name="done")
    # ``beats - 1`` a register behind ``beats`` (set at the job's start, long before
    # its last beat)
    last = Signal.like(beats, name="last_beat")
    m.d.sync += last.eq(beats - 1)
    # A pool that drops trailing rows sends its last beat before the last window is
    # taken (``draining`` rises after it): then the job ends once ``draining`` rises.
    finished = draining & ~done_r & ((sending & (sent == last)) | (sent == beats))
    with m.If(start):
        m.d.sync += sent.eq(0)
    with m.Elif(sending):
        m.d.sync += sent.eq(sent + 1)
    m.d.sync += done_r.eq(finished)
    m.d.comb += done.eq(done_r)
    with m.If(done_r):
        m.d.sync += draining.eq(0)


class JobControl:
    """Command handshake of an engine.

    With ``fixed=None`` the engine has a ``cmd`` stream: a beat is accepted when the
    engine is idle and its payload becomes the job's configuration (:attr:`cfg`), held
    until the job is done. With ``fixed`` a dict of field values, :attr:`cfg` is a
    constant and a new job starts as soon as the previous one is done.

    Members
    -------
    cfg : View of ``layout``
    start : Value
        High in the cycle a job is accepted (the engine is idle then).
    """

    def __init__(self, m: Module, layout, cmd, fixed, idle):
        if fixed is None:
            self.cfg = Signal(layout, name="cfg")
            m.d.comb += cmd.ready.eq(idle)
            self.start = cmd.valid & idle
            with m.If(self.start):
                m.d.sync += self.cfg.eq(cmd.payload)
        else:
            # Never driven, so it elaborates to its initial value: a constant.
            self.cfg = Signal(layout, init=fixed, name="cfg")
            self.start = idle


def check_fixed(layout, fixed, checks):
    """Validate a fixed (SESL) configuration dict against ``layout``.

    ``checks`` maps a field name to ``(lo, hi)`` inclusive bounds or a tuple of allowed
    values (``("one of", values)``).
    """
    if fixed is None:
        return None
    if not isinstance(fixed, dict):
        raise TypeError(f"config must be a dict of command fields, not {fixed!r}")
    names = [name for name, _ in layout]
    missing = [name for name in names if name not in fixed]
    unknown = [name for name in fixed if name not in names]
    if unknown:
        raise ValueError(f"config has unknown field(s) {', '.join(sorted(unknown))}; "
                         f"the fields are {', '.join(names)}, not {fixed!r}")
    if missing:
        raise ValueError(f"config lacks field(s) {', '.join(missing)}, not {fixed!r}")
    for name, value in fixed.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"config field {name} must be an integer, not {value!r}")
        rule = checks.get(name)
        if rule is None:
            continue
        if rule[0] == "one of":
            if value not in rule[1]:
                raise ValueError(f"config field {name} must be one of "
                                 f"{', '.join(map(str, rule[1]))}, not {value!r}")
        elif not rule[0] <= value <= rule[1]:
            raise ValueError(f"config field {name} must be between {rule[0]} and {rule[1]}, "
                             f"not {value!r}")
    return dict(fixed)


def frame_fields(arch: ArchConfig, k_max: int):
    """Command fields describing one input tile and the window over it."""
    pad = unsigned(bits_for(max(k_max - 1, 1)))
    return {
        "width": unsigned(bits_for(arch.max_width)),
        "height": unsigned(bits_for(arch.max_height)),
        "kernel": unsigned(bits_for(k_max)),
        "stride": unsigned(2),
        "pad_top": pad,
        "pad_left": pad,
        "pad_bottom": pad,
        "pad_right": pad,
    }


def frame_checks(arch: ArchConfig, k_max: int):
    return {
        "width": (1, arch.max_width),
        "height": (1, arch.max_height),
        "kernel": ("one of", tuple(range(1, k_max + 1, 2))),
        "stride": ("one of", (1, 2)),
        "pad_top": (0, k_max - 1),
        "pad_left": (0, k_max - 1),
        "pad_bottom": (0, k_max - 1),
        "pad_right": (0, k_max - 1),
    }


def check_frame(arch, k_max, fixed):
    """Geometry checks of a fixed configuration that single fields cannot express."""
    if fixed is None:
        return
    k = fixed["kernel"]
    wp = fixed["width"] + fixed["pad_left"] + fixed["pad_right"]
    hp = fixed["height"] + fixed["pad_top"] + fixed["pad_bottom"]
    if wp > arch.max_width:
        raise ValueError(f"config padded width must be at most max_width={arch.max_width}, "
                         f"not {wp!r}")
    if hp > arch.max_height:
        raise ValueError(f"config padded height must be at most max_height={arch.max_height}, "
                         f"not {hp!r}")
    if wp < k or hp < k:
        raise ValueError(f"config padded frame must be at least kernel={k} in each "
                         f"dimension, not {wp!r}x{hp!r}")
    stride = fixed["stride"]
    outputs = isa.window_out(wp, k, stride) * isa.window_out(hp, k, stride)
    if outputs > arch.max_width * arch.max_height:
        raise ValueError(f"config output pixels must be at most max_width * max_height="
                         f"{arch.max_width * arch.max_height}, not {outputs!r}")


def output_size(cfg):
    """``(out_width, out_height)`` of the convolution ``cfg`` describes (floor mode)."""
    stride2 = cfg.stride == 2
    out_w = ((cfg.width + cfg.pad_left + cfg.pad_right - cfg.kernel) >> stride2) + 1
    out_h = ((cfg.height + cfg.pad_top + cfg.pad_bottom - cfg.kernel) >> stride2) + 1
    return out_w[:16], out_h[:16]


def window_config(m: Module, wg, cfg, k_max: int):
    """Drive ``wg.cfg.payload`` for the run-time ``cfg.kernel`` on a ``k_max`` generator.

    A ``kernel`` x ``kernel`` convolution equals a ``k_max`` x ``k_max`` one whose kernel
    holds the small one in its centre (zero around it), over a frame padded by
    ``(k_max - kernel) / 2`` more on every side: the windows are the same in number and
    position. The engine loads weights accordingly (:func:`load_kernel`).
    """
    off = (k_max - cfg.kernel) >> 1
    payload = wg.cfg.payload
    m.d.comb += [
        payload.width.eq(cfg.width),
        payload.height.eq(cfg.height),
        payload.stride.eq(cfg.stride),
        payload.pad_top.eq(cfg.pad_top + off),
        payload.pad_left.eq(cfg.pad_left + off),
        payload.pad_bottom.eq(cfg.pad_bottom + off),
        payload.pad_right.eq(cfg.pad_right + off),
    ]


def weight_zero(arch: ArchConfig) -> int:
    """Code of the weight value 0 in ``arch.weight_scheme``."""
    return weight_codes.encode(arch.weight_scheme, 0, arch.weight_bits, arch.pot_exp_bits)


class KernelLoader:
    """Counts the ``kernel * kernel`` weight beats of a tile, taps in (ky, kx) order.

    Members
    -------
    tap : list of list of Value
        ``tap[r][c]`` is high while the current beat belongs at row ``r``, column ``c``
        of the ``k_max`` x ``k_max`` registers (the kernel sits in their centre).
    last : Value
        The current beat is the tile's last.
    """

    def __init__(self, m: Module, cfg, k_max: int, take, restart):
        ky = Signal(range(k_max), name="load_ky")
        kx = Signal(range(k_max), name="load_kx")
        off = (k_max - cfg.kernel) >> 1
        last_x = kx == cfg.kernel - 1
        self.last = last_x & (ky == cfg.kernel - 1)
        with m.If(restart):
            m.d.sync += [ky.eq(0), kx.eq(0)]
        with m.Elif(take):
            m.d.sync += kx.eq(Mux(last_x, 0, kx + 1))
            with m.If(last_x):
                m.d.sync += ky.eq(Mux(self.last, 0, ky + 1))
        self.tap = [[(ky + off == r) & (kx + off == c) for c in range(k_max)]
                    for r in range(k_max)]


def accumulate(m: Module, pipe: Pipeline, *, psums, valid, first, first_tile, last_tile,
               bias, depth: int, acc_bits: int):
    """Sum per-beat partial sums over input-channel tiles in an output buffer.

    Beats of one tile arrive in output-pixel order, ``first`` marking the first output
    pixel of the tile; the buffer address restarts there. On the first tile the
    accumulator starts from ``bias``; on the last tile the sum leaves (``valid`` of the
    result) instead of being written back. Three stages: buffer read, the read data
    registered, then add and write. The registered read data keeps the block RAM's
    outputs (spread over several RAMs for a deep or wide buffer) out of the adder and
    the write-back path. The read port is not transparent (its data register is the
    RAM's own, and the next register a flip-flop beside it), so a beat's read sees
    neither the write of the beat just before it (that write happens a cycle after the
    read) nor that of the beat two before (the same cycle as the read). When either is
    at the same address (a tile of one or two output pixels) the beat takes that sum
    instead: the one two before replaces the read data as it is registered, the one
    just before is chosen at the add, each by a register set from a compare of
    registered addresses a stage early. Earlier writes are already in the buffer.

    Returns ``(acc_lanes, valid)`` of the result stage.
    """
    lanes = len(psums)
    count = Signal(range(depth), name="acc_count")
    addr = Mux(first, 0, count)
    with m.If(pipe.en & valid):
        m.d.sync += count.eq(addr + 1)
    vr = pipe.valid(valid, "acc_vr")
    addr_r = pipe.reg(addr, "acc_addr_r", shape=range(depth))
    first_r = pipe.reg(first_tile, "acc_first_r")
    last_r = pipe.reg(last_tile, "acc_last_r")
    psum_r = [pipe.reg(p, f"acc_psum_r{i}") for i, p in enumerate(psums)]

    m.submodules.output_buffer = ob = Memory(shape=lanes * acc_bits, depth=depth, init=[])
    wr = ob.write_port()
    rd = ob.read_port()
    m.d.comb += [rd.addr.eq(addr_r), rd.en.eq(pipe.en)]
    # the sums the beat in stage u wrote in the previous cycle (the beat two ahead of
    # the one in stage s, one ahead of the one in stage u)
    prev = [Signal(signed(acc_bits), name=f"acc_prev{i}") for i in range(lanes)]

    # stage s: the read data arrives
    vs = pipe.valid(vr, "acc_vs")
    addr_s = pipe.reg(addr_r, "acc_addr_s")
    first_s = pipe.reg(first_r, "acc_first_s")
    last_s = pipe.reg(last_r, "acc_last_s")
    psum_s = [pipe.reg(p, f"acc_psum_s{i}") for i, p in enumerate(psum_r)]

    # stage u: the read data registered; add and write back
    vu = pipe.valid(vs, "acc_vu")
    addr_u = pipe.reg(addr_s, "acc_addr_u")
    first_u = pipe.reg(first_s, "acc_first_u")
    last_u = pipe.reg(last_s, "acc_last_u")
    psum_u = [pipe.reg(p, f"acc_psum_u{i}") for i, p in enumerate(psum_s)]
    writes_u = vu & ~last_u
    # the beat in stage u writes the address the beat in stage r reads in the same
    # cycle: the beat takes that sum in place of its read data, in stage s
    fwd2_s = pipe.reg(writes_u & (addr_u == addr_r), "acc_fwd2_s")
    old_u = pipe.reg(Mux(fwd2_s, Cat(*prev), rd.data), "acc_old_u")
    # the beat in stage u writes the address the beat in stage s has read: forward
    fwd_u = pipe.reg(writes_u & (addr_u == addr_s), "acc_fwd_u")
    sums = []
    for i in range(lanes):
        old = old_u[i * acc_bits:(i + 1) * acc_bits].as_signed()
        base = Mux(first_u, bias[i], Mux(fwd_u, prev[i], old))
        sums.append((base + psum_u[i])[:acc_bits].as_signed())
    for last_sum, value in zip(prev, sums, strict=True):
        with m.If(pipe.en):
            m.d.sync += last_sum.eq(value)
    m.d.comb += [wr.addr.eq(addr_u), wr.en.eq(pipe.en & writes_u), wr.data.eq(Cat(*sums))]
    vt = pipe.valid(vu & last_u, "acc_vt")
    acc_t = [pipe.reg(s, f"acc_sum_t{i}") for i, s in enumerate(sums)]
    return acc_t, vt


def param_layout(arch: ArchConfig):
    """Per-output-channel parameters: bias, requantization multiplier and shift."""
    return data.StructLayout({
        "bias": signed(arch.bias_bits),
        "mult": unsigned(arch.mult_bits),
        "shift": unsigned(arch.shift_bits),
    })
