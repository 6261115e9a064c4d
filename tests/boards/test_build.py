"""``convforge build``: the fit check runs first and names the resource; a missing
toolchain is one clear message; a Vivado board gets its Verilog, wrapper and script;
the nextpnr report is summarized into utilization and Fmax."""

import json

import pytest

from boards.build.ecp5 import ToolchainError, find_tools, parse_report
from compiler.cli import main
from hw.arch import ArchConfig

SMALL = ArchConfig(name="small", conv_pi=1, conv_po=1, dw_channels=1, pw_pi=1, pw_po=1,
                   ibuf_bytes=1024, obuf_bytes=512, wbuf_bytes=512, pbuf_entries=16,
                   max_width=8, max_height=8, axi_data_bits=64, clock_mhz=100.0)


def test_over_budget_arch_is_refused_before_any_tool(tmp_path, capsys, monkeypatch):
    huge = ArchConfig(name="huge", conv_pi=16, conv_po=16, pw_pi=32, pw_po=32, dw_channels=32)
    arch = tmp_path / "huge.json"
    arch.write_text(huge.to_json())
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))  # never reached
    out = tmp_path / "build"
    assert main(["build", "--board", "ULX3S-85F", "--arch", str(arch), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not fit board ULX3S-85F" in err and "DSP needs" in err
    assert not out.exists()


def test_missing_toolchain_is_one_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NEXTPNR_ECP5", str(tmp_path / "no-such-nextpnr"))
    with pytest.raises(ToolchainError, match="no-such-nextpnr"):
        find_tools()
    arch = tmp_path / "arch.json"
    arch.write_text(SMALL.replace(axi_data_bits=32, clock_mhz=50.0).to_json())
    out = tmp_path / "build"
    assert main(["build", "--board", "ulx3s-85f", "--arch", str(arch), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ECP5 toolchain is not installed" in err and "convforge[synth]" in err
    assert not out.exists()


def test_unknown_board(tmp_path, capsys):
    assert main(["build", "--board", "Nexys", "-o", str(tmp_path / "b")]) == 2
    assert "known boards are" in capsys.readouterr().err


def test_vivado_board_build_writes_project(tmp_path, capsys):
    arch = tmp_path / "arch.json"
    arch.write_text(SMALL.to_json())
    out = tmp_path / "build"
    assert main(["build", "--board", "PYNQ-Z2", "--arch", str(arch), "-o", str(out)]) == 0
    assert "vivado -mode batch -source build.tcl" in capsys.readouterr().out
    for name in ("convforge_top.v", "convforge_bd.v", "build.tcl", "arch.json", "build.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "build.json").read_text())
    assert summary["part"] == "xc7z020clg400-1" and summary["csr_base"] == "0x43C00000"
    assert ArchConfig.from_json(out / "arch.json") == SMALL
    assert summary["estimate"]["dsp"] > 0


def test_run_refuses_a_vivado_build(tmp_path, capsys):
    (tmp_path / "build.json").write_text(json.dumps({"flow": "vivado", "board": "ZCU104"}))
    assert main(["run", str(tmp_path), str(tmp_path), "--port", "/dev/null"]) == 2
    assert "PynqTransport" in capsys.readouterr().err


def test_nextpnr_report_summary():
    report = {
        "utilization": {"TRELLIS_COMB": {"used": 30000, "available": 83640},
                        "DP16KD": {"used": 40, "available": 208},
                        "EHXPLLL": {"used": 1, "available": 4},
                        "DCUA": {"used": 0, "available": 2}},
        "fmax": {"$glbnet$clk": {"achieved": 61.5, "constraint": 50.0}},
    }
    parsed = parse_report(report)
    assert set(parsed["utilization"]) == {"TRELLIS_COMB", "DP16KD", "EHXPLLL"}
    assert parsed["utilization"]["DP16KD"] == {"used": 40, "available": 208}
    assert parsed["fmax"]["$glbnet$clk"]["achieved"] == 61.5


def test_flow_keeps_a_bitstream_when_timing_fails_and_names_the_critical_path():
    from boards.build.ecp5 import NEXTPNR_OPTS, critical_path

    assert "--timing-allow-fail" in NEXTPNR_OPTS and "--report report.json" in NEXTPNR_OPTS

    def seg(kind, delay, a, b, net=None, src=None):
        step = {"type": kind, "delay": delay, "from": {"cell": a, "port": "Q", "loc": [1, 1]},
                "to": {"cell": b, "port": "A", "loc": [2, 2]}}
        if net:
            step.update(net=net, sources=[src] if src else [])
        return step

    report = {"critical_paths": [
        {"from": "posedge clk", "to": "posedge clk",
         "path": [seg("clk-to-q", 0.5, "ff0", "ff0"), seg("routing", 1.0, "ff0", "lut1", "n1"),
                  seg("setup", 0.1, "lut1", "ff1")]},
        {"from": "posedge clk", "to": "posedge clk",
         "path": [seg("clk-to-q", 0.5, "fa", "fa"),
                  seg("routing", 3.0, "fa", "mul", "n_a", "hw/seml/decode.py:10"),
                  seg("logic", 4.0, "mul", "mul"),
                  seg("routing", 6.0, "mul", "fb", "n_b", "hw/seml/decode.py:12"),
                  seg("setup", 0.2, "fb", "fb")]}]}
    worst = critical_path(report)
    assert worst["delay_ns"] == 13.7 and worst["logic_ns"] == 4.0
    assert worst["start_cell"] == "fa" and worst["end_cell"] == "fb"
    assert worst["slowest_nets"] == ["n_b", "n_a"]
    assert worst["sources"] == ["hw/seml/decode.py:10", "hw/seml/decode.py:12"]
    assert critical_path({}) is None
