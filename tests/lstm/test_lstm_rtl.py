# amaranth: UnusedElaboratable=no
"""Descartes core RTL under Verilator against the integer golden model."""

import json
import struct
from pathlib import Path

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock

from compiler.lstm.compile import compile_lstm, quantize_input
from examples.lstm_models import lstm_model
from hw.isa import ErrorCode
from hw.lstm.config import DESC_BYTES, LstmArch
from hw.lstm.core import LstmCore
from sim.axi import DdrModel, Host
from sim.lstm_rtl import IMAGE_BASE, run_lstm_rtl
from sim.rtl import run_cocotb, test_args

pytestmark = pytest.mark.rtl

ARCH = LstmArch(n_pe=8, weight_depth=1024, max_cols=64, max_hidden=32, max_input=32)
#: The arch of the hidden-128 checks (input 64); hidden 256 runs in benchmarks/bench_lstm.py.
MID = LstmArch(n_pe=8, weight_depth=16384, max_cols=256, max_hidden=128, max_input=64)


def _case(arch, inp, hidden, steps, layers, density, *, balanced=True, seed=1, **kw):
    c = compile_lstm(lstm_model(inp, hidden, steps, layers, seed=seed, **kw), arch,
                     density=density, balanced=balanced)
    xq = quantize_input(np.random.default_rng(seed + 10).standard_normal((steps, inp)),
                        c.x_frac)
    return c, xq


def _check(c, xq, run):
    assert run.error_code == 0, run
    gold = c.golden(xq)
    for g, o in zip(gold, c.outputs_from_image(run.image)):
        assert (g == o).all(), f"RTL differs from golden at {np.argwhere(g != o)[:4].tolist()}"
    assert run.steps == c.model.steps * len(c.quant)


def _check_cycles(c, run):
    """Every step's matrix-vector and element-wise phases equal the cycle model."""
    marks = run.marks
    steps = c.model.steps
    for li, lay in enumerate(c.report["layers"]):
        for t in range(steps):
            i = 2 * (li * steps + t)
            assert marks[i + 1] - marks[i] == lay["mv_cycles_per_step"]
            if t + 1 < steps:
                assert marks[i + 2] - marks[i + 1] == lay["ew_cycles_per_step"]


def test_rtl_stacked_backpressure():
    c, xq = _case(ARCH, 16, 32, 6, 2, 0.25)
    _check(c, xq, run_lstm_rtl(ARCH, c.image_with_input(xq), pause=0.3, seed=4))


@pytest.mark.parametrize("density,balanced", [(1.0, True), (0.1, True), (0.1, False)])
def test_rtl_cycles_equal_model(density, balanced):
    c, xq = _case(ARCH, 16, 32, 3, 1, density, balanced=balanced, seed=2)
    run = run_lstm_rtl(ARCH, c.image_with_input(xq))
    _check(c, xq, run)
    _check_cycles(c, run)


def test_rtl_linear_layers_before_and_after():
    """Linear -> LSTM -> Linear (MatMul + Add) on the one engine: RTL == golden, cycles ==
    model; a linear layer's outputs (12 and 10, padded to 16) are the next layer's input."""
    c, xq = _case(ARCH, 16, 32, 4, 1, 0.5, seed=5, linear_in=12, linear_out=10)
    assert [q.kind for q in c.quant] == ["linear", "lstm", "linear"]
    assert [lay["engine"] for lay in c.report["layers"]] == ["linear", "lstm", "linear"]
    run = run_lstm_rtl(ARCH, c.image_with_input(xq), pause=0.2, seed=3)
    _check(c, xq, run)
    _check_cycles(c, run)
    out = c.outputs_from_image(run.image)[-1]
    assert out.shape == (4, 16) and not out[:, 10:].any() and out[:, :10].any()


