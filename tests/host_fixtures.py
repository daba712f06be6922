"""Fake hosts for the driver search, the launchers and preflight: a stub NVIDIA driver built with gcc
(tests/fixtures/host/stub_driver.c), laid out as Ubuntu, RHEL, WSL, NixOS, a container mount or a directory
only the linker cache names, next to host libraries (libc, libstdc++, libz) that must never leak; a writer
of glibc's ld.so.cache format; and the launcher (pkgs/launcher.bash) with its placeholders filled in the
way pkgs/sglang-env.nix fills them, so tests run the script users run."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUB_SOURCE = HERE / "fixtures" / "host" / "stub_driver.c"
PROBE_SCRIPT = HERE / "fixtures" / "host" / "probe_env.py"
LAUNCHER = ROOT / "pkgs" / "launcher.bash"
DRIVER_SCRIPT = ROOT / "tools" / "sglang_matrix" / "host" / "driver.py"
MACHINE = os.uname().machine
RELEASE = "570.124.06"

# Where each layout keeps the driver (relative to the fake root).
LAYOUTS = {
    "ubuntu": f"/usr/lib/{MACHINE}-linux-gnu",
    "rhel": "/usr/lib64",
    "wsl": "/usr/lib/wsl/lib",
    "nixos": "/run/opengl-driver/lib",
    "ldcache": "/opt/vendor/nvidia/lib",
    "container": "/usr/local/nvidia/lib64",
}
# Libraries of the host that sit next to the driver and must never be exposed.
HOST_LIBS = ("libc.so.6", "libstdc++.so.6", "libz.so.1")
# ld.so.cache entry flags (glibc sysdeps/generic/ldconfig.h): FLAG_ELF_LIBC6 | the 64-bit flag of MACHINE.
CACHE_FLAGS = {"x86_64": 0x0303, "aarch64": 0x0A03}


def gcc(args: list[str], cwd: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the stub driver")
    proc = subprocess.run(["gcc", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"gcc {' '.join(args)} failed: {proc.stderr}")


class Stubs:
    """The built stubs: libcuda, libnvidia-ml, and one marker library per other SONAME."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.libcuda = self._build(STUB_SOURCE, "libcuda.so.1")
        self.nvml = self._build(STUB_SOURCE, "libnvidia-ml.so.1")

    def _build(self, source: Path, soname: str) -> Path:
        out = self.directory / f"{soname}.built"
        if not out.exists():
            gcc(
                ["-shared", "-fPIC", "-O1", "-o", str(out), f"-Wl,-soname,{soname}", str(source)],
                self.directory,
            )
        return out

    def marker(self, soname: str) -> Path:
        """A tiny shared object with SONAME `soname` and a marker symbol (never a real libc)."""
        out = self.directory / f"{soname}.marker"
        if not out.exists():
            src = self.directory / "marker.c"
            src.write_text("int sglang_matrix_host_marker(void) { return 42; }\n")
            gcc(["-shared", "-fPIC", "-o", str(out), f"-Wl,-soname,{soname}", str(src)], self.directory)
        return out


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(0o755)


