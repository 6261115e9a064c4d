"""Vivado flow: the core's Verilog, a block-design wrapper and a generated ``build.tcl``.

``vivado -mode batch -source build.tcl`` (run in the build directory) creates the
project for the board's part, a block design with the processing system (or, on
the KCU105, a PCIe XDMA bridge and the DDR4 controller), the core connected as
``docs/host_interface.md`` describes, runs synthesis, implementation and
bitstream generation, and exports ``convforge.xsa`` plus ``convforge.bit`` /
``convforge.hwh`` for PYNQ.

Connections (Zynq UltraScale+ / Zynq-7000):

* core ``m_axi`` (DDR master) -> PS ``S_AXI_HP0_FPD`` (``S_AXI_HP0``) through a SmartConnect;
* PS ``M_AXI_HPM0_FPD`` (``M_AXI_GP0``) -> core ``s_axil`` through a SmartConnect;
* core ``irq`` -> AXI Interrupt Controller ``axi_intc_0`` (its registers on the same
  SmartConnect as the core's, ``M01_AXI``) -> PS ``pl_ps_irq0`` (``IRQ_F2P[0]``): the
  layout PYNQ's ``pynq.Interrupt("convforge_0/irq")`` needs (PYNQ ignores a fabric
  interrupt wired to the PS without a controller);
* PS ``pl_clk0`` (``FCLK_CLK0``) at the arch's clock; ``proc_sys_reset`` for the
  active-high reset.

KCU105 (no processor): the host PC reaches the board over PCIe. The XDMA bridge's
AXI-Lite BAR (``M_AXI_LITE``) drives the core's ``s_axil``; its DMA master
(``M_AXI``) and the core's ``m_axi`` share the DDR4 controller through a
SmartConnect; the core's ``irq`` is XDMA user interrupt 0. The core runs on a
clocking wizard output at the arch's clock derived from the XDMA ``axi_aclk``.
"""

from __future__ import annotations

from pathlib import Path

from hw.top import TOP_NAME, elaborate

__all__ = ["ADDRESS_MAP", "BOARD_DESIGNS", "tcl_script", "write_vivado_project"]

#: Per board: Vivado board part, PS kind, and the addresses of the design.
#: ``csr_base`` is where the host sees the core's registers (4 KiB);
#: ``ddr`` is the segment of the core's master and its range.
BOARD_DESIGNS = {
    "ZCU102": {"board_part": "xilinx.com:zcu102:part0:3.4", "ps": "zynqmp"},
    "ZCU104": {"board_part": "xilinx.com:zcu104:part0:1.1", "ps": "zynqmp"},
    "Ultra96-V2": {"board_part": "avnet.com:ultra96v2:part0:1.2", "ps": "zynqmp"},
    "ZC706": {"board_part": "xilinx.com:zc706:part0:1.4", "ps": "zynq7"},
    "PYNQ-Z2": {"board_part": "tul.com.tw:pynq-z2:part0:1.0", "ps": "zynq7"},
    "KCU105": {"board_part": "xilinx.com:kcu105:part0:1.7", "ps": "xdma"},
}

#: Host-visible addresses per PS kind: the CSR window and the core's DDR window.
ADDRESS_MAP = {
    "zynqmp": {"csr_base": 0xA000_0000, "csr_range": "4K", "intc_base": 0xA001_0000,
               "ddr_segment": "zynq_ultra_ps_e_0/SAXIGP2/HP0_DDR_LOW",
               "ddr_base": 0x0, "ddr_range": "2G"},
    "zynq7": {"csr_base": 0x43C0_0000, "csr_range": "4K", "intc_base": 0x4180_0000,
              "ddr_segment": "processing_system7_0/S_AXI_HP0/HP0_DDR_LOWOCM",
              "ddr_base": 0x0, "ddr_range": "512M"},
    "xdma": {"csr_base": 0x0, "csr_range": "4K",
             "ddr_segment": "ddr4_0/C0_DDR4_MEMORY_MAP/C0_DDR4_ADDRESS_BLOCK",
             "ddr_base": 0x0, "ddr_range": "2G"},
}

