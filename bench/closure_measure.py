"""`bench/closure --measure`: take every size bench/closure adds up, and record it with its source.

Wheels are fetched with pip (a CPython 3.12 interpreter, so that pip picks the cp312 x86_64 files a user
gets), read (zip directory; the audit's fatbin parser for torch and NCCL) and deleted again, a batch at a
time; wheels already in the cache directory are read in place. Nothing here is run in CI: it downloads
about 6 GB.
"""

from __future__ import annotations

import ctypes
import datetime
import glob
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from closure_data import CUDA_LIBS, OTHER_WHEELS, TORCH_NIX_DEPS, TRITON_NIX_DEPS, canonical, is_separate
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import parse_wheel_filename
from sglang_matrix.audit.fatbin import parse_fatbin
from sglang_matrix.audit.gpucode import audit_gpu_code

Progress = Callable[[str], None]
# Debian trixie's gcc 14 (nixpkgs' default GCC at the pin, and the newest CUDA 12.8 supports) with what
# a compiler wrapper's closure holds: the driver, cc1/cc1plus, libstdc++ and libc headers, binutils.
GCC_PACKAGES = (
    "gcc-14", "g++-14", "cpp-14", "gcc-14-x86-64-linux-gnu", "g++-14-x86-64-linux-gnu",
    "cpp-14-x86-64-linux-gnu", "libgcc-14-dev", "libstdc++-14-dev", "binutils", "binutils-x86-64-linux-gnu",
    "libbinutils", "libctf0", "libsframe1", "libgprofng0", "libc6-dev", "linux-libc-dev", "libisl23",
    "libmpc3", "libmpfr6",
)  # fmt: skip
# apt names its index files after the mirror's host: match them by suite, component and architecture.
TRIXIE_PACKAGES = "nix-trixie/var/lib/apt/lists/*_dists_trixie_main_binary-amd64_Packages"
# The C libraries nixpkgs' python312 links (glibc, OpenSSL, SQLite, ...), sized as Debian's packages.
CPYTHON_LIBS = (
    "libc6", "libgcc-s1", "libstdc++6", "libssl3", "libsqlite3-0", "libffi8", "libncursesw6", "libtinfo6",
    "libreadline8", "libbz2-1.0", "liblzma5", "zlib1g", "libexpat1", "libmpdec3", "libgdbm6", "libuuid1",
    "libcrypt1",
)  # fmt: skip
# nvcc's pieces pip's nvidia-cuda-nvcc-cu12 12.8 wheel lacks (it has ptxas and cicc only).
NVCC_MISSING = ("nvcc", "cudafe++", "fatbinary", "nvlink", "bin2c")


def find_python312(explicit: str | None) -> str:
    if explicit:
        return explicit
    candidates = [shutil.which("python3.12")]
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"), reverse=True)
    except (OSError, subprocess.CalledProcessError):
        pass
    for c in candidates:
        # A pyenv shim answers for whichever version is selected, or fails: ask the interpreter itself.
        check = [c, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"] if c else None
        if check and subprocess.run(check, capture_output=True).returncode == 0:
            return c
    raise SystemExit("bench/closure: --measure needs a CPython 3.12 (give --python)")


def pip(python: str, *args: str) -> None:
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def resolve(python: str, requirements: list[str], constraints: dict[str, str], work: Path) -> dict[str, dict]:
    """What `pip install` would install for these requirements (constraints: name -> specifier):
    name -> {version, file, requires}."""
    report = work / "report.json"
    cmd = ["install", "--dry-run", "--ignore-installed", "--quiet", "--only-binary=:all:"]
    cmd += ["--report", str(report), "--target", str(work / "target")]
    if constraints:
        cfile = work / "constraints.txt"
        cfile.write_text("".join(f"{n}{v}\n" for n, v in sorted(constraints.items())))
        cmd += ["-c", str(cfile)]
    pip(python, *cmd, *requirements)
    out = {}
    for item in json.loads(report.read_text())["install"]:
        url = item["download_info"]["url"]
        meta = item["metadata"]
        out[canonical(meta["name"])] = {
            "version": meta["version"],
            "file": os.path.basename(url.split("#")[0]).replace("%2B", "+"),
            "requires": edges(meta),
        }
    return out


# The environment the variant's Python set is for, for evaluating Requires-Dist markers.
MARKER_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.1",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


def edges(meta: dict[str, Any]) -> dict[str, list[str]]:
    """What a distribution's Requires-Dist pulls in on CPython 3.12, x86_64 Linux, per extra ("" for
    the distribution itself): {"": ["numpy", "huggingface-hub[hf-xet]"], "torch": ["torch"]}. Whoever
    adds it up follows an extra's edges only where a requirement asks for that extra."""
    out: dict[str, set[str]] = {}
    for text in meta.get("requires_dist", []):
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonical(req.name) + (
            f"[{','.join(sorted(canonical(e) for e in req.extras))}]" if req.extras else ""
        )
        for extra in ["", *meta.get("provides_extra", [])]:
            if req.marker is None and extra:
                continue
            if req.marker is None or req.marker.evaluate(MARKER_ENV | {"extra": extra}):
                out.setdefault(canonical(extra) if extra else "", set()).add(name)
    return {extra: sorted(names) for extra, names in sorted(out.items())}


def zip_sizes(path: Path) -> dict[str, int]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: i.file_size for i in z.infolist() if not i.is_dir()}


