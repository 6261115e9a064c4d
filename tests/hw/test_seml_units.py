# amaranth: UnusedElaboratable=no
"""LOAD and STORE units in Amaranth's simulator, for every AXI data width: the bytes of a
DMA stream land in IBUF / WBUF at the instruction's buffer address, PBUF records become
entries, and STORE streams OBUF words with ``last`` on the final one."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.arch import ArchConfig
from hw.engine_kinds import buffer_banks, pool_lanes
from hw.isa import (
    PBUF_ENTRY_BYTES,
    Buffer,
    Engine,
    Opcode,
    Pool,
    decode_instruction,
    element_bytes,
    encode_instruction,
    pack_pbuf_entry,
)
from hw.seml.units import LoadUnit, StoreUnit
from tests.hw.bench import ReadStages, raw_read


def _arch(bits):
    return ArchConfig(name=f"units-{bits}", axi_data_bits=bits, ibuf_bytes=2048,
                      obuf_bytes=2048, wbuf_bytes=1024, pbuf_entries=64, bias_bits=24,
                      mult_bits=12, shift_bits=5)


def _words(blob, nbytes):
    padded = blob + bytes(-len(blob) % nbytes)
    return [int.from_bytes(padded[i:i + nbytes], "little") for i in range(0, len(padded), nbytes)]


@pytest.mark.parametrize("bits", [32, 64, 128, 256])
@pytest.mark.parametrize("buffer", [Buffer.IBUF, Buffer.WBUF, Buffer.PBUF])
def test_load_unit(bits, buffer):
    arch = _arch(bits)
    nbytes = bits // 8
    rng = random.Random(bits + buffer.value)
    if buffer is Buffer.PBUF:
        rows, row_bytes, buf_addr = 3, 2 * PBUF_ENTRY_BYTES, 5
        records = [(rng.randrange(-(1 << 30), 1 << 30), rng.getrandbits(32), rng.getrandbits(8))
                   for _ in range(rows * 2)]
        blob = b"".join(pack_pbuf_entry(*r) for r in records)
    else:
        rows, row_bytes, buf_addr = 3, 29, 13
        blob = bytes(rng.getrandbits(8) for _ in range(rows * row_bytes))
    word = encode_instruction(Opcode.LOAD, buffer=buffer, ddr_addr=100, ddr_stride=40,
                              buf_addr=buf_addr, rows=rows, row_bytes=row_bytes)
    dut = LoadUnit(arch)
    words = _words(blob, nbytes)
    written = {}
    entries = {}
    seen = {}

    async def bench(ctx):
        ctx.set(dut.instr.as_value(), int.from_bytes(word, "little"))
        ctx.set(dut.data_base, 0x1000)
        ctx.set(dut.size, rows * row_bytes)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.busy)
        assert ctx.get(dut.dma_cmd.valid)
        assert ctx.get(dut.dma_cmd.payload.addr) == 0x1000 + 100
        assert ctx.get(dut.dma_cmd.payload.rows) == rows
        ctx.set(dut.dma_cmd.ready, 1)
        await ctx.tick()
        ctx.set(dut.dma_cmd.ready, 0)
        i = 0
        for _ in range(400):
            if i < len(words) and rng.random() < 0.7:
                ctx.set(dut.dma_data.valid, 1)
                ctx.set(dut.dma_data.payload.data, words[i])
                ctx.set(dut.dma_data.payload.last, int(i == len(words) - 1))
            else:
                ctx.set(dut.dma_data.valid, 0)
            await ctx.delay(1e-9)
            took = ctx.get(dut.dma_data.valid) and ctx.get(dut.dma_data.ready)
            prefix = "ibuf" if buffer is Buffer.IBUF else "wbuf"
            count = ctx.get(getattr(dut, f"{prefix}_w_count"))
            if count:
                addr = ctx.get(getattr(dut, f"{prefix}_w_addr"))
                data = ctx.get(getattr(dut, f"{prefix}_w_data"))
                for k in range(count):
                    written[addr + k] = (data >> (8 * k)) & 0xFF
            other = "wbuf" if buffer is Buffer.IBUF else "ibuf"
            seen[other] = seen.get(other, 0) + ctx.get(getattr(dut, f"{other}_w_count"))
            if ctx.get(dut.pbuf_w_en):
                entries[ctx.get(dut.pbuf_w_addr)] = (ctx.get(dut.pbuf_w_data.bias),
                                                     ctx.get(dut.pbuf_w_data.mult),
                                                     ctx.get(dut.pbuf_w_data.shift))
            await ctx.tick()
            if took:
                i += 1
            if i == len(words) and not ctx.get(dut.busy):
                break
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if buffer is Buffer.PBUF:
        assert not written
        expect = {buf_addr + n: (((b + (1 << 23)) & 0xFFFFFF) - (1 << 23), mu & 0xFFF, s & 0x1F)
                  for n, (b, mu, s) in enumerate(records)}
        assert entries == expect
    else:
        assert not entries
        assert seen.get("wbuf" if buffer is Buffer.IBUF else "ibuf", 0) == 0
        assert written == {buf_addr + k: blob[k] for k in range(len(blob))}


@pytest.mark.parametrize("bits", [32, 64, 256])
def test_store_unit(bits):
    arch = _arch(bits)
    nbytes = bits // 8
    rng = random.Random(bits)
    obuf = bytes(rng.getrandbits(8) for _ in range(arch.obuf_bytes))
    rows, row_bytes, buf_addr = 4, 23, 7
    word = encode_instruction(Opcode.STORE, buffer=Buffer.OBUF, ddr_addr=64, ddr_stride=100,
                              buf_addr=buf_addr, rows=rows, row_bytes=row_bytes)
    dut = StoreUnit(arch)
    total = rows * row_bytes
    got = []

    async def bench(ctx):
        ctx.set(dut.instr.as_value(), int.from_bytes(word, "little"))
        ctx.set(dut.size, rows * row_bytes)
        ctx.set(dut.start, 1)
        ctx.set(dut.dma_idle, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.dma_cmd.ready, 1)
        last_addr = None
        for _ in range(300):
            ready = rng.random() < 0.6
            ctx.set(dut.dma_data.ready, int(ready))
            await ctx.delay(1e-9)
            if ctx.get(dut.obuf_r_en):
                last_addr = ctx.get(dut.obuf_r_addr)
            if ready and ctx.get(dut.dma_data.valid):
                got.append((ctx.get(dut.dma_data.payload.data),
                            ctx.get(dut.dma_data.payload.last)))
            await ctx.tick()
            # One cycle of read latency, as the buffer has; the banks' raw outputs.
            if last_addr is not None:
                ctx.set(dut.obuf_r_data,
                        int.from_bytes(raw_read(obuf, last_addr, dut.banks), "little"))
            if not ctx.get(dut.busy):
                break
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    words = -(-total // nbytes)
    assert [last for _, last in got] == [0] * (words - 1) + [1]
    stream = b"".join(d.to_bytes(nbytes, "little") for d, _ in got)
    assert stream[:total] == obuf[buf_addr:buf_addr + total]


def test_pool_window_unit_arguments():
    from hw.seml.compute import POOL_LANES, PoolWindowUnit

    arch = _arch(64)
    unit = PoolWindowUnit(arch, lanes=4)
    assert unit.ibuf_read_widths == [buffer_banks(arch)]
    assert unit.wbuf_read_widths == []
    assert unit.pbuf_lanes == 0
    assert unit.obuf_write_widths == [4]
    assert buffer_banks(arch) >= (2 * POOL_LANES - 1)
    wide = ArchConfig(name="units-wide", act_bits=12, ibuf_bytes=2048, obuf_bytes=2048,
                      wbuf_bytes=1024, pbuf_entries=64)
    assert PoolWindowUnit(wide, lanes=3).obuf_write_widths == [6]
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not None"):
        PoolWindowUnit(None)
    with pytest.raises(ValueError, match=r"lanes must be between 1 and 64, not 0"):
        PoolWindowUnit(arch, lanes=0)
    with pytest.raises(ValueError, match=r"lanes must be between 1 and 64, not 65"):
        PoolWindowUnit(arch, lanes=65)
    with pytest.raises(TypeError, match=r"lanes must be an integer, not 2.5"):
        PoolWindowUnit(arch, lanes=2.5)
    with pytest.raises(TypeError, match=r"lanes must be an integer, not True"):
        PoolWindowUnit(arch, lanes=True)


# (pool, in_c, in_h, in_w, kernel, stride, pads, act, mult, shift, act_bits, lanes)
POOL_CASES = {
    "max_3x3_s2_padded": (Pool.MAX, 3, 7, 7, (3, 3), (2, 2), (1, 1, 1, 1), (-20, 127), 0, 0,
                          8, 8),
    "global_avg": (Pool.AVG, 4, 6, 5, (6, 5), (1, 1), (0, 0, 0, 0), (-128, 127), 1311, 15, 8,
                   8),
    "avg_uneven_12bit": (Pool.AVG, 2, 5, 9, (2, 3), (1, 2), (1, 0, 0, 2), (-2048, 2047), 2731,
                         13, 12, 3),
    "max_1x4_12bit": (Pool.MAX, 2, 3, 11, (1, 4), (1, 1), (0, 3, 0, 2), (-300, 2047), 0, 0,
                      12, 3),
    # a column stride past what one IBUF word holds for every lane: fewer lanes per step
    "max_2x2_s5": (Pool.MAX, 2, 6, 29, (2, 2), (1, 5), (0, 0, 0, 1), (-128, 127), 0, 0, 8, 8),
    "avg_s3_12bit": (Pool.AVG, 1, 3, 26, (1, 2), (1, 3), (0, 0, 0, 0), (-2048, 2047), 3, 1,
                     12, 8),
    # a shift past the product's width: the rounding constant 2**(s-1) must not overflow
    "avg_shift_past_product": (Pool.AVG, 2, 4, 6, (1, 3), (2, 1), (0, 0, 0, 2), (-128, 127),
                               54181, 59, 8, 8),
    # a sum narrow enough for one multiplier (no partial products)
    "avg_narrow_acc": (Pool.AVG, 2, 5, 7, (3, 2), (1, 2), (1, 1, 0, 0), (-128, 127), 1711,
                       11, 8, 8),
}
#: Arch options of a case besides the default ``mult_bits=12, shift_bits=5``.
POOL_ARCH_OPTIONS = {"avg_shift_past_product": {"mult_bits": 16, "shift_bits": 6},
                     "avg_narrow_acc": {"acc_bits": 18}}


@pytest.mark.parametrize("name", list(POOL_CASES))
def test_pool_window_unit(name):
    """OBUF holds the golden pool of the IBUF tile, nothing else is written, and the unit
    is busy for ``pool_steps + DRAIN_CYCLES`` cycles (the ISS's cycle model)."""
    _check_pool_window_unit(name, POOL_CASES[name], POOL_ARCH_OPTIONS.get(name, {}))


def _random_pool_case(rng):
    """A legal POOL of random shape: 1x1 and one-row or one-column windows, a window
    of the whole tile, one or several column groups per row."""
    k = (rng.choice([1, 1, 2, 3, 5]), rng.choice([1, 1, 2, 3, 4]))
    stride = (rng.randint(1, 3), rng.randint(1, 4))
    pads = (rng.randint(0, k[0] - 1), rng.randint(0, k[1] - 1),
            rng.randint(0, k[0] - 1), rng.randint(0, k[1] - 1))
    in_h = rng.randint(max(1, k[0] - pads[0] - pads[2]), 7)
    in_w = rng.randint(max(1, k[1] - pads[1] - pads[3]), 21)
    pool = rng.choice([Pool.MAX, Pool.AVG])
    act_bits = rng.choice([8, 12])
    hi = (1 << (act_bits - 1)) - 1
    act = (rng.randint(-hi - 1, 0), rng.randint(0, hi))
    mult, shift = (rng.randint(1, 4095), rng.randint(0, 31)) if pool is Pool.AVG else (0, 0)
    return (pool, rng.randint(1, 3), in_h, in_w, k, stride, pads, act, mult, shift,
            act_bits, rng.choice([8, 3, 1]))


@pytest.mark.parametrize("seed", range(8))
def test_pool_window_unit_random(seed):
    """Seeded random shapes (window, stride, padding, channels, lanes, element width)
    through the same check."""
    case = _random_pool_case(random.Random(f"pool-{seed}"))
    _check_pool_window_unit(f"random-{seed}", case, {})


def _check_pool_window_unit(name, case, arch_options):
    from hw.seml.compute import DRAIN_CYCLES, PoolWindowUnit, pool_steps
    from sim import golden

    (pool, in_c, in_h, in_w, kernel, stride, pads, act, mult, shift, act_bits,
     lanes) = case
    arch = ArchConfig(name=f"pool-{act_bits}", act_bits=act_bits, ibuf_bytes=2048,
                      obuf_bytes=2048, wbuf_bytes=1024, pbuf_entries=64,
                      **{"mult_bits": 12, "shift_bits": 5, **arch_options})
    rng = random.Random(name)
    e = element_bytes(act_bits)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    x = np.array([rng.randint(lo, hi) for _ in range(in_c * in_h * in_w)],
                 dtype=np.int64).reshape(1, in_c, in_h, in_w)
    if pool is Pool.MAX:
        y = np.clip(golden.max_pool2d(x, kernel, stride, pads), *act)
    else:
        y = golden.requantize(golden.sum_pool2d(x, kernel, stride, pads), mult, shift, *act)
    out_h, out_w = y.shape[2:]
    ibuf_addr, obuf_addr = 37, 101
    ibuf = bytearray(rng.getrandbits(8) for _ in range(arch.ibuf_bytes))
    ibuf[ibuf_addr:ibuf_addr + x.size * e] = b"".join(
        int(v).to_bytes(e, "little", signed=True) for v in x.flat)
    expect = b"".join(int(v).to_bytes(e, "little", signed=True) for v in y.flat)
    pt, pl, pb, pr = pads
    word = encode_instruction(
        Opcode.COMPUTE, engine=Engine.POOL, pool=pool, in_c=in_c, out_c=in_c, in_h=in_h,
        in_w=in_w, k_h=kernel[0], k_w=kernel[1], stride_h=stride[0], stride_w=stride[1],
        pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr, fpool_h=1, fpool_w=1,
        act_lo=act[0], act_hi=act[1], mult=mult, shift=shift, out_h=out_h, out_w=out_w,
        ibuf_addr=ibuf_addr, obuf_addr=obuf_addr)
    dut = PoolWindowUnit(arch, lanes=lanes)
    banks = buffer_banks(arch)
    written = {}
    cycles = []

    inflight = ReadStages()

    async def bench(ctx):
        # as the core's instruction register: the word is there two cycles before start
        ctx.set(dut.instr.as_value(), int.from_bytes(word, "little"))
        await ctx.tick().repeat(2)
        ctx.set(dut.start, 1)
        n = 0
        for _ in range(5000):
            await ctx.delay(1e-9)
            addr = ctx.get(dut.ibuf_port(0)[0]) if ctx.get(dut.ibuf_port(0)[1]) else None
            w_addr, w_data, w_count = (ctx.get(s) for s in dut.obuf_port(0))
            for k in range(w_count):
                assert w_addr + k not in written, f"OBUF byte {w_addr + k} written twice"
                written[w_addr + k] = (w_data >> (8 * k)) & 0xFF
            await ctx.tick()
            n += 1
            ctx.set(dut.start, 0)
            # One wide word in bank order, ``1 + BUFFER_READ_STAGES`` cycles of read
            # latency, as the core's IBUF has.
            addr = inflight.delay(addr)
            if addr is not None:
                ctx.set(dut.ibuf_port(0)[2],
                        int.from_bytes(raw_read(ibuf, addr, banks), "little"))
            if not ctx.get(dut.busy):
                break
        cycles.append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert written == {obuf_addr + k: b for k, b in enumerate(expect)}
    steps = pool_steps(in_c, out_h, out_w, *kernel, pool_lanes(arch, stride[1], lanes))
    assert cycles == [steps + DRAIN_CYCLES]


@pytest.mark.parametrize("dw, aligned", [(4, False), (4, True), (16, True), (3, True),
                                       (6, False)])
def test_add_unit_cycles_and_results(dw, aligned):
    """The ADD unit alone over a random IBUF image (served as the raw buffer port does:
    a banks-wide word in bank order, one cycle of latency): ADD and MUL, with and
    without the table, one and several engine jobs, busy exactly as long as the ISS's
    cycle model says (the operands' first runs through the one IBUF port included) and,
    without the table, writing the golden model's results. With ``aligned`` both
    operands cross their runs in the same cycle; with 16 lanes a run is four beats (the
    reads must still keep up); with 3 and 6 lanes a run's beats do not fill its banks,
    so the runs start at different banks."""
    from hw.engine_kinds import buffer_banks
    from hw.isa import EltOp
    from hw.seml.units import AddUnit
    from sim import golden
    from sim.timing import instruction_cycles

    arch = ArchConfig(name="add-timing", conv_pi=2, conv_po=2, dw_channels=dw, pw_pi=4,
                      pw_po=4, max_width=16, max_height=16, ibuf_bytes=4096,
                      obuf_bytes=4096, wbuf_bytes=2048, pbuf_entries=64, axi_data_bits=64)
    banks = buffer_banks(arch)
    rng = random.Random(dw * 2 + aligned)
    ibuf = bytes(rng.getrandbits(8) for _ in range(arch.ibuf_bytes))
    signed = np.frombuffer(ibuf, dtype=np.int8).astype(np.int64)
    b_addr = 5 + 3 * banks if aligned else 1000
    cases = []
    for count, op, group, table in [(3, EltOp.ADD, 1, 0), (64, EltOp.ADD, 1, 0),
                                    (300, EltOp.ADD, 1, 1), (1500, EltOp.ADD, 1, 0),
                                    (40, EltOp.MUL, 8, 0), (77, EltOp.MUL, 5, 1),
                                    (200, EltOp.MUL, 1, 0)]:
        fields = {"a_addr": 5, "b_addr": b_addr, "out_addr": 7, "count": count,
                  "mult_a": 3, "mult_b": 5, "shift": 3, "act_lo": -100, "act_hi": 90,
                  "op": op, "table": table}
        a = signed[5:5 + count]
        if op is EltOp.MUL:
            fields.update(group=group, b_count=-(-count // group), mult_b=0)
            b = signed[b_addr:b_addr + fields["b_count"]]
            y = golden.mul_broadcast(a, b, group, 3, 3, -100, 90)
        else:
            b = signed[b_addr:b_addr + count]
            y = golden.add(a, b, 3, 5, 3, -100, 90, axis=0)
        expect = None if table else bytes(int(v) & 0xFF for v in y)
        cases.append((encode_instruction(Opcode.ADD, **fields), expect))
    dut = AddUnit(arch)
    measured, results = [], []
    inflight = ReadStages()

    async def bench(ctx):
        for word, _ in cases:
            written = {}
            ctx.set(dut.instr.as_value(), int.from_bytes(word, "little"))
            ctx.set(dut.start, 1)
            n = 0
            while True:
                await ctx.delay(1e-9)
                addr = ctx.get(dut.ibuf0_addr) if ctx.get(dut.ibuf0_en) else None
                w_addr, w_data, w_count = (ctx.get(getattr(dut, f"obuf_w_{f}"))
                                           for f in ("addr", "data", "count"))
                for k in range(w_count):
                    written[w_addr + k] = (w_data >> (8 * k)) & 0xFF
                await ctx.tick()
                ctx.set(dut.start, 0)
                n += 1
                addr = inflight.delay(addr)
                if addr is not None:
                    ctx.set(dut.ibuf0_data, int.from_bytes(raw_read(ibuf, addr, banks),
                                                           "little"))
                if not ctx.get(dut.busy):
                    break
                assert n < 10_000
            measured.append(n)
            results.append(bytes(written.get(7 + k, 0) for k in range(len(written))))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert measured == [instruction_cycles(decode_instruction(w), arch) for w, _ in cases]
    for (word, expect), got in zip(cases, results, strict=True):
        if expect is not None:
            assert got == expect, decode_instruction(word)
