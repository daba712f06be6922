"""The runtime JIT's CUDA headers: matrix.toml's [jit-headers] against what the wheels really include.

FlashInfer, sglang's JIT kernels (sglang/jit_kernel in 0.5.9, sglang/kernels/jit in 0.5.23) and DeepGEMM
(inside sgl-kernel in 0.5.9, sgl-deep-gemm in 0.5.23) compile CUDA sources with nvcc at run time, against the
variant's CUDA_HOME (pkgs/cuda-home.nix). Which cudaPackages that home holds is data: [jit-headers]
`always`, plus the package that ships each header the JIT sources include ([jit-headers.cuda], globs). This
module reads the table (the Nix side, lib/default.nix `jitCudaParts`, computes the same list), scans a
wheel's JIT sources for `#include` lines, and classifies each one: a CUDA header (which package), a file the
wheel ships, a C/C++ standard header, a header [jit-headers.other] accounts for, or uncovered. An uncovered
include is a finding: a CUDA header the home may lack, or a table that no longer describes the wheel.

It reads `#include` lines textually (no preprocessor): a header included only under an #if counts too, which
is why [jit-headers.other] names some platform-only headers with the reason they do not matter.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError
from .spec.model import Spec
from .spec.schema import key

# Files the JIT hands to nvcc or the host compiler.
SOURCE_SUFFIXES = (".h", ".hh", ".hpp", ".cuh", ".cu", ".cc", ".cpp", ".cxx", ".inl", ".inc", ".jinja")
INCLUDE_RE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.MULTILINE)
# A Jinja expression inside an #include of a template (FlashInfer's fmha_v2 *.jinja): rendered at run time.
JINJA_RE = re.compile(r"\{\{.*?\}\}")
# cudaPackages attributes a table entry may name (nixpkgs' CUDA package set at the pin, FACTS.md).
CUDA_ATTRS = (
    "cuda_cccl", "cuda_cudart", "cuda_cupti", "cuda_nvcc", "cuda_nvml_dev", "cuda_nvrtc", "cuda_nvtx",
    "cuda_profiler_api", "libcublas", "libcufft", "libcufile", "libcurand", "libcusolver", "libcusparse",
    "libcusparse_lt", "cudnn", "nccl",
)  # fmt: skip

# The C++23 and C17 standard library headers: the compiler's, never CUDA's.
STANDARD_HEADERS = frozenset(
    # (a string split, not a list literal: 130 names read better as text)
    """
    algorithm any array atomic barrier bit bitset charconv chrono codecvt compare complex concepts
    condition_variable coroutine deque exception execution expected filesystem format forward_list fstream
    functional future initializer_list iomanip ios iosfwd iostream istream iterator latch limits list locale
    map memory memory_resource mutex new numbers numeric optional ostream print queue random ranges ratio
    regex scoped_allocator semaphore set shared_mutex source_location span spanstream sstream stack
    stacktrace stdexcept stdfloat stop_token streambuf string string_view strstream syncstream system_error
    thread tuple type_traits typeindex typeinfo unordered_map unordered_set utility valarray variant vector
    version cassert cctype cerrno cfenv cfloat cinttypes ciso646 climits clocale cmath csetjmp csignal
    cstdarg cstddef cstdint cstdio cstdlib cstring ctime cuchar cwchar cwctype
    assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h limits.h locale.h math.h setjmp.h
    signal.h stdalign.h stdarg.h stdatomic.h stdbool.h stddef.h stdint.h stdio.h stdlib.h stdnoreturn.h
    string.h tgmath.h threads.h time.h uchar.h wchar.h wctype.h
    """.split()  # noqa: SIM905
)


@dataclass(frozen=True)
class JitTable:
    """matrix.toml's [jit-headers]."""

    always: tuple[str, ...]
    roots: dict[str, tuple[str, ...]]  # wheel attribute -> directories inside the wheel
    cuda: dict[str, str]  # header glob -> cudaPackages attribute
    other: dict[str, str]  # header glob -> where it comes from (not CUDA)

    def parts(self) -> list[str]:
        """The cudaPackages attributes of CUDA_HOME, as lib/default.nix's jitCudaParts lists them."""
        return sorted(set(self.always) | set(self.cuda.values()))

    def cuda_package(self, header: str) -> str | None:
        return next((attr for glob, attr in self.cuda.items() if fnmatch.fnmatchcase(header, glob)), None)

    def other_reason(self, header: str) -> str | None:
        return next((why for glob, why in self.other.items() if fnmatch.fnmatchcase(header, glob)), None)


