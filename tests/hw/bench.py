"""Cocotb bench pieces shared by the block and engine tests under ``tests/hw``."""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw import weight_codes
from sim import golden
from sim.cocotb_streams import StreamSource, pack_struct, random_pattern

# Blocks --------------------------------------------------------------------------------


async def reset(dut, cycles=2, settle=True):
    """Start a 10 ns clock on ``dut.clk`` and hold ``dut.rst`` for ``cycles`` cycles;
    with ``settle``, wait one more clock edge after releasing it."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    if settle:
        await RisingEdge(dut.clk)


def raw_read(image, addr, banks):
    """The word a raw read port of a ``banks``-bank buffer holding ``image`` returns for
    address ``addr`` (:class:`hw.seml.buffers.ByteBuffer` with ``raw_reads``): byte ``j``
    is the byte of ``addr .. addr + banks - 1`` in bank ``j``, 0 past the image."""
    padded = bytes(image) + bytes(banks)
    return bytes(padded[addr + (j - addr) % banks] for j in range(banks))


class ReadStages:
    """The read register stages of the core's IBUF and WBUF
    (:data:`hw.timing.BUFFER_READ_STAGES`) for a bench that answers a unit's reads
    itself: ``delay(addr)`` takes the address read this cycle (``None`` for none) and
    returns the one whose data comes back now."""

    def __init__(self, stages=None):
        from hw.timing import BUFFER_READ_STAGES
        self._pipe = [None] * (BUFFER_READ_STAGES if stages is None else stages)

    def delay(self, addr):
        self._pipe.append(addr)
        return self._pipe.pop(0)


class HandshakeLog:
    """Cycle numbers of every transfer, and of every cycle with ``valid`` high, on ``name``."""

    def __init__(self, dut, name, clock):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.clock = clock
        self.cycles = []
        self.valid_cycles = []
        cocotb.start_soon(self._run())

    async def _run(self):
        cycle = 0
        while True:
            await RisingEdge(self.clock)
            await ReadOnly()
            if int(self.valid.value):
                self.valid_cycles.append(cycle)
                if int(self.ready.value):
                    self.cycles.append(cycle)
            cycle += 1


# Engines -------------------------------------------------------------------------------


async def engine_reset(dut):
    """Reset of the engine benches: three cycles, no settling edge."""
    await reset(dut, cycles=3, settle=False)


class DoneMonitor:
    """Counts ``done`` pulses and checks ``busy`` is high with each."""

    def __init__(self, dut):
        self.dut = dut
        self.count = 0
        self.cycles = []
        cocotb.start_soon(self._run())

    async def _run(self):
        cycle = 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            cycle += 1
            if int(self.dut.done.value):
                assert int(self.dut.busy.value) == 1, "done pulsed while not busy"
                self.count += 1
                self.cycles.append(cycle)


def stream_sources(dut, rng, names, cmd, p_active):
    """A :class:`StreamSource` per stream of ``names`` (and ``cmd`` if asked), each with
    its own random idle pattern (none when ``p_active`` is 1); patterns are drawn from
    ``rng`` in the order of ``names``."""

    def pattern():
        return random_pattern(rng.random(), p_active) if p_active < 1 else None

    srcs = {name: StreamSource(dut, name, dut.clk, idle=pattern()) for name in names}
    if cmd:
        srcs["cmd"] = StreamSource(dut, "cmd", dut.clk, idle=pattern())
    return srcs


# requantization cases each random test cycles through (see random_requant)
KINDS = ("spread", "m1", "saturate")


def random_weights(rng, arch, shape):
    """Random weight values of the scheme and their codes."""
    choices = weight_codes.values(arch.weight_scheme, arch.weight_bits, arch.pot_exp_bits)
    w = np.array([rng.choice(choices) for _ in range(int(np.prod(shape)))]).reshape(shape)
    codes = np.vectorize(
        lambda v: weight_codes.encode(
            arch.weight_scheme, int(v), arch.weight_bits, arch.pot_exp_bits
        ),
        otypes=[np.int64],
    )(w)
    return w, codes


def weight_bits_of(arch):
    return weight_codes.code_width(arch.weight_scheme, arch.weight_bits, arch.pot_exp_bits)


def weight_zero(arch):
    """The code of a zero weight (padding lanes)."""
    return weight_codes.encode(arch.weight_scheme, 0, arch.weight_bits, arch.pot_exp_bits)


def random_requant(rng, arch, acc, cout, kind):
    """Per-channel (m, s) and (lo, hi) spreading ``acc`` over the output range.

    ``kind``: ``"spread"``, ``"m1"`` (m = 1, the pure power-of-two case) or
    ``"saturate"`` (too large a scale: both rails hit).
    """
    lo_q, hi_q = golden.qrange(arch.act_bits)
    top = int(np.abs(acc).max()) + 1
    ms, ss = [], []
    for _ in range(cout):
        m = 1 if kind == "m1" else rng.randint(1, (1 << arch.mult_bits) - 1)
        s = max(0, (top * m).bit_length() - arch.act_bits + 1)
        if kind == "saturate":
            s = max(0, s - 3)
        ms.append(m)
        ss.append(min(s, (1 << arch.shift_bits) - 1))
    lo, hi = lo_q, hi_q
    if rng.random() < 0.3:
        lo = 0
    elif rng.random() < 0.3:
        lo, hi = rng.randint(lo_q, -1), rng.randint(1, hi_q)
    return np.array(ms), np.array(ss), lo, hi


def param_words(eng, bias, ms, ss, group, po):
    """The ``params`` beat of output-channel group ``group`` (zero past the last channel)."""
    lanes = []
    for j in range(po):
        c = group * po + j
        if c < len(bias):
            lanes.append({"bias": int(bias[c]), "mult": int(ms[c]), "shift": int(ss[c])})
        else:
            lanes.append({"bias": 0, "mult": 0, "shift": 0})
    word = 0
    lane_layout = eng.param_layout.elem_shape
    for j, lane in enumerate(lanes):
        word |= pack_struct(lane_layout, lane) << (j * lane_layout.size)
    return word


def random_geometry(rng, arch, k_max, n=None):
    """Random frame and window; the ``n``-th of a series cycles through every kernel and
    stride so that a short series covers them all."""
    kernels = [kk for kk in (1, 3, 5, 7) if kk <= k_max]
    k = rng.choice(kernels) if n is None else kernels[n % len(kernels)]
    stride = rng.choice([1, 2]) if n is None else 1 + (n // len(kernels)) % 2
    while True:
        pads = [rng.randint(0, k - 1) for _ in range(4)]
        h = rng.randint(1, arch.max_height)
        w = rng.randint(1, arch.max_width)
        hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
        # the padded tile must fit the arch's frame, and be at least one window
        if k <= hp <= arch.max_height and k <= wp <= arch.max_width:
            return {
                "kernel": k,
                "stride": stride,
                "pad_top": pads[0],
                "pad_left": pads[1],
                "pad_bottom": pads[2],
                "pad_right": pads[3],
                "height": h,
                "width": w,
            }


#: Arch overrides of the conv and depthwise engine tests: small frames and narrow
#: widths keep builds quick and make both saturation rails easy to reach.
SMALL_ENGINE_ARCH = {
    "max_width": 7,
    "max_height": 6,
    "mult_bits": 12,
    "shift_bits": 5,
    "acc_bits": 24,
    "bias_bits": 16,
}
