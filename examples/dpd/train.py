"""The 1-D CNN digital pre-distorter, trained by indirect learning (needs torch).

Network (as :func:`examples.models.dpd_cnn`): I/Q in (2 channels), ``layers`` hidden
Conv1d layers of ``channels`` channels and kernel ``kernel`` with ReLU, a linear
Conv1d back to I/Q; "same" padding. Signals are scaled by the input RMS. The
network computes the correction and a skip adds its input (``z = u + CNN(u)``), so
that a small network need not learn the identity through its ReLUs.

Indirect learning (ILA): the network is trained as a *post*-inverse of the PA,
mapping the PA output divided by its linear gain, ``y / G``, back to the PA input
``x``; a copy of it then pre-distorts: ``z = DPD(u)``, and ``PA(z) / G ~ u``. The
figure of merit is the NMSE (dB) of ``PA(DPD(u)) / G`` against ``u`` on a held-out
signal.

Compression: per-layer magnitude pruning (each layer's smallest weights to the
target fraction, as :func:`compiler.passes.prune.prune` with ``scope="layer"``),
then weight quantization to the levels of the PEs (:func:`compiler.quant.weights.
weight_levels`: PoT or APoT codes, one scale per output channel), fine-tuned with the
mask fixed and a straight-through estimator. ``nnz`` counts the non-zero weights that
remain after both.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .pa import gmp, linear_gain, nmse_db, ofdm_signal

__all__ = ["DpdConfig", "DpdData", "make_data", "train_architecture"]

QUANTS = ("none", "pot", "apot")
PRUNINGS = (0, 30, 65, 83, 91, 95, 98, 99)

#: Weight code widths of the quantized schemes (PoT / APoT exponent field).
WEIGHT_BITS = 8
POT_EXP_BITS = 3


@dataclass(frozen=True)
class DpdConfig:
    kernel: int
    quant: str
    layers: int
    channels: int
    pruning: int


@dataclass
class DpdData:
    """Training pair of the indirect learning (normalized), and a test signal."""

    train_in: np.ndarray    # (1, 2, N): PA output / G / rms
    train_out: np.ndarray   # (1, 2, N): (PA input - PA output / G) / rms / out_scale
    test_u: np.ndarray      # complex test input
    gain: complex
    rms: float
    baseline_nmse: float    # PA alone, against G u
    out_scale: float = 1.0  # RMS of the normalized correction


def _iq(x):
    return np.stack([x.real, x.imag]).astype(np.float32)[None]


def make_data(length: int = 4096, seed: int = 0) -> DpdData:
    x = ofdm_signal(length, seed=seed)
    y = gmp(x)
    g = linear_gain(x, y)
    rms = float(np.sqrt(np.mean(np.abs(x) ** 2)))
    u = ofdm_signal(length, seed=seed + 1)
    # residual learning: the network outputs the correction (scaled to unit RMS), the
    # DPD adds its input
    corr = (x - y / g) / rms
    scale = float(np.sqrt(np.mean(np.abs(corr) ** 2)))
    return DpdData(_iq(y / g / rms), _iq(corr / scale), u, g, rms,
                   nmse_db(g * u, gmp(u)), scale)


def _net(torch, cfg: DpdConfig):
    layers = []
    c_in = 2
    for _ in range(cfg.layers):
        layers += [torch.nn.Conv1d(c_in, cfg.channels, cfg.kernel, padding=cfg.kernel // 2),
                   torch.nn.ReLU()]
        c_in = cfg.channels
    layers.append(torch.nn.Conv1d(c_in, 2, cfg.kernel, padding=cfg.kernel // 2))
    return torch.nn.Sequential(*layers)


def _convs(net):
    return [m for m in net if m.__class__.__name__ == "Conv1d"]


def _masks(torch, net, pruning: int):
    masks = []
    for conv in _convs(net):
        w = conv.weight.detach()
        k = round(w.numel() * pruning / 100)
        mask = torch.ones_like(w)
        if k:
            order = torch.argsort(w.abs().reshape(-1), stable=True)
            mask.reshape(-1)[order[:k]] = 0
        masks.append(mask)
    return masks


def _quantizer(torch, quant: str):
    """Per-output-channel projection onto the scheme's levels (None: float)."""
    if quant == "none":
        return None
    from compiler.quant.weights import weight_levels

    levels = torch.tensor(weight_levels(quant, WEIGHT_BITS, POT_EXP_BITS), dtype=torch.float32)
    top = float(levels.abs().max())
    mids = (levels[1:] + levels[:-1]) / 2

    def q(w):
        scale = w.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12) / top
        idx = torch.bucketize((w / scale).contiguous(), mids)
        return levels[idx] * scale

    return q


