"""Determinism of compile outputs: the same model and arch give byte-identical output
directories, in one process and across processes with other hash seeds; a compile killed
while writing (SIGKILL) leaves no output directory, and the next compile cleans up."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from compiler.cli import main
from tests.fuzz.graphs import random_case, run_case
from tests.fuzz.programs import tiny_model
from tests.hw.test_seml_core import ARCH

ROOT = Path(__file__).resolve().parent.parent

#: Fuzz seeds (legal cases of ``tests/fuzz/graphs.py``) compiled twice besides the tiny model.
SEEDS = (2, 9, 12, 18)


def _tree(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _leftovers(parent: Path, name: str):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _models(tmp_path):
    """(model path, arch path) pairs: the tiny model and a few random legal graphs."""
    pairs = []
    arch_path = tmp_path / "arch_tiny.json"
    arch_path.write_text(ARCH.to_json())
    onnx.save(tiny_model(), tmp_path / "tiny.onnx")
    pairs.append((tmp_path / "tiny.onnx", arch_path))
    for seed in SEEDS:
        case = random_case(seed)
        assert run_case(case).kind == "legal", case.describe()
        onnx.save(case.model, tmp_path / f"g{seed}.onnx")
        (tmp_path / f"arch{seed}.json").write_text(case.arch.to_json())
        pairs.append((tmp_path / f"g{seed}.onnx", tmp_path / f"arch{seed}.json"))
    return pairs


_COMPILE_ALL = """
import sys
from compiler.cli import main
args = sys.argv[1:]
for model, arch, out in zip(args[0::3], args[1::3], args[2::3]):
    assert main(["compile", model, "--arch", arch, "-o", out, "-q"]) == 0
"""


def test_compiling_twice_gives_identical_directories(tmp_path):
    pairs = _models(tmp_path)
    argv = []
    for model, arch in pairs:
        for run in ("a", "b"):
            assert main(["compile", str(model), "--arch", str(arch), "-o",
                         str(tmp_path / f"{model.stem}_{run}"), "-q"]) == 0
        argv += [str(model), str(arch), str(tmp_path / f"{model.stem}_c")]
    # another process, another hash seed (set and dict orders that depend on it)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", _COMPILE_ALL, *argv], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    for model, _ in pairs:
        a = _tree(tmp_path / f"{model.stem}_a")
        assert len(a) == 7  # program, weights, arch, manifest, listing, report.txt, report.json
        for run in ("b", "c"):
            other = _tree(tmp_path / f"{model.stem}_{run}")
            assert other.keys() == a.keys()
            for name in a:
                assert other[name] == a[name], f"{model.stem}: {name} differs (run {run})"


_KILLED = """
import os, signal, sys
real = os.fsync
count = [0]
def fsync(fd):
    real(fd)
    count[0] += 1
    if count[0] == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)
os.fsync = fsync
from compiler.cli import main
main(["compile", sys.argv[1], "--arch", sys.argv[2], "-o", sys.argv[3], "-q"])
"""


@pytest.mark.parametrize("files_written", [1, 4])
def test_compile_killed_while_writing_leaves_no_output(tmp_path, files_written):
    (model, arch), = _models_tiny(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(model), str(arch), str(out),
                           str(files_written)], check=False, cwd=ROOT, timeout=300,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.exists()
    stale = _leftovers(tmp_path, "out")
    assert len(stale) == 1 and stale[0].startswith(".out.tmp-")
    assert len(list((tmp_path / stale[0]).iterdir())) == files_written  # killed mid-write
    # the next compile writes the whole directory and removes the dead writer's files
    assert main(["compile", str(model), "--arch", str(arch), "-o", str(out), "-q"]) == 0
    assert len(_tree(out)) == 7 and not _leftovers(tmp_path, "out")


def _models_tiny(tmp_path):
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(ARCH.to_json())
    onnx.save(tiny_model(), tmp_path / "tiny.onnx")
    return [(tmp_path / "tiny.onnx", arch_path)]
