# amaranth: UnusedElaboratable=no
"""LOAD and STORE units in Amaranth's simulator, for every AXI data width: the bytes of a
DMA stream land in IBUF / WBUF at the instruction's buffer address, PBUF records become
entries, and STORE streams OBUF words with ``last`` on the final one."""

import random

import pytest
from amaranth.sim import Simulator

from hw.arch import ArchConfig
from hw.isa import PBUF_ENTRY_BYTES, Buffer, Opcode, encode_instruction, pack_pbuf_entry
from hw.seml.units import LoadUnit, StoreUnit


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
            # One cycle of read latency, as the buffer has.
            if last_addr is not None:
                ctx.set(dut.obuf_r_data,
                        int.from_bytes((obuf + bytes(nbytes))[last_addr:last_addr + nbytes],
                                       "little"))
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


def test_compute_unit_arguments():
    from hw.seml.compute import ComputeUnit

    arch = _arch(64)
    unit = ComputeUnit(arch, lanes=4, channels=3, reduce=2)
    assert unit.ibuf_read_widths == [1] * 8
    assert unit.wbuf_read_widths == [1] * 6
    assert unit.pbuf_read_ports == 3
    assert unit.obuf_write_width == 4
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not None"):
        ComputeUnit(None)
    with pytest.raises(ValueError, match=r"lanes must be between 1 and 64, not 0"):
        ComputeUnit(arch, lanes=0)
    with pytest.raises(TypeError, match=r"channels must be an integer, not 2.5"):
        ComputeUnit(arch, channels=2.5)
    with pytest.raises(ValueError, match=r"reduce must be between 1 and 64, not 65"):
        ComputeUnit(arch, reduce=65)
