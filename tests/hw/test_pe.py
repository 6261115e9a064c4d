# amaranth: UnusedElaboratable=no
"""Multiply elements and MAC PEs under Verilator, against integer dot products."""

import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

from hw import weight_codes as wc
from hw.blocks.pe import MACPE, MultiplierElement, product_bits
from sim.cocotb_streams import StreamSink, StreamSource, pack_struct, random_pattern, to_signed
from sim.rtl import run_cocotb, test_args
from tests.hw.bench import HandshakeLog, reset

pytestmark = pytest.mark.rtl


# Testbench pieces ------------------------------------------------------------------------


def _pe_from_args(args):
    return MACPE(args["scheme"], args["act_bits"], args["weight_bits"], args["acc_bits"],
                 args["exp_bits"], zero_aware=args["zero_aware"])


def _operands(rng, args, count):
    """Random activations and weight values, with zeros and both extremes well represented."""
    a_lo, a_hi = -(1 << (args["act_bits"] - 1)), (1 << (args["act_bits"] - 1)) - 1
    weights = wc.values(args["scheme"], args["weight_bits"], args["exp_bits"])
    acts, ws = [], []
    for _ in range(count):
        acts.append(rng.choice([0, a_lo, a_hi, rng.randint(a_lo, a_hi), rng.randint(a_lo, a_hi)]))
        ws.append(rng.choice([0, weights[0], weights[-1], rng.choice(weights),
                              rng.choice(weights)]))
    return acts, ws


def _dot_products(rng, args, n, max_len):
    """(beats, expected sums, zero-operand beats) for ``n`` random dot products."""
    pe = _pe_from_args(args)
    beats, sums, zeros = [], [], 0
    for _ in range(n):
        length = rng.randint(1, max_len)
        acts, ws = _operands(rng, args, length)
        total = int(np.dot(np.array(acts, dtype=np.int64), np.array(ws, dtype=np.int64)))
        sums.append(to_signed(total, args["acc_bits"]))
        for k, (a, w) in enumerate(zip(acts, ws)):
            code = wc.encode(args["scheme"], w, args["weight_bits"], args["exp_bits"])
            beats.append(pack_struct(pe.input_layout,
                                     {"a": a, "w": code, "last": k == length - 1}))
            zeros += a == 0 or w == 0
    return beats, sums, zeros


# cocotb tests (no ``test_`` prefix: pytest must not collect them) ------------------------


@cocotb.test()
async def pe_random(dut):
    """Random dot products under random idle and back-pressure."""
    args = test_args()
    rng = random.Random(args["seed"])
    await reset(dut)
    beats, sums, zeros = _dot_products(rng, args, 60, 9)
    src = StreamSource(dut, "i", dut.clk, idle=random_pattern(args["seed"] + 1, 0.7))
    sink = StreamSink(dut, "o", dut.clk, backpressure=random_pattern(args["seed"] + 2, 0.6))
    send = src.start(beats)
    got = [to_signed(w, args["acc_bits"]) for w in await sink.recv(len(sums))]
    await send
    assert got == sums
    if args["zero_aware"]:
        await ClockCycles(dut.clk, 4)
        assert int(dut.skipped.value) == zeros


@cocotb.test()
async def pe_throughput(dut):
    """One beat per cycle without back-pressure, each result ``latency`` cycles after its
    ``last`` beat; dot products of length 1 give one result per cycle."""
    args = test_args()
    rng = random.Random(args["seed"] + 10)
    await reset(dut)
    beats, sums, _ = _dot_products(rng, args, 20, 6)
    ones, one_sums, _ = _dot_products(rng, args, 16, 1)
    beats, sums = beats + ones, sums + one_sums
    i_log = HandshakeLog(dut, "i", dut.clk)
    o_log = HandshakeLog(dut, "o", dut.clk)
    src = StreamSource(dut, "i", dut.clk)
    sink = StreamSink(dut, "o", dut.clk)
    send = src.start(beats)
    got = [to_signed(w, args["acc_bits"]) for w in await sink.recv(len(sums))]
    await send
    assert got == sums
    first = i_log.cycles[0]
    assert i_log.cycles == list(range(first, first + len(beats))), "input stalled"
    pe = _pe_from_args(args)
    last_beats = [c for c, word in zip(i_log.cycles, beats, strict=True)
                  if word >> pe.input_layout["last"].offset & 1]
    assert o_log.cycles == [c + MACPE.latency for c in last_beats]
    assert o_log.cycles[-16:] == list(range(o_log.cycles[-16], o_log.cycles[-16] + 16))


@cocotb.test()
async def mul_products(dut):
    """Every weight value (PoT / APoT) or random and extreme weights (uniform) times
    random and extreme activations; registered elements hold their product while
    ``en`` is low."""
    args = test_args()
    rng = random.Random(args["seed"])
    scheme, act_bits = args["scheme"], args["act_bits"]
    weight_bits, exp_bits = args["weight_bits"], args["exp_bits"]
    registered = args["registered"]
    a_lo, a_hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    weights = wc.values(scheme, weight_bits, exp_bits)
    if scheme == "uniform":
        weights = [weights[0], weights[-1], 0, 1, -1] + rng.sample(weights, min(40, len(weights)))
    cases = [(a, w) for w in weights
             for a in [a_lo, a_hi, 0, rng.randint(a_lo, a_hi), rng.randint(a_lo, a_hi)]]
    rng.shuffle(cases)
    pbits = product_bits(scheme, act_bits, weight_bits, exp_bits)
    assert len(dut.p) == pbits
    if registered:
        await reset(dut)
    held = None
    for a, w in cases:
        dut.a.value = a & ((1 << act_bits) - 1)
        dut.w.value = wc.encode(scheme, w, weight_bits, exp_bits)
        if registered:
            enable = rng.random() < 0.8
            dut.en.value = int(enable)
            await RisingEdge(dut.clk)
            await ReadOnly()
            got = to_signed(int(dut.p.value), pbits)
            if enable:
                held = a * w
            if held is not None:
                assert got == held, (a, w)
            await RisingEdge(dut.clk)
        else:
            await Timer(1, unit="ns")
            assert to_signed(int(dut.p.value), pbits) == a * w, (a, w)