_WRAPPER = """// Block-design wrapper of the ConvForge SEML core: interface attributes for
// Vivado IP integrator, and the AXI signals the core does not drive, tied off.
module convforge_bd (
  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 clk CLK" *)
  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axil:m_axi, ASSOCIATED_RESET rst, FREQ_HZ {freq_hz}" *)
  input  wire clk,
  (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 rst RST" *)
  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_HIGH" *)
  input  wire rst,
  (* X_INTERFACE_INFO = "xilinx.com:signal:interrupt:1.0 irq INTERRUPT" *)
  (* X_INTERFACE_PARAMETER = "SENSITIVITY LEVEL_HIGH" *)
  output wire irq,
{axil_ports},
{axi_ports}
);
  {top} core (
    .clk(clk), .rst(rst), .irq(irq),
{connections}
  );
  assign m_axi_awlock = 1'b0;  assign m_axi_arlock = 1'b0;
  assign m_axi_awcache = 4'b0011;  assign m_axi_arcache = 4'b0011;
  assign m_axi_awprot = 3'b000;  assign m_axi_arprot = 3'b000;
  assign m_axi_awqos = 4'b0000;  assign m_axi_arqos = 4'b0000;
endmodule
"""


def _wrapper_verilog(arch) -> str:
    from hw.seml.core import SemlCore

    core = SemlCore(arch)
    axil, axi, conns = [], [], []
    for name, member in core.signature.members.items():
        if not name.startswith(("s_axil_", "m_axi_")):
            continue
        width = member.shape.width if hasattr(member.shape, "width") else int(member.shape)
        direction = "input " if member.flow.name == "In" else "output"
        bus, sig = name.split("_", 2)[:2], name.split("_", 2)[2]
        prefix = "_".join(bus)
        vec = f"[{width - 1}:0] " if width > 1 else ""
        attr = f'  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 {prefix} {sig.upper()}" *)'
        line = f"{attr}\n  {direction} wire {vec}{name}"
        (axil if prefix == "s_axil" else axi).append(line)
        conns.append(f"    .{name}({name})")
    axil[0] = ('  (* X_INTERFACE_PARAMETER = "PROTOCOL AXI4LITE, DATA_WIDTH 32, '
               'ADDR_WIDTH 12" *)\n') + axil[0]
    extra = [("awlock", 1), ("arlock", 1), ("awcache", 4), ("arcache", 4), ("awprot", 3),
             ("arprot", 3), ("awqos", 4), ("arqos", 4)]
    for sig, width in extra:
        vec = f"[{width - 1}:0] " if width > 1 else ""
        axi.append(f'  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 m_axi '
                   f'{sig.upper()}" *)\n  output wire {vec}m_axi_{sig}')
    axi[0] = (f'  (* X_INTERFACE_PARAMETER = "PROTOCOL AXI4, DATA_WIDTH {arch.axi_data_bits}, '
              f'ADDR_WIDTH {arch.axi_addr_bits}, ID_WIDTH 1, MAX_BURST_LENGTH 16, '
              f'NUM_READ_OUTSTANDING 4, NUM_WRITE_OUTSTANDING 4" *)\n') + axi[0]
    return _WRAPPER.format(freq_hz=round(arch.clock_mhz * 1e6), axil_ports=",\n".join(axil),
                           axi_ports=",\n".join(axi), top=TOP_NAME, connections=",\n".join(conns))


