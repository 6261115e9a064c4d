"""The host driver (boards.driver) through its public API.

Host-side checks need no hardware; the rest runs the driver's logic against the SEML
core under Verilator (``SimTransport``): a compiled model end to end equals the ISS
bit for bit, a program corrupted in memory and an AXI error response surface as named
exceptions, and a wait past its timeout raises instead of hanging."""

import asyncio
import json
import time

import numpy as np
import pytest

from boards.driver import (
    ERRORS,
    Accelerator,
    AcceleratorError,
    ArchMismatchError,
    BadCrcError,
    BusError,
    DriverError,
    DriverTimeout,
    SimTransport,
    Transport,
    error_for,
)
from compiler.compile import compile_model, simulate
from examples import models
from hw.isa import HEADER_BYTES, ErrorCode
from hw.seml.csr import CORE_ID, REGISTERS
from tests.test_system_rtl import ARCH, _tiny_conv_model


class _Memory(Transport):
    """A transport over host memory with an ID register: for the host-side checks."""

    def __init__(self, size=1 << 16, arch=None):
        self.mem = bytearray(size)
        self.mem_size = size
        self.arch = arch

    def write_mem(self, offset, data):
        self.mem[offset:offset + len(data)] = data

    def read_mem(self, offset, length):
        return bytes(self.mem[offset:offset + length])

    def read_reg(self, offset):
        return CORE_ID if offset == REGISTERS["ID"] else 0


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "out"
    compile_model(_tiny_conv_model(), ARCH, out)
    return out


def test_each_error_code_is_a_named_exception():
    classes = set()
    for code in ErrorCode:
        if code == ErrorCode.NONE:
            continue
        e = error_for(code.value, 7)
        assert type(e) is ERRORS[code] and isinstance(e, AcceleratorError)
        assert e.code == code and e.info == 7 and code.name in str(e)
        classes.add(type(e))
    assert len(classes) == len(ErrorCode) - 1
    assert type(error_for(99)) is AcceleratorError


def test_load_copies_program_and_weights(tiny_out):
    t = _Memory(arch=ARCH)
    model = Accelerator(t).load(tiny_out)
    program = (tiny_out / "program.bin").read_bytes()
    weights = (tiny_out / "weights.bin").read_bytes()
    assert t.read_mem(0, len(program)) == program
    assert t.read_mem(model.weights_offset, len(weights)) == weights


def test_load_refuses_bad_outputs(tiny_out, tmp_path):
    # another arch than the hardware's
    other = ARCH.replace(conv_po=ARCH.conv_po * 2)
    with pytest.raises(ArchMismatchError, match="compile with --arch"):
        Accelerator(_Memory(arch=other)).load(tiny_out)
    # too little memory
    with pytest.raises(DriverError, match="bytes of memory"):
        Accelerator(_Memory(size=4096)).load(tiny_out)
    # a file that is not the manifest's
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_out.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    program = bytearray((bad / "program.bin").read_bytes())
    program[HEADER_BYTES + 3] ^= 0x10
    (bad / "program.bin").write_bytes(program)
    with pytest.raises(DriverError, match="SHA-256"):
        Accelerator(_Memory()).load(bad)
    # ... and with a matching manifest the program's own CRC catches it
    manifest = json.loads((bad / "manifest.json").read_text())
    import hashlib
    manifest["files"]["program.bin"]["sha256"] = hashlib.sha256(program).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadCrcError):
        Accelerator(_Memory()).load(bad)
    (bad / "weights.bin").unlink()
    with pytest.raises(DriverError, match="weights.bin"):
        Accelerator(_Memory()).load(bad)


def test_accelerator_checks_the_core_id():
    class Wrong(_Memory):
        def read_reg(self, offset):
            return 0xDEADBEEF

    with pytest.raises(DriverError, match="SEML"):
        Accelerator(Wrong())


@pytest.fixture(scope="module")
def sim():
    with SimTransport(ARCH, build_name="seml-system") as transport:
        yield transport


@pytest.mark.rtl
def test_sim_tiny_model_equals_iss(sim, tiny_out):
    acc = Accelerator(sim)
    acc.load(tiny_out)
    for seed in (0, 1):
        ref = simulate(tiny_out, None, seed=seed)
        result = acc.run(ref.inputs, timeout=1e-2, poll=2e-6)
        for name, y in ref.outputs.items():
            assert np.array_equal(result.outputs[name], y)
            assert np.array_equal(result.real[name], ref.real[name])
        assert result.cycles > 0 and result.instructions > 0
        assert result.seconds >= result.cycles / sim.clock_hz * 0.5


