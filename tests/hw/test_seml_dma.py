# amaranth: UnusedElaboratable=no
"""AXI4 master DMA under Verilator against cocotbext-axi's ``AxiRam``."""

import random

import cocotb
import pytest
from amaranth.sim import Simulator
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.seml.dma import AxiDma, DmaCommand
from sim.axi import DdrModel
from sim.cocotb_streams import ClockCounter, StreamSink, StreamSource, pack_struct, random_pattern
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl

RAM_SIZE = 1 << 16


class TB:
    def __init__(self, dut, seed, stress):
        self.dut = dut
        args = test_args()
        self.nbytes = args["data_bits"] // 8
        self.addr_bits = args["addr_bits"]
        self.layout = DmaCommand(self.addr_bits)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = DdrModel(dut, size=RAM_SIZE, pause=0.3 if stress else 0.0, seed=seed)
        idle = random_pattern(seed + 1, 0.7) if stress else None
        back = random_pattern(seed + 2, 0.7) if stress else None
        self.rd_cmd = StreamSource(dut, "rd_cmd", dut.clk, idle=idle)
        self.wr_cmd = StreamSource(dut, "wr_cmd", dut.clk, idle=idle)
        self.wr_data = StreamSource(dut, "wr_data", dut.clk,
                                    idle=random_pattern(seed + 3, 0.7) if stress else None)
        self.rd_data = StreamSink(dut, "rd_data", dut.clk, backpressure=back)
        dut.clear.value = 0

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def command(self, addr, rows, row_bytes, stride):
        return pack_struct(self.layout, {"addr": addr, "rows": rows, "row_bytes": row_bytes,
                                         "stride": stride & ((1 << self.addr_bits) - 1)})

    async def read(self, addr, rows, row_bytes, stride):
        """Returns the transfer's bytes and whether ``last`` marked only the final word."""
        total = rows * row_bytes
        words = -(-total // self.nbytes)
        await self.rd_cmd.send([self.command(addr, rows, row_bytes, stride)])
        got = await self.rd_data.recv(words)
        out = b""
        lasts = []
        for word in got:
            out += (word & ((1 << (8 * self.nbytes)) - 1)).to_bytes(self.nbytes, "little")
            lasts.append(word >> (8 * self.nbytes))
        assert lasts == [0] * (words - 1) + [1], lasts
        assert out[total:] == bytes(len(out) - total), "padding is not zero"
        return out[:total]

    async def write(self, addr, rows, row_bytes, stride, payload):
        total = rows * row_bytes
        words = -(-total // self.nbytes)
        padded = payload + bytes(random.Random(total).getrandbits(8)
                                 for _ in range(words * self.nbytes - total))
        data = [int.from_bytes(padded[i * self.nbytes:(i + 1) * self.nbytes], "little")
                | (int(i == words - 1) << (8 * self.nbytes)) for i in range(words)]
        cmd = cocotb.start_soon(self.wr_cmd.send([self.command(addr, rows, row_bytes, stride)]))
        await self.wr_data.send(data)
        await cmd
        await self.wait_idle("wr_idle")

    async def wait_idle(self, name, limit=100000):
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if int(getattr(self.dut, name).value):
                await RisingEdge(self.dut.clk)
                return
        raise AssertionError(f"{name} never rose")


def _random_transfer(rng, nbytes, max_total):
    rows = rng.randrange(1, 5)
    row_bytes = rng.choice([1, nbytes, rng.randrange(1, 300), rng.randrange(1, 5000 // rows)])
    row_bytes = min(row_bytes, max_total // rows)
    stride = row_bytes + rng.choice([0, rng.randrange(0, 64), rng.randrange(0, 4096)])
    span = (rows - 1) * stride + row_bytes
    addr = rng.randrange(0, RAM_SIZE - span)
    return addr, rows, row_bytes, stride


def _expected_read(mem, addr, rows, row_bytes, stride):
    return b"".join(mem[addr + r * stride:addr + r * stride + row_bytes] for r in range(rows))


@cocotb.test()
async def dma_read_write(dut):
    args = test_args()
    rng = random.Random(args["seed"])
    tb = TB(dut, args["seed"], stress=True)
    await tb.reset()
    image = bytes(rng.getrandbits(8) for _ in range(RAM_SIZE))
    tb.ram.write(0, image)
    model = bytearray(image)

    for _ in range(args["transfers"]):
        addr, rows, row_bytes, stride = _random_transfer(rng, tb.nbytes, 6000)
        if rng.random() < 0.5:
            got = await tb.read(addr, rows, row_bytes, stride)
            assert got == _expected_read(model, addr, rows, row_bytes, stride)
        else:
            payload = bytes(rng.getrandbits(8) for _ in range(rows * row_bytes))
            await tb.write(addr, rows, row_bytes, stride, payload)
            for r in range(rows):
                start = addr + r * stride
                model[start:start + row_bytes] = payload[r * row_bytes:(r + 1) * row_bytes]
        assert not int(dut.rd_error.value) and not int(dut.wr_error.value)

    # Negative stride: rows walk downwards.
    addr, rows, row_bytes = 40000, 3, 100
    got = await tb.read(addr, rows, row_bytes, -1000)
    assert got == b"".join(model[addr - r * 1000:addr - r * 1000 + row_bytes]
                           for r in range(rows))
    assert tb.ram.read(0, RAM_SIZE) == bytes(model)
    await tb.wait_idle("rd_idle")


@cocotb.test()
async def dma_error_response(dut):
    """Accesses to a faulty window get SLVERR: flagged, and nothing hangs."""
    args = test_args()
    rng = random.Random(args["seed"] + 7)
    tb = TB(dut, args["seed"] + 7, stress=True)
    await tb.reset()
    tb.ram.add_fault(0x8000, 16)
    for _ in range(3):
        row_bytes = rng.randrange(1, 200)
        addr = 0x8000 + rng.randrange(1 - row_bytes, 16)
        await tb.read(addr, 2, row_bytes, 512)
        assert int(dut.rd_error.value)
        assert not int(dut.wr_error.value)
        await tb.write(addr, 2, row_bytes, 512, bytes(2 * row_bytes))
        assert int(dut.wr_error.value)
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        await RisingEdge(dut.clk)
        assert not int(dut.rd_error.value) and not int(dut.wr_error.value)
    # The DMA still works after errors.
    tb.ram.write(0x100, bytes(range(64)))
    assert await tb.read(0x100, 1, 64, 64) == bytes(range(64))
    await tb.wait_idle("rd_idle")
    await tb.wait_idle("wr_idle")


@cocotb.test()
async def dma_throughput(dut):
    """Without back-pressure, a long aligned transfer streams one bus word per cycle."""
    args = test_args()
    tb = TB(dut, args["seed"], stress=False)
    await tb.reset()
    total = 8192
    words = total // tb.nbytes
    counter = ClockCounter(dut.clk)
    await tb.read(0, 1, total, total)
    read_cycles = counter.stop()
    counter = ClockCounter(dut.clk)
    await tb.write(0x4000, 1, total, total, bytes(total))
    write_cycles = counter.stop()
    dut._log.info("read %d words in %d cycles, write in %d cycles", words, read_cycles,
                  write_cycles)
    # Each burst costs the RAM model a cycle or two of address handshake.
    assert read_cycles <= words * 1.2 + 40, read_cycles
    assert write_cycles <= words * 1.3 + 40, write_cycles


class ChannelLog:
    """Per-cycle record of an AXI data channel (``r`` or ``w``) and of the DMA stream on
    the other side of it (``rd_data`` or ``wr_data``)."""

    def __init__(self, dut, channel, stream):
        self.dut = dut
        self._valid = getattr(dut, f"m_axi_{channel}valid")
        self._ready = getattr(dut, f"m_axi_{channel}ready")
        self._s_valid = getattr(dut, f"{stream}__valid")
        self._s_ready = getattr(dut, f"{stream}__ready")
        self.beats = []    # cycles with a handshake on the AXI channel
        self.stalls = []   # cycles with valid high and ready low
        self.words = []    # cycles with a transfer on the DMA stream
        cocotb.start_soon(self._run())

    async def _run(self):
        cycle = 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if int(self._valid.value):
                (self.beats if int(self._ready.value) else self.stalls).append(cycle)
            if int(self._s_valid.value) and int(self._s_ready.value):
                self.words.append(cycle)
            cycle += 1

    def clear(self):
        self.beats, self.stalls, self.words = [], [], []


#: Unaligned multi-burst reads of :func:`dma_read_rate`: ``(lane offset, rows, row_bytes,
#: stride)``, from a base on a 4 KiB page boundary minus 256 bytes, so the first row
#: crosses a page.
RATE_READS = [(3, 1, 3000, 0), (1, 1, 1021, 0), (5, 3, 700, 1029), (7, 5, 333, 333)]
#: Cycles beyond one per beat allowed from a read's first R beat to its last word: one
#: through the packing register, one more when the last beat brings more bytes than the
#: last word holds (two words then leave after it).
RATE_SLACK = 2


@cocotb.test()
async def dma_read_rate(dut):
    """Without back-pressure, an unaligned read takes one AXI beat per cycle: the DMA
    never holds ``rready`` low against a valid beat, and its last word leaves at most
    :data:`RATE_SLACK` cycles after as many cycles as there were beats."""
    args = test_args()
    tb = TB(dut, args["seed"], stress=False)
    await tb.reset()
    rng = random.Random(args["seed"] + 11)
    image = bytes(rng.getrandbits(8) for _ in range(RAM_SIZE))
    tb.ram.write(0, image)
    log = ChannelLog(dut, "r", "rd_data")
    for offset, rows, row_bytes, stride in RATE_READS:
        addr = 0x3000 - 256 + offset
        log.clear()
        got = await tb.read(addr, rows, row_bytes, stride)
        assert got == _expected_read(image, addr, rows, row_bytes, stride)
        span = log.words[-1] - log.beats[0] + 1
        # Cycles without a beat between the first and the last (the next burst's
        # address is issued while the current one transfers, so there are none).
        gaps = log.beats[-1] - log.beats[0] + 1 - len(log.beats)
        dut._log.info("read at lane %d, %d x %d bytes: %d beats, %d words, %d cycles from "
                      "first beat to last word, %d without a beat, %d stall cycles", offset,
                      rows, row_bytes, len(log.beats), len(log.words), span, gaps,
                      len(log.stalls))
        assert len(log.words) == -(-rows * row_bytes // tb.nbytes)
        assert not log.stalls, f"rready low against a valid beat in cycles {log.stalls[:8]}"
        assert span <= len(log.beats) + RATE_SLACK, (span, len(log.beats), gaps)
    await tb.wait_idle("rd_idle")


#: Unaligned multi-burst writes of :func:`dma_write_rate`, as :data:`RATE_READS`, then
#: rows shorter than a burst whose lane offset changes from row to row.
RATE_WRITES = RATE_READS + [(2, 16, 30, 70)]


@cocotb.test()
async def dma_write_rate(dut):
    """With a word on ``wr_data`` every cycle and a ready slave, an unaligned write sends
    one AXI beat per cycle: as many cycles from its first W beat to its last as there
    are beats, and the bytes land exactly in their rows."""
    args = test_args()
    tb = TB(dut, args["seed"], stress=False)
    await tb.reset()
    rng = random.Random(args["seed"] + 13)
    image = bytes(rng.getrandbits(8) for _ in range(RAM_SIZE))
    tb.ram.write(0, image)
    model = bytearray(image)
    log = ChannelLog(dut, "w", "wr_data")
    for offset, rows, row_bytes, stride in RATE_WRITES:
        addr = 0x3000 - 256 + offset
        payload = bytes(rng.getrandbits(8) for _ in range(rows * row_bytes))
        log.clear()
        await tb.write(addr, rows, row_bytes, stride, payload)
        for r in range(rows):
            start = addr + r * stride
            model[start:start + row_bytes] = payload[r * row_bytes:(r + 1) * row_bytes]
        assert tb.ram.read(0, RAM_SIZE) == bytes(model)
        beats = sum(-(-((addr + r * stride) % tb.nbytes + row_bytes) // tb.nbytes)
                    for r in range(rows))
        span = log.beats[-1] - log.beats[0] + 1
        dut._log.info("write at lane %d, %d x %d bytes: %d beats, %d words, %d cycles from "
                      "first beat to last, %d stall cycles", offset, rows, row_bytes,
                      len(log.beats), len(log.words), span, len(log.stalls))
        assert len(log.beats) == beats, (len(log.beats), beats)
        assert len(log.words) == -(-rows * row_bytes // tb.nbytes)
        assert not log.stalls, f"wready low against a valid beat in cycles {log.stalls[:8]}"
        assert span == beats, (span, beats)
    assert not int(dut.wr_error.value)


@pytest.mark.parametrize("data_bits,max_burst,seed",
                         [(64, 16, 1), (32, 256, 2), (128, 4, 3), (256, 256, 4)])
def test_dma(data_bits, max_burst, seed):
    run_cocotb(AxiDma(data_bits=data_bits, addr_bits=32, max_burst=max_burst),
               test_module=__name__, build_name=f"seml-dma-d{data_bits}-b{max_burst}",
               test_args={"seed": seed, "data_bits": data_bits, "addr_bits": 32,
                          "transfers": 24})


def test_dma_parameters():
    with pytest.raises(ValueError, match=r"Data width must be one of 32, 64, 128, 256, 512, "
                                         r"not 48"):
        AxiDma(data_bits=48)
    with pytest.raises(TypeError, match=r"Data width must be an integer, not '64'"):
        AxiDma(data_bits="64")
    with pytest.raises(ValueError, match=r"Address width must be between 16 and 64, not 12"):
        AxiDma(addr_bits=12)
    with pytest.raises(ValueError, match=r"Maximum burst must be a power of two between 1 and "
                                         r"256, not 3"):
        AxiDma(max_burst=3)
    with pytest.raises(TypeError, match=r"Maximum burst must be an integer, not 4.0"):
        AxiDma(max_burst=4.0)
    with pytest.raises(ValueError, match=r"Outstanding bursts must be a power of two between 1 "
                                         r"and 16, not 0"):
        AxiDma(outstanding=0)


def _write_side_sim(data_bits, seed, transfers=12):
    """Random unaligned writes through the DMA's write side in Amaranth's simulator, with a
    slave whose ``wready`` and ``awready`` flip at random. Returns the beats' bytes per
    address and, per cycle, whether ``wr_data.ready`` was the same with ``wready`` low and
    high."""
    nbytes = data_bits // 8
    dut = AxiDma(data_bits=data_bits, addr_bits=32, max_burst=4)
    rng = random.Random(seed)
    layout = DmaCommand(32)
    jobs = []
    for _ in range(transfers):
        rows, row_bytes = rng.randint(1, 3), rng.randint(1, 5 * nbytes)
        addr = rng.randrange(0, 1 << 12)
        stride = row_bytes + rng.randrange(0, 2 * nbytes)
        payload = bytes(rng.getrandbits(8) for _ in range(rows * row_bytes))
        jobs.append((addr, rows, row_bytes, stride, payload))
    mem = {}
    same = []

    async def bench(ctx):
        for addr, rows, row_bytes, stride, payload in jobs:
            ctx.set(dut.wr_cmd.payload, layout.const(
                {"addr": addr, "rows": rows, "row_bytes": row_bytes, "stride": stride}))
            ctx.set(dut.wr_cmd.valid, 1)
            await ctx.tick().until(dut.wr_cmd.ready)
            ctx.set(dut.wr_cmd.valid, 0)
            words = [payload[i:i + nbytes].ljust(nbytes, b"\0")
                     for i in range(0, len(payload), nbytes)]
            sent = 0
            bursts = []          # (address, beats) of the accepted AW requests
            beat_addr = None
            left = 0
            done_bytes = 0
            responses = 0
            for _ in range(50 * len(words) + 100):
                if sent == len(words) and done_bytes == len(payload):
                    break
                ctx.set(dut.m_axi_awready, rng.random() < 0.7)
                word_valid = sent < len(words) and rng.random() < 0.8
                ctx.set(dut.wr_data.valid, word_valid)
                if sent < len(words):
                    ctx.set(dut.wr_data.payload.data, int.from_bytes(words[sent], "little"))
                    ctx.set(dut.wr_data.payload.last, sent == len(words) - 1)
                wready = rng.random() < 0.6
                ctx.set(dut.m_axi_wready, 0)
                low = ctx.get(dut.wr_data.ready)
                ctx.set(dut.m_axi_wready, 1)
                same.append(low == ctx.get(dut.wr_data.ready))
                ctx.set(dut.m_axi_wready, wready)
                if ctx.get(dut.m_axi_awvalid) and ctx.get(dut.m_axi_awready):
                    bursts.append([ctx.get(dut.m_axi_awaddr), ctx.get(dut.m_axi_awlen) + 1])
                if ctx.get(dut.m_axi_wvalid) and wready:
                    if left == 0:
                        beat_addr, left = bursts.pop(0)
                    data = ctx.get(dut.m_axi_wdata)
                    strb = ctx.get(dut.m_axi_wstrb)
                    for b in range(nbytes):
                        if strb >> b & 1:
                            mem[beat_addr + b] = data >> (8 * b) & 0xFF
                            done_bytes += 1
                    assert ctx.get(dut.m_axi_wlast) == (left == 1)
                    beat_addr += nbytes
                    left -= 1
                    responses += left == 0
                if word_valid and ctx.get(dut.wr_data.ready):
                    sent += 1
                await ctx.tick()
            else:
                raise AssertionError(f"write at {addr:#x} stuck: {sent} of {len(words)} "
                                     f"words in, {done_bytes} of {len(payload)} bytes out")
            assert not bursts and left == 0
            ctx.set(dut.wr_data.valid, 0)
            ctx.set(dut.m_axi_bvalid, 1)
            await ctx.tick().repeat(responses)
            ctx.set(dut.m_axi_bvalid, 0)
            await ctx.tick()
            assert ctx.get(dut.wr_idle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expected = {}
    for addr, rows, row_bytes, stride, payload in jobs:
        for r in range(rows):
            for i in range(row_bytes):
                expected[addr + r * stride + i] = payload[r * row_bytes + i]
    return mem, expected, same


@pytest.mark.parametrize("data_bits,seed", [(32, 5), (64, 6)])
def test_write_side_ready_is_registered(data_bits, seed):
    """``wr_data.ready`` does not follow ``m_axi_wready`` in the same cycle (STORE's
    output registers are not timed through the slave's handshake), and every byte still
    lands at its address under random slave and producer stalls."""
    mem, expected, same = _write_side_sim(data_bits, seed)
    assert mem == expected
    assert all(same), f"wr_data.ready followed m_axi_wready in {same.count(False)} cycles"
