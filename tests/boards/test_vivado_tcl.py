"""The generated Vivado ``build.tcl`` of every Vivado board, executed by a real Tcl
interpreter (Python's ``tkinter.Tcl``) in which each Vivado command is a stand-in that
records its arguments; the recorded design is checked: part, clock, the AXI master to
the PS's HP port (or the DDR4 controller), the AXI-Lite slave from the PS's HPM/GP
port (or the XDMA AXI-Lite BAR), the interrupt, the address map, and the build steps."""

import re

import pytest

from boards.build.vivado import ADDRESS_MAP, BOARD_DESIGNS, write_vivado_project
from boards.database import BOARDS, get_board
from hw.arch import ArchConfig

tkinter = pytest.importorskip("tkinter")

VIVADO_BOARDS = sorted(b.name for b in BOARDS.values() if b.flow == "vivado")

# Every command Tcl does not know is a Vivado command: record it. get_* commands return
# their last argument (the object's name) so connections record what they connect.
_STANDINS = r"""
set ::log {}
proc unknown {args} {
  lappend ::log $args
  set cmd [lindex $args 0]
  if {$cmd eq "get_board_parts"} { return $::board_parts }
  if {$cmd eq "get_property"} { return "100%" }
  if {[string match get_* $cmd] || $cmd eq "current_project"} { return [lindex $args end] }
  return ""
}
rename file _tcl_file
proc file {sub args} {
  if {$sub in {copy delete mkdir}} { lappend ::log [list file $sub {*}$args]; return "" }
  return [_tcl_file $sub {*}$args]
}
"""


def _run_tcl(path, board_parts=""):
    tcl = tkinter.Tcl()
    tcl.eval(f"set ::board_parts {{{board_parts}}}")
    tcl.eval(_STANDINS)
    tcl.eval(f"source {{{path}}}")
    n = int(tcl.eval("llength $::log"))
    return [tcl.splitlist(tcl.eval(f"lindex $::log {i}")) for i in range(n)]


def _calls(log, name):
    return [c for c in log if c[0] == name]


def _connections(log):
    """Map each connected endpoint to the set of endpoints it is connected with."""
    nets = {}
    for c in _calls(log, "connect_bd_net") + _calls(log, "connect_bd_intf_net"):
        a, b = c[-2], c[-1]
        nets.setdefault(a, set()).add(b)
        nets.setdefault(b, set()).add(a)
    return nets


def _through(nets, start, via):
    """Endpoints reached from ``start`` through the SmartConnect ``via`` (S00 -> M00)."""
    ends = set()
    for far in nets.get(start, ()):
        if far.startswith(f"{via}/S"):
            ends |= nets.get(f"{via}/M00_AXI", set())
        if far.startswith(f"{via}/M"):
            ends |= {e for s in ("S00_AXI", "S01_AXI") for e in nets.get(f"{via}/{s}", set())}
    return ends


