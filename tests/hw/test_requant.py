# amaranth: UnusedElaboratable=no
"""Requantization / activation unit under Verilator, against ``sim.golden.requantize``."""

import random

import cocotb
import numpy as np
import pytest

from hw.blocks.requant import RequantUnit
from sim import golden
from sim.cocotb_streams import (
    StreamSink,
    StreamSource,
    pack_lanes,
    pack_struct,
    random_pattern,
    unpack_lanes,
)
from sim.rtl import run_cocotb, test_args
from tests.hw.bench import HandshakeLog, reset

pytestmark = pytest.mark.rtl


def _unit(args):
    return RequantUnit(args["lanes"], args["acc_bits"], args["act_bits"], args["mult_bits"],
                       args["shift_bits"], per_channel=args["per_channel"],
                       user_bits=args["user_bits"])


class Layer:
    """One layer's worth of vectors: parameters, packed input words, golden outputs."""

    def __init__(self, rng, args, unit, count, activation, fixed=None):
        lanes, acc_bits, act_bits = args["lanes"], args["acc_bits"], args["act_bits"]
        qlo, qhi = golden.qrange(act_bits)
        max_m = (1 << args["mult_bits"]) - 1
        max_s = min((1 << args["shift_bits"]) - 1, golden.MAX_SHIFT)
        if activation == "none":
            self.lo, self.hi = qlo, qhi
        elif activation == "relu":
            self.lo, self.hi = 0, qhi
        elif activation == "relu6":
            self.lo, self.hi = 0, rng.randint(1, qhi)
        else:
            self.lo = rng.randint(qlo, qhi)
            self.hi = rng.randint(self.lo, qhi)

        def pick_m():
            return rng.choice([0, 1, 1, max_m, rng.randint(0, max_m), rng.randint(0, max_m)])

        def pick_s():
            return rng.choice([0, 0, 1, max_s, rng.randint(0, max_s), rng.randint(0, max_s)])

        layer_m, layer_s = fixed if fixed is not None else (pick_m(), pick_s())
        self.m, self.s = layer_m, layer_s
        self.words, self.expected, self.users = [], [], []
        for _ in range(count):
            if fixed is not None:
                ms, ss = [fixed[0]] * lanes, [fixed[1]] * lanes
            elif args["per_channel"]:
                ms = [pick_m() for _ in range(lanes)]
                ss = [pick_s() for _ in range(lanes)]
            else:
                ms, ss = [layer_m] * lanes, [layer_s] * lanes
            # Accumulators of every magnitude: tiny, mid, full range, both extremes.
            accs = []
            for _ in range(lanes):
                bits = rng.randint(1, acc_bits)
                lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
                accs.append(rng.choice([lo, hi, rng.randint(lo, hi), rng.randint(lo, hi)]))
            user = rng.getrandbits(args["user_bits"]) if args["user_bits"] else 0
            fields = {"acc": pack_lanes(accs, acc_bits)}
            if args["per_channel"]:
                fields["m"] = pack_lanes(ms, args["mult_bits"])
                fields["s"] = pack_lanes(ss, args["shift_bits"])
            if args["user_bits"]:
                fields["user"] = user
            self.words.append(pack_struct(unit.input_layout, fields))
            y = golden.requantize(np.array([accs]), np.array(ms), np.array(ss),
                                  self.lo, self.hi, axis=1)[0]
            self.expected.append([int(v) for v in y])
            self.users.append(user)

    def configure(self, dut, args):
        act_bits = args["act_bits"]
        dut.lo.value = self.lo & ((1 << act_bits) - 1)
        dut.hi.value = self.hi & ((1 << act_bits) - 1)
        if not args["per_channel"]:
            dut.m.value = self.m
            dut.s.value = self.s


def _decode(word, args):
    lanes, act_bits = args["lanes"], args["act_bits"]
    y = unpack_lanes(word, act_bits, lanes)
    user = word >> (lanes * act_bits)
    return y, user


@cocotb.test()
async def requant_random(dut):
    """Layers of random vectors with every activation; the configuration changes
    between layers while earlier vectors are still in the pipeline."""
    args = test_args()
    rng = random.Random(args["seed"])
    unit = _unit(args)
    await reset(dut)
    max_m = (1 << args["mult_bits"]) - 1
    max_s = min((1 << args["shift_bits"]) - 1, golden.MAX_SHIFT)
    # The first layers pin the corner cases: largest m without a shift saturates at
    # both rails, m = 1 with s = 0 is the identity, then m > 1 with s > 0.
    fixed = [(max_m, 0), (1, 0), (min(max_m, 3), rng.randint(1, max_s))]
    activations = ["none", "none", "relu", "relu6", "clip", "none", "relu6", "clip", "relu"]
    layers = [Layer(rng, args, unit, rng.randint(5, 40), act,
                    fixed[k] if k < len(fixed) else None)
              for k, act in enumerate(activations)]
    total = sum(len(layer.words) for layer in layers)
    src = StreamSource(dut, "i", dut.clk, idle=random_pattern(args["seed"] + 1, 0.7))
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(args["seed"] + 2, 0.6))
    recv = sink.start(total)
    for layer in layers:
        layer.configure(dut, args)
        await src.send(layer.words)
    got = [_decode(w, args) for w in await recv]
    expected = [(y, u) for layer in layers for y, u in zip(layer.expected, layer.users)]
    assert got == expected

    # The data must have exercised both rails and the interior.
    qlo, qhi = golden.qrange(args["act_bits"])
    flat = [v for y, _ in expected for v in y]
    assert qlo in flat and qhi in flat
    assert any(qlo < v < qhi and v != 0 for v in flat)