def _file(spec: Spec) -> str:
    return spec.path.name if spec.path.parent == Path(".") else str(spec.path)


def load_table(spec: Spec) -> JitTable:
    """Parse [jit-headers] (optional: an empty table describes no JIT); SpecError on a bad entry."""
    file, raw = _file(spec), spec.raw.get("jit-headers", {})

    def fail(where: str, value: object, problem: str) -> SpecError:
        return SpecError(file, where, value, problem)

    if not isinstance(raw, dict):
        raise fail("jit-headers", raw, "must be a table")
    for name in raw:
        if name not in ("always", "roots", "cuda", "other"):
            raise fail(
                f"jit-headers.{key(name)}", raw[name], "unknown field (known: always, roots, cuda, other)"
            )
    always = raw.get("always", [])
    if not isinstance(always, list) or not all(isinstance(a, str) for a in always):
        raise fail("jit-headers.always", always, "must be a list of cudaPackages attributes")
    for i, attr in enumerate(always):
        if attr not in CUDA_ATTRS:
            raise fail(
                f"jit-headers.always[{i}]", attr, f"not a cudaPackages attribute ({', '.join(CUDA_ATTRS)})"
            )
    tables: dict[str, dict[str, Any]] = {}
    for name in ("roots", "cuda", "other"):
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise fail(f"jit-headers.{name}", value, "must be a table")
        tables[name] = value
    wheels = {attr for line in spec.lines.values() for attr in line.wheels}
    roots: dict[str, tuple[str, ...]] = {}
    for attr, dirs in tables["roots"].items():
        where = f"jit-headers.roots.{key(attr)}"
        if attr not in wheels:
            raise fail(where, attr, "names no wheel of any release line")
        if not isinstance(dirs, list) or not dirs or not all(isinstance(d, str) and d for d in dirs):
            raise fail(where, dirs, "must be a non-empty list of directories inside the wheel")
        for i, d in enumerate(dirs):
            if d.startswith("/") or ".." in d.split("/"):
                raise fail(f"{where}[{i}]", d, "must be a relative path inside the wheel")
        roots[attr] = tuple(d.rstrip("/") for d in dirs)
    cuda: dict[str, str] = {}
    for glob, attr in tables["cuda"].items():
        if attr not in CUDA_ATTRS:
            raise fail(
                f"jit-headers.cuda.{key(glob)}",
                attr,
                f"not a cudaPackages attribute ({', '.join(CUDA_ATTRS)})",
            )
        cuda[glob] = attr
    other: dict[str, str] = {}
    for glob, why in tables["other"].items():
        if not isinstance(why, str) or not why:
            raise fail(f"jit-headers.other.{key(glob)}", why, "must say where the header comes from")
        other[glob] = why
    return JitTable(tuple(always), roots, cuda, other)


# --------------------------------------------------------------------------------------------------------
# Scanning a wheel


@dataclass(frozen=True)
class Include:
    file: str  # path inside the wheel
    line: int
    header: str
    angle: bool  # <...> rather than "..."

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class JitReport:
    wheel: str
    files: int = 0
    cuda: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # attr -> header -> [file:line]
    other: dict[str, str] = field(default_factory=dict)  # header -> reason
    uncovered: dict[str, list[str]] = field(default_factory=dict)  # header -> [file:line]

    @property
    def ok(self) -> bool:
        return not self.uncovered

    def to_json(self) -> dict[str, Any]:
        return {
            "wheel": self.wheel,
            "files": self.files,
            "ok": self.ok,
            "cuda": {attr: sorted(headers) for attr, headers in sorted(self.cuda.items())},
            "other": dict(sorted(self.other.items())),
            "uncovered": {h: where[:3] for h, where in sorted(self.uncovered.items())},
        }


