"""The DDR memory map: alignment and the first-fit allocation of activation tensors."""

from __future__ import annotations

from compiler.codegen.weights import ALIGN

__all__ = ["PAGE", "align", "plan_memory"]

#: Alignment of the weight and activation regions in DDR.
PAGE = 4096


def align(n: int, a: int = ALIGN) -> int:
    """``n`` rounded up to a multiple of ``a``."""
    return -(-n // a) * a


def plan_memory(sizes: dict, first: dict, last: dict) -> tuple[dict, int]:
    """First-fit allocation of tensors with lifetimes ``[first, last]`` (step indices).

    Returns offsets (64-byte aligned) and the region size.
    """
    order = sorted(sizes, key=lambda t: (first[t], -sizes[t]))
    live: list[tuple[int, int, str]] = []  # (offset, end, tensor)
    offsets = {}
    top = 0
    for t in order:
        live = [x for x in live if last[x[2]] >= first[t]]
        live.sort()
        size = align(max(sizes[t], 1))
        cursor = 0
        for off, end, _ in live:
            if off - cursor >= size:
                break
            cursor = max(cursor, align(end))
        offsets[t] = cursor
        live.append((cursor, cursor + size, t))
        top = max(top, cursor + size)
    return offsets, top