def device_table(path: Path) -> dict[str, Any]:
    """All device code as stored, and cubins per SM: {"90": [stored, uncompressed]}."""
    report = audit_gpu_code(path)
    by_sm: dict[str, list[int]] = {}
    stored = 0
    for obj in report.objects:
        for e in obj.entries:
            stored += e.stored_size
            if e.kind == "cubin":
                row = by_sm.setdefault(str(e.sm), [0, 0])
                row[0] += e.stored_size
                row[1] += e.uncompressed_size or e.stored_size
    return {"all_stored": stored, "by_sm": dict(sorted(by_sm.items(), key=lambda kv: int(kv[0])))}


def fetch(python: str, reqs: list[str], work: Path, read: Callable[[str, Path], None]) -> None:
    """Download each requirement (no dependencies) unless its file is in the cache, read it, delete it."""
    batch = work / "batch"
    batch.mkdir(exist_ok=True)
    pip(python, "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(batch), *reqs)
    files = list(batch.iterdir())
    for req in reqs:
        name, _, version = req.partition("==")
        match = [p for p in files if _name(p) == canonical(name) and _version(p) == version]
        if not match:
            raise SystemExit(f"bench/closure: pip download gave no file for {req}")
        read(req, match[0])
    shutil.rmtree(batch)


def _name(path: Path) -> str:
    return canonical(path.name.split("-")[0])


def _version(path: Path) -> str:
    try:
        return str(parse_wheel_filename(path.name)[1])
    except ValueError:
        return ""


def measure_distributions(
    python: str, dists: dict[str, dict], cache: Path, work: Path, say: Progress, known: dict[str, dict]
) -> None:
    """Fill in each distribution's unpacked size (None for an sdist), reusing sizes already taken."""
    todo = []
    for name, d in dists.items():
        if name in known and known[name]["file"] == d["file"]:
            d["unpacked"] = known[name]["unpacked"]
        elif (cache / d["file"]).is_file():
            d["unpacked"] = sum(zip_sizes(cache / d["file"]).values())
        elif not d["file"].endswith(".whl"):
            d["unpacked"] = None
        else:
            todo.append(name)
    # The big ones alone, the rest by forty, so that little is on disk at any time.
    big = [n for n in todo if n in {"torch", "triton"} or n.startswith("nvidia-")]
    small = [n for n in todo if n not in big]
    batches = [[n] for n in big] + [small[i : i + 40] for i in range(0, len(small), 40)]
    for batch in batches:
        say(f"downloading {len(batch)} wheel(s): {', '.join(batch[:3])}{' ...' if len(batch) > 3 else ''}")
        by_req = {f"{n}=={dists[n]['version']}": n for n in batch}

        def read(req: str, path: Path, by_req: dict[str, str] = by_req) -> None:
            dists[by_req[req]]["unpacked"] = sum(zip_sizes(path).values())

        fetch(python, list(by_req), work, read)


def measure_wheels(python: str, cache: Path, work: Path, say: Progress, torch_wheel: Path | None) -> dict:
    wanted = {lib.key: lib.requirement for lib in CUDA_LIBS} | OTHER_WHEELS
    out: dict[str, dict] = {}

    def read(key: str, path: Path) -> None:
        say(f"reading {path.name}")
        sizes = zip_sizes(path)
        entry: dict[str, Any] = {"requirement": wanted[key], "file": path.name}
        entry["unpacked"] = sum(sizes.values())
        if key in ("torch", "nccl"):
            entry["device"] = device_table(path)
        if key == "triton":
            entry["bundled_cuda"] = {
                sub: sum(n for p, n in sizes.items() if p.startswith(f"triton/backends/nvidia/{sub}/"))
                for sub in ("bin", "include")
            }
        if key == "nvcc":
            entry["bin"] = sorted(p.rsplit("/", 1)[1] for p in sizes if "/bin/" in p)
        if key in ("nvrtc", "nvfatbin"):
            keep = work / "keep" / key
            keep.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if ".so" in member:
                        z.extract(member, keep)
        out[key] = entry

    if torch_wheel is not None:
        read("torch", torch_wheel)
    for key, req in wanted.items():
        if key in out:
            continue
        name, _, version = req.partition("==")
        cached = [p for p in cache.glob("*.whl") if _name(p) == canonical(name) and _version(p) == version]
        if cached:
            read(key, cached[0])
            continue
        say(f"downloading {req}")
        fetch(python, [req], work, lambda _req, path, key=key: read(key, path))
    missing = {n: Path("/usr/local/cuda-13.0/bin", n) for n in NVCC_MISSING}
    if all(p.is_file() for p in missing.values()):
        out["nvcc"]["missing_from"] = {
            "source": "CUDA 13.0's nvcc 13.0.88 on this machine (/usr/local/cuda-13.0/bin), another version",
            "files": {n: p.stat().st_size for n, p in missing.items()},
        }
    return out


def fatbin_default(libdir: Path) -> dict[str, Any]:
    """How CUDA 12.8 stores device code in a fatbin with and without -compress-all: NVRTC 12.8 compiles a
    kernel file for sm_90 (cubin) and compute_90 (PTX), nvFatbin 12.8 (the fatbinary tool as a library)
    packs them, and the audit's parser reads the entries' compression flags."""
    nvrtc = ctypes.CDLL(str(next(libdir.glob("nvrtc/**/libnvrtc.so.12"))))
    fb = ctypes.CDLL(str(next(libdir.glob("nvfatbin/**/libnvfatbin.so.12"))))
    src = "template <int N, typename T> __global__ void k(const T* a, T* b, int n) {\n"
    src += "  int i = blockIdx.x * blockDim.x + threadIdx.x; T acc = 0;\n  #pragma unroll\n"
    src += "  for (int j = 0; j < N; ++j) if (i + j < n) acc += a[i + j] * (T)(j + 1);\n  b[i] = acc;\n}\n"
    src += "".join(f"template __global__ void k<{n},{t}>(const {t}*, {t}*, int);\n"
                   for n in range(8, 200, 4) for t in ("float", "double", "int"))  # fmt: skip

    def compile_(option: str, get: str) -> bytes:
        prog = ctypes.c_void_p()
        if nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"k.cu", 0, None, None):
            raise RuntimeError("nvrtcCreateProgram failed")
        opts = (ctypes.c_char_p * 1)(option.encode())
        if nvrtc.nvrtcCompileProgram(prog, 1, opts):
            raise RuntimeError(f"NVRTC could not compile for {option}")
        size = ctypes.c_size_t()
        getattr(nvrtc, f"nvrtcGet{get}Size")(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        getattr(nvrtc, f"nvrtcGet{get}")(prog, buf)
        return buf.raw

    def pack(options: list[str], cubin: bytes, ptx: bytes | None) -> list[Any]:
        handle = ctypes.c_void_p()
        opts = (ctypes.c_char_p * max(1, len(options)))(*[o.encode() for o in options])
        if fb.nvFatbinCreate(ctypes.byref(handle), opts, len(options)):
            raise RuntimeError("nvFatbinCreate failed")
        fb.nvFatbinAddCubin(handle, cubin, ctypes.c_size_t(len(cubin)), b"90", b"k")
        if ptx is not None:
            fb.nvFatbinAddPTX(handle, ptx, ctypes.c_size_t(len(ptx)), b"90", b"k", None)
        size = ctypes.c_size_t()
        fb.nvFatbinSize(handle, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        fb.nvFatbinGet(handle, buf)
        fb.nvFatbinDestroy(ctypes.byref(handle))
        return parse_fatbin(buf.raw)

    cubin, ptx = compile_("-arch=sm_90", "CUBIN"), compile_("-arch=compute_90", "PTX")
    default = pack([], cubin, ptx)
    forced = pack(["-compress-all"], cubin, None)
    return {
        "tool": "NVRTC 12.8.93 + nvFatbin 12.8.90 (pip wheels)",
        "cubin_default": default[0].compression,
        "ptx_default": default[1].compression,
        "cubin_compress_all": forced[0].compression,
        "cubin_bytes": [forced[0].uncompressed_size, forced[0].stored_size],
    }


def debian_sizes(packages_file: Path, names: Iterable[str]) -> dict[str, int]:
    """Installed-Size (KiB) of each package in a Debian Packages index, in bytes."""
    wanted, sizes, current = set(names), {}, None
    for line in packages_file.read_text(errors="replace").splitlines():
        if line.startswith("Package: "):
            current = line[9:].strip()
        elif line.startswith("Installed-Size: ") and current in wanted and current not in sizes:
            sizes[current] = int(line[16:]) * 1024
    missing = wanted - set(sizes)
    if missing:
        raise SystemExit(f"bench/closure: {packages_file} lacks {', '.join(sorted(missing))}")
    return sizes


def dpkg_sizes(names: Iterable[str]) -> dict[str, int]:
    out = {}
    for name in names:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Installed-Size}", name], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().isdigit():
            out[name] = int(r.stdout) * 1024
    return out


def cpython_sizes(python: str) -> dict[str, Any]:
    prefix = Path(python).resolve().parent.parent
    total = 0
    for dirpath, dirnames, files in os.walk(prefix):
        if os.path.basename(dirpath).startswith("python3") and "site-packages" in dirnames:
            dirnames.remove("site-packages")
        total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    libs = dpkg_sizes(CPYTHON_LIBS)
    return {
        "source": f"{version(python)} as built at {prefix} "
        f"(standard library with its tests, as nixpkgs keeps them; site-packages left out) + Debian's "
        f"{len(libs)} runtime library packages on this machine",
        "interpreter": total,
        "libraries": libs,
    }


def version(python: str) -> str:
    return subprocess.run([python, "-V"], capture_output=True, text=True).stdout.strip()


def measure(
    python: str,
    cache: Path,
    say: Progress,
    torch_wheel: Path | None,
    requirements: list[str],
    nix_versions: dict[str, str],
) -> dict[str, Any]:
    """Everything closure-sizes.json holds."""
    with tempfile.TemporaryDirectory(prefix="closure-measure-") as tmp:
        work = Path(tmp)
        say("resolving `pip install sglang==0.5.9` (the baseline)")
        base = resolve(python, ["sglang==0.5.9"], {}, work)
        wheels = measure_wheels(python, cache, work, say, torch_wheel)
        known = {
            canonical(w["requirement"].split("==")[0]): {"file": w["file"], "unpacked": w["unpacked"]}
            for w in wheels.values()
        }
        measure_distributions(python, base, cache, work, say, known)
        say("resolving the variant's Python dependencies")
        line_attrs = ("sglang", "sgl-kernel", "flashinfer-python", "flashinfer-cubin", "flashinfer-jit-cache")
        pinned = {n: f"=={d['version']}" for n, d in base.items() if not is_separate(n, line_attrs)}
        inputs = sorted(set(requirements) | set(TORCH_NIX_DEPS) | set(TRITON_NIX_DEPS))
        versions = "nixpkgs' versions or ranges where the spec records them, else the baseline's, else pip's"
        try:
            deps = resolve(python, [*inputs, "torch==2.9.1"], pinned | nix_versions, work)
        except subprocess.CalledProcessError:
            say("nixpkgs' recorded versions do not resolve under pip's metadata; using the baseline's")
            versions = (
                "the baseline's versions where pip's environment has the package, else pip's choice (the "
                "versions the spec records for nixpkgs do not resolve under pip's metadata: nixpkgs relaxes "
                "pins that pip enforces)"
            )
            deps = resolve(python, [*inputs, "torch==2.9.1"], pinned, work)
        deps = {n: d for n, d in deps.items() if not is_separate(n, line_attrs)}
        known |= {n: {"file": d["file"], "unpacked": d["unpacked"]} for n, d in base.items()}
        measure_distributions(python, deps, cache, work, say, known)
        say("CUDA 12.8's default fatbin compression (NVRTC + nvFatbin)")
        fatbin = fatbin_default(work / "keep")
    # Debian trixie's package index, in the Nix 2.26 root scripts/setup-nix.sh keeps in the cache.
    found = sorted(cache.parent.glob(TRIXIE_PACKAGES))
    toolchain: dict[str, Any] = {}
    if found:
        trixie = found[0]
        toolchain = {
            "source": f"Debian trixie's Installed-Size of {len(GCC_PACKAGES)} packages "
            "(apt's index of trixie main, amd64)",
            "packages": debian_sizes(trixie, GCC_PACKAGES),
        }
    return {
        "_comment": "Written by `bench/closure --measure`; read by bench/closure. Unpacked bytes.",
        "measured": datetime.date.today().isoformat(),
        "python": version(python),
        "baseline": {
            "requirement": "sglang==0.5.9",
            "unpacked": sum(d["unpacked"] or 0 for d in base.values()),
            "unknown": sorted(n for n, d in base.items() if d["unpacked"] is None),
            # The baseline's edges are not needed: only the variant's dependencies are walked.
            "distributions": {n: {k: v for k, v in d.items() if k != "requires"} for n, d in base.items()},
        },
        "python_deps": {
            "inputs": inputs,
            "versions": versions,
            "distributions": deps,
        },
        "wheels": wheels,
        "fatbin_default": fatbin,
        "toolchain": toolchain,
        "cpython": cpython_sizes(python),
    }