@pytest.mark.slow
def test_rtl_hidden128_16_steps():
    """Hidden 128, input 64, 16 steps, 10 % density (the other densities and hidden 256:
    benchmarks/bench_lstm.py)."""
    c, xq = _case(MID, 64, 128, 16, 1, 0.1, seed=3)
    run = run_lstm_rtl(MID, c.image_with_input(xq))
    _check(c, xq, run)
    _check_cycles(c, run)


# Errors: one simulation runs several bad descriptor lists, then a good one ----------------

def test_rtl_errors_then_recovery(tmp_path):
    c, xq = _case(ARCH, 16, 32, 3, 2, 0.25)
    image = bytearray(c.image_with_input(xq))
    good_len = len(image)
    header = bytes(image[:DESC_BYTES])
    bad = {}

    def add(name, blob):
        off = len(image)
        image.extend(blob + bytes(-len(blob) % 64))
        bad[name] = off

    add("magic", b"XXXX" + header[4:])
    add("arch", header[:12] + struct.pack("<I", (ARCH.config_hash + 1) & 0xFFFFFFFF)
        + header[16:])
    desc1 = bytearray(image[2 * DESC_BYTES:3 * DESC_BYTES])
    desc1[4:8] = struct.pack("<I", 2 * ARCH.max_hidden)  # layer 1: hidden too large
    add("range", header + bytes(image[DESC_BYTES:2 * DESC_BYTES]) + bytes(desc1))
    desc0 = bytearray(image[DESC_BYTES:2 * DESC_BYTES])
    desc0[40:44] = struct.pack("<I", 7)   # layer 0: unknown kind
    add("kind", header + bytes(desc0))
    (tmp_path / "image.bin").write_bytes(bytes(image))
    gold = [g.astype("<i2").tobytes().hex() for g in c.golden(xq)]
    args = {"image": str(tmp_path / "image.bin"), "bad": bad, "gold": gold,
            "h_offsets": [lay["h_offset"] for lay in c.layout], "good_len": good_len,
            "w_offset": c.layout[0]["w_offset"], "result": str(tmp_path / "r.json")}
    run_cocotb(LstmCore(ARCH), test_module=__name__, build_name=f"lstm-{ARCH.config_hash:08x}",
               test_args=args, testcase="lstm_errors")
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["magic"] == [ErrorCode.BAD_MAGIC.value, 0]
    assert got["arch"] == [ErrorCode.ARCH_MISMATCH.value, 0]
    assert got["range"] == [ErrorCode.BUFFER_RANGE.value, 1]
    assert got["kind"] == [ErrorCode.BUFFER_RANGE.value, 0]
    assert got["bus"] == [ErrorCode.BUS_ERROR.value, 0]
    assert got["good"] == [0, 0]
    assert got["outputs_equal"]


@cocotb.test()
async def lstm_errors(dut):
    args = test_args()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    image = Path(args["image"]).read_bytes()
    ddr = DdrModel(dut, size=1 << (len(image) + IMAGE_BASE).bit_length())
    host = Host(dut, ddr)
    await host.reset()
    host.load(IMAGE_BASE, image)
    out = {}
    for name, off in args["bad"].items():
        r = await host.run(IMAGE_BASE + off, IMAGE_BASE, timeout_cycles=200_000)
        out[name] = [r.error_code, r.error_info]
    ddr.add_fault(IMAGE_BASE + args["w_offset"], 64)
    r = await host.run(IMAGE_BASE, IMAGE_BASE, timeout_cycles=2_000_000)
    out["bus"] = [r.error_code, r.error_info]
    ddr.faults.clear()
    r = await host.run(IMAGE_BASE, IMAGE_BASE, timeout_cycles=2_000_000)
    out["good"] = [r.error_code, r.error_info]
    equal = True
    for off, g in zip(args["h_offsets"], args["gold"]):
        equal &= host.read_back(IMAGE_BASE + off, len(g) // 2).hex() == g
    out["outputs_equal"] = equal
    Path(args["result"]).write_text(json.dumps(out))
