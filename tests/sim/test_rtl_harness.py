"""The Verilator/cocotb harness: build cache, pass/fail reporting, stream helpers."""

import itertools
import random

import cocotb
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from sim.cocotb_streams import (
    StreamSink,
    StreamSource,
    pack_lanes,
    pack_struct,
    random_pattern,
    unpack_lanes,
    unpack_struct,
)
from sim.rtl import RTLTestFailure, run_cocotb, test_args


class AddOne(wiring.Component):
    """Registered stream stage adding 1 to each of ``lanes`` signed lanes (a harness fixture)."""

    def __init__(self, lanes):
        self.lanes = lanes
        layout = data.ArrayLayout(signed(8), lanes)
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.comb += self.i.ready.eq(1)
            m.d.sync += self.o.valid.eq(self.i.valid)
            for k in range(self.lanes):
                m.d.sync += self.o.payload[k].eq(self.i.payload[k] + 1)
        return m


@cocotb.test()
async def add_one_random(dut):
    args = test_args()
    rng = random.Random(args["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    lanes = args["lanes"]
    vectors = [[rng.randint(-128, 126) for _ in range(lanes)] for _ in range(200)]
    src = StreamSource(dut, "i", dut.clk, idle=random_pattern(args["seed"], 0.6))
    sink = StreamSink(dut, "o", dut.clk, backpressure=itertools.cycle([1, 1, 0]))
    src.start([pack_lanes(v, 8) for v in vectors])
    got = await sink.recv(len(vectors))
    assert [unpack_lanes(w, 8, lanes) for w in got] == [[x + 1 for x in v] for v in vectors]


@cocotb.test()
async def deliberately_wrong(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    src = StreamSource(dut, "i", dut.clk)
    sink = StreamSink(dut, "o", dut.clk)
    src.start([pack_lanes([5] * test_args()["lanes"], 8)])
    (word,) = await sink.recv(1)
    assert unpack_lanes(word, 8, test_args()["lanes"])[0] == 5, "expected the fixture to add 1"


@pytest.mark.rtl
@pytest.mark.parametrize("lanes", [1, 3])
def test_stream_helpers_under_backpressure(lanes):
    run_cocotb(AddOne(lanes), test_module=__name__, build_name=f"harness-addone-{lanes}",
               test_args={"seed": lanes, "lanes": lanes}, testcase="add_one_random")


@pytest.mark.rtl
def test_failing_cocotb_test_fails_pytest():
    with pytest.raises(RTLTestFailure, match="deliberately_wrong: .*expected the fixture to add 1"):
        run_cocotb(AddOne(2), test_module=__name__, build_name="harness-addone-2",
                   test_args={"lanes": 2}, testcase="deliberately_wrong")


@pytest.mark.rtl
def test_unknown_testcase_is_an_error():
    with pytest.raises(RTLTestFailure, match="no cocotb test matched"):
        run_cocotb(AddOne(2), test_module=__name__, build_name="harness-addone-2",
                   test_args={"lanes": 2}, testcase="no_such_test")


def test_build_name_is_checked():
    with pytest.raises(ValueError, match=r"build_name must be a non-empty name without '/', not 'a/b'"):
        run_cocotb(None, test_module=__name__, build_name="a/b")


def test_struct_packing_round_trips():
    layout = data.StructLayout({"a": 4, "b": signed(6), "c": 1})
    word = pack_struct(layout, {"a": 9, "b": -3, "c": 1})
    assert word == 9 | ((-3 & 0x3F) << 4) | (1 << 10)
    assert unpack_struct(layout, word) == {"a": 9, "b": -3, "c": 1}
    with pytest.raises(ValueError, match=r"Fields \['d'\] are not in the layout"):
        pack_struct(layout, {"d": 1})


@cocotb.test()
async def never_finishes(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    sink = StreamSink(dut, "o", dut.clk)
    await sink.recv(1)  # nothing is ever sent


@pytest.mark.rtl
def test_hung_simulation_is_killed_and_reported():
    with pytest.raises(RTLTestFailure, match=r"simulation killed after 3 s"):
        run_cocotb(AddOne(2), test_module=__name__, build_name="harness-addone-2",
                   test_args={"lanes": 2}, testcase="never_finishes", timeout_s=3)