def _ps_tcl(kind: str, arch) -> list:
    mhz = f"{arch.clock_mhz:g}"
    width = arch.axi_data_bits
    if kind == "zynqmp":
        ps = "zynq_ultra_ps_e_0"
        return [
            f"create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e {ps}",
            (f"if {{$has_board}} {{ apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e "
            f"-config {{apply_board_preset \"1\"}} [get_bd_cells {ps}] }}"),
            "set_property -dict [list \\",
            "  CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__MAXIGP0__DATA_WIDTH {32} \\",
            "  CONFIG.PSU__USE__M_AXI_GP1 {0} CONFIG.PSU__USE__M_AXI_GP2 {0} \\",
            f"  CONFIG.PSU__USE__S_AXI_GP2 {{1}} CONFIG.PSU__SAXIGP2__DATA_WIDTH {{{width}}} \\",
            "  CONFIG.PSU__USE__IRQ0 {1} CONFIG.PSU__FPGA_PL0_ENABLE {1} \\",
            f"  CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {{{mhz}}} \\",
            f"] [get_bd_cells {ps}]",
            f"set ps_clk [get_bd_pins {ps}/pl_clk0]",
            f"set ps_resetn [get_bd_pins {ps}/pl_resetn0]",
            f"set ps_master [get_bd_intf_pins {ps}/M_AXI_HPM0_FPD]",
            f"set ps_slave [get_bd_intf_pins {ps}/S_AXI_HP0_FPD]",
            f"set ps_irq [get_bd_pins {ps}/pl_ps_irq0]",
            f"connect_bd_net $ps_clk [get_bd_pins {ps}/maxihpm0_fpd_aclk]",
            f"connect_bd_net $ps_clk [get_bd_pins {ps}/saxihp0_fpd_aclk]",
        ]
    if kind == "zynq7":
        ps = "processing_system7_0"
        return [
            f"create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7 {ps}",
            (f"if {{$has_board}} {{ apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 "
            f"-config {{make_external \"FIXED_IO, DDR\" apply_board_preset \"1\"}} "
            f"[get_bd_cells {ps}] }}"),
            "set_property -dict [list \\",
            "  CONFIG.PCW_USE_M_AXI_GP0 {1} \\",
            f"  CONFIG.PCW_USE_S_AXI_HP0 {{1}} CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {{{width}}} \\",
            "  CONFIG.PCW_USE_FABRIC_INTERRUPT {1} CONFIG.PCW_IRQ_F2P_INTR {1} \\",
            "  CONFIG.PCW_EN_CLK0_PORT {1} CONFIG.PCW_EN_RST0_PORT {1} \\",
            f"  CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{mhz}}} \\",
            f"] [get_bd_cells {ps}]",
            f"set ps_clk [get_bd_pins {ps}/FCLK_CLK0]",
            f"set ps_resetn [get_bd_pins {ps}/FCLK_RESET0_N]",
            f"set ps_master [get_bd_intf_pins {ps}/M_AXI_GP0]",
            f"set ps_slave [get_bd_intf_pins {ps}/S_AXI_HP0]",
            f"set ps_irq [get_bd_pins {ps}/IRQ_F2P]",
            f"connect_bd_net $ps_clk [get_bd_pins {ps}/M_AXI_GP0_ACLK]",
            f"connect_bd_net $ps_clk [get_bd_pins {ps}/S_AXI_HP0_ACLK]",
        ]
    # KCU105: PCIe XDMA (AXI memory-mapped, AXI-Lite BAR) + DDR4 controller.
    return [
        "create_bd_cell -type ip -vlnv xilinx.com:ip:xdma xdma_0",
        "set_property -dict [list \\",
        "  CONFIG.mode_selection {Basic} CONFIG.pl_link_cap_max_link_width {X8} \\",
        "  CONFIG.pl_link_cap_max_link_speed {8.0_GT/s} CONFIG.axi_data_width {256_bit} \\",
        "  CONFIG.axilite_master_en {true} CONFIG.axilite_master_size {4} \\",
        "  CONFIG.axilite_master_scale {Kilobytes} CONFIG.xdma_num_usr_irq {1} \\",
        "] [get_bd_cells xdma_0]",
        ("if {$has_board} { apply_bd_automation -rule xilinx.com:bd_rule:xdma "
        "-config {lane_width \"X8\" link_speed \"8.0 GT/s (PCIe Gen 3)\" axi_clk \"Maximum Data "
        "Width\" axi_intf \"AXI Memory Mapped\" bar_size \"Disable\" bypass_size \"Disable\" "
        "c2h \"Disable\" cache_size \"Disable\" h2c \"Disable\"} [get_bd_cells xdma_0] }"),
        "create_bd_cell -type ip -vlnv xilinx.com:ip:ddr4 ddr4_0",
        ("if {$has_board} { apply_bd_automation -rule xilinx.com:bd_rule:board "
        "-config {Board_Interface \"ddr4_sdram\"} [get_bd_intf_pins ddr4_0/C0_DDR4] }"),
        "create_bd_cell -type ip -vlnv xilinx.com:ip:clk_wiz clk_wiz_0",
        (f"set_property -dict [list CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {{{mhz}}} "
        "CONFIG.USE_LOCKED {true} CONFIG.USE_RESET {false}] [get_bd_cells clk_wiz_0]"),
        "connect_bd_net [get_bd_pins xdma_0/axi_aclk] [get_bd_pins clk_wiz_0/clk_in1]",
        "set ps_clk [get_bd_pins clk_wiz_0/clk_out1]",
        "set ps_resetn [get_bd_pins xdma_0/axi_aresetn]",
        "set ps_master [get_bd_intf_pins xdma_0/M_AXI_LITE]",
        "set ps_slave [get_bd_intf_pins ddr4_0/C0_DDR4_S_AXI]",
        "set ps_irq [get_bd_pins xdma_0/usr_irq_req]",
        "connect_bd_net [get_bd_pins clk_wiz_0/locked] [get_bd_pins rst_core/dcm_locked]",
    ]


