# amaranth: UnusedElaboratable=no
"""The accelerator top and ``convforge elaborate``."""

import re

import pytest

from compiler.cli import main
from hw.arch import ArchConfig
from hw.seml.core import SemlCore
from hw.top import TOP_NAME, Accelerator, elaborate

SMALL = ArchConfig(name="top-test", ibuf_bytes=1024, obuf_bytes=1024, wbuf_bytes=512,
                   pbuf_entries=16, max_width=8, max_height=8, axi_data_bits=32)


def test_elaborate_writes_verilog_with_bus_ports(tmp_path):
    path = elaborate(SMALL, tmp_path)
    text = path.read_text()
    assert path.name == f"{TOP_NAME}.v"
    header = re.search(rf"module {TOP_NAME}\((.*?)\);", text, re.DOTALL).group(1)
    ports = {p.strip() for p in header.split(",")}
    for name in ("clk", "rst", "irq", "s_axil_awaddr", "s_axil_rdata", "m_axi_araddr",
                 "m_axi_rid", "m_axi_wstrb", "m_axi_bresp"):
        assert name in ports
    assert re.search(r"output \[31:0\] m_axi_wdata", text)
    assert ArchConfig.from_json(tmp_path / "arch.json") == SMALL


def test_elaborate_command(tmp_path, capsys):
    arch_json = tmp_path / "arch.json"
    arch_json.write_text(SMALL.to_json())
    assert main(["elaborate", "--arch", str(arch_json), "-o", str(tmp_path / "rtl")]) == 0
    assert (tmp_path / "rtl" / f"{TOP_NAME}.v").is_file()
    assert f"0x{SMALL.config_hash:016x}" in capsys.readouterr().out


def test_elaborate_command_bad_arch(tmp_path, capsys):
    assert main(["elaborate", "--arch", str(tmp_path / "missing.json"), "-o",
                 str(tmp_path)]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err


def test_top_arguments():
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not 'default'"):
        Accelerator("default")
    with pytest.raises(TypeError, match=r"arch must be an ArchConfig, not None"):
        SemlCore(None)
    with pytest.raises(ValueError, match=r"Top module name must be a Verilog identifier, "
                                         r"not '9top'"):
        elaborate(SMALL, "/nonexistent", name="9top")


def test_simulate_rtl_flag_selects_the_rtl_backend():
    from compiler.cli import _build_parser
    from compiler.compile import BACKENDS

    args = _build_parser().parse_args(["simulate", "out", "--rtl"])
    assert args.backend == "rtl"
    assert "rtl" in BACKENDS
    assert _build_parser().parse_args(["simulate", "out"]).backend == "iss"