def _link(dest: Path, target: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(target)


def write_ld_cache(path: Path, entries: list[tuple[str, int, str]]) -> None:
    """An ld.so.cache in glibc's new format (sysdeps/generic/dl-cache.h: struct cache_file_new, entries
    of struct file_entry_new; string offsets from the start of the file): (name, flags, path) each."""
    header = 48
    strings = bytearray()
    offsets: list[tuple[int, int]] = []
    base = header + 24 * len(entries)
    for name, _, target in entries:
        key = base + len(strings)
        strings += name.encode() + b"\0"
        value = base + len(strings)
        strings += target.encode() + b"\0"
        offsets.append((key, value))
    out = bytearray(b"glibc-ld.so.cache" + b"1.1")
    out += len(entries).to_bytes(4, "little") + len(strings).to_bytes(4, "little")
    out += bytes([2, 0, 0, 0])  # flags: cache_file_new_flags_endian_little
    out += bytes(4 + 12)  # extension_offset 0 (none), unused[3]
    for (_, flags, _), (key, value) in zip(entries, offsets, strict=True):
        out += flags.to_bytes(4, "little", signed=True) + key.to_bytes(4, "little")
        out += value.to_bytes(4, "little") + bytes(4) + bytes(8)  # osversion, hwcap
    out += strings
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def make_host(root: Path, layout: str, stubs: Stubs, release: str | None = RELEASE) -> Path:
    """A fake host under `root` with the stub driver where `layout` keeps it; returns the driver's
    directory (inside `root`). `release` None: the files carry no version (as on WSL)."""
    directory = root / LAYOUTS[layout].lstrip("/")
    if layout == "wsl" or release is None:
        # WSL's /usr/lib/wsl/lib holds plain copies, without the release in their names.
        for name in ("libcuda.so", "libcuda.so.1", "libcuda.so.1.1"):
            _copy(stubs.libcuda, directory / name)
        _copy(stubs.nvml, directory / "libnvidia-ml.so.1")
        if layout == "wsl":
            _copy(stubs.marker("libdxcore.so"), directory / "libdxcore.so")
    else:
        _copy(stubs.libcuda, directory / f"libcuda.so.{release}")
        _link(directory / "libcuda.so.1", f"libcuda.so.{release}")
        _link(directory / "libcuda.so", "libcuda.so.1")
        _copy(stubs.nvml, directory / f"libnvidia-ml.so.{release}")
        _link(directory / "libnvidia-ml.so.1", f"libnvidia-ml.so.{release}")
        for soname in ("libnvidia-ptxjitcompiler.so.1", "libnvidia-nvvm.so.4"):
            real = soname.rsplit(".so.", 1)[0] + f".so.{release}"
            _copy(stubs.marker(soname), directory / real)
            _link(directory / soname, real)
    for soname in HOST_LIBS:
        _copy(stubs.marker(soname), directory / soname)
    if layout == "ldcache":
        inside = "/" + str(directory.relative_to(root))
        entries = [
            (p.name, CACHE_FLAGS.get(MACHINE, 0x0303), f"{inside}/{p.name}") for p in directory.iterdir()
        ]
        # A 32-bit driver listed first (flags FLAG_ELF_LIBC6 only): the search must skip it for its flags
        # (the file there is this machine's stub, so only the flags tell it apart).
        decoy = root / "usr" / "lib" / "i386-linux-gnu"
        _copy(stubs.libcuda, decoy / "libcuda.so.1")
        entries.insert(0, ("libcuda.so.1", 0x0003, "/usr/lib/i386-linux-gnu/libcuda.so.1"))
        write_ld_cache(root / "etc" / "ld.so.cache", entries)
    return directory


def stub_env(gpus: str = "NVIDIA H100 80GB HBM3:9.0", cuda: int = 12080, **extra: str) -> dict[str, str]:
    return {"STUB_GPUS": gpus, "STUB_CUDA_VERSION": str(cuda), **extra}


# ------------------------------------------------------------------------------------------ the launcher

PLACEHOLDER_RE = re.compile(r"@([A-Za-z][A-Za-z0-9]*)@")


def launcher_placeholders() -> set[str]:
    return set(PLACEHOLDER_RE.findall(LAUNCHER.read_text()))


def render_launcher(
    dest: Path,
    exec_line: str,
    *,
    record: str = "",
    python: str | None = None,
    driver_exports: str = "",
    serve_defaults: str = "",
) -> Path:
    """pkgs/launcher.bash with its placeholders filled as pkgs/sglang-env.nix fills them, but pointing at
    this machine: the interpreter that runs the driver search, the search script from the source tree,
    and `exec_line` as the entry point."""
    work = dest.parent / f"{dest.name}.parts"
    (work / "cuda-home" / "bin").mkdir(parents=True, exist_ok=True)
    values = {
        "variant": "sglang-test",
        "longName": "sglang-test-long",
        "cudaHome": str(work / "cuda-home"),
        "binPath": str(work / "bin"),
        "hostCc": str(work / "cc"),
        "python": python or sys.executable,
        "driverSearch": str(DRIVER_SCRIPT.parent),
        "record": record,
        # What pkgs/sglang-env.nix appends for a variant whose triton is a wheel (the 0.5.23 line).
        "driverExports": driver_exports,
        # Likewise the launch defaults of [[lines.X.serve-defaults]] (GH200 on the 0.5.23 line).
        "serveDefaults": serve_defaults,
        "exec": exec_line,
    }
    text = LAUNCHER.read_text()
    missing = launcher_placeholders() - set(values)
    assert not missing, f"pkgs/launcher.bash has placeholders the tests do not fill: {missing}"
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    dest.write_text("#!/usr/bin/env bash\n" + text)
    dest.chmod(dest.stat().st_mode | stat.S_IXUSR)
    return dest