@pytest.mark.rtl
def test_sim_program_corrupted_in_memory_is_bad_crc(sim, tiny_out):
    acc = Accelerator(sim)
    model = acc.load(tiny_out)
    flipped = bytes([model.program[HEADER_BYTES + 5] ^ 0x01])
    sim.write_mem(HEADER_BYTES + 5, flipped)
    with pytest.raises(BadCrcError) as e:
        acc.run(timeout=1e-2, poll=2e-6)
    assert "BAD_CRC" in str(e.value)
    acc.load(tiny_out)  # the core runs again once the program is intact
    acc.run(timeout=1e-2, poll=2e-6)


@pytest.mark.rtl
def test_sim_axi_error_is_bus_error(sim, tiny_out):
    acc = Accelerator(sim)
    model = acc.load(tiny_out)
    spec = model.manifest["inputs"][0]
    sim.add_fault(spec["offset"], spec["bytes"])
    try:
        with pytest.raises(BusError) as e:
            acc.run(timeout=1e-2, poll=2e-6)
        assert "BUS_ERROR" in str(e.value)
    finally:
        sim.clear_faults()
    acc.run(timeout=1e-2, poll=2e-6)


@pytest.mark.rtl
def test_sim_wait_past_timeout_raises(sim, tiny_out):
    acc = Accelerator(sim)
    acc.load(tiny_out)
    start = time.monotonic()
    with pytest.raises(DriverTimeout, match="did not finish within"):
        acc.run(timeout=2e-6, poll=5e-7)   # 200 cycles: far shorter than the run
    assert time.monotonic() - start < 60
    acc.wait(timeout=1e-2, poll=2e-6)      # the run itself completes afterwards


@pytest.mark.rtl
def test_sim_interrupt_and_polling_agree(sim, tiny_out):
    """The same run waited for on the core's irq and by polling STATUS; the poll path
    times out too."""
    acc = Accelerator(sim)
    acc.load(tiny_out)
    ref = simulate(tiny_out, None, seed=3)
    sim.write_reg(REGISTERS["CONTROL"], 2)   # CLEAR: drops done and irq of an earlier run
    assert not sim.irq()
    by_irq = acc.run(ref.inputs, timeout=1e-2, interrupt=True)
    by_poll = acc.run(ref.inputs, timeout=1e-2, poll=2e-6, interrupt=False)
    for name, y in ref.outputs.items():
        assert np.array_equal(by_irq.outputs[name], y)
        assert np.array_equal(by_poll.outputs[name], y)
    assert by_irq.cycles == by_poll.cycles
    # the interrupt wakes the host within a few cycles of done
    assert by_irq.seconds * sim.clock_hz < by_irq.cycles + 200
    acc.start()
    with pytest.raises(DriverTimeout, match="polling STATUS"):
        acc.wait(timeout=2e-6, poll=5e-7, interrupt=False)
    acc.wait(timeout=1e-2)
    assert sim.irq()     # level: high from done until CLEAR
    sim.write_reg(REGISTERS["CONTROL"], 2)
    assert not sim.irq()


@pytest.mark.rtl
@pytest.mark.slow
def test_sim_bundled_model_equals_iss(sim, tmp_path):
    out = tmp_path / "mnv2"
    compile_model(models.mobilenet_v2_small(), ARCH, out)
    ref = simulate(out, None, seed=5)
    acc = Accelerator(sim)
    acc.load(out)
    result = acc.run(ref.inputs, timeout=1e-2, poll=2e-5)
    for name, y in ref.outputs.items():
        assert np.array_equal(result.outputs[name], y)
    print(f"\nbundled model on the core through the driver: {result.cycles:,} cycles, "
          f"{result.instructions} instructions")


class _FakePynq:
    """The slice of the ``pynq`` API the PYNQ transport uses, backed by the simulated
    core: ``MMIO`` goes to its registers, ``allocate`` returns a buffer whose ``flush``
    copies it to the simulated DDR and whose ``invalidate`` copies it back."""

    def __init__(self, sim, *, pins=("convforge_0/irq",)):
        self.sim = sim
        self.flushes = 0
        self.status_reads = 0
        self.pins = pins
        self.waits = 0

    def Interrupt(self, pin):
        """``pynq.Interrupt``: ``wait`` is a coroutine that returns once the simulated
        core's ``irq`` is high (the simulation advances while it waits)."""
        if pin not in self.pins:
            raise ValueError(f"No Pin of name {pin} found")
        fake = self

        class Interrupt:
            async def wait(self):
                fake.waits += 1
                while not fake.sim.wait_interrupt(2e-5):
                    await asyncio.sleep(0)

        return Interrupt()

    def MMIO(self, base, length):
        sim, fake = self.sim, self

        class Mmio:
            def read(self, offset):
                sim.sleep(1e-6)  # the board's clock runs while the host works
                fake.status_reads += offset == REGISTERS["STATUS"]
                return sim.read_reg(offset)

            def write(self, offset, value):
                sim.write_reg(offset, value)

        return Mmio()

    def allocate(self, shape, dtype):
        fake = self

        class Buffer(np.ndarray):
            physical_address = fake.sim.mem_base

            def flush(self):
                fake.flushes += 1
                fake.sim.write_mem(0, self.tobytes())

            def invalidate(self):
                self[:] = np.frombuffer(fake.sim.read_mem(0, self.size), dtype=np.uint8)

            def freebuffer(self):
                pass

        return np.zeros(shape, dtype=dtype).view(Buffer)


