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
