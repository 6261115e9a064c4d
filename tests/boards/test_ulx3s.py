"""The whole ULX3S top (SEML core + block-RAM AXI slave + UART host bridge) under
Verilator, driven through a bit-level UART model by the same protocol code as
``convforge run`` (``UartTransport`` over ``boards.uart_link``), at one bit per clock.

The bundled model's outputs equal the ISS bit for bit; the link's error statuses
(range, busy, checksum, unmapped register) and an AXI error response of the RAM (a
``DATA_BASE`` past its end) surface as named errors."""

import struct

import numpy as np
import pytest

from boards.driver import Accelerator, BusError, SimTransport, TransportError
from boards.uart_link import Command, LinkStatus, request
from boards.ulx3s import ULX3S_ARCH, pll_params
from compiler.compile import compile_model, simulate
from examples import models
from hw.seml.csr import CONTROL_START, REGISTERS

RAM_BYTES = 64 * 1024


def test_pll_settings():
    for f in (25.0, 40.0, 50.0, 62.5, 100.0):
        p = pll_params(25.0, f)
        assert abs(p["f_out"] - f) < 1e-9
        assert 400 <= p["f_vco"] <= 800
        assert p["f_vco"] == 25.0 / p["clki_div"] * p["clkfb_div"] * p["clkop_div"]


def _link_status(transport, fn, *args):
    with pytest.raises(TransportError) as e:
        fn(*args)
    return e.value


@pytest.mark.rtl
@pytest.mark.slow
def test_ulx3s_system_runs_the_bundled_model(tmp_path):
    out = tmp_path / "mnv2"
    compile_model(models.mobilenet_v2_small(), ULX3S_ARCH, out)
    ref = simulate(out, None, seed=11)
    with SimTransport(ULX3S_ARCH, kind="ulx3s", mem_bytes=RAM_BYTES, uart_divisor=1) as sim:
        link = sim.uart_transport()
        assert link.mem_size == RAM_BYTES
        acc = Accelerator(link)
        model = acc.load(out)
        assert link.read_mem(0, 256) == model.program[:256]
        result = acc.run(ref.inputs, timeout=1e-2, poll=2e-5)
        for name, y in ref.outputs.items():
            assert np.array_equal(result.outputs[name], y), name
        print(f"\nULX3S system: {result.cycles:,} cycles, {result.instructions} instructions")

        # link errors: past the RAM, unmapped register, corrupted frame
        e = _link_status(link, link.read_mem, RAM_BYTES - 2, 4)
        assert "RANGE" in str(e)
        e = _link_status(link, link.write_mem, RAM_BYTES, b"\x00")
        assert "RANGE" in str(e)
        e = _link_status(link, link.read_reg, 0x100)
        assert "CSR_ERROR" in str(e)
        frame = bytearray(request(Command.READ_REG, REGISTERS["ID"]))
        frame[-1] ^= 0xFF
        link.port.write(bytes(frame))
        assert link.port.read(2) == bytes([LinkStatus.BAD_CHECKSUM] * 2)
        assert link.read_reg(REGISTERS["ID"]) == 0x53454D4C   # the link recovered

        # memory is refused while the core runs; an AXI error ends the run with BUS_ERROR
        for name, value in (("PROG_BASE_LO", 0), ("PROG_BASE_HI", 0),
                            ("DATA_BASE_LO", RAM_BYTES), ("DATA_BASE_HI", 0)):
            link.write_reg(REGISTERS[name], value)
        link.write_reg(REGISTERS["CONTROL"], CONTROL_START)
        busy = link.read_reg(REGISTERS["STATUS"]) & 2
        if busy:
            e = _link_status(link, link.read_mem, 0, 4)
            assert "BUSY" in str(e)
        with pytest.raises(BusError):
            acc.wait(timeout=1e-2, poll=2e-5)
        # and the next run is clean again
        result = acc.run(ref.inputs, timeout=1e-2, poll=2e-5)
        assert all(np.array_equal(result.outputs[n], y) for n, y in ref.outputs.items())
        assert struct.pack("<I", link.read_reg(REGISTERS["ID"])) == b"LMES"


def _pty_bridge(port, stop):
    """Forward bytes between a pseudo-terminal (opened by pyserial) and the simulated UART."""
    import os
    import select
    import threading
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)

    def pump():
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.002)
            if ready:
                port.write(os.read(master, 4096))
            got = port.poll(500)  # advances the simulation a little
            if got:
                os.write(master, got)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return os.ttyname(slave), thread


@pytest.mark.rtl
@pytest.mark.slow
def test_convforge_run_over_a_serial_port(tmp_path, capsys):
    """``convforge run`` (pyserial on a pseudo-terminal) against the simulated board."""
    import json
    import threading

    from compiler.cli import main
    from tests.test_system_rtl import _tiny_conv_model

    out = tmp_path / "out"
    compile_model(_tiny_conv_model(), ULX3S_ARCH, out)
    x = np.random.default_rng(4).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ref = simulate(out, x)
    build = tmp_path / "build"   # what `convforge build` writes, but for the simulation
    build.mkdir()
    (build / "arch.json").write_text(ULX3S_ARCH.to_json())
    (build / "build.json").write_text(json.dumps({
        "flow": "yowasp", "board": "ULX3S-85F", "uart_baud": 1_000_000,
        "clock_mhz": 100.0, "ram_bytes": RAM_BYTES}))
    with SimTransport(ULX3S_ARCH, kind="ulx3s", mem_bytes=RAM_BYTES, uart_divisor=1) as sim:
        port = sim.uart_port()
        stop = threading.Event()
        path, thread = _pty_bridge(port, stop)
        try:
            code = main(["run", str(build), str(out), "--port", path, "--input",
                         str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"),
                         "--timeout", "600", "--link-timeout", "600"])
        finally:
            stop.set()
            thread.join(30)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "cycles" in printed.out
    y = np.load(tmp_path / "y.npz")
    for name, want in ref.outputs.items():
        assert np.array_equal(y[name], want)
