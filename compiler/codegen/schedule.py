"""Instruction scheduling: the SYNCs a program needs, and round-robin buffer slots.

A :class:`Scheduler` collects instructions in issue order and inserts the SYNCs: it
tracks which buffer and DDR byte ranges each unit still has in flight and makes an
instruction wait only for the units it actually conflicts with, so double-buffered tiles
overlap load, compute and store. :class:`Ring` hands out the slots of one on-chip buffer.
"""

from __future__ import annotations

from hw.isa import Opcode, Unit
from sim.timing import unit_of

__all__ = ["Ring", "Scheduler"]


class Scheduler:
    """Collects instructions and inserts the SYNCs their buffer hazards need.

    Each access is ``(space, lo, hi)``: a buffer name or a DDR region name and a
    half-open byte (or entry) range.
    """

    _UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)

    def __init__(self):
        self.items: list[tuple] = []  # (opcode, fields, comment, layer, ddr_region)
        self._pending = {u: [] for u in self._UNITS}

    @staticmethod
    def _conflict(pending, reads, writes):
        for space, lo, hi, write in pending:
            for s, a, b in writes:
                if s == space and a < hi and lo < b:
                    return True
            if write:
                for s, a, b in reads:
                    if s == space and a < hi and lo < b:
                        return True
        return False

    def emit(self, opcode, fields, *, reads=(), writes=(), comment="", layer=None,
             region=None):
        unit = unit_of(opcode)
        waits = [other for other in self._UNITS
                 if other is not unit and self._pending[other]
                 and self._conflict(self._pending[other], reads, writes)]
        if waits:
            mask = waits[0]
            for other in waits[1:]:
                mask |= other
            self.items.append((Opcode.SYNC, {"mask": mask}, "", layer, None))
            for other in waits:
                self._pending[other].clear()
        pend = self._pending[unit]
        pend.extend((s, a, b, False) for s, a, b in reads)
        pend.extend((s, a, b, True) for s, a, b in writes)
        self.items.append((opcode, fields, comment, layer, region))

    def end(self):
        self.items.append((Opcode.END, {}, "", None, None))


class Ring:
    """Round-robin slots of one on-chip buffer."""

    def __init__(self, capacity: int, slots: int):
        self.size = capacity // slots
        self.slots = slots
        self._next = 0

    def take(self) -> int:
        addr = self._next * self.size
        self._next = (self._next + 1) % self.slots
        return addr