@cocotb.test()
async def requant_throughput(dut):
    """One vector per cycle without back-pressure, ``latency`` cycles through."""
    args = test_args()
    rng = random.Random(args["seed"] + 5)
    unit = _unit(args)
    await reset(dut)
    layer = Layer(rng, args, unit, 64, "relu")
    layer.configure(dut, args)
    i_log = HandshakeLog(dut, "i", dut.clk)
    o_log = HandshakeLog(dut, "o", dut.clk)
    src = StreamSource(dut, "i", dut.clk)
    sink = StreamSink(dut, "o", dut.clk)
    recv = sink.start(len(layer.words))
    await src.send(layer.words)
    got = [_decode(w, args) for w in await recv]
    assert got == list(zip(layer.expected, layer.users))
    first = i_log.cycles[0]
    assert i_log.cycles == list(range(first, first + len(layer.words))), "input stalled"
    assert o_log.cycles == [c + RequantUnit.latency for c in i_log.cycles]


CONFIGS = [
    # lanes, acc_bits, act_bits, mult_bits, shift_bits, per_channel, user_bits
    (4, 32, 8, 16, 6, True, 0),
    (3, 24, 8, 8, 5, False, 5),
    (1, 20, 4, 1, 3, True, 2),
    (2, 48, 16, 24, 7, True, 0),
    # the partial products' edges: one slice, a top slice of 18 bits, four slices
    (2, 18, 8, 16, 5, True, 0),
    (2, 35, 8, 16, 6, True, 1),
    (1, 64, 32, 32, 7, False, 0),
]


@pytest.mark.parametrize("lanes,acc_bits,act_bits,mult_bits,shift_bits,per_channel,user_bits",
                         CONFIGS)
def test_requant_unit(lanes, acc_bits, act_bits, mult_bits, shift_bits, per_channel, user_bits):
    args = {"lanes": lanes, "acc_bits": acc_bits, "act_bits": act_bits, "mult_bits": mult_bits,
            "shift_bits": shift_bits, "per_channel": per_channel, "user_bits": user_bits,
            "seed": lanes * 101 + acc_bits + mult_bits}
    name = (f"requant-l{lanes}acc{acc_bits}a{act_bits}m{mult_bits}s{shift_bits}"
            f"{'pc' if per_channel else 'pl'}u{user_bits}")
    run_cocotb(_unit(args), test_module=__name__, build_name=name, test_args=args)


def test_layouts():
    unit = RequantUnit(4, 32, 8, 16, 6)
    assert unit.input_layout.size == 4 * (32 + 16 + 6)
    assert unit.output_layout.size == 4 * 8
    assert set(unit.signature.members) == {"i", "o", "lo", "hi"}
    layer = RequantUnit(2, 20, 8, 10, 4, per_channel=False, user_bits=3)
    assert layer.input_layout.size == 2 * 20 + 3
    assert layer.output_layout.size == 2 * 8 + 3
    assert set(layer.signature.members) == {"i", "o", "lo", "hi", "m", "s"}


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"^lanes must be an integer between 1 and 1024, "
                                         r"not 0$"):
        RequantUnit(0, 32, 8)
    with pytest.raises(ValueError, match=r"^act_bits must be an integer between 2 and 32, "
                                         r"not 1$"):
        RequantUnit(4, 32, 1)
    with pytest.raises(ValueError, match=r"^acc_bits must be an integer between 2 and 64, "
                                         r"not 1$"):
        RequantUnit(4, 1, 8)
    with pytest.raises(ValueError, match=r"^mult_bits must be an integer between 1 and 32, "
                                         r"not 0$"):
        RequantUnit(4, 32, 8, 0)
    with pytest.raises(ValueError, match=r"^shift_bits must be an integer between 1 and 7, "
                                         r"not 8$"):
        RequantUnit(4, 32, 8, 16, 8)
    with pytest.raises(TypeError, match=r"^lanes must be an integer, not '4'$"):
        RequantUnit("4", 32, 8)
    with pytest.raises(TypeError, match=r"^per_channel must be a bool, not 1$"):
        RequantUnit(4, 32, 8, per_channel=1)