@pytest.mark.parametrize("name", VIVADO_BOARDS)
@pytest.mark.parametrize("with_board_files", [False, True])
def test_build_tcl_records_the_design(tmp_path, name, with_board_files):
    board = get_board(name)
    arch = board.default_arch()
    # the core's Verilog is checked below on a small arch (elaborating each board's
    # default arch takes minutes)
    summary = write_vivado_project(board, arch, tmp_path, verilog=False)
    wrapper = (tmp_path / "convforge_bd.v").read_text()
    assert f"DATA_WIDTH {arch.axi_data_bits}" in wrapper
    design = BOARD_DESIGNS[name]
    log = _run_tcl(tmp_path / "build.tcl", design["board_part"] if with_board_files else "")

    # project for the board's part (and its board files when installed)
    (project,) = _calls(log, "create_project")
    assert project[project.index("-part") + 1] == board.part
    board_props = [c for c in _calls(log, "set_property") if c[1] == "board_part"]
    assert len(board_props) == (1 if with_board_files else 0)
    cells = {c[-1]: c for c in _calls(log, "create_bd_cell")}
    assert cells["convforge_0"][cells["convforge_0"].index("-reference") + 1] == "convforge_bd"

    nets = _connections(log)
    kind = design["ps"]
    props = {}
    for c in _calls(log, "set_property"):
        if c[1] == "-dict":
            items = tkinter.Tcl().splitlist(c[2])
            props.setdefault(c[3], {}).update(zip(items[::2], items[1::2]))
    mhz = f"{arch.clock_mhz:g}"
    if kind == "zynqmp":
        ps = "zynq_ultra_ps_e_0"
        cfg = props[ps]
        assert cfg["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"] == mhz
        assert cfg["CONFIG.PSU__SAXIGP2__DATA_WIDTH"] == str(arch.axi_data_bits)
        assert cfg["CONFIG.PSU__USE__M_AXI_GP0"] == "1" and cfg["CONFIG.PSU__USE__IRQ0"] == "1"
        clock, master, slave, irq = (f"{ps}/pl_clk0", f"{ps}/M_AXI_HPM0_FPD",
                                     f"{ps}/S_AXI_HP0_FPD", f"{ps}/pl_ps_irq0")
        assert f"{ps}/saxihp0_fpd_aclk" in nets[clock]
    elif kind == "zynq7":
        ps = "processing_system7_0"
        cfg = props[ps]
        assert cfg["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == mhz
        assert cfg["CONFIG.PCW_S_AXI_HP0_DATA_WIDTH"] == str(arch.axi_data_bits)
        assert cfg["CONFIG.PCW_USE_S_AXI_HP0"] == "1" and cfg["CONFIG.PCW_IRQ_F2P_INTR"] == "1"
        clock, master, slave, irq = (f"{ps}/FCLK_CLK0", f"{ps}/M_AXI_GP0", f"{ps}/S_AXI_HP0",
                                     f"{ps}/IRQ_F2P")
        assert f"{ps}/S_AXI_HP0_ACLK" in nets[clock]
    else:  # KCU105: PCIe XDMA + DDR4, clocking wizard at the arch's clock
        assert props["clk_wiz_0"]["CONFIG.CLKOUT1_REQUESTED_OUT_FREQ"] == mhz
        assert props["xdma_0"]["CONFIG.axilite_master_en"] == "true"
        clock, master, slave, irq = ("clk_wiz_0/clk_out1", "xdma_0/M_AXI_LITE",
                                     "ddr4_0/C0_DDR4_S_AXI", "xdma_0/usr_irq_req")
        assert "ddr4_0/C0_DDR4_S_AXI" in _through(nets, "xdma_0/M_AXI", "axi_mem")
    # the core: clock, reset, AXI-Lite from the host, AXI master to memory, interrupt
    assert "convforge_0/clk" in nets[clock]
    assert nets["convforge_0/rst"] == {"rst_core/peripheral_reset"}
    assert "convforge_0/s_axil" in _through(nets, master, "axi_ctrl")
    assert slave in _through(nets, "convforge_0/m_axi", "axi_mem")
    if kind == "xdma":
        assert nets["convforge_0/irq"] == {irq}
    else:
        # through the AXI Interrupt Controller PYNQ needs: its registers behind the same
        # SmartConnect as the core's, its output to the PS's first fabric interrupt
        assert nets["convforge_0/irq"] == {"axi_intc_0/intr"}
        assert nets["axi_intc_0/irq"] == {irq}
        assert "axi_intc_0/s_axi" in nets["axi_ctrl/M01_AXI"]
        assert master in nets["axi_ctrl/S00_AXI"]
        assert props["axi_intc_0"]["CONFIG.C_IRQ_CONNECTION"] == "1"
        assert "axi_intc_0/s_axi_aclk" in nets[clock]

    # address map of docs/host_interface.md
    amap = ADDRESS_MAP[kind]
    addresses = {c[-1]: c for c in _calls(log, "assign_bd_address")}
    csr = addresses["convforge_0/s_axil/reg0"]
    assert int(csr[csr.index("-offset") + 1], 16) == amap["csr_base"]
    assert csr[csr.index("-range") + 1] == "4K"
    if kind != "xdma":
        intc = addresses["axi_intc_0/S_AXI/Reg"]
        assert int(intc[intc.index("-offset") + 1], 16) == amap["intc_base"]
        assert summary["interrupt"] == "convforge_0/irq"
    (ddr,) = [c for c in _calls(log, "assign_bd_address") if "convforge_0/m_axi" in c]
    assert ddr[-1] == amap["ddr_segment"]
    assert int(ddr[ddr.index("-offset") + 1], 16) == amap["ddr_base"]
    assert summary["csr_base"] == f"0x{amap['csr_base']:08X}"

    # synthesis, implementation, bitstream, hardware export, in that order
    steps = [c[0] for c in log if c[0] in ("validate_bd_design", "launch_runs",
                                           "write_hw_platform")]
    assert steps == ["validate_bd_design", "launch_runs", "launch_runs", "write_hw_platform"]
    runs = _calls(log, "launch_runs")
    assert runs[0][1] == "synth_1" and runs[1][1:4] == ("impl_1", "-to_step", "write_bitstream")
    (xsa,) = _calls(log, "write_hw_platform")
    assert "-include_bit" in xsa and xsa[-1].endswith("convforge.xsa")
    copies = [c[-1] for c in _calls(log, "file")]
    assert any(c.endswith("convforge.bit") for c in copies)
    assert any(c.endswith("convforge.hwh") for c in copies)


def test_wrapper_ports_match_the_core(tmp_path):
    board = get_board("ZCU104")
    arch = ArchConfig(name="small", conv_pi=1, conv_po=1, dw_channels=1, pw_pi=1, pw_po=1,
                      ibuf_bytes=1024, obuf_bytes=512, wbuf_bytes=512, pbuf_entries=16,
                      max_width=8, max_height=8, axi_data_bits=128, axi_addr_bits=40)
    write_vivado_project(board, arch, tmp_path)
    top = (tmp_path / "convforge_top.v").read_text()
    wrapper = (tmp_path / "convforge_bd.v").read_text()
    core_ports = set(re.findall(r"\b(?:input|output)\s+(?:wire\s+)?(?:\[[^\]]+\]\s*)?(\w+)",
                                top.split(");", 1)[0]))
    connected = set(re.findall(r"\.(\w+)\(\1\)", wrapper)) | {"clk", "rst", "irq"}
    assert core_ports <= connected
    assert top.count("module convforge_top") == 1
    assert f"[{arch.axi_addr_bits - 1}:0] m_axi_araddr" in wrapper
