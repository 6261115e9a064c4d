"""Host driver of the SEML accelerator: load a compile output, run it, read the results.

One interface (:class:`Accelerator`) over three transports:

* :class:`PynqTransport` -- a Zynq board under PYNQ: ``pynq.MMIO`` on the core's
  AXI4-Lite slave, ``pynq.allocate`` for a physically contiguous DDR buffer
  (written and flushed, invalidated before reading), ``pynq.Interrupt`` on the
  core's ``irq`` (through the block design's AXI Interrupt Controller). ``pynq`` is
  imported only when this transport is created: it is not a dependency of ConvForge.
* :class:`UartTransport` -- the ULX3S top over its UART link
  (:mod:`boards.uart_link`), on a pyserial port.
* :class:`SimTransport` -- the RTL under Verilator (cocotb): the SEML core with a
  DDR model and an AXI4-Lite host model (``kind="core"``), or the whole ULX3S
  system (core + RAM + UART) driven through a simulated serial line by the same
  :class:`UartTransport` that ``convforge run`` uses (``kind="ulx3s"``). The
  simulation runs in a child process and waits while the host thinks: its time
  only advances when the driver waits.

A run follows ``docs/host_interface.md``: copy the image (program, weights,
inputs), write ``PROG_BASE`` / ``DATA_BASE``, start, wait for done -- on the
interrupt when the transport has one (:attr:`Transport.has_interrupt`), else by
polling ``STATUS.done`` -- until a timeout (:class:`DriverTimeout`), read
``ERROR_CODE`` -- each code is a named exception (:data:`ERRORS`) -- then read and
de-quantize the outputs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from hw import isa
from hw.arch import ArchConfig
from hw.isa import ErrorCode
from hw.seml.csr import CONTROL_CLEAR, CONTROL_START, CORE_ID, REGISTERS, STATUS_DONE

__all__ = [
    "ERRORS",
    "Accelerator",
    "AcceleratorError",
    "ArchMismatchError",
    "BadCrcError",
    "BadMagicError",
    "BadVersionError",
    "BufferRangeError",
    "BusError",
    "DriverError",
    "DriverTimeout",
    "IllegalInstructionError",
    "LoadedModel",
    "PynqTransport",
    "RunResult",
    "SimTransport",
    "SimUartPort",
    "Transport",
    "TransportError",
    "UartTransport",
]


# Errors ---------------------------------------------------------------------------------

class DriverError(RuntimeError):
    """Base of every driver error; the message says what failed and what to do."""


class TransportError(DriverError):
    """The link to the accelerator failed (no response, bad checksum, simulator died)."""


class DriverTimeout(DriverError):
    """The accelerator did not report done within the timeout."""


class AcceleratorError(DriverError):
    """The accelerator (or the host-side check of the same rule) refused the program.

    Members
    -------
    code : hw.isa.ErrorCode
    info : int
        ``ERROR_INFO``: the index of the failing (or next) instruction.
    """

    code = ErrorCode.NONE

    def __init__(self, message, info: int = 0):
        super().__init__(message)
        self.info = info


class BadMagicError(AcceleratorError):
    code = ErrorCode.BAD_MAGIC


class BadVersionError(AcceleratorError):
    code = ErrorCode.BAD_VERSION


class ArchMismatchError(AcceleratorError):
    code = ErrorCode.ARCH_MISMATCH


class BadCrcError(AcceleratorError):
    code = ErrorCode.BAD_CRC


class IllegalInstructionError(AcceleratorError):
    code = ErrorCode.ILLEGAL_INSTRUCTION


class BufferRangeError(AcceleratorError):
    code = ErrorCode.BUFFER_RANGE


class BusError(AcceleratorError):
    code = ErrorCode.BUS_ERROR


#: Exception class of each non-zero error code.
ERRORS = {cls.code: cls for cls in (BadMagicError, BadVersionError, ArchMismatchError,
                                    BadCrcError, IllegalInstructionError, BufferRangeError,
                                    BusError)}

_WHAT = {
    ErrorCode.BAD_MAGIC: "the program header's magic is wrong (or PROG_BASE is misaligned)",
    ErrorCode.BAD_VERSION: "the program was built for another ISA version",
    ErrorCode.ARCH_MISMATCH: "the program was compiled for another arch than the bitstream's",
    ErrorCode.BAD_CRC: "the program's CRC-32 does not match: it is corrupted",
    ErrorCode.ILLEGAL_INSTRUCTION: "an instruction is illegal",
    ErrorCode.BUFFER_RANGE: "an instruction reaches outside an on-chip buffer",
    ErrorCode.BUS_ERROR: "the memory answered an AXI access with an error response",
}


def error_for(code, info: int = 0, where: str = "the accelerator") -> AcceleratorError:
    """The named exception for ``ERROR_CODE`` value ``code``."""
    try:
        code = ErrorCode(code)
    except ValueError:
        return AcceleratorError(f"{where} stopped with unknown error code {code}", info)
    return ERRORS[code](f"{where} stopped with {code.name} at instruction {info}: "
                        f"{_WHAT[code]}", info)


def _host_error(code, message) -> AcceleratorError:
    """The named exception for a program the host refuses for the core's reasons."""
    return ERRORS.get(ErrorCode(code), AcceleratorError)(message)


