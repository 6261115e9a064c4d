"""Resource model of the LSTM core (boards.lstm_resources): its memory inventory is the
core's, and it reproduces the Yosys figures it was calibrated on."""

import collections
import re

import pytest

from boards.lstm_resources import (
    CALIBRATION,
    TOLERANCE,
    calibration_errors,
    estimate_lstm,
    lstm_memories,
)
from hw.lstm.config import LstmArch


@pytest.mark.parametrize("arch", [
    LstmArch(n_pe=8, weight_depth=1024, max_cols=64, max_hidden=32, max_input=32),
    LstmArch(n_pe=16, weight_depth=256, max_cols=128, max_hidden=64, max_input=16,
             fifo_depth=4),
])
def test_inventory_is_every_memory_of_the_core(arch):
    from amaranth.back import rtlil

    from hw.lstm.core import LstmCore

    text = rtlil.convert(LstmCore(arch))
    found = collections.Counter((int(w), int(d)) for w, d in
                                re.findall(r"memory width (\d+) size (\d+)", text))
    want = collections.Counter()
    for spec in lstm_memories(arch):
        want[(spec.width, spec.depth)] += spec.count
    assert found == want


def test_calibration_points_are_reproduced():
    for err in calibration_errors():
        assert err["dsp"] == 0 and err["bram18"] == 0 and err["lutram"] == 0, err
        assert abs(err["lut"]) <= TOLERANCE and abs(err["ff"]) <= TOLERANCE, err
    assert len(CALIBRATION) >= 2


def test_estimate_grows_with_the_pes_and_memories():
    small = estimate_lstm(LstmArch(n_pe=8))
    more_pes = estimate_lstm(LstmArch(n_pe=16))
    deeper = estimate_lstm(LstmArch(n_pe=8, weight_depth=16384))
    assert more_pes["dsp"] == small["dsp"] + 8
    assert more_pes["lut"] > small["lut"] and more_pes["bram18"] > small["bram18"]
    assert deeper["bram18"] > small["bram18"] and deeper["lut"] == small["lut"]
    assert small["bram36"] == small["bram18"] / 2
    with pytest.raises(ValueError, match="calibrated"):
        estimate_lstm(LstmArch(), "ecp5")


def test_compile_report_has_the_resources():
    from compiler.lstm.compile import compile_lstm
    from examples.lstm_models import lstm_model

    arch = LstmArch(n_pe=8, weight_depth=1024, max_cols=64, max_hidden=32, max_input=32)
    rep = compile_lstm(lstm_model(16, 32, 4, 1), arch).report
    res = rep["resources"]
    assert {"lut", "ff", "dsp", "bram36"} <= set(res)
    assert res == {k: v for k, v in estimate_lstm(arch).items() if k != "memories"}