def tcl_script(board, arch) -> str:
    """The ``build.tcl`` text for ``board`` (a :class:`boards.database.Board`) and ``arch``."""
    design = BOARD_DESIGNS[board.name]
    kind = design["ps"]
    amap = ADDRESS_MAP[kind]
    lines = [
        (f"# ConvForge: Vivado project for {board.name} ({board.part}), arch {arch.name!r} "
        f"(hash 0x{arch.config_hash:016x})."),
        "# Run in this directory: vivado -mode batch -source build.tcl",
        "set origin [file normalize [file dirname [info script]]]",
        f"set part {board.part}",
        f"set board_part {design['board_part']}",
        f"set clock_mhz {arch.clock_mhz:g}",
        "set jobs [expr {[info exists ::env(CONVFORGE_JOBS)] ? $::env(CONVFORGE_JOBS) : 4}]",
        "create_project convforge $origin/vivado -part $part -force",
        "set has_board [expr {[lsearch -exact [get_board_parts -quiet] $board_part] >= 0}]",
        "if {$has_board} { set_property board_part $board_part [current_project] } else {",
        ('  puts "note: board files for $board_part are not installed; the processing system '
        'keeps its defaults (install the board files for the DDR and MIO presets)" }'),
        f"add_files -norecurse [list $origin/{TOP_NAME}.v $origin/convforge_bd.v]",
        "update_compile_order -fileset sources_1",
        "create_bd_design system",
        "create_bd_cell -type module -reference convforge_bd convforge_0",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_core",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect axi_ctrl",
        "set_property CONFIG.NUM_SI {1} [get_bd_cells axi_ctrl]",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect axi_mem",
    ]
    lines += _ps_tcl(kind, arch)
    if kind == "xdma":
        lines += [
            "set_property CONFIG.NUM_SI {2} [get_bd_cells axi_mem]",
            "set_property CONFIG.NUM_CLKS {3} [get_bd_cells axi_mem]",
            "connect_bd_intf_net [get_bd_intf_pins xdma_0/M_AXI] [get_bd_intf_pins axi_mem/S01_AXI]",
            "connect_bd_net [get_bd_pins xdma_0/axi_aclk] [get_bd_pins axi_mem/aclk1]",
            "connect_bd_net [get_bd_pins ddr4_0/c0_ddr4_ui_clk] [get_bd_pins axi_mem/aclk2]",
            "set_property CONFIG.NUM_CLKS {2} [get_bd_cells axi_ctrl]",
            "connect_bd_net [get_bd_pins xdma_0/axi_aclk] [get_bd_pins axi_ctrl/aclk1]",
        ]
    else:
        lines += [
            "set_property CONFIG.NUM_SI {1} [get_bd_cells axi_mem]",
            "# interrupt controller (PYNQ reaches fabric interrupts through one)",
            "create_bd_cell -type ip -vlnv xilinx.com:ip:axi_intc axi_intc_0",
            "set_property -dict [list CONFIG.C_IRQ_CONNECTION {1}] [get_bd_cells axi_intc_0]",
            "set_property CONFIG.NUM_MI {2} [get_bd_cells axi_ctrl]",
            "connect_bd_net $ps_clk [get_bd_pins axi_intc_0/s_axi_aclk]",
            ("connect_bd_net [get_bd_pins rst_core/peripheral_aresetn] "
             "[get_bd_pins axi_intc_0/s_axi_aresetn]"),
            ("connect_bd_intf_net [get_bd_intf_pins axi_ctrl/M01_AXI] "
             "[get_bd_intf_pins axi_intc_0/s_axi]"),
            "connect_bd_net [get_bd_pins axi_intc_0/irq] $ps_irq",
            "set ps_irq [get_bd_pins axi_intc_0/intr]",
        ]
    lines += [
        "# clock and reset of the core",
        "connect_bd_net $ps_clk [get_bd_pins convforge_0/clk]",
        "connect_bd_net $ps_clk [get_bd_pins rst_core/slowest_sync_clk]",
        "connect_bd_net $ps_clk [get_bd_pins axi_ctrl/aclk]",
        "connect_bd_net $ps_clk [get_bd_pins axi_mem/aclk]",
        "connect_bd_net $ps_resetn [get_bd_pins rst_core/ext_reset_in]",
        "connect_bd_net [get_bd_pins rst_core/peripheral_reset] [get_bd_pins convforge_0/rst]",
        ("connect_bd_net [get_bd_pins rst_core/interconnect_aresetn] "
        "[get_bd_pins axi_ctrl/aresetn]"),
        ("connect_bd_net [get_bd_pins rst_core/interconnect_aresetn] "
        "[get_bd_pins axi_mem/aresetn]"),
        "# host -> control registers (AXI4-Lite), core -> DDR (AXI4), interrupt",
        "connect_bd_intf_net $ps_master [get_bd_intf_pins axi_ctrl/S00_AXI]",
        ("connect_bd_intf_net [get_bd_intf_pins axi_ctrl/M00_AXI] "
        "[get_bd_intf_pins convforge_0/s_axil]"),
        ("connect_bd_intf_net [get_bd_intf_pins convforge_0/m_axi] "
        "[get_bd_intf_pins axi_mem/S00_AXI]"),
        "connect_bd_intf_net [get_bd_intf_pins axi_mem/M00_AXI] $ps_slave",
        "connect_bd_net [get_bd_pins convforge_0/irq] $ps_irq",
        "# address map (docs/host_interface.md)",
        (f"assign_bd_address -offset 0x{amap['csr_base']:08X} -range {amap['csr_range']} "
        "[get_bd_addr_segs convforge_0/s_axil/reg0]"),
        (f"assign_bd_address -target_address_space [get_bd_addr_spaces convforge_0/m_axi] "
        f"-offset 0x{amap['ddr_base']:08X} -range {amap['ddr_range']} "
        f"[get_bd_addr_segs {amap['ddr_segment']}]"),
    ]
    if "intc_base" in amap:
        lines.append(f"assign_bd_address -offset 0x{amap['intc_base']:08X} -range 64K "
                     "[get_bd_addr_segs axi_intc_0/S_AXI/Reg]")
    if kind == "xdma":
        lines.append("assign_bd_address -target_address_space [get_bd_addr_spaces xdma_0/M_AXI] "
                     f"-offset 0x{amap['ddr_base']:08X} -range {amap['ddr_range']} "
                     f"[get_bd_addr_segs {amap['ddr_segment']}]")
    lines += [
        "validate_bd_design",
        "save_bd_design",
        "make_wrapper -files [get_files system.bd] -top -import",
        "set_property top system_wrapper [current_fileset]",
        "update_compile_order -fileset sources_1",
        "launch_runs synth_1 -jobs $jobs",
        "wait_on_run synth_1",
        "launch_runs impl_1 -to_step write_bitstream -jobs $jobs",
        "wait_on_run impl_1",
        'if {[get_property PROGRESS [get_runs impl_1]] != "100%"} {',
        '  error "implementation failed: see $origin/vivado/convforge.runs/impl_1"',
        "}",
        "write_hw_platform -fixed -include_bit -force -file $origin/convforge.xsa",
        ("file copy -force $origin/vivado/convforge.runs/impl_1/system_wrapper.bit "
        "$origin/convforge.bit"),
        ("file copy -force $origin/vivado/convforge.gen/sources_1/bd/system/hw_handoff/system.hwh "
        "$origin/convforge.hwh"),
        'puts "wrote $origin/convforge.bit, convforge.hwh and convforge.xsa"',
    ]
    return "\n".join(lines) + "\n"


def write_vivado_project(board, arch, out_dir, *, verilog: bool = True) -> dict:
    """Write the Verilog, the block-design wrapper and ``build.tcl``; returns a summary.

    ``verilog=False`` skips the core's Verilog (the wrapper and script only).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if verilog:
        elaborate(arch, out)
    (out / "convforge_bd.v").write_text(_wrapper_verilog(arch))
    (out / "build.tcl").write_text(tcl_script(board, arch))
    kind = BOARD_DESIGNS[board.name]["ps"]
    amap = ADDRESS_MAP[kind]
    return {"board": board.name, "flow": "vivado", "part": board.part,
            "board_part": BOARD_DESIGNS[board.name]["board_part"], "host": kind,
            "clock_mhz": arch.clock_mhz, "arch": arch.name,
            "arch_hash": f"0x{arch.config_hash:016x}",
            "csr_base": f"0x{amap['csr_base']:08X}", "ddr_segment": amap["ddr_segment"],
            **({"intc_base": f"0x{amap['intc_base']:08X}", "interrupt": "convforge_0/irq"}
               if "intc_base" in amap else {}),
            "command": "vivado -mode batch -source build.tcl"}
