# amaranth: UnusedElaboratable=no
"""Pipelined adder tree under Verilator: exact sums, back-pressure, latency and throughput."""

import random

import cocotb
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.blocks.adder_tree import AdderTree
from sim.cocotb_streams import StreamSink, StreamSource, pack_lanes, random_pattern, to_signed
from sim.golden import qrange
from sim.rtl import run_cocotb, test_args
from tests.hw.test_line_buffer import TransferLog, start_bench


def _vectors(rng, n, width, count):
    lo, hi = qrange(width)
    vectors = [[lo] * n, [hi] * n, [lo, hi] * (n // 2) + [lo] * (n % 2)]
    while len(vectors) < count:
        vectors.append([rng.choice((lo, hi)) if rng.random() < 0.2 else rng.randint(lo, hi)
                        for _ in range(n)])
    return vectors


async def _run(dut, tree, vectors, idle, backpressure):
    src = StreamSource(dut, "i", dut.clk, idle=idle)
    sink = StreamSink(dut, "o", dut.clk, backpressure=backpressure)
    src.start([pack_lanes(v, tree.width) for v in vectors])
    words = await sink.recv(len(vectors))
    got = [to_signed(w, tree.out_width) for w in words]
    for idx, (vector, total) in enumerate(zip(vectors, got)):
        assert total == sum(vector), f"vector {idx} {vector}: sum {total}, not {sum(vector)}"


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def tree_random(dut):
    """Random and extreme terms under random idle cycles and back-pressure, then full rate."""
    args = test_args()
    rng = random.Random(args["seed"])
    tree = AdderTree(args["n"], args["width"])
    await start_bench(dut, ("i",))
    log = TransferLog(dut, ("i", "o"))

    await _run(dut, tree, _vectors(rng, tree.n, tree.width, 150),
               random_pattern(rng.getrandbits(32), 0.6), random_pattern(rng.getrandbits(32), 0.5))

    count = 60
    n_in, n_out = len(log.cycles["i"]), len(log.cycles["o"])
    await _run(dut, tree, _vectors(rng, tree.n, tree.width, count), None, None)
    first_in, first_out = log.cycles["i"][n_in], log.cycles["o"][n_out]
    last_out = log.cycles["o"][-1]
    assert first_out - first_in == tree.latency, \
        f"first sum {first_out - first_in} cycles after its terms, not {tree.latency}"
    assert last_out - first_out + 1 == count, \
        f"{count} sums took {last_out - first_out + 1} cycles at full rate"


class ClockedTree(wiring.Component):
    """The tree plus a toggling output, so that even a combinational tree has a clock port."""

    def __init__(self, tree):
        self.tree = tree
        super().__init__({**tree.signature.members, "toggle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = self.tree
        wiring.connect(m, wiring.flipped(self.i), self.tree.i)
        wiring.connect(m, self.tree.o, wiring.flipped(self.o))
        m.d.sync += self.toggle.eq(~self.toggle)
        return m


TREE_BUILDS = [(1, 8), (7, 3), (16, 12)]


@pytest.mark.rtl
@pytest.mark.parametrize("n, width", TREE_BUILDS, ids=[f"n{n}-w{w}" for n, w in TREE_BUILDS])
def test_adder_tree(n, width):
    run_cocotb(ClockedTree(AdderTree(n, width)), test_module=__name__, testcase="tree_random",
               build_name=f"adder-tree-n{n}-w{width}",
               test_args={"seed": 11 * n + width, "n": n, "width": width})


@pytest.mark.parametrize("n, width, latency, out_width", [
    (1, 8, 0, 8), (2, 8, 1, 9), (3, 4, 2, 6), (4, 4, 2, 6), (5, 16, 3, 19), (9, 16, 4, 20),
    (16, 2, 4, 6), (17, 2, 5, 7),
])
def test_geometry(n, width, latency, out_width):
    tree = AdderTree(n, width)
    assert (tree.latency, tree.out_width) == (latency, out_width)
    assert tree.i.payload.shape().size == n * width
    assert tree.o.payload.shape().width == out_width and tree.o.payload.shape().signed
    lo, hi = qrange(width)
    assert -(1 << (out_width - 1)) <= n * lo and n * hi < 1 << (out_width - 1)


def test_parameter_errors():
    with pytest.raises(TypeError, match=r"^Adder tree fan-in n must be an integer, not 2\.0$"):
        AdderTree(2.0, 8)
    with pytest.raises(ValueError, match=r"^Adder tree fan-in n must be at least 1, not 0$"):
        AdderTree(0, 8)
    with pytest.raises(TypeError, match=r"^Adder tree term width must be an integer, not True$"):
        AdderTree(4, True)
    with pytest.raises(ValueError, match=r"^Adder tree term width must be at least 2, not 1$"):
        AdderTree(4, 1)