@pytest.mark.rtl
def test_pynq_transport_against_the_simulated_core(sim, tiny_out, monkeypatch):
    import sys

    from boards.driver import PynqTransport

    fake = _FakePynq(sim)
    monkeypatch.setitem(sys.modules, "pynq", fake)
    transport = PynqTransport(csr_base=0xA0000000, mem_bytes=1 << 16, arch=ARCH)
    assert transport.mem_base == sim.mem_base
    assert transport.has_interrupt and "convforge_0/irq" in transport.interrupt_note
    acc = Accelerator(transport)
    acc.load(tiny_out)
    ref = simulate(tiny_out, None, seed=2)
    result = acc.run(ref.inputs, timeout=60.0)
    for name, y in ref.outputs.items():
        assert np.array_equal(result.outputs[name], y)
    assert fake.flushes >= 3   # program, weights, input: each flushed before the start
    # one wait on the interrupt, STATUS read before it and once after it rose
    assert fake.waits == 1 and fake.status_reads == 2


@pytest.mark.rtl
def test_pynq_transport_without_the_interrupt_pin_polls(sim, tiny_out, monkeypatch):
    import sys

    from boards.driver import PynqTransport

    fake = _FakePynq(sim, pins=())
    monkeypatch.setitem(sys.modules, "pynq", fake)
    transport = PynqTransport(csr_base=0xA0000000, mem_bytes=1 << 16, arch=ARCH)
    assert not transport.has_interrupt and "No Pin" in transport.interrupt_note
    acc = Accelerator(transport)
    acc.load(tiny_out)
    ref = simulate(tiny_out, None, seed=4)
    result = acc.run(ref.inputs, timeout=60.0, poll=0)
    for name, y in ref.outputs.items():
        assert np.array_equal(result.outputs[name], y)
    assert fake.waits == 0 and fake.status_reads > 2


class _StuckPynq:
    """A board whose core never finishes: STATUS reads 0 and the interrupt never rises."""

    def __init__(self):
        self.reads = 0

    def MMIO(self, base, length):
        fake = self

        class Mmio:
            def read(self, offset):
                fake.reads += 1
                return CORE_ID if offset == REGISTERS["ID"] else 0

            def write(self, offset, value):
                pass

        return Mmio()

    def allocate(self, shape, dtype):
        class Buffer(np.ndarray):
            physical_address = 0x1000_0000

            def flush(self):
                pass

            def invalidate(self):
                pass

            def freebuffer(self):
                pass

        return np.zeros(shape, dtype=dtype).view(Buffer)

    def Interrupt(self, pin):
        class Interrupt:
            async def wait(self):
                await asyncio.Event().wait()   # never set

        return Interrupt()


def test_pynq_wait_past_its_timeout_raises(monkeypatch):
    import sys

    from boards.driver import PynqTransport

    monkeypatch.setitem(sys.modules, "pynq", _StuckPynq())
    transport = PynqTransport(csr_base=0xA0000000, mem_bytes=4096)
    assert transport.has_interrupt
    acc = Accelerator(transport)
    start = time.monotonic()
    with pytest.raises(DriverTimeout, match="on the interrupt"):
        acc.wait(timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 5
    with pytest.raises(DriverTimeout, match="polling STATUS"):
        acc.wait(timeout=0.1, poll=0.01, interrupt=False)

    async def inside_a_running_loop():   # e.g. a notebook: the driver polls instead
        with pytest.raises(DriverTimeout, match="did not finish"):
            acc.wait(timeout=0.1, poll=0.01)

    asyncio.run(inside_a_running_loop())
    with pytest.raises(DriverError, match="no interrupt"):
        Accelerator(_Memory()).wait(timeout=0.1, interrupt=True)


def test_pynq_transport_without_pynq(monkeypatch):
    import sys

    from boards.driver import PynqTransport, TransportError

    monkeypatch.setitem(sys.modules, "pynq", None)
    with pytest.raises(TransportError, match="pynq package"):
        PynqTransport(csr_base=0xA0000000)