def _forward(net, x, masks, quantize):
    """Run ``net`` with masked (and quantized, straight-through) weights."""
    import torch

    out = x
    convs = _convs(net)
    ci = 0
    for m in net:
        if m in convs:
            w = m.weight * masks[ci]
            if quantize is not None:
                w = w + (quantize(w) - w).detach()
            out = torch.nn.functional.conv1d(out, w, m.bias, padding=m.padding)
            ci += 1
        else:
            out = m(out)
    return out


def _final_weights(net, masks, quantize):
    import torch

    with torch.no_grad():
        out = []
        for conv, mask in zip(_convs(net), masks):
            w = conv.weight * mask
            if quantize is not None:
                w = quantize(w) * mask
            out.append((w.numpy().copy(), conv.bias.numpy().copy()))
    return out


def _dpd_nmse(torch, net, masks, quantize, data: DpdData) -> float:
    u = data.test_u
    with torch.no_grad():
        z = _forward(net, torch.from_numpy(_iq(u / data.rms)), masks, quantize).numpy()[0]
    zc = u + (z[0] + 1j * z[1]) * data.out_scale * data.rms
    return nmse_db(data.gain * u, gmp(zc))


def train_architecture(kernel: int, layers: int, channels: int, data: DpdData, *,
                       steps: int = 300, finetune: int = 40, lr: float = 1e-2,
                       seed: int = 0, quants=QUANTS, prunings=PRUNINGS) -> list[dict]:
    """Train one architecture in float, then every (quantization, pruning) variant of it
    by pruning, quantizing and fine-tuning a copy; returns one row per variant."""
    import copy

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    start = time.perf_counter()
    base = DpdConfig(kernel, "none", layers, channels, 0)
    net = _net(torch, base)
    x = torch.from_numpy(data.train_in)
    t = torch.from_numpy(data.train_out)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    ones = [torch.ones_like(c.weight) for c in _convs(net)]
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((_forward(net, x, ones, None) - t) ** 2)
        loss.backward()
        opt.step()
    float_s = time.perf_counter() - start
    rows = []
    for quant in quants:
        quantize = _quantizer(torch, quant)
        for pruning in prunings:
            t0 = time.perf_counter()
            cfg = DpdConfig(kernel, quant, layers, channels, pruning)
            variant = copy.deepcopy(net)
            masks = _masks(torch, variant, pruning)
            if pruning or quantize is not None:
                opt = torch.optim.Adam(variant.parameters(), lr=lr / 3)
                for _ in range(finetune):
                    opt.zero_grad()
                    loss = torch.mean((_forward(variant, x, masks, quantize) - t) ** 2)
                    loss.backward()
                    opt.step()
            weights = _final_weights(variant, masks, quantize)
            nnz = int(sum(np.count_nonzero(w) for w, _ in weights))
            total = int(sum(w.size for w, _ in weights))
            rows.append({**asdict(cfg), "nmse": _dpd_nmse(torch, variant, masks, quantize, data),
                         "nnz": nnz, "weights": total,
                         "seconds": time.perf_counter() - t0 + (float_s if not rows else 0.0),
                         "params": [(w.tolist(), b.tolist()) for w, b in weights]})
    return rows
