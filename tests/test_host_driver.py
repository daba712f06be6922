"""The driver search (sglang_matrix/host/driver.py) on fake hosts: where it looks and in what order, what it
exposes, the linker cache it reads, and the private directory of symlinks it makes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from host_fixtures import (
    CACHE_FLAGS,
    DRIVER_SCRIPT,
    HOST_LIBS,
    LAYOUTS,
    MACHINE,
    RELEASE,
    Stubs,
    make_host,
    write_ld_cache,
)
from sglang_matrix.host import driver as drv

DRIVER_LIBS = {
    "libcuda.so",
    "libcuda.so.1",
    f"libcuda.so.{RELEASE}",
    "libnvidia-ml.so.1",
    f"libnvidia-ml.so.{RELEASE}",
    "libnvidia-ptxjitcompiler.so.1",
    f"libnvidia-ptxjitcompiler.so.{RELEASE}",
    "libnvidia-nvvm.so.4",
    f"libnvidia-nvvm.so.{RELEASE}",
}


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    return Stubs(tmp_path_factory.mktemp("stubs"))


def search(root: Path, **env: str) -> drv.Search:
    return drv.find_driver({drv.ROOT_ENV: str(root), **env})


# ------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("layout", "source"),
    [
        ("ubuntu", "usual directory"),
        ("rhel", "usual directory"),
        ("nixos", "NixOS"),
        ("ldcache", "ld.so.cache"),
        ("container", "container mount"),
    ],
)
def test_each_layout_finds_the_driver_and_only_its_libraries(
    tmp_path: Path, stubs: Stubs, layout: str, source: str
) -> None:
    directory = make_host(tmp_path, layout, stubs)
    found = search(tmp_path)
    assert found.driver is not None, found.problem
    assert (found.driver.directory, found.driver.source) == (str(directory), source)
    assert found.driver.version == RELEASE
    assert set(found.driver.libraries) == DRIVER_LIBS
    assert not set(found.driver.libraries) & set(HOST_LIBS)
    assert found.driver.libraries["libcuda.so.1"] == str((directory / f"libcuda.so.{RELEASE}").resolve())


def test_wsl_layout(tmp_path: Path, stubs: Stubs) -> None:
    directory = make_host(tmp_path, "wsl", stubs)
    found = search(tmp_path)
    assert found.driver is not None
    assert (found.driver.directory, found.driver.source, found.driver.version) == (
        str(directory),
        "WSL",
        None,
    )
    # WSL's libcuda loads libdxcore.so from the same directory: it is the driver's too.
    assert set(found.driver.libraries) == {
        "libcuda.so",
        "libcuda.so.1",
        "libcuda.so.1.1",
        "libnvidia-ml.so.1",
        "libdxcore.so",
    }


def test_the_linker_cache_skips_entries_of_another_architecture(tmp_path: Path, stubs: Stubs) -> None:
    """make_host lists a 32-bit libcuda.so.1 first in the ldcache layout (its file is this machine's stub,
    so only the entry's flags tell it apart)."""
    directory = make_host(tmp_path, "ldcache", stubs)
    assert drv.cache_dirs(str(tmp_path), MACHINE) == ["/" + str(directory.relative_to(tmp_path))]


def test_search_order(tmp_path: Path, stubs: Stubs) -> None:
    for layout in ("container", "wsl", "rhel", "ubuntu", "ldcache", "nixos"):
        make_host(tmp_path, layout, stubs)
        assert search(tmp_path).driver.directory == str(tmp_path / LAYOUTS[layout].lstrip("/")), layout


def test_no_driver_lists_every_place_in_order(tmp_path: Path) -> None:
    found = search(tmp_path)
    assert found.driver is None
    assert found.looked == [
        "/run/opengl-driver/lib",
        "/etc/ld.so.cache",
        *drv.USUAL_DIRS,
        "/usr/lib/wsl/lib",
        *drv.CONTAINER_DIRS,
    ]
    assert found.problem.startswith(f"no libcuda.so.1 for {MACHINE} in /run/opengl-driver/lib, ")


def test_a_libcuda_for_another_machine_is_not_a_driver(tmp_path: Path) -> None:
    directory = tmp_path / LAYOUTS["rhel"].lstrip("/")
    directory.mkdir(parents=True)
    (directory / "libcuda.so.1").write_bytes(b"\x7fELF\x02\x01" + bytes(12) + (999).to_bytes(2, "little"))
    (directory / "libnvidia-ml.so.1").write_bytes(b"not even ELF")
    assert search(tmp_path).driver is None


def test_driver_dir_names_the_directory_outright(tmp_path: Path, stubs: Stubs) -> None:
    make_host(tmp_path / "host", "nixos", stubs)
    other = make_host(tmp_path / "elsewhere", "rhel", stubs)
    found = search(tmp_path / "host", SGLANG_MATRIX_DRIVER_DIR=str(other))
    assert found.driver.directory == str(other)
    assert found.driver.source == "SGLANG_MATRIX_DRIVER_DIR"
    empty = tmp_path / "empty"
    empty.mkdir()
    found = search(tmp_path / "host", SGLANG_MATRIX_DRIVER_DIR=str(empty))
    assert found.driver is None  # no fallback to the search: the user said where
    assert found.problem == f"SGLANG_MATRIX_DRIVER_DIR={empty} holds no libcuda.so.1 for {MACHINE}"


@pytest.mark.parametrize(
    ("name", "driver"),
    [
        ("libcuda.so.1", True),
        ("libcuda.so", True),
        ("libcuda.so.570.124.06", True),
        ("libcudadebugger.so.1", True),
        ("libnvidia-ml.so.1", True),
        ("libnvidia-ptxjitcompiler.so.1", True),
        ("libdxcore.so", True),
        ("libcudart.so.12", False),
        ("libcudnn.so.9", False),
        ("libc.so.6", False),
        ("libstdc++.so.6", False),
        ("libcuda.sox", False),
        ("libnvidia-ml.txt", False),
    ],
)
def test_which_files_are_the_driver(name: str, driver: bool) -> None:
    assert drv.is_driver_library(name) is driver


# ------------------------------------------------------------------------------------------- ld.so.cache


def test_reads_this_machine_s_cache_as_ldconfig_does() -> None:
    """The real /etc/ld.so.cache, written by this machine's glibc, read here and by `ldconfig -p`."""
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if ldconfig is None or not os.path.isfile("/etc/ld.so.cache"):
        pytest.skip("no ldconfig or /etc/ld.so.cache here")
    printed = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
    expected = set()
    for line in printed.splitlines():
        if not line.startswith("\t"):  # the count first, "Cache generated by: ..." last
            continue
        name, _, rest = line.strip().partition(" (")
        expected.add((name, rest.rpartition(" => ")[2]))
    parsed = drv.parse_ld_cache(Path("/etc/ld.so.cache").read_bytes())
    assert {(name, path) for name, _, path in parsed} == expected
    assert len(parsed) > 20


def test_the_cache_writer_makes_what_glibc_reads(tmp_path: Path) -> None:
    """tests' write_ld_cache against glibc's own reader (`ldconfig -p -C FILE`), and read back here."""
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    entries = [
        ("libcuda.so.1", CACHE_FLAGS.get(MACHINE, 0x0303), "/opt/x/libcuda.so.1"),
        ("libcuda.so.1", 0x0003, "/usr/lib/i386-linux-gnu/libcuda.so.1"),
        ("libnvidia-ml.so.1", CACHE_FLAGS.get(MACHINE, 0x0303), "/opt/x/libnvidia-ml.so.1"),
    ]
    cache = tmp_path / "ld.so.cache"
    write_ld_cache(cache, entries)
    assert drv.parse_ld_cache(cache.read_bytes()) == entries
    if ldconfig is None:
        pytest.skip("no ldconfig here to read it back")
    printed = subprocess.run([ldconfig, "-p", "-C", str(cache)], capture_output=True, text=True, check=True)
    assert printed.stdout.splitlines()[0].startswith("3 libs found in cache")
    assert "libcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1" in printed.stdout
    assert "=> /opt/x/libnvidia-ml.so.1" in printed.stdout


@pytest.mark.parametrize("data", [b"", b"garbage" * 10, b"glibc-ld.so.cache1.1" + bytes(10)])
def test_a_broken_cache_is_no_entries(data: bytes) -> None:
    assert drv.parse_ld_cache(data) == []


# ------------------------------------------------------------------------------------------- links


def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def test_link_directory_holds_only_the_driver(tmp_path: Path, stubs: Stubs) -> None:
    directory = make_host(tmp_path / "root", "ubuntu", stubs)
    found = search(tmp_path / "root").driver
    env = {"XDG_RUNTIME_DIR": str(run_dir(tmp_path)), "HOME": str(tmp_path / "home")}
    linked = Path(drv.link_driver(found, env))
    assert linked.parent == tmp_path / "run" / "sglang-matrix"
    assert linked.name.startswith(f"driver-{RELEASE}-")
    entries = {p.name for p in linked.iterdir()}
    assert entries == DRIVER_LIBS | {drv.MANIFEST}
    for name in DRIVER_LIBS:
        assert os.readlink(linked / name) == str((directory / name).resolve())
    assert (linked.parent.stat().st_mode & 0o777) == 0o700
    # Again: the same directory, untouched.
    before = (linked / drv.MANIFEST).stat().st_mtime_ns
    assert Path(drv.link_driver(found, env)) == linked
    assert (linked / drv.MANIFEST).stat().st_mtime_ns == before
    # A new driver release is a new directory.
    (directory / f"libcuda.so.{RELEASE}").write_bytes(
        (directory / f"libcuda.so.{RELEASE}").read_bytes() + b"\0"
    )
    again = Path(drv.link_driver(search(tmp_path / "root").driver, env))
    assert again != linked and again.parent == linked.parent


def test_link_directory_falls_back_when_the_runtime_dir_is_not_private(tmp_path: Path, stubs: Stubs) -> None:
    make_host(tmp_path / "root", "rhel", stubs)
    found = search(tmp_path / "root").driver
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "sglang-matrix").mkdir()
    (shared / "sglang-matrix").chmod(0o777)
    env = {"XDG_RUNTIME_DIR": str(shared), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    linked = Path(drv.link_driver(found, env))
    assert linked.parent == tmp_path / "cache" / "sglang-matrix" / "driver"


def test_concurrent_starts_share_one_complete_directory(tmp_path: Path, stubs: Stubs) -> None:
    make_host(tmp_path / "root", "ubuntu", stubs)
    env = {
        drv.ROOT_ENV: str(tmp_path / "root"),
        "XDG_RUNTIME_DIR": str(run_dir(tmp_path)),
        "PATH": os.environ["PATH"],
    }

    def start(_: int) -> str:
        done = subprocess.run(
            [sys.executable, "-I", "-S", str(DRIVER_SCRIPT), "--link"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = set(pool.map(start, range(16)))
    assert len(results) == 1
    base = tmp_path / "run" / "sglang-matrix"
    assert [p.name for p in base.iterdir()] == [Path(results.pop()).name]  # no temporary left behind


def test_script_notes_a_missing_driver_and_prints_nothing(tmp_path: Path) -> None:
    env = {drv.ROOT_ENV: str(tmp_path), "PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(run_dir(tmp_path))}
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(DRIVER_SCRIPT), "--link"], env=env, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.startswith("sglang-matrix: no NVIDIA driver found (no libcuda.so.1 for ")
    assert "CPU-only use works" in done.stderr and len(done.stderr.splitlines()) == 1
    bad = subprocess.run([sys.executable, "-I", "-S", str(DRIVER_SCRIPT), "--bogus"], capture_output=True)
    assert bad.returncode == 2


def test_the_search_script_is_standalone() -> None:
    """The launchers run it with `python -I -S`: no site, so nothing but the standard library."""
    import ast

    tree = ast.parse(DRIVER_SCRIPT.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, ast.unparse(node)
            names.add((node.module or "").split(".")[0])
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names
