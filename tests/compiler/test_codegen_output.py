"""Compile output directory: files, manifest, listing round trip, atomic writes, CLI, simulate."""

import hashlib
import json
import os

import numpy as np
import onnx
import pytest

from compiler import compile as cf
from compiler.cli import main
from compiler.codegen import output as output_mod
from compiler.codegen.listing import assemble, disassemble
from compiler.errors import ConvForgeError, MappingError, ProgramFormatError
from compiler.runner import run_golden_int
from examples import models
from hw import isa
from hw.arch import ArchConfig
from tests.compiler.test_codegen import branchy_model

ARCH = ArchConfig(conv_k_max=5, max_width=80)
FILES = {"program.bin", "weights.bin", "arch.json", "manifest.json", "listing.txt", "report.txt",
         "report.json"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("codegen_output")
    onnx.save(models.mobilenet_v2_small(), root / "mv2.onnx")
    onnx.save(branchy_model(), root / "branchy.onnx")
    onnx.save(models.dpd_cnn(), root / "dpd.onnx")
    (root / "arch.json").write_text(ARCH.to_json())
    return root


@pytest.fixture(scope="module")
def compiled(workdir):
    return cf.compile_model(workdir / "mv2.onnx", ARCH, workdir / "mv2_out")


def test_output_files_and_manifest(compiled):
    out = compiled.out_dir
    assert {p.name for p in out.iterdir()} == FILES
    manifest = json.loads((out / "manifest.json").read_text())
    for name, info in manifest["files"].items():
        data = (out / name).read_bytes()
        assert info["bytes"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["arch_hash"] == f"0x{ARCH.config_hash:016x}"
    assert ArchConfig.from_json(out / "arch.json") == ARCH
    mm = manifest["memory_map"]
    assert mm["program"] == {"offset": 0, "bytes": len((out / "program.bin").read_bytes())}
    assert mm["weights"]["offset"] >= mm["program"]["bytes"]
    assert mm["activations"]["offset"] >= mm["weights"]["offset"] + mm["weights"]["bytes"]
    (inp,), (outp,) = manifest["inputs"], manifest["outputs"]
    assert inp["shape"] == [3, 32, 32] and inp["scale"] > 0 and inp["bits"] == 8
    assert outp["shape"] == [10, 1, 1]
    assert mm["activations"]["offset"] <= inp["offset"] < mm["ddr_bytes"]
    assert manifest["predicted_cycles"] == compiled.program.cycles
    report = (out / "report.txt").read_text()
    for layer in compiled.graph.layers:
        assert layer.name in report
    assert "predicted cycles" in report


def test_listing_assembles_back_to_program(compiled):
    out = compiled.out_dir
    program = (out / "program.bin").read_bytes()
    listing = (out / "listing.txt").read_text()
    assert assemble(listing) == program
    assert disassemble(assemble(listing)) == disassemble(program)
    assert "features.0.conv: tile" in listing


def test_listing_errors_name_the_line():
    with pytest.raises(isa.ProgramFormatError, match="listing line 2: unknown opcode 'JUMP'"):
        assemble(".arch_hash 1\n0 JUMP\n")
    with pytest.raises(isa.ProgramFormatError, match=r"listing line 1: COMPUTE.k_h must be "
                                                     r"between 0 and 65535"):
        assemble("0 COMPUTE k_h=70000\n")
    with pytest.raises(isa.ProgramFormatError, match=r"lacks directive\(s\) .arch_hash"):
        assemble("0 END\n")
    with pytest.raises(isa.ProgramFormatError, match=r"listing line 1: .ddr_bytes 'lots' is "
                                                     r"not an integer"):
        assemble(".ddr_bytes lots\n")


def test_simulate_matches_golden(compiled):
    graph = compiled.graph
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
    result = cf.simulate(compiled.out_dir, x)
    want = run_golden_int(graph, result.inputs).outputs
    for name, y in result.outputs.items():
        np.testing.assert_array_equal(y, want[name])
        np.testing.assert_allclose(result.real[name], y * graph.tensors[name].scale)
    assert result.cycles == compiled.program.cycles


def test_simulate_checks_its_inputs(compiled):
    with pytest.raises(ConvForgeError, match="No model input named 'image'; the inputs are "
                                             "'input'"):
        cf.simulate(compiled.out_dir, {"image": np.zeros((3, 32, 32))})
    with pytest.raises(ConvForgeError, match=r"Input 'input' needs 3072 values"):
        cf.simulate(compiled.out_dir, np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(ConvForgeError, match=r"Integer input 'input' must lie in \[-128, 127\]"):
        cf.simulate(compiled.out_dir, np.full((3, 32, 32), 300))
    ints = np.random.default_rng(0).integers(-128, 128, (3, 32, 32))
    result = cf.simulate(compiled.out_dir, ints)
    np.testing.assert_array_equal(result.inputs["input"][0], ints)


def test_simulate_refuses_damaged_outputs(compiled, tmp_path):
    import shutil
    out = tmp_path / "damaged"
    shutil.copytree(compiled.out_dir, out)
    program = (out / "program.bin").read_bytes()
    (out / "program.bin").write_bytes(program[:-5])
    with pytest.raises(ProgramFormatError, match="program.bin: Program is truncated"):
        cf.simulate(out)
    bad = bytearray(program)
    bad[200] ^= 0x10
    (out / "program.bin").write_bytes(bytes(bad))
    with pytest.raises(ProgramFormatError, match="Program is corrupted"):
        cf.simulate(out)
    (out / "program.bin").write_bytes(program)
    (out / "arch.json").write_text(ARCH.replace(conv_po=8).to_json())
    with pytest.raises(ProgramFormatError, match="compiled for arch hash"):
        cf.simulate(out)
    (out / "arch.json").write_text(ARCH.to_json())
    weights = (out / "weights.bin").read_bytes()
    (out / "weights.bin").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(ProgramFormatError, match="weights.bin .* does not match the program"):
        cf.simulate(out)
    (out / "weights.bin").unlink()
    with pytest.raises(ProgramFormatError, match="weights.bin is missing"):
        cf.simulate(out)


def _leftovers(parent, name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_failed_compile_leaves_nothing(workdir):
    out = workdir / "never"
    with pytest.raises(MappingError, match="max_width"):
        cf.compile_model(workdir / "dpd.onnx", ARCH.replace(conv_k_max=5, max_width=4), out)
    assert not out.exists() and not _leftovers(workdir, "never")


def test_failure_while_writing_keeps_previous_output(workdir, monkeypatch):
    out = workdir / "dpd_out"
    first = cf.compile_model(workdir / "dpd.onnx", ARCH, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(output_mod.os, "fsync", failing_fsync)
    with pytest.raises(ConvForgeError, match=r"Writing output directory .*dpd_out failed "
                                             r"\(disk full\); its previous contents are "
                                             r"unchanged"):
        cf.compile_model(workdir / "dpd.onnx", ARCH.replace(pw_pi=4), out)
    monkeypatch.setattr(output_mod.os, "fsync", real_fsync)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not _leftovers(workdir, "dpd_out")
    # a successful recompile replaces the directory as a whole
    second = cf.compile_model(workdir / "dpd.onnx", ARCH.replace(pw_pi=4), out)
    assert second.manifest["arch_hash"] != first.manifest["arch_hash"]
    assert {p.name for p in out.iterdir()} == FILES


def test_refuses_to_replace_unrelated_directory(workdir):
    other = workdir / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConvForgeError, match="is not empty and holds no manifest.json"):
        cf.compile_model(workdir / "dpd.onnx", ARCH, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_cli_compile_and_simulate(workdir, capsys):
    out = workdir / "cli_out"
    np.savez(workdir / "calib.npz", x=np.random.default_rng(0).normal(0, 1, (4, 3, 9, 9)))
    assert main(["compile", str(workdir / "branchy.onnx"), "--arch", str(workdir / "arch.json"),
                 "-o", str(out), "--calib", str(workdir / "calib.npz"), "-q", "--verify"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}/" in text and "verified: ISS output equals the golden runner" in text
    np.save(workdir / "x.npy", np.random.default_rng(1).normal(0, 1, (1, 3, 9, 9)))
    assert main(["simulate", str(out), "--input", str(workdir / "x.npy"),
                 "-o", str(workdir / "y.npz"), "--trace", str(workdir / "t.csv")]) == 0
    trace = (workdir / "t.csv").read_text().splitlines()
    assert trace[0] == "index,opcode,start,finish,cycles" and trace[-1].split(",")[1] == "END"
    text = capsys.readouterr().out
    assert "iss:" in text and "cycles" in text and "output y: shape [7, 1, 1]" in text
    saved = np.load(workdir / "y.npz")
    assert saved["y"].shape == (1, 7, 1, 1)


def test_cli_errors_exit_2_with_message(workdir, capsys):
    assert main(["compile", str(workdir / "dpd.onnx"), "--board", "NoSuchBoard",
                 "-o", str(workdir / "x")]) == 2
    assert "Unknown board 'NoSuchBoard'" in capsys.readouterr().err
    (workdir / "small.json").write_text(json.dumps({"conv_k_max": 5, "max_width": 4}))
    assert main(["compile", str(workdir / "dpd.onnx"), "--arch", str(workdir / "small.json"),
                 "-o", str(workdir / "x")]) == 2
    assert "conv_k_max" in capsys.readouterr().err
    assert main(["simulate", str(workdir / "nowhere")]) == 2
    assert "is not a compile output directory" in capsys.readouterr().err


def _one_line_error(argv, capsys, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_cli_file_errors_are_one_line(workdir, compiled, capsys, tmp_path):
    model, arch = str(workdir / "dpd.onnx"), str(workdir / "arch.json")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    _one_line_error(["compile", model, "--arch", str(tmp_path), "-o", str(tmp_path / "o")],
                    capsys, f"--arch {tmp_path}: cannot read the arch file")
    _one_line_error(["compile", model, "--arch", arch, "-o", str(blocker / "sub")],
                    capsys, f"Output directory {blocker / 'sub'} cannot be created")
    text_npy = tmp_path / "text.npy"
    text_npy.write_text("not numpy")
    _one_line_error(["compile", model, "--arch", arch, "-o", str(tmp_path / "o"),
                     "--calib", str(text_npy)], capsys,
                    f"Calibration file {text_npy} cannot be read as .npy")
    out = str(compiled.out_dir)
    np.save(tmp_path / "nan.npy", np.full((1, 3, 32, 32), np.nan, dtype=np.float32))
    _one_line_error(["simulate", out, "--input", str(tmp_path / "nan.npy")], capsys,
                    "Input 'input' contains inf or NaN")
    _one_line_error(["simulate", out, "--input", str(text_npy)], capsys,
                    f"--input {text_npy} cannot be read as .npy")
    _one_line_error(["simulate", out, "--trace", str(tmp_path)], capsys,
                    f"--trace {tmp_path}: cannot write it")
    _one_line_error(["simulate", out, "-o", str(blocker / "y.npz")], capsys,
                    f"-o {blocker / 'y.npz'}: cannot write it")


def test_simulate_refuses_a_foreign_manifest(compiled, tmp_path):
    import shutil
    out = tmp_path / "foreign"
    shutil.copytree(compiled.out_dir, out)
    (out / "manifest.json").write_text("{}")
    with pytest.raises(ProgramFormatError, match="is not a format-1 ConvForge manifest"):
        cf.simulate(out)
    (out / "manifest.json").unlink()
    (out / "manifest.json").mkdir()
    with pytest.raises(ProgramFormatError, match="manifest.json cannot be read"):
        cf.simulate(out)


def test_verify_detects_a_wrong_program(compiled):
    program = compiled.program
    words = bytearray(compiled.program_bin)
    # lower every COMPUTE clamp to 0: outputs differ from the golden runner
    instrs = [isa.decode_instruction(bytes(words[64 + 64 * i:128 + 64 * i]))
              for i in range(len(program.instructions))]
    bad = [isa.Instruction(i.opcode, dict(i.fields, act_hi=0))
           if i.opcode is isa.Opcode.COMPUTE else i for i in instrs]
    blob = isa.build_program(ARCH.config_hash, bad, weights_offset=program.weights_offset,
                             weights=program.weights, ddr_bytes=program.ddr_bytes)
    assert cf.verify_program(compiled.graph, ARCH, program, compiled.program_bin) == \
        program.cycles
    with pytest.raises(ConvForgeError, match="Verification failed: ISS output "
                                             "'classifier.fc_out' differs"):
        cf.verify_program(compiled.graph, ARCH, program, blob)


def test_register_backend_hook(compiled):
    seen = {}

    def fake(arch, program, ddr):
        seen["arch"] = arch
        return cf.BACKENDS["iss"](arch, program, ddr)

    cf.register_backend("fake", fake)
    try:
        result = cf.simulate(compiled.out_dir, backend="fake")
        assert seen["arch"] == ARCH and result.cycles == compiled.program.cycles
    finally:
        del cf.BACKENDS["fake"]
    # not "rtl": building the command line registers that one
    with pytest.raises(ConvForgeError, match="Unknown simulation backend 'no-such-backend'"):
        cf.simulate(compiled.out_dir, backend="no-such-backend")
    with pytest.raises(TypeError, match="backend must be callable, not 3"):
        cf.register_backend("x", 3)