# Transports -----------------------------------------------------------------------------

class Transport:
    """How the driver reaches the accelerator.

    Members
    -------
    mem_base : int
        Bus address of the memory region the driver may use for the image.
    mem_size : int
        Its size in bytes.
    arch : ArchConfig or None
        The arch the hardware was built for, when known (programs are checked
        against it before they are loaded).
    """

    mem_base = 0
    mem_size = 0
    arch = None
    #: True when :meth:`wait_interrupt` can block on the core's ``irq``.
    has_interrupt = False

    def wait_interrupt(self, timeout: float):
        """Block until the core's ``irq`` is high or ``timeout`` seconds pass.

        Returns True (raised), False (timeout), or None when the transport cannot
        block right now (the driver then polls ``STATUS``): the base class cannot.
        """

    def write_mem(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``mem_base + offset`` (and make it visible to the core)."""
        raise NotImplementedError

    def read_mem(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``mem_base + offset`` (as the core wrote them)."""
        raise NotImplementedError

    def write_reg(self, offset: int, value: int) -> None:
        raise NotImplementedError

    def read_reg(self, offset: int) -> int:
        raise NotImplementedError

    def now(self) -> float:
        """Seconds on the accelerator's clock (wall time on a board)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PynqTransport(Transport):
    """A Zynq board under PYNQ (the bitstream's block design from ``convforge build``).

    Parameters
    ----------
    bitfile : str or None
        Loaded with ``pynq.Overlay`` when given (``BUILD/convforge.bit`` with its
        ``.hwh``); otherwise the loaded design is used.
    csr_base : int
        Physical address of the core's AXI4-Lite slave (``0xA0000000`` on
        Zynq UltraScale+ HPM0, ``0x43C00000`` on Zynq-7000 GP0).
    mem_bytes : int
        Size of the contiguous buffer to allocate for the image.
    interrupt : str or None
        Block-design pin of the core's interrupt (``convforge_0/irq`` in the design of
        ``convforge build``), opened with ``pynq.Interrupt``; ``None`` polls ``STATUS``.
        When the loaded design has no such pin (or PYNQ cannot open it), the transport
        polls and :attr:`interrupt_note` says why.
    """

    def __init__(self, *, bitfile=None, csr_base: int, mem_bytes: int = 16 << 20, arch=None,
                 interrupt: str | None = "convforge_0/irq"):
        try:
            import pynq
        except ImportError:
            raise TransportError("PynqTransport needs the pynq package, which a PYNQ board "
                                 "image provides (pip install pynq on the board)") from None
        if bitfile is not None:
            pynq.Overlay(str(bitfile))
        self._mmio = pynq.MMIO(csr_base, 0x1000)
        self._buffer = pynq.allocate(shape=(mem_bytes,), dtype=np.uint8)
        self.mem_base = int(self._buffer.physical_address)
        self.mem_size = mem_bytes
        self.arch = arch
        self._irq = self._loop = None
        self.interrupt_note = "polling STATUS (no interrupt pin given)"
        if interrupt:
            self._open_interrupt(pynq, interrupt)

    def _open_interrupt(self, pynq, pin):
        # PYNQ binds its UIO reader to the event loop that is current when the
        # interrupt controller is first opened: make that the loop the waits run on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
        try:
            self._irq = pynq.Interrupt(pin)
        except Exception as e:  # noqa: BLE001 -- PYNQ raises several kinds; polling still works
            self.interrupt_note = (f"polling STATUS: interrupt {pin!r} cannot be opened "
                                   f"({type(e).__name__}: {e})")
            return
        self._loop = loop
        self.has_interrupt = True
        self.interrupt_note = f"waiting on interrupt {pin!r}"

    def wait_interrupt(self, timeout):
        if self._irq is None:
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return None   # called from a running loop (a notebook cell): poll instead
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._irq.wait(), timeout))
        except TimeoutError:
            return False
        return True

    def write_mem(self, offset, data):
        self._buffer[offset:offset + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        self._buffer.flush()

    def read_mem(self, offset, length):
        self._buffer.invalidate()
        return self._buffer[offset:offset + length].tobytes()

    def write_reg(self, offset, value):
        self._mmio.write(offset, value & 0xFFFFFFFF)

    def read_reg(self, offset):
        return int(self._mmio.read(offset))

    def close(self):
        self._buffer.freebuffer()


class UartTransport(Transport):
    """The ULX3S top over its UART link.

    Parameters
    ----------
    port : str or object
        A serial device (``/dev/ttyUSB0``, opened with pyserial at ``baud``) or an
        open port object with ``read``/``write`` (and optionally ``now``/``sleep``,
        as :class:`SimUartPort` has).
    baud : int
    arch : ArchConfig or None
    timeout : float
        Seconds to wait for each response byte.
    """

    def __init__(self, port, *, baud: int = 1_000_000, arch=None, timeout: float = 2.0):
        from .uart_link import LinkError, UartLink

        self._link_error = LinkError
        self._owned = None
        if isinstance(port, (str, os.PathLike)):
            try:
                import serial
            except ImportError:
                raise TransportError("The UART transport needs pyserial (pip install "
                                     "pyserial)") from None
            try:
                self._owned = port = serial.Serial(str(port), baud, timeout=timeout)
            except (serial.SerialException, OSError) as e:
                raise TransportError(f"Cannot open serial port {port}: {e}") from None
            port.reset_input_buffer()
        self.port = port
        self.link = UartLink(port)
        info = self._call(self.link.info)
        self.mem_base = 0
        self.mem_size = info["ram_bytes"]
        self.arch = arch

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except self._link_error as e:
            raise TransportError(str(e)) from None

    def write_mem(self, offset, data):
        self._call(self.link.write_mem, self.mem_base + offset, bytes(data))

    def read_mem(self, offset, length):
        return self._call(self.link.read_mem, self.mem_base + offset, length)

    def write_reg(self, offset, value):
        self._call(self.link.write_reg, offset, value & 0xFFFFFFFF)

    def read_reg(self, offset):
        return self._call(self.link.read_reg, offset)

    def now(self):
        return self.port.now() if hasattr(self.port, "now") else time.monotonic()

    def sleep(self, seconds):
        if hasattr(self.port, "sleep"):
            self.port.sleep(seconds)
        else:
            time.sleep(seconds)

    def close(self):
        if self._owned is not None:
            self._owned.close()


class _SimLink:
    """Connection to the cocotb server (:mod:`boards.sim_server`) in the simulator process."""

    def __init__(self, component, *, build_name: str, args: dict, timeout_s: float):
        from sim.rtl import run_cocotb

        self._dir = tempfile.mkdtemp(prefix="convforge-sim-")
        path = os.path.join(self._dir, "link")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(0.5)
        self.error = None

        def simulate():
            try:
                run_cocotb(component, test_module="boards.sim_server", build_name=build_name,
                           test_args={**args, "socket": path}, testcase="serve",
                           timeout_s=timeout_s)
            except BaseException as e:  # noqa: BLE001 -- reported to the caller by _check
                self.error = e

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        self.conn = None
        try:
            while self.conn is None:
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    self._check()
                    continue
                sock.settimeout(None)
                self.conn = Connection(sock.detach())
        finally:
            listener.close()

    def _check(self):
        if not self._thread.is_alive():
            raise TransportError(f"The simulation ended: {self.error or 'no error reported'}")

    def call(self, *request):
        self.conn.send(request)
        while not self.conn.poll(0.5):
            self._check()
        try:
            kind, value = self.conn.recv()
        except EOFError:
            self._thread.join(5)
            raise TransportError(f"The simulation ended: {self.error}") from None
        if kind == "error":
            raise TransportError(f"The simulation failed: {value}")
        return value

    def close(self):
        if self.conn is not None:
            try:
                self.conn.send(("close",))
            except OSError:
                pass
            self._thread.join(60)
            self.conn.close()
            self.conn = None
        import shutil
        shutil.rmtree(self._dir, ignore_errors=True)
        if self.error is not None:
            raise TransportError(f"The simulation reported a failure: {self.error}")


class SimUartPort:
    """A serial port whose other end is the simulated ULX3S system's UART.

    ``read`` waits at most ``timeout`` seconds of simulated time, like pyserial's
    ``read`` with a timeout.
    """

    def __init__(self, link: _SimLink, clock_hz: float, divisor: int, timeout: float = 1e-4):
        self._link = link
        self.clock_hz = clock_hz
        self.divisor = divisor
        self.timeout = timeout

    def write(self, data):
        self._link.call("uart_write", bytes(data))
        return len(data)

    def read(self, n):
        # the bytes' own transfer time plus the timeout, like pyserial's total timeout
        cycles = int(self.timeout * self.clock_hz) + 20 * self.divisor * n
        return self._link.call("uart_read", n, cycles)

    def poll(self, cycles: int) -> bytes:
        """The bytes the board sends within the next ``cycles`` clock cycles."""
        return self._link.call("uart_read", 1 << 20, cycles)

    def now(self):
        return self._link.call("now") / self.clock_hz

    def sleep(self, seconds):
        self._link.call("wait", max(1, int(seconds * self.clock_hz)))


class SimTransport(Transport):
    """The RTL under Verilator.

    Parameters
    ----------
    arch : ArchConfig
    kind : str
        ``"core"``: the SEML core, a cocotbext-axi ``AxiRam`` as DDR and an
        ``AxiLiteMaster`` as the processor. ``"ulx3s"``: the whole ULX3S system
        (:class:`boards.ulx3s.Ulx3sSystem`) behind its UART; use
        :attr:`uart_transport` then.
    mem_bytes : int
        DDR size (``core``) or on-chip RAM (``ulx3s``).
    interrupt : bool
        ``core``: offer the core's ``irq`` to the driver (:meth:`wait_interrupt`
        waits on the simulated pin); False makes the driver poll ``STATUS``.
    uart_divisor : int
        Clock cycles per UART bit (``ulx3s``).
    timeout_s : float
        Wall-clock limit of the whole simulation.
    """

    #: Simulated clock period (ns) of the testbench.
    CLOCK_NS = 10
    #: Where the image goes in the simulated DDR (``core``).
    MEM_BASE = 0x100000

    def __init__(self, arch: ArchConfig, *, kind: str = "core", mem_bytes: int = 1 << 20,
                 uart_divisor: int = 1, build_name: str | None = None,
                 timeout_s: float = 1800.0, interrupt: bool = True):
        if kind not in ("core", "ulx3s"):
            raise ValueError(f"kind must be 'core' or 'ulx3s', not {kind!r}")
        self.arch = arch
        self.kind = kind
        self.has_interrupt = kind == "core" and interrupt
        self.uart_divisor = uart_divisor
        self.clock_hz = 1e9 / self.CLOCK_NS
        if kind == "core":
            from hw.seml.core import SemlCore
            component = SemlCore(arch)
            name = build_name or f"seml-{arch.config_hash:016x}"
            self.mem_base, self.mem_size = self.MEM_BASE, mem_bytes
        else:
            from .ulx3s import Ulx3sSystem
            component = Ulx3sSystem(arch, ram_bytes=mem_bytes, uart_divisor=uart_divisor,
                                    idle_timeout=1 << 16)
            name = build_name or f"ulx3s-{arch.config_hash:016x}-{mem_bytes}-{uart_divisor}"
            self.mem_base, self.mem_size = 0, mem_bytes
        self._link = _SimLink(component, build_name=name, timeout_s=timeout_s,
                              args={"kind": kind, "clock_ns": self.CLOCK_NS,
                                    "ddr_bytes": self.MEM_BASE + mem_bytes,
                                    "uart_divisor": uart_divisor})

    def uart_transport(self) -> UartTransport:
        """A :class:`UartTransport` on the simulated serial line (``kind="ulx3s"``)."""
        return UartTransport(self.uart_port(), arch=self.arch)

    def uart_port(self) -> SimUartPort:
        """The simulated serial line itself (``kind="ulx3s"``): ``read`` / ``write``."""
        if self.kind != "ulx3s":
            raise ValueError("The UART needs kind='ulx3s'")
        return SimUartPort(self._link, self.clock_hz, self.uart_divisor)

    def _core_only(self):
        if self.kind != "core":
            raise ValueError("The ulx3s simulation is reached through uart_transport()")

    def write_mem(self, offset, data):
        self._core_only()
        self._link.call("write_mem", self.mem_base + offset, bytes(data))

    def read_mem(self, offset, length):
        self._core_only()
        return self._link.call("read_mem", self.mem_base + offset, length)

    def write_reg(self, offset, value):
        self._core_only()
        self._link.call("write_reg", offset, value & 0xFFFFFFFF)

    def read_reg(self, offset):
        self._core_only()
        return self._link.call("read_reg", offset)

    def now(self):
        return self._link.call("now") / self.clock_hz

    def sleep(self, seconds):
        self._link.call("wait", max(1, int(seconds * self.clock_hz)))

    def wait_interrupt(self, timeout):
        if not self.has_interrupt:
            return None
        return self._link.call("wait_irq", max(1, int(timeout * self.clock_hz)))

    def irq(self) -> bool:
        """The level of the core's ``irq`` pin now (``core``)."""
        self._core_only()
        return self._link.call("wait_irq", 0)

    def add_fault(self, offset: int, length: int) -> None:
        """Make the simulated DDR answer ``SLVERR`` for accesses to this window."""
        self._core_only()
        self._link.call("fault", self.mem_base + offset, length)

    def clear_faults(self) -> None:
        """Remove every fault window of :meth:`add_fault`."""
        self._core_only()
        self._link.call("clear_faults")

    def close(self):
        self._link.close()