# pytest entry points ---------------------------------------------------------------------

PE_CONFIGS = [
    # scheme, act_bits, weight_bits, acc_bits, exp_bits, zero_aware
    ("uniform", 8, 8, 32, 3, False),
    ("uniform", 5, 3, 12, 3, True),
    ("pot", 8, 8, 24, 3, False),
    ("pot", 6, 8, 20, 2, True),
    ("apot", 8, 8, 24, 3, True),
    ("apot", 2, 2, 8, 1, False),
]


@pytest.mark.parametrize("scheme,act_bits,weight_bits,acc_bits,exp_bits,zero_aware", PE_CONFIGS)
def test_mac_pe(scheme, act_bits, weight_bits, acc_bits, exp_bits, zero_aware):
    args = {"scheme": scheme, "act_bits": act_bits, "weight_bits": weight_bits,
            "acc_bits": acc_bits, "exp_bits": exp_bits, "zero_aware": zero_aware,
            "seed": sum(map(ord, scheme)) + act_bits * 7 + acc_bits}
    name = f"pe-{scheme}-a{act_bits}w{weight_bits}acc{acc_bits}e{exp_bits}{'z' * zero_aware}"
    run_cocotb(_pe_from_args(args), test_module=__name__, build_name=name, test_args=args,
               testcase="pe_random,pe_throughput")


MUL_CONFIGS = [
    # scheme, act_bits, weight_bits, exp_bits, registered
    ("uniform", 8, 8, 3, False),
    ("pot", 8, 8, 3, False),
    ("apot", 7, 8, 3, False),
    ("apot", 4, 8, 2, True),
    ("uniform", 5, 6, 3, True),
]


@pytest.mark.parametrize("scheme,act_bits,weight_bits,exp_bits,registered", MUL_CONFIGS)
def test_multiplier_element(scheme, act_bits, weight_bits, exp_bits, registered):
    args = {"scheme": scheme, "act_bits": act_bits, "weight_bits": weight_bits,
            "exp_bits": exp_bits, "registered": registered,
            "seed": act_bits * 31 + exp_bits + registered}
    dut = MultiplierElement(scheme, act_bits, weight_bits, exp_bits, registered=registered)
    name = f"mul-{scheme}-a{act_bits}w{weight_bits}e{exp_bits}{'r' * registered}"
    run_cocotb(dut, test_module=__name__, build_name=name, test_args=args,
               testcase="mul_products")


# Pure-Python checks ----------------------------------------------------------------------


def test_product_widths_and_latency():
    assert MultiplierElement("uniform", 8, 8).product_bits == 16
    # PoT exp_bits 3: |w| <= 128, so |a * w| <= 2**14 -> 16 signed bits.
    assert MultiplierElement("pot", 8, 8, 3).product_bits == 16
    assert MultiplierElement("apot", 8, 8, 3).product_bits == 17
    assert MultiplierElement("pot", 8, 8, 2).code_bits == 4
    assert MultiplierElement("apot", 8, 8, 2).code_bits == 8
    assert MultiplierElement("uniform", 8, 8).latency == 0
    assert MultiplierElement("uniform", 8, 8, registered=True).latency == 1
    pe = MACPE("pot", 8, 8, 32, 3, zero_aware=True)
    assert pe.zero_aware and pe.product_bits == 16
    assert set(pe.signature.members) == {"i", "o", "skipped"}
    assert set(MACPE("uniform", 8, 8, 32).signature.members) == {"i", "o"}


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"^scheme must be one of uniform, pot, apot, "
                                         r"not 'ternary'$"):
        MultiplierElement("ternary", 8, 8)
    with pytest.raises(TypeError, match=r"^scheme must be a string, not None$"):
        MACPE(None, 8, 8, 32)
    with pytest.raises(ValueError, match=r"^act_bits must be an integer between 2 and 32, "
                                         r"not 1$"):
        MultiplierElement("uniform", 1, 8)
    with pytest.raises(ValueError, match=r"^weight_bits must be an integer between 2 and 32, "
                                         r"not 1$"):
        MACPE("uniform", 8, 1, 32)
    with pytest.raises(TypeError, match=r"^act_bits must be an integer, not 8.0$"):
        MACPE("uniform", 8.0, 8, 32)
    with pytest.raises(ValueError, match=r"^exp_bits must be an integer between 1 and 5, "
                                         r"not 0$"):
        MACPE("pot", 8, 8, 32, 0)
    with pytest.raises(ValueError, match=r"^acc_bits must be at least the product width 16, "
                                         r"not 12$"):
        MACPE("uniform", 8, 8, 12)
    with pytest.raises(TypeError, match=r"^zero_aware must be a bool, not 1$"):
        MACPE("uniform", 8, 8, 32, zero_aware=1)
    with pytest.raises(TypeError, match=r"^registered must be a bool, not 'yes'$"):
        MultiplierElement("uniform", 8, 8, registered="yes")
