"""The SESL resource estimate: join stages' constant multipliers count as DSP slices
(Yosys maps them so), powers of two do not; every memory the hardware has is listed."""

from dataclasses import replace

from compiler.sesl.resources import estimate_sesl_resources, join_dsp, stage_memories
from tests.sesl.fixtures import bottleneck_pipeline, residual_pipeline


def test_join_constant_multipliers_are_dsps():
    cfg = residual_pipeline()
    add = cfg.stage("add")
    assert join_dsp(add) == add.pe * 2          # multipliers 3000 and 5000, 4 lanes
    assert join_dsp(replace(add, input_m=(4096, 1))) == 0
    assert join_dsp(replace(add, input_m=(4096, 5))) == add.pe
    assert join_dsp(cfg.stage("conv1")) == 0
    res = estimate_sesl_resources(cfg)
    assert res["dsp"] == sum(st.mac_units + 2 * st.pe for st in cfg.stages
                             if st.is_window) + add.pe * 2


def test_fused_memories_are_the_ring_and_the_fifo():
    cfg = bottleneck_pipeline(fused=True)
    mems = {name: set(stage_memories(cfg.stage(name), cfg)) for name in
            ("expand", "dw", "project", "add")}
    assert "line_buffer" not in mems["expand"] | mems["project"]
    assert "line_buffer" in mems["dw"]
    assert mems["add"] == {"fifo:x"}
    dw = cfg.stage("dw")
    assert stage_memories(dw, cfg)["line_buffer"] == (dw.ring_words, dw.in_channels * 8)


def test_memory_mapping_follows_yosys():
    """Where ``synth_xilinx -family xc7`` put the memories of the small MobileNetV2's
    pipeline and of ROMs synthesized alone (``benchmarks/bench_sesl_synth.py``, docs/
    sesl.md): the cheapest of RAMB18/RAMB36, LUT RAM (RAMs only) and soft logic."""
    from compiler.sesl.resources import bram36, memory_mapping

    # line buffers: 5 rows x 16 pixels x 48 channels -> 11 RAMB18 (512 x 36 each)
    assert memory_mapping(80, 384) == {"kind": "bram", "bram18": 11, "lutram": 0,
                                       "logic_bits": 0}
    assert bram36(80, 384) == 5.5
    # 4 rows x 8 pixels x 48 channels -> 64 RAM32M (32 x 6); 2 x 64 x 8 -> 86
    assert memory_mapping(32, 384)["lutram"] == 64
    assert memory_mapping(2, 512)["lutram"] == 86
    # 5 rows x 32 pixels x 3 channels: one RAMB18 is cheaper than 24 RAM64M
    assert memory_mapping(160, 24)["bram18"] == 1
    # ROMs: 640 x 8 stays in LUTs, 288 x 128 takes two RAMB36
    assert memory_mapping(640, 8, rom=True)["kind"] == "logic"
    assert memory_mapping(128, 32, rom=True)["kind"] == "logic"
    assert memory_mapping(288, 128, rom=True) == {"kind": "bram", "bram18": 4, "lutram": 0,
                                                  "logic_bits": 0}


def test_estimate_lists_where_every_memory_goes():
    cfg = residual_pipeline()
    res = estimate_sesl_resources(cfg)
    for name, entry in res["stages"].items():
        for mem, info in entry["memories"].items():
            assert info["maps_to"] in ("bram", "lutram", "logic"), (name, mem)
    assert res["bram36"] == sum(e["bram36"] for e in res["stages"].values())
