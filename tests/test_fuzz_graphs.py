"""Random graphs through import -> quantize -> compile -> ISS (``tests/fuzz/graphs.py``):
every legal one equals the golden runner bit for bit, every other one is refused with a
clear error naming the node, layer or arch parameter -- never a traceback."""

import onnx

from compiler.cli import main
from tests.fuzz.graphs import random_case, run_case

#: Random graphs per run (``benchmarks/fuzz.py`` runs thousands).
GRAPHS = 100
#: Seed of the first graph; graph ``i`` uses seed ``FIRST_SEED + i``.
FIRST_SEED = 100_000


def test_random_graphs():
    counts = {"legal": 0, "refused": 0, "failed": 0}
    failures = []
    for i in range(GRAPHS):
        case = random_case(FIRST_SEED + i)
        outcome = run_case(case)
        counts[outcome.kind] += 1
        if outcome.kind == "failed":
            failures.append(f"{case.describe()}\n  -> {outcome.detail}")
    print(f"random graphs: {counts}")
    assert not failures, "\n".join(failures[:5])
    # the generator reaches both sides of the legality boundary
    assert counts["legal"] >= GRAPHS // 4 and counts["refused"] >= GRAPHS // 5, counts


def test_refusals_through_the_command_line(tmp_path, capsys):
    """The CLI prints a refusal as one ``convforge compile: error:`` message (plus one line
    per unsupported node for the legality report) and exits 2, writing nothing."""
    seen = 0
    for seed in range(FIRST_SEED, FIRST_SEED + 60):
        case = random_case(seed)
        outcome = run_case(case)
        if outcome.kind != "refused":
            continue
        model, arch, out = tmp_path / f"m{seed}.onnx", tmp_path / f"a{seed}.json", \
            tmp_path / f"o{seed}"
        onnx.save(case.model, model)
        arch.write_text(case.arch.to_json())
        capsys.readouterr()
        assert main(["compile", str(model), "--arch", str(arch), "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        first, *rest = err.strip().splitlines()
        assert first.startswith("convforge compile: error: ") and "Traceback" not in err
        assert all(line.startswith("  - ") for line in rest), err
        assert not out.exists()
        seen += 1
        if seen == 10:
            break
    assert seen == 10
