# amaranth: UnusedElaboratable=no
"""Compiled models on the RTL: program.bin + weights.bin + input run on the SEML core
under Verilator (``AxiRam`` as DDR, ``AxiLiteMaster`` as the host) and on the ISS; the
whole DDR images must agree bit for bit. The core's cycle counter and per-layer issue
stamps are compared with the cycle model (``sim.iss.timeline``): within 10 % in total
and for every layer of at least 500 cycles; the table also reports each layer's MAC
utilization on the RTL."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model, load_image
from examples import models
from hw.arch import ArchConfig
from sim.axi import layer_cycles, run_program_rtl
from sim.iss import ISS, encode_activations

pytestmark = pytest.mark.rtl

#: One arch for every model here (one Verilator build): small buffers keep the build
#: quick, ``conv_k_max = 5`` admits the 1-D CNN's 1x5 kernels.
ARCH = ArchConfig(name="rtl-system", ibuf_bytes=16384, obuf_bytes=16384, wbuf_bytes=8192,
                  pbuf_entries=256, max_width=34, max_height=34, conv_k_max=5)


def _tiny_conv_model():
    """Conv 3x3 (3 -> 4 channels, ReLU) then 2x2 max pool on an 8x8 input."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _print_table(title, rows, rtl_cycles, predicted):
    print(f"\n{title}: RTL {rtl_cycles:,} cycles, model {predicted:,} "
          f"({rtl_cycles / predicted:.2f}x)")
    print(f"{'layer':22s} {'kind':10s} {'model':>8s} {'iss':>8s} {'rtl':>9s} {'rtl/iss':>8s}"
          f" {'MAC use':>8s}")
    for r in rows:
        rtl = r["rtl_cycles"]
        print(f"{r['name'][:22]:22s} {r['kind']:10s} {r['model_cycles']:8d} {r['iss_cycles']:8d} "
              f"{rtl if rtl is not None else '-':>9} "
              f"{r.get('rtl_over_iss', 0):8.2f} {r.get('mac_utilization', 0):8.3f}")


#: The cycle model must predict the core's cycle counter within this ratio, in total and
#: for every layer that takes at least :data:`LAYER_MIN_CYCLES` on the RTL (shorter
#: spans are dominated by a few cycles of issue skew at their boundaries).
CYCLE_TOLERANCE = 0.10
LAYER_MIN_CYCLES = 500


def _check_cycle_model(rows, rtl_cycles, predicted):
    assert abs(rtl_cycles / predicted - 1) <= CYCLE_TOLERANCE, (
        f"RTL {rtl_cycles} cycles vs predicted {predicted}")
    checked = 0
    for r in rows:
        if r["rtl_cycles"] is None or r["rtl_cycles"] < LAYER_MIN_CYCLES:
            continue
        checked += 1
        assert abs(r["rtl_cycles"] / r["iss_cycles"] - 1) <= CYCLE_TOLERANCE, (
            f"layer {r['name']} ({r['kind']}): RTL {r['rtl_cycles']} cycles vs predicted "
            f"{r['iss_cycles']}")
        assert r.get("mac_utilization", 0) <= 1
    return checked


def run_model_on_rtl_and_iss(model, tmp_path, seed=0):
    """Compile, run on ISS and RTL, compare DDR images; returns a summary dict."""
    out = tmp_path / "out"
    result = compile_model(model, ARCH, out)
    arch, program, ddr, manifest = load_image(out)
    rng = np.random.default_rng(seed)
    for spec in manifest["inputs"]:
        x = rng.integers(-128, 128, size=spec["shape"])
        raw = encode_activations(x, spec["bits"])
        ddr[spec["offset"]:spec["offset"] + raw.size] = raw
    iss_ddr = ddr.copy()
    iss_result = ISS(arch).run(program, iss_ddr)
    rtl_ddr = ddr.copy()
    rtl_run = run_program_rtl(arch, program, rtl_ddr, build_name="seml-system")
    diff = np.flatnonzero(iss_ddr != rtl_ddr)
    assert diff.size == 0, (f"{diff.size} DDR bytes differ between RTL and ISS, first at "
                            f"{diff[:8].tolist()}")
    for spec in manifest["outputs"]:
        span = slice(spec["offset"], spec["offset"] + spec["bytes"])
        assert np.array_equal(iss_ddr[span], rtl_ddr[span])
    assert rtl_run.instr_count == len(iss_result.instructions)
    rows = layer_cycles(manifest, iss_result, rtl_run, arch)
    _print_table(manifest["model"], rows, rtl_run.cycles, iss_result.cycles)
    checked = _check_cycle_model(rows, rtl_run.cycles, iss_result.cycles)
    summary = {"model": manifest["model"], "instructions": len(iss_result.instructions),
               "rtl_cycles": rtl_run.cycles, "predicted_cycles": iss_result.cycles,
               "rtl_wall_seconds": rtl_run.wall_seconds, "layers": rows,
               "compile_seconds": sum(result.timings.values()), "layers_checked": checked}
    (tmp_path / "system_rtl.json").write_text(json.dumps(summary, indent=2))
    return summary


def test_system_tiny_conv(tmp_path):
    """A conv + ReLU + max-pool network: compiled, run on the RTL, equal to the ISS."""
    summary = run_model_on_rtl_and_iss(_tiny_conv_model(), tmp_path)
    assert summary["rtl_cycles"] > 0


@pytest.mark.slow
def test_system_mobilenet_v2_small(tmp_path):
    assert run_model_on_rtl_and_iss(models.mobilenet_v2_small(), tmp_path)["layers_checked"] >= 10


@pytest.mark.slow
def test_system_vgg(tmp_path):
    assert run_model_on_rtl_and_iss(models.vgg(), tmp_path)["layers_checked"] >= 5


@pytest.mark.slow
def test_system_dpd_cnn(tmp_path):
    # its layers are shorter than LAYER_MIN_CYCLES but for the first: the total is checked
    run_model_on_rtl_and_iss(models.dpd_cnn(), tmp_path)

