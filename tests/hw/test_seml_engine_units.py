# amaranth: UnusedElaboratable=no
"""Timing of the SEML core's engine units against their cycle model.

The results of the units are checked bit for bit against the ISS through the whole
core (``test_seml_core.py``, ``tests/test_system_rtl.py``); here each unit runs alone
in Amaranth's simulator (its buffer reads return zeros: timing does not depend on
data) over seeded random COMPUTE instructions, and the busy cycles of every one are
compared with :func:`hw.seml.engine_units.unit_cycles`."""

import random

import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.arch import ArchConfig
from hw.engine_kinds import buffer_banks, pointwise_jumps, pointwise_packed
from hw.isa import Engine, Opcode, Pool, decode_instruction, encode_instruction
from hw.seml.engine_units import EngineUnit, _Feeder, unit_cycles

ARCH = ArchConfig(name="unit-timing", conv_pi=2, conv_po=3, dw_channels=4, pw_pi=4, pw_po=2,
                  max_width=20, max_height=20, conv_k_max=5)

KINDS = (Engine.CONV, Engine.DEPTHWISE, Engine.POINTWISE)


def _instruction(engine, in_c, out_c, in_h, in_w, k, stride, pads, pool):
    pt, pl, pb, pr = pads
    oh = (in_h + pt + pb - k[0]) // stride + 1
    ow = (in_w + pl + pr - k[1]) // stride + 1
    f = (2, 2) if pool is Pool.MAX else (1, 1)
    if min(oh // f[0], ow // f[1]) < 1:
        return None, (0, 0)
    word = encode_instruction(
        Opcode.COMPUTE, engine=engine, pool=pool, in_c=in_c, out_c=out_c, in_h=in_h,
        in_w=in_w, out_h=oh // f[0], out_w=ow // f[1], k_h=k[0], k_w=k[1], stride_h=stride,
        stride_w=stride, pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr,
        fpool_h=f[0], fpool_w=f[1], act_lo=-128, act_hi=127)
    return word, (oh, ow)


def _random_instructions(rng, engine, count):
    out = []
    while len(out) < count:
        if engine is Engine.POINTWISE:
            k, pads = (1, 1), (0, 0, 0, 0)
        else:
            kh = rng.choice([1, 3, 3, 5])
            kw = rng.choice([kh, kh, 1, 2])
            k = (kh, kw)
            # padding up to "same" (wider padding is legal but rare; modelled less exactly)
            pads = tuple(rng.randint(0, (n - 1) // 2) for n in (kh, kw, kh, kw))
        stride = rng.choice([1, 2])
        in_h = rng.randint(1, 12)
        in_w = rng.randint(1, 14)
        in_c = rng.randint(1, 9)
        out_c = in_c if engine is Engine.DEPTHWISE else rng.randint(1, 7)
        pool = Pool.MAX if engine is Engine.CONV and rng.random() < 0.3 else Pool.NONE
        word, (oh, ow) = _instruction(engine, in_c, out_c, in_h, in_w, k, stride, pads, pool)
        if oh < 1 or ow < 1 or (pool is Pool.MAX and min(oh, ow) < 2):
            continue
        out.append(word)
    return out


def _measure(kind, words, arch=None):
    dut = EngineUnit(arch or ARCH, kind)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    cycles = []

    async def bench(ctx):
        for word in words:
            ctx.set(dut.instr.as_value(), int.from_bytes(word, "little"))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            n = 1
            while ctx.get(dut.busy):
                await ctx.tick()
                n += 1
                assert n < 100_000, f"unit still busy on {decode_instruction(word)}"
            cycles.append(n)

    sim.add_testbench(bench)
    sim.run()
    return cycles


@pytest.mark.parametrize("engine", list(KINDS))
def test_unit_cycles_match_the_rtl(engine):
    rng = random.Random(int(engine.value) + 11)
    words = _random_instructions(rng, engine, 10)
    measured = _measure(engine, words)
    exact = 0
    for word, rtl in zip(words, measured, strict=True):
        instr = decode_instruction(word)
        model = unit_cycles(instr, ARCH)
        assert abs(model - rtl) <= 0.06 * rtl, (instr, rtl, model)
        exact += model == rtl
    # Many forms are modelled to the cycle (DEPTHWISE and POINTWISE: all).
    assert exact >= (len(words) if engine is not Engine.CONV else len(words) // 2), measured


#: More weight lanes than pixel lanes: the weights' refills (every few tiles) show on
#: short tiles, down to one pixel (a fully connected layer).
WIDE_PW = ArchConfig(name="unit-timing-pw", conv_pi=2, conv_po=3, dw_channels=4, pw_pi=2,
                     pw_po=8, max_width=20, max_height=20)


@pytest.mark.parametrize("arch", [ARCH, WIDE_PW], ids=["pi4-po2", "pi2-po8"])
def test_pointwise_cycles_on_short_tiles(arch):
    # the first two read through lane 0 (``pointwise_packed``), the last two prefetch
    # the next tile's planes (``pointwise_jumps``): no refills
    cases = [(40, 3, 1, 1, 1), (60, 9, 1, 1, 1), (20, 8, 2, 2, 1), (9, 8, 3, 5, 2),
             (7, 8, 2, 9, 3), (20, 5, 3, 4, 1), (13, 9, 2, 5, 1)]
    words = [_instruction(Engine.POINTWISE, in_c, out_c, h, w, (1, 1), s, (0, 0, 0, 0),
                          Pool.NONE)[0] for in_c, out_c, h, w, s in cases]
    measured = _measure(Engine.POINTWISE, words, arch)
    model = [unit_cycles(decode_instruction(word), arch) for word in words]
    assert measured == model
    modes = [(pointwise_packed(i, arch), pointwise_jumps(i, arch))
             for i in map(decode_instruction, words)]
    assert modes == [(True, False)] * 2 + [(False, False)] * 3 + [(False, True)] * 2


@pytest.mark.parametrize("pi,po", [(2, 4), (3, 16), (12, 8)])
def test_pointwise_cycles_exact_with_many_weight_lanes(pi, po):
    # More weight lanes than a short tile hides: the weight runs refill two tiles ahead
    # (one when every tile refills, ``pw_pi`` 12: a run holds one tile's weights), and
    # one-pixel runs of reads refill the next run's pixels while they wait for weights.
    arch = ArchConfig(name=f"unit-timing-pw{pi}x{po}", conv_pi=2, conv_po=3, dw_channels=4,
                      pw_pi=pi, pw_po=po, max_width=20, max_height=20)
    rng = random.Random(pi * 100 + po)
    words = []
    while len(words) < 25:
        word, _ = _instruction(Engine.POINTWISE, rng.randint(1, 60), rng.randint(1, 20),
                               rng.randint(1, 5), rng.randint(1, 5), (1, 1),
                               rng.choice([1, 2]), (0, 0, 0, 0), Pool.NONE)
        if word:
            words.append(word)
    measured = _measure(Engine.POINTWISE, words, arch)
    assert measured == [unit_cycles(decode_instruction(word), arch) for word in words]


def test_unit_cycles_refuses_pool():
    instr = decode_instruction(encode_instruction(
        Opcode.COMPUTE, engine=Engine.POOL, pool=Pool.MAX, in_c=1, out_c=1, in_h=2, in_w=2,
        out_h=1, out_w=1, k_h=2, k_w=2, stride_h=1, stride_w=1))
    with pytest.raises(ValueError, match="does not run on an engine unit"):
        unit_cycles(instr, ARCH)


def test_engine_unit_ports_and_arguments():
    conv = EngineUnit(ARCH, Engine.CONV)
    # one wide read port per buffer, lanes behind it
    banks = buffer_banks(ARCH)
    assert (conv.ibuf_read_widths, conv.wbuf_read_widths) == ([banks], [banks])
    assert (conv.ibuf_lane_widths, conv.pbuf_lanes) == ([1] * 2, 3)
    assert conv.wbuf_lane_widths == [1] * 6 and conv.obuf_write_widths == [1] * 3
    wide = ARCH.replace(weight_bits=12, act_bits=12)
    pointwise = EngineUnit(wide, Engine.POINTWISE)
    # one lane per output lane reads the Pi consecutive 2-byte weights of its tile
    assert pointwise.wbuf_lane_widths == [8, 8]
    # pixel lane 0 reads all four lanes' elements of a one-pixel tile
    assert pointwise.ibuf_lane_widths == [8, 2, 2, 2] and pointwise.pixel_pack == 4
    assert pointwise.wbuf_read_widths == [buffer_banks(wide)]
    assert EngineUnit(ARCH, Engine.DEPTHWISE).wbuf_lane_widths == [1] * 4
    with pytest.raises(TypeError, match="arch must be an ArchConfig, not None"):
        EngineUnit(None, Engine.CONV)
    with pytest.raises(TypeError, match="kind must be Engine.CONV, DEPTHWISE or POINTWISE, not 'conv'"):
        EngineUnit(ARCH, "conv")
    with pytest.raises(TypeError, match="not <Engine.POOL: 3>"):
        EngineUnit(ARCH, Engine.POOL)


def _feeder_run(held, seed, beats=60, cycles=600):
    """A :class:`_Feeder` over a stand-in fetcher (``ready`` random; the lanes' data
    registers load the beat's number at each read) into a reader with random
    back-pressure. Returns the cycle at which each beat was taken, and the beats."""
    class Bench(wiring.Component):
        def __init__(self):
            super().__init__({"o": Out(stream.Signature(data.ArrayLayout(unsigned(8), 2))),
                              "f_ready": In(1), "start": In(1), "want": Out(1)})

        def elaborate(self, platform):
            m = Module()
            f = _Feeder(m, self.o, "t", self.f_ready, held=held)
            count = Signal(8)
            lanes = [Signal(8, name=f"lane{q}") for q in range(2)]
            m.d.comb += [self.want.eq(f.want), f.payload[0].eq(lanes[0]),
                         f.payload[1].eq(lanes[1])]
            with m.If(self.start):
                m.d.sync += [f.active.eq(1), count.eq(0)]
            with m.If(f.issue):
                m.d.sync += [count.eq(count + 1), lanes[0].eq(count), lanes[1].eq(count ^ 0x55)]
                with m.If(count == beats - 1):
                    m.d.sync += f.active.eq(0)
            return m

    dut = Bench()
    rng = random.Random(seed)
    pattern = [(rng.random() < 0.7, rng.random() < 0.6) for _ in range(cycles)]
    taken = []

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for cycle, (f_ready, o_ready) in enumerate(pattern):
            ctx.set(dut.f_ready, f_ready)
            ctx.set(dut.o.ready, not o_ready)
            await ctx.delay(1e-9)
            want = ctx.get(dut.want)
            ctx.set(dut.o.ready, o_ready)
            await ctx.delay(1e-9)
            if held:
                # the reader's back-pressure does not reach the read enables
                assert ctx.get(dut.want) == want
            if ctx.get(dut.o.valid) and o_ready:
                beat = ctx.get(dut.o.payload)
                taken.append((cycle, beat[0], beat[1]))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_held_feeder_keeps_order_and_is_never_later(seed):
    # Every beat once, in order, through the second entry; each taken no later than
    # through the one-entry feeder under the same fetcher and reader patterns.
    held = _feeder_run(True, seed)
    plain = _feeder_run(False, seed)
    assert [(a, b) for _, a, b in held] == [(k, k ^ 0x55) for k in range(60)]
    assert [(a, b) for _, a, b in plain] == [(k, k ^ 0x55) for k in range(60)]
    assert all(h <= p for (h, _, _), (p, _, _) in zip(held, plain, strict=True))
    assert sum(p - h for (h, _, _), (p, _, _) in zip(held, plain, strict=True)) > 0
