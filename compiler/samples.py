"""Input samples: loading them from files and shaping them as a graph's inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from compiler.errors import ConvForgeError, QuantizationError
from compiler.ir import Graph

__all__ = ["as_batches", "input_to_ir", "load_samples"]


def input_to_ir(graph: Graph, name: str, batch) -> np.ndarray:
    """Reshape a batch of samples of graph input ``name`` to ``(N, C, H, W)``.

    Accepts the IR's per-sample shape or any shape of the same size per sample
    (a 1-D model's ``(C, L)`` becomes ``(C, 1, L)``), with or without a leading
    batch axis of 1 per sample.
    """
    shape = graph.tensors[name].shape
    x = np.asarray(batch, dtype=np.float32)
    size = math.prod(shape)
    if x.ndim == 0 or x.size % size or x.size == 0:
        raise QuantizationError(
            f"Samples for graph input {name!r} must hold whole samples of shape {shape} "
            f"({size} values each), not an array of shape {x.shape}")
    if x.size == size and x.shape[0] != 1 and x.ndim == len(shape):
        return x.reshape((1,) + shape)
    return x.reshape((x.size // size,) + shape)


def load_samples(path, what: str):
    """The array of a ``.npy`` file, or the arrays (name -> array) of a ``.npz`` file.

    Raises
    ------
    ConvForgeError
        The file cannot be read as numpy data; the message starts with ``what``.
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                data = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise ConvForgeError(f"{what} cannot be read as {path.suffix or '.npy/.npz'}: "
                             f"{str(e).rstrip('.')}; save numeric arrays with numpy.save / "
                             f"numpy.savez") from None
    return data


def as_batches(graph: Graph, inputs) -> dict[str, np.ndarray]:
    """Samples of every graph input (a single array for a single input) as ``(N, C, H, W)``
    float32 arrays (:func:`input_to_ir`)."""
    if not isinstance(inputs, dict):
        if len(graph.inputs) != 1:
            raise QuantizationError(f"Graph has {len(graph.inputs)} inputs; pass a dict of "
                                    f"input name to samples")
        inputs = {graph.inputs[0]: inputs}
    return {n: input_to_ir(graph, n, inputs[n]) for n in graph.inputs}
