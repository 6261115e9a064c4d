"""cocotb drivers and monitors for Amaranth ``lib.stream`` interfaces, and payload packing.

An Amaranth stream member ``i`` appears in Verilog as ``i__payload``, ``i__valid``
and ``i__ready``. :class:`StreamSource` drives one, :class:`StreamSink` consumes
one; both insert idle cycles or back-pressure from a 0/1 pattern (for example
``random_pattern(seed, 0.7)`` or ``itertools.cycle([1, 1, 0])``).

Timing: both drive their signals right after a rising clock edge and sample the
settled values in the read-only phase of the same cycle, so a transfer is seen
exactly when ``valid`` and ``ready`` are both high before the next edge, on any
simulator.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = [
    "ClockCounter",
    "StreamSink",
    "StreamSource",
    "pack_lanes",
    "pack_struct",
    "random_pattern",
    "to_signed",
    "unpack_lanes",
    "unpack_struct",
]


def random_pattern(seed: int, p_active: float):
    """Endless 0/1 pattern, 1 with probability ``p_active`` (1.0: always active)."""
    rng = random.Random(seed)
    while True:
        yield 1 if rng.random() < p_active else 0


def to_signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def pack_lanes(values, width: int) -> int:
    """Pack integers (lane 0 in the LSBs) into one word of ``len(values) * width`` bits."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (i * width)
    return word


def unpack_lanes(word: int, width: int, n: int, signed: bool = True) -> list[int]:
    """Inverse of :func:`pack_lanes`."""
    lanes = [(word >> (i * width)) & ((1 << width) - 1) for i in range(n)]
    return [to_signed(v, width) for v in lanes] if signed else lanes


def _fields(layout):
    for name, field in layout:
        yield name, field.offset, field.width, field.shape


def pack_struct(layout, values: dict) -> int:
    """Pack a dict into the bits of an Amaranth ``data.StructLayout`` (missing fields are 0)."""
    known = {name for name, *_ in _fields(layout)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"Fields {sorted(unknown)} are not in the layout; it has {sorted(known)}")
    word = 0
    for name, offset, width, _ in _fields(layout):
        word |= (int(values.get(name, 0)) & ((1 << width) - 1)) << offset
    return word


def unpack_struct(layout, word: int) -> dict:
    """Unpack the bits of a ``data.StructLayout``; signed fields come back signed."""
    from amaranth.hdl import Shape

    out = {}
    for name, offset, width, shape in _fields(layout):
        raw = (word >> offset) & ((1 << width) - 1)
        try:
            signed = Shape.cast(shape).signed
        except TypeError:
            signed = False
        out[name] = to_signed(raw, width) if signed and width else raw
    return out


def _value(handle) -> int:
    value = handle.value
    # Single-bit handles give a Logic, wider ones a LogicArray.
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


class StreamSource:
    """Drives ``payload``/``valid`` of an input stream ``name`` of ``dut``.

    Parameters
    ----------
    idle : iterable of 0/1, optional
        Per-cycle pattern; a 0 keeps ``valid`` low for that cycle.
    """

    def __init__(self, dut, name: str, clock, idle=None):
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready", None)  # absent when always_ready
        self.clock = clock
        self.idle = iter(idle) if idle is not None else None
        self.valid.value = 0
        self.sent = 0

    async def send(self, words):
        """Send every word (raw int) in order; returns when the last one is accepted."""
        words = list(words)
        index = 0
        holding = False
        while index < len(words):
            await RisingEdge(self.clock)
            if not holding:
                if self.idle is not None and not next(self.idle):
                    self.valid.value = 0
                    continue
                self.payload.value = words[index]
                self.valid.value = 1
            await ReadOnly()
            if self.ready is None or _value(self.ready):
                index += 1
                self.sent += 1
                holding = False
            else:
                holding = True
        await RisingEdge(self.clock)
        self.valid.value = 0

    def start(self, words):
        """Start :meth:`send` in the background; returns the task."""
        return cocotb.start_soon(self.send(words))


class StreamSink:
    """Consumes an output stream ``name`` of ``dut``, applying back-pressure.

    Parameters
    ----------
    backpressure : iterable of 0/1, optional
        Per-cycle pattern; a 0 keeps ``ready`` low for that cycle.
    """

    def __init__(self, dut, name: str, clock, backpressure=None):
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready", None)
        self.clock = clock
        self.pattern = iter(backpressure) if backpressure is not None else None
        if self.ready is not None:
            self.ready.value = 0

    async def recv(self, n: int) -> list[int]:
        """Receive ``n`` words (raw ints) and return them; ``ready`` drops afterwards."""
        out = []
        while len(out) < n:
            await RisingEdge(self.clock)
            ready = 1 if self.pattern is None else next(self.pattern)
            if self.ready is not None:
                self.ready.value = ready
            await ReadOnly()
            if ready and _value(self.valid):
                out.append(_value(self.payload))
        await RisingEdge(self.clock)
        if self.ready is not None:
            self.ready.value = 0
        return out

    def start(self, n: int):
        """Start :meth:`recv` in the background; ``await`` the task for the words."""
        return cocotb.start_soon(self.recv(n))


class ClockCounter:
    """Counts rising edges of ``clock`` from the moment it is started."""

    def __init__(self, clock):
        self.clock = clock
        self.cycles = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            self.cycles += 1

    def stop(self) -> int:
        self._task.cancel()
        return self.cycles