# The driver -----------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class LoadedModel:
    """A compile output as the driver holds it (see :meth:`Accelerator.load`)."""
    out_dir: Path
    arch: ArchConfig
    manifest: dict
    program: bytes
    weights: bytes
    weights_offset: int
    ddr_bytes: int


@dataclass
class RunResult:
    """One inference.

    Members
    -------
    outputs : dict of str to ndarray
        Integer outputs ``(1, C, H, W)`` (int64), as the accelerator wrote them.
    real : dict of str to ndarray
        The same de-quantized with the manifest's scales.
    cycles : int
        The core's cycle counter.
    instructions : int
        Instructions issued.
    seconds : float
        Time from start to done as the host saw it (transport clock).
    inputs : dict of str to ndarray
        The integer inputs fed.
    """
    outputs: dict
    real: dict
    cycles: int
    instructions: int
    seconds: float
    inputs: dict = field(default_factory=dict)


def _decode(raw: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.int8 if dtype == "int8" else "<i2").astype(np.int64)


def _encode(x: np.ndarray, dtype: str) -> bytes:
    return x.astype(np.int8 if dtype == "int8" else "<i2").tobytes()


class Accelerator:
    """The driver: one accelerator behind a :class:`Transport`.

    Example::

        with UartTransport("/dev/ttyUSB0") as link:
            acc = Accelerator(link)
            acc.load("out/")
            result = acc.run(x)          # float input: quantized at the input scale
            print(result.real["y"].argmax())
    """

    def __init__(self, transport: Transport, *, check_id: bool = True):
        self.transport = transport
        self.model = None
        if check_id:
            found = transport.read_reg(REGISTERS["ID"])
            if found != CORE_ID:
                raise TransportError(f"The register at ID reads {found:#010x}, not the SEML "
                                     f"core's {CORE_ID:#010x}: wrong address or bitstream")

    # Loading ----------------------------------------------------------------------------

    def load(self, out_dir) -> LoadedModel:
        """Read and check a compile output and copy its program and weights to memory.

        Raises
        ------
        DriverError
            Missing or altered files (hashes of the manifest), an image larger than
            the transport's memory.
        AcceleratorError
            The program fails the header or CRC checks the core makes (the same
            named exception the core would raise), or was compiled for another arch
            than the hardware's.
        """
        out = Path(out_dir)

        def read(name):
            try:
                return (out / name).read_bytes()
            except OSError as e:
                raise DriverError(f"{out / name} cannot be read ({e.strerror or e}); "
                                  f"{out} is not a complete compile output") from None

        try:
            manifest = json.loads(read("manifest.json"))
            arch = ArchConfig.from_dict(json.loads(read("arch.json")))
        except (ValueError, TypeError) as e:
            raise DriverError(f"{out}: unreadable manifest.json or arch.json ({e})") from None
        program, weights = read("program.bin"), read("weights.bin")
        for name, data in (("program.bin", program), ("weights.bin", weights)):
            want = manifest.get("files", {}).get(name, {}).get("sha256")
            if want is not None and want != _sha256(data):
                raise DriverError(f"{out / name} differs from the one the manifest describes "
                                  f"(SHA-256 mismatch); compile again")
        hw_arch = self.transport.arch
        if hw_arch is not None and hw_arch.config_hash != arch.config_hash:
            raise ArchMismatchError(
                f"{out} was compiled for arch {arch.name!r} (hash 0x{arch.config_hash:016x}) "
                f"but the hardware was built for {hw_arch.name!r} (hash "
                f"0x{hw_arch.config_hash:016x}); compile with --arch of the build")
        try:
            header, _ = isa.parse_program(program, arch.config_hash)
        except isa.ProgramFormatError as e:
            raise _host_error(e.code, f"{out / 'program.bin'}: {e}") from None
        if len(weights) != header.weights_bytes or isa.crc32(weights) != header.weights_crc32:
            raise BadCrcError(f"{out / 'weights.bin'} ({len(weights)} bytes) does not belong to "
                              f"the program ({header.weights_bytes} bytes, CRC-32 "
                              f"0x{header.weights_crc32:08x}); use the files of one compilation")
        if header.ddr_bytes > self.transport.mem_size:
            raise DriverError(f"The model needs {header.ddr_bytes:,} bytes of memory but the "
                              f"transport offers {self.transport.mem_size:,}; build with a "
                              f"larger RAM or use a smaller model")
        self.transport.write_mem(0, program)
        self.transport.write_mem(header.weights_offset, weights)
        self.model = LoadedModel(out, arch, manifest, program, weights, header.weights_offset,
                                 header.ddr_bytes)
        return self.model

    # Running ----------------------------------------------------------------------------

    def _inputs(self, inputs, seed):
        specs = self.model.manifest["inputs"]
        if not isinstance(inputs, dict):
            if inputs is not None and len(specs) != 1:
                raise DriverError(f"The model has {len(specs)} inputs; pass a dict")
            inputs = {specs[0]["name"]: inputs} if specs else {}
        unknown = sorted(set(inputs) - {s["name"] for s in specs})
        if unknown:
            raise DriverError(f"No model input named {', '.join(map(repr, unknown))}")
        fed = {}
        for spec in specs:
            shape = (1,) + tuple(spec["shape"])
            bits = spec["bits"]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            x = inputs.get(spec["name"])
            if x is None:
                x = np.random.default_rng(seed).integers(lo, hi + 1, size=shape, dtype=np.int64)
            x = np.asarray(x)
            if x.size != int(np.prod(shape)):
                raise DriverError(f"Input {spec['name']!r} needs {int(np.prod(shape))} values "
                                  f"(shape {list(shape)}), not an array of shape {x.shape}")
            if x.dtype.kind == "f":
                if not np.all(np.isfinite(x)):
                    raise DriverError(f"Input {spec['name']!r} contains inf or NaN")
                x = np.clip(np.round(x / spec["scale"]), lo, hi)
            elif x.dtype.kind not in "iu" or x.min() < lo or x.max() > hi:
                raise DriverError(f"Integer input {spec['name']!r} must lie in [{lo}, {hi}]")
            x = x.astype(np.int64).reshape(shape)
            fed[spec["name"]] = x
            self.transport.write_mem(spec["offset"], _encode(x, spec["dtype"]))
        return fed

    def start(self) -> None:
        """Program the base addresses and start the core."""
        base = self.transport.mem_base
        t = self.transport
        for name, value in (("PROG_BASE_LO", base), ("PROG_BASE_HI", base >> 32),
                            ("DATA_BASE_LO", base), ("DATA_BASE_HI", base >> 32)):
            t.write_reg(REGISTERS[name], value & 0xFFFFFFFF)
        t.write_reg(REGISTERS["CONTROL"], CONTROL_START)

    def wait(self, timeout: float, poll: float | None = None,
             interrupt: bool | None = None) -> float:
        """Wait until ``STATUS.done``; returns the seconds waited.

        With an interrupt (``interrupt`` None: when the transport has one) the driver
        blocks on the core's ``irq`` for the time left and re-reads ``STATUS`` when
        it rises; otherwise (or when the transport cannot block at the moment) it
        reads ``STATUS`` every ``poll`` seconds. Either way a wait never outlasts
        ``timeout``.

        Raises
        ------
        DriverTimeout
            Not done after ``timeout`` seconds (of the transport's clock).
        AcceleratorError
            The run ended with a non-zero ``ERROR_CODE`` (its named subclass).
        DriverError
            ``interrupt=True`` on a transport without an interrupt.
        """
        t = self.transport
        if interrupt and not t.has_interrupt:
            raise DriverError(f"{type(t).__name__} has no interrupt to wait on; pass "
                              f"interrupt=None to poll STATUS")
        use_irq = t.has_interrupt if interrupt is None else interrupt
        start = t.now()
        poll = poll if poll is not None else min(max(timeout / 100, 1e-6), 0.01)
        while True:
            status = t.read_reg(REGISTERS["STATUS"])
            if status & STATUS_DONE:
                break
            left = timeout - (t.now() - start)
            if left <= 0:
                how = "on the interrupt" if use_irq else "polling STATUS"
                raise DriverTimeout(f"The accelerator did not finish within {timeout:g} s "
                                    f"(waited {how}; STATUS {status:#x}); it is still "
                                    f"running: wait longer or reset the board")
            if use_irq:
                if t.wait_interrupt(left) is None:
                    use_irq = False   # the transport cannot block now: poll
                continue              # re-read STATUS: a stale interrupt costs one read
            t.sleep(poll)
        seconds = t.now() - start
        code = t.read_reg(REGISTERS["ERROR_CODE"])
        if code:
            info = t.read_reg(REGISTERS["ERROR_INFO"])
            t.write_reg(REGISTERS["CONTROL"], CONTROL_CLEAR)
            raise error_for(code, info)
        return seconds

    def run(self, inputs=None, *, timeout: float = 10.0, poll: float | None = None,
            seed: int = 0, interrupt: bool | None = None) -> RunResult:
        """One inference of the loaded model.

        Parameters
        ----------
        inputs : ndarray, dict of str to ndarray, or None
            Float samples are quantized at the input scale, integers fed as they
            are; ``None`` feeds seeded random integers.
        timeout : float
            Seconds (of the transport's clock) to wait for done.
        poll : float, optional
            Seconds between ``STATUS`` reads when polling.
        interrupt : bool, optional
            Wait on the interrupt (default: when the transport has one); see :meth:`wait`.
        """
        if self.model is None:
            raise DriverError("No model loaded: call load(OUT) first")
        fed = self._inputs(inputs, seed)
        self.start()
        seconds = self.wait(timeout, poll, interrupt)
        t = self.transport
        cycles = t.read_reg(REGISTERS["CYCLES_LO"]) | (t.read_reg(REGISTERS["CYCLES_HI"]) << 32)
        count = t.read_reg(REGISTERS["INSTR_COUNT"])
        outputs, real = {}, {}
        for spec in self.model.manifest["outputs"]:
            raw = t.read_mem(spec["offset"], spec["bytes"])
            y = _decode(raw, spec["dtype"]).reshape((1,) + tuple(spec["shape"]))
            outputs[spec["name"]] = y
            real[spec["name"]] = y.astype(np.float64) * spec["scale"]
        t.write_reg(REGISTERS["CONTROL"], CONTROL_CLEAR)
        return RunResult(outputs, real, cycles, count, seconds, fed)
