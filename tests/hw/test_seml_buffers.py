# amaranth: UnusedElaboratable=no
"""Byte-addressed banked buffer under Verilator: unaligned multi-byte reads and writes
against a byte-array model."""

import random

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.seml.buffers import ByteBuffer
from sim.rtl import run_cocotb, test_args
from tests.hw.bench import raw_read

pytestmark = pytest.mark.rtl


@cocotb.test()
async def buffer_random_access(dut):
    args = test_args()
    rng = random.Random(args["seed"])
    size, reads, writes = args["size"], args["reads"], args["writes"]
    raw, read_stages, write_stages = args["raw"], args["read_stages"], args["write_stages"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for i in range(len(writes)):
        getattr(dut, f"w{i}_count").value = 0
    for i in range(len(reads)):
        getattr(dut, f"r{i}_en").value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    model = bytearray(size)
    # Fill through port 0 so the model starts from known contents.
    w0 = writes[0]
    for addr in range(0, size, w0):
        n = min(w0, size - addr)
        data = bytes(rng.getrandbits(8) for _ in range(n))
        dut.w0_addr.value = addr
        dut.w0_data.value = int.from_bytes(data, "little")
        dut.w0_count.value = n
        model[addr:addr + n] = data
        await RisingEdge(dut.clk)
    dut.w0_count.value = 0
    # (a registered write port's last fill write reaches the banks in these cycles)
    await ClockCycles(dut.clk, max(1, write_stages))
    for _ in range(400):
        # Writes on every port to disjoint places, reads on every port, in one cycle.
        taken = set()
        pending = []
        for i, width in enumerate(writes):
            n = rng.randrange(0, width + 1)
            addr = rng.randrange(0, size - width)
            span = set(range(addr, addr + n))
            if span & taken:
                n, span = 0, set()
            taken |= span
            data = bytes(rng.getrandbits(8) for _ in range(width))
            getattr(dut, f"w{i}_addr").value = addr
            getattr(dut, f"w{i}_data").value = int.from_bytes(data, "little")
            getattr(dut, f"w{i}_count").value = n
            pending.append((addr, data[:n]))
        expect = []
        for i, width in enumerate(reads):
            addr = rng.randrange(0, size - width + 1)
            getattr(dut, f"r{i}_addr").value = addr
            getattr(dut, f"r{i}_en").value = 1
            # old data: read before write
            expect.append(raw_read(model, addr, width) if raw else bytes(model[addr:addr + width]))
        await RisingEdge(dut.clk)
        for addr, data in pending:
            model[addr:addr + len(data)] = data
        for i in range(len(writes)):
            getattr(dut, f"w{i}_count").value = 0
        for i in range(len(reads)):
            getattr(dut, f"r{i}_en").value = 0
        # (the reads pass the read stages; every write reaches the banks before the
        # next reads, at least three cycles on)
        for _ in range(read_stages):
            await RisingEdge(dut.clk)
        await ReadOnly()
        for i, width in enumerate(reads):
            got = getattr(dut, f"r{i}_data").value.to_unsigned().to_bytes(width, "little")
            assert got == expect[i], (i, got.hex(), expect[i].hex())
        await RisingEdge(dut.clk)
        # ``en`` low holds the data.
        await ReadOnly()
        for i, width in enumerate(reads):
            got = getattr(dut, f"r{i}_data").value.to_unsigned().to_bytes(width, "little")
            assert got == expect[i]
        await RisingEdge(dut.clk)


@pytest.mark.parametrize("size,banks,reads,writes,seed,write_stages,read_stages,raw", [
    (1000, 8, [8, 3, 1], [8], 1, 0, 0, False),
    (512, 16, [16, 1, 1, 2], [4, 16, 16], 2, 0, 0, False),
    (512, 16, [16, 1], [16], 3, 1, 0, False),
    (512, 16, [16, 16], [16, 4], 4, 0, 0, True),
    (512, 16, [16, 3], [16, 4], 5, 2, 1, True),
    (1000, 8, [8, 3], [8], 6, 1, 1, False),
    (512, 16, [16, 16], [16, 4], 7, 1, 2, True),
    (1000, 8, [8, 3, 1], [8], 8, 2, 2, False),
])
def test_buffer(size, banks, reads, writes, seed, write_stages, read_stages, raw):
    """Random unaligned writes and reads; with ``write_stages`` each write reaches the
    banks that many cycles later (the reads come two cycles after it); with
    ``read_stages`` the data comes that many cycles later; with ``raw`` the reads
    return the banks' bytes in bank order."""
    if raw:
        reads = [banks] * len(reads)
    run_cocotb(ByteBuffer(size, banks=banks, read_widths=reads, write_widths=writes,
                          write_stages=write_stages, read_stages=read_stages,
                          raw_reads=raw),
               test_module=__name__,
               build_name=(f"seml-buffer-{size}-{banks}-{len(writes)}-w{write_stages}"
                           f"-r{read_stages}{'-raw' * raw}"),
               test_args={"size": size, "reads": reads, "writes": writes, "seed": seed,
                          "raw": raw, "read_stages": read_stages,
                          "write_stages": write_stages})


def test_buffer_parameters():
    with pytest.raises(ValueError, match=r"Bank count must be a power of two, not 6"):
        ByteBuffer(64, banks=6, read_widths=[1], write_widths=[1])
    with pytest.raises(ValueError, match=r"Port width must be at most the bank count 4, not 8"):
        ByteBuffer(64, banks=4, read_widths=[8], write_widths=[1])
    with pytest.raises(TypeError, match=r"Read widths must be a list of integers, not 4"):
        ByteBuffer(64, banks=4, read_widths=4, write_widths=[1])
    with pytest.raises(TypeError, match=r"Write widths must be a list of integers, not 4"):
        ByteBuffer(64, banks=4, read_widths=[4], write_widths=4)
    with pytest.raises(ValueError, match=r"Buffer size must be at least 1, not 0"):
        ByteBuffer(0, banks=4, read_widths=[4], write_widths=[4])
    with pytest.raises(TypeError, match=r"Bank count must be an integer, not '4'"):
        ByteBuffer(64, banks="4", read_widths=[4], write_widths=[4])
    with pytest.raises(ValueError, match=r"Raw read ports return every bank: their widths "
                                         r"must be the bank count 4, not \[4, 2\]"):
        ByteBuffer(64, banks=4, read_widths=[4, 2], write_widths=[4], raw_reads=True)
    with pytest.raises(ValueError, match=r"read_stages must be an integer from 0 to 2, not 3"):
        ByteBuffer(64, banks=4, read_widths=[4], write_widths=[4], read_stages=3)
    with pytest.raises(ValueError, match=r"write_stages must be an integer from 0 to 2, "
                                         r"not True"):
        ByteBuffer(64, banks=4, read_widths=[4], write_widths=[4], write_stages=True)