def scan_wheel(path: Path, roots: tuple[str, ...]) -> tuple[list[Include], set[str]]:
    """Every #include in the wheel's files under `roots`, and the names of all the wheel's files."""
    includes: list[Include] = []
    with zipfile.ZipFile(path) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}
        for name in sorted(names):
            if not any(name.startswith(root + "/") for root in roots) or not name.endswith(SOURCE_SUFFIXES):
                continue
            data = zf.read(name)
            for m in INCLUDE_RE.finditer(data):
                line = data.count(b"\n", 0, m.start()) + 1
                header = m.group(2).decode("utf-8", "replace").strip()
                includes.append(Include(name, line, header, m.group(1) == b"<"))
    return includes, names


def _shipped(inc: Include, names: set[str]) -> bool:
    """Whether the wheel ships the included file: beside the includer, or at that path under any directory
    (the JIT passes the wheel's include directories with -I/-isystem). In a template, each Jinja expression
    (`kernel_{{ variant }}.h`) stands for any text: some file the wheel ships must fit it."""
    if JINJA_RE.search(inc.header):
        glob = "*/" + JINJA_RE.sub("*", inc.header.lstrip("./"))
        return any(fnmatch.fnmatchcase(n, glob) for n in names)
    if posixpath.normpath(posixpath.join(posixpath.dirname(inc.file), inc.header)) in names:
        return True
    suffix = "/" + inc.header.lstrip("./")
    return any(n.endswith(suffix) for n in names)


def classify(wheel: str, includes: list[Include], names: set[str], table: JitTable) -> JitReport:
    report = JitReport(wheel, files=len({i.file for i in includes}))
    for inc in includes:
        attr = table.cuda_package(inc.header)
        if attr is not None:
            report.cuda.setdefault(attr, {}).setdefault(inc.header, []).append(inc.where)
        elif _shipped(inc, names) or inc.header in STANDARD_HEADERS:
            continue
        elif (why := table.other_reason(inc.header)) is not None:
            report.other[inc.header] = why
        else:
            report.uncovered.setdefault(inc.header, []).append(inc.where)
    return report


def check_wheel(path: Path, attr: str, table: JitTable) -> JitReport:
    """Scan one wheel's JIT roots (per [jit-headers.roots]) and classify what they include."""
    roots = table.roots.get(attr)
    if not roots:
        raise ValueError(f"[jit-headers.roots] has no entry for {attr}")
    includes, names = scan_wheel(path, roots)
    if not includes:
        raise ValueError(
            f"{path.name}: no JIT sources under {', '.join(roots)}: the wheel changed under the spec"
        )
    return classify(path.name, includes, names, table)


# --------------------------------------------------------------------------------------------------------
# The table against the toolkit


def toolkit_headers(path: Path) -> set[str]:
    """The headers an NVIDIA redistributable wheel (pip's nvidia-*-cu12 or CUDA 13's nvidia-*) ships, as
    #include names them: relative to its include/. CUDA 13 nests CCCL in include/cccl/ (nvcc adds that
    directory itself); nixpkgs' cuda_cccl moves it back up to include/ (cuda_cccl.nix, CUDA >= 13.0), so
    the `cccl/` prefix is dropped here."""
    with zipfile.ZipFile(path) as zf:
        return {
            header.removeprefix("cccl/")
            for n in zf.namelist()
            if "/include/" in n and not n.endswith("/") and not n.endswith("__init__.py")
            for header in [n.split("/include/", 1)[1]]
        }


def check_against_toolkit(table: JitTable, headers: dict[str, set[str]]) -> list[str]:
    """Problems of the [jit-headers.cuda] entries whose package's header list is known (attr -> headers):
    a glob that matches none of its package's headers, or that matches another known package's."""
    problems = []
    for glob, attr in table.cuda.items():
        if attr in headers and not any(fnmatch.fnmatchcase(h, glob) for h in headers[attr]):
            problems.append(f"{glob!r} -> {attr}: {attr} ships no such header")
        for other, shipped in headers.items():
            if other != attr and any(fnmatch.fnmatchcase(h, glob) for h in shipped):
                problems.append(f"{glob!r} -> {attr}: {other} ships it")
    return problems
