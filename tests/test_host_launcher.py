"""The launcher users run (pkgs/launcher.bash, placeholders filled as pkgs/sglang-env.nix fills them) on fake
hosts: the environment its entry point execs resolves libcuda.so.1 to the host's driver and exposes nothing
else of the host; no PYTHONPATH leaks in; a CPU-only host still runs Python, with a note."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from host_fixtures import (
    HOST_LIBS,
    LAUNCHER,
    LAYOUTS,
    PROBE_SCRIPT,
    ROOT,
    Stubs,
    launcher_placeholders,
    make_host,
    render_launcher,
    stub_env,
)
from sglang_matrix.host import driver as drv

FIXTURES = ROOT / "tests" / "fixtures" / "which"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    return Stubs(tmp_path_factory.mktemp("stubs"))


def launch(
    tmp_path: Path, exec_line: str, *args: str, root: Path | None = None, record: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    launcher = render_launcher(tmp_path / "bin-python3", exec_line, record=record)
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "XDG_RUNTIME_DIR": str(run),
        **({drv.ROOT_ENV: str(root)} if root is not None else {}),
        **env,
    }
    return subprocess.run([str(launcher), *args], env=base, capture_output=True, text=True, timeout=120)


def probe(tmp_path: Path, root: Path | None, **env: str) -> tuple[dict[str, Any], str]:
    done = launch(tmp_path, f"{sys.executable} {PROBE_SCRIPT}", "an arg", root=root, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def only_the_driver_is_exposed(report: dict[str, Any], host_dir: Path, root: Path) -> None:
    libcuda = str((host_dir / "libcuda.so.1").resolve())
    assert report["libcuda.so.1"]["mapped"] == [libcuda], report["libcuda.so.1"]
    assert report["libcuda.so.1"]["cuInit"] == 0 and report["libcuda.so.1"]["version"] == 12080
    exposed = report["exposed"]
    added = [d for d in exposed if d.startswith(str(root.parent / "run"))]
    assert len(added) == 1, exposed
    names = set(exposed[added[0]]) - {drv.MANIFEST}
    assert "libcuda.so.1" in names and all(drv.is_driver_library(n) for n in names), names
    assert not names & set(HOST_LIBS)
    # Nothing of the host's library directory is loaded but the driver's own files.
    from_host = [p for p in report["mapped_since_start"] if p.startswith(str(root))]
    assert set(from_host) <= {libcuda, str((host_dir / "libnvidia-ml.so.1").resolve())}, from_host
    for soname in ("libz.so.1", "libstdc++.so.6"):
        assert not any(p.startswith(str(root)) for p in report[soname].get("mapped", [])), report[soname]


@pytest.mark.parametrize("layout", ["ubuntu", "rhel", "wsl", "nixos", "ldcache", "container"])
def test_each_layout_resolves_libcuda_to_the_host_driver_and_nothing_else(
    tmp_path: Path, stubs: Stubs, layout: str
) -> None:
    root = tmp_path / "root"
    host_dir = make_host(root, layout, stubs)
    report, stderr = probe(tmp_path, root, **stub_env())
    assert report["argv"] == ["an arg"]
    only_the_driver_is_exposed(report, host_dir, root)
    assert stderr == ""


def test_driver_dir_variable(tmp_path: Path, stubs: Stubs) -> None:
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = make_host(tmp_path / "vendor", "rhel", stubs)
    report, _ = probe(tmp_path, root, SGLANG_MATRIX_DRIVER_DIR=str(elsewhere), **stub_env())
    assert report["libcuda.so.1"]["mapped"] == [str((elsewhere / "libcuda.so.1").resolve())]


def test_no_driver_still_runs_python_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    report, stderr = probe(tmp_path, root)
    assert "error" in report["libcuda.so.1"]
    assert report["LD_LIBRARY_PATH"] is None
    assert stderr.startswith("sglang-matrix: no NVIDIA driver found (no libcuda.so.1 for ")
    assert "CUDA is unavailable, CPU-only use works" in stderr and len(stderr.splitlines()) == 1


def test_search_off_leaves_the_loader_alone(tmp_path: Path, stubs: Stubs) -> None:
    root = tmp_path / "root"
    make_host(root, "ubuntu", stubs)
    report, stderr = probe(tmp_path, root, SGLANG_MATRIX_DRIVER_SEARCH="0", LD_LIBRARY_PATH="/opt/mine")
    assert report["LD_LIBRARY_PATH"] == "/opt/mine"
    assert "error" in report["libcuda.so.1"] and stderr == ""


def test_the_user_s_library_path_stays_after_the_driver(tmp_path: Path, stubs: Stubs) -> None:
    root = tmp_path / "root"
    make_host(root, "ubuntu", stubs)
    report, _ = probe(tmp_path, root, LD_LIBRARY_PATH="/opt/mine", **stub_env())
    first, rest = report["LD_LIBRARY_PATH"].split(":", 1)
    assert Path(first).name.startswith("driver-") and rest == "/opt/mine"


def test_no_pythonpath_or_pythonhome_leaks_in(tmp_path: Path) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "leaked_module.py").write_text("")
    code = "import importlib.util, json, os; print(json.dumps([os.environ.get('PYTHONPATH'), "
    code += "importlib.util.find_spec('leaked_module') is not None]))"
    script = tmp_path / "check.py"
    script.write_text(code)
    done = launch(tmp_path, f"{sys.executable} {script}", root=tmp_path, PYTHONPATH=str(stray))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [None, False]
    report, _ = probe(tmp_path, tmp_path, PYTHONPATH=str(stray), PYTHONHOME="/nonexistent")
    assert (report["PYTHONPATH"], report["PYTHONHOME"]) == (None, None)


def test_the_launcher_execs_sglang_serve_with_its_record(tmp_path: Path, stubs: Stubs) -> None:
    """The real `sglang-serve --preflight` behind the launcher, on a fake Ubuntu host with an H100 and a
    Sapphire Rapids CPU; the variant comes from the record the launcher exports."""
    from sglang_matrix.host.record import matrix_from_spec
    from sglang_matrix.spec import load_spec

    root = tmp_path / "root"
    make_host(root, "ubuntu", stubs)
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text((FIXTURES / "h100.cpuinfo").read_text())
    record = tmp_path / "record.json"
    record.write_text(
        json.dumps(matrix_from_spec(load_spec(ROOT / "matrix.toml"), "sglang-sm90-avx512").to_json())
    )
    serve = f"{sys.executable} -m sglang_matrix.serve"
    done = launch(tmp_path, serve, "--preflight", root=root, record=str(record), **stub_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "preflight for sglang-sm90-avx512"
    assert "ok: GPU 0: NVIDIA H100 80GB HBM3, capability 9.0, a target of sglang-sm90-avx512" in done.stdout
    # The same launcher on an RTX A6000 host: refused, in one line, naming the variant that fits.
    done = launch(
        tmp_path, serve, "--preflight", root=root, record=str(record), **stub_env("NVIDIA RTX A6000:8.6")
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "sglang-serve: refused: GPU 0 (NVIDIA RTX A6000, capability 8.6) cannot run sglang-sm90-avx512, "
        "built for 9.0 only: use sglang-sm86-avx512 (8.6)"
    ]


def test_every_placeholder_is_filled_by_the_nix_code() -> None:
    """pkgs/sglang-env.nix fills exactly the placeholders the script has (the Nix test evaluates the
    result and finds none left)."""
    nix = (ROOT / "pkgs" / "sglang-env.nix").read_text()
    names = launcher_placeholders()
    assert names == {
        "variant",
        "longName",
        "cudaHome",
        "binPath",
        "hostCc",
        "python",
        "driverSearch",
        "record",
        "driverExports",
        "serveDefaults",
        "exec",
    }
    for name in names - {"exec"}:
        assert f"    {name} = " in nix, name
    assert "builtins.readFile ./launcher.bash" in nix
    assert LAUNCHER.read_text().count("exec @exec@") == 1
    # The documented layouts are the ones the tests build.
    assert set(LAYOUTS) == {"ubuntu", "rhel", "wsl", "nixos", "ldcache", "container"}
