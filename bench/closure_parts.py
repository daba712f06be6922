"""The arithmetic of bench/closure: which parts a variant's closure holds, where each size comes from,
what the levers save, and what may be said about the target.

Sizes are unpacked bytes (MB = 10^6 bytes), read from wheels' zip directories, from Debian's package
metadata or from files on disk; `bench/closure --measure` records them in bench/closure-sizes.json and
this module only adds them up, so that tests/test_bench_closure.py can check it without downloads.

Each part says where its size comes from and of which kind it is:
  measured     the very file the variant installs (the lock's sizes of the line's wheels)
  proxy        a stand-in named in the source: pip's wheel of the same version, or a Debian package
  lower bound  a stand-in known to hold less than the real thing
  unknown      no size can be known here (never guessed)
  not counted  not in the closure, with the reason (a lever switched off, a library torch does not link)
A total with a lower bound or an unknown part is itself a lower bound, and no verdict is drawn from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from closure_data import (  # the facts; re-exported for the script and the tests
    CUDA_LIBS,
    CUDNN_MANIFEST,
    FACTS_BASELINE,
    MANIFEST,
    MB,
    MEASURED,
    NIXPKGS_TORCH,
    NOT_LINKED,
    OTHER_WHEELS,
    TARGET,
    TORCH_NIX_DEPS,
    TRITON_NIX_DEPS,
    CudaLib,
    canonical,
    is_separate,
)

KINDS = ("measured", "proxy", "lower bound", "unknown", "not counted")
__all__ = [
    "CUDA_LIBS", "CUDNN_MANIFEST", "FACTS_BASELINE", "MANIFEST", "MB", "MEASURED", "NIXPKGS_TORCH",
    "NOT_LINKED", "OTHER_WHEELS", "TARGET", "TORCH_NIX_DEPS", "TRITON_NIX_DEPS", "CudaLib", "canonical",
    "is_separate",
]  # fmt: skip


@dataclass(frozen=True)
class Switches:
    """What the spec asks of the variant's torch ([build] torch-cuda-libraries, torch-nvcc-flags, a
    target's `cudnn`), or nixpkgs' defaults where the spec says nothing."""

    cudnn: bool = True
    cusparselt: bool = True
    compress: bool = False
    # Python requirements the spec leaves out (moved to `dropped`) that the recorded sizes still hold.
    drop: frozenset[str] = frozenset()

    def describe(self) -> str:
        off = [name for name, on in (("cuDNN", self.cudnn), ("cuSPARSELt", self.cusparselt)) if not on]
        how = "compressed (-Xfatbin -compress-all)" if self.compress else "as nvcc stores it"
        parts = [f"torch's device code {how}"]
        parts.append("without " + " and ".join(off) if off else "every CUDA library")
        if self.drop:
            parts.append("Python requirements dropped: " + ", ".join(sorted(self.drop)))
        return "; ".join(parts)


def switches_from(raw: Mapping[str, Any], target: str | None = None, drop: Iterable[str] = ()) -> Switches:
    """The switches a spec sets (the raw TOML), before or after the levers' patch: absent keys keep
    nixpkgs' defaults. A target's `cudnn = false` turns cuDNN off for it. `drop`: Python requirements
    the recorded sizes hold but the spec no longer requires."""
    build = raw.get("build") or {}
    libs = build.get("torch-cuda-libraries") or {}
    flags = build.get("torch-nvcc-flags") or []
    target_cudnn = ((raw.get("targets") or {}).get(target) or {}).get("cudnn", True) if target else True
    return Switches(
        cudnn=bool(libs.get("cudnn", True)) and bool(target_cudnn),
        cusparselt=bool(libs.get("cusparselt", True)),
        compress="-compress-all" in " ".join(str(f) for f in flags),
        drop=frozenset(canonical(d) for d in drop),
    )


@dataclass(frozen=True)
class Part:
    group: str
    name: str
    bytes: int | None
    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if (self.bytes is None) != (self.kind == "unknown"):
            raise ValueError(f"{self.name}: only an unknown part has no size")


@dataclass(frozen=True)
class Total:
    bytes: int
    incomplete: tuple[str, ...]  # parts counted as lower bounds or not at all (unknown)

    @property
    def is_bound(self) -> bool:
        return bool(self.incomplete)


def total(parts: Iterable[Part]) -> Total:
    parts = list(parts)
    counted = sum(p.bytes or 0 for p in parts if p.kind != "not counted")
    incomplete = tuple(f"{p.name} ({p.kind})" for p in parts if p.kind in ("lower bound", "unknown"))
    return Total(counted, incomplete)


def device_code(by_sm: Mapping[str, list[int]], cap: str, index: int) -> tuple[int, str | None]:
    """Device code for one capability ("9.0") from a per-SM table {"90": [stored, uncompressed]}, and a
    note where the table does not tell it exactly: pip's builds compile some capabilities fully and run
    others on a same-major build (8.9 on 8.6's code), while a variant compiles the full set for its own.
    Where the figure is missing or under a quarter of the same major's largest, that largest stands in."""
    major, minor = cap.split(".")
    sm = f"{major}{minor}"
    same_major = {k: v[index] for k, v in by_sm.items() if k[:-1] == major}
    largest = max(same_major.values(), default=0)
    exact = same_major.get(sm, 0)
    if exact and exact * 4 >= largest:
        return exact, None
    if largest:
        return largest, f"{cap}: {exact / MB:,.0f} MB in pip's build, same-major {largest / MB:,.0f} MB used"
    return 0, f"{cap}: no code for it in pip's build"


@dataclass(frozen=True)
class VariantView:
    """What the arithmetic needs of a variant (tests build these by hand)."""

    name: str
    system: str
    python: str
    cuda: str
    target: str
    capabilities: tuple[str, ...]
    wheels: dict[str, str]  # attr -> file name
    pruned: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        here = (self.system, self.python, self.cuda)
        return here == (MEASURED["system"], MEASURED["python"], MEASURED["cuda"])


def _wheel(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    try:
        return data["wheels"][key]
    except KeyError:
        raise KeyError(f"closure-sizes.json has no figures for {key}: run bench/closure --measure") from None


def _src(entry: Mapping[str, Any], what: str) -> str:
    return f"{what}: pip's {entry['file']}"


def line_wheel_parts(view: VariantView, lock: Mapping[str, Mapping[str, Any]]) -> list[Part]:
    parts = []
    for attr, filename in sorted(view.wheels.items()):
        entry = lock.get(filename) or {}
        if entry.get("unpacked") is None:
            why = "GitHub-only: not reachable here" if entry.get("url") else "not in the lock"
            parts.append(Part("SGLang's wheels", attr, None, "unknown", f"{filename} ({why})"))
            continue
        pruned = entry.get("prunable") or {}
        paths = view.pruned.get(attr, ())
        size = entry["unpacked"] - sum(pruned.get(p) or 0 for p in paths)
        note = f", less {', '.join(paths)}" if paths else ""
        parts.append(
            Part("SGLang's wheels", attr, size, "measured", f"pkgs/sources.json (the lock){note}: {filename}")
        )
    return parts


def torch_parts(data: Mapping[str, Any], view: VariantView, sw: Switches) -> list[Part]:
    torch = _wheel(data, "torch")
    dev = torch["device"]
    host = torch["unpacked"] - dev["all_stored"]
    parts = [
        Part(
            "torch",
            "host code",
            host,
            "proxy",
            _src(torch, "less all its device code; pip's links MKL statically, nixpkgs' OpenBLAS"),
        )
    ]
    index = 0 if sw.compress else 1
    size, notes = 0, []
    for cap in view.capabilities:
        n, note = device_code(dev["by_sm"], cap, index)
        size += n
        notes += [note] if note else []
    how = (
        "LZ4 as pip's build stores it (-Xfatbin -compress-all)"
        if sw.compress
        else "uncompressed: nvcc stores cubins so without -compress-all (" + _fatbin_evidence(data) + ")"
    )
    caps = ", ".join(view.capabilities)
    extra = f"; {'; '.join(notes)}" if notes else ""
    parts.append(Part("torch", f"device code ({caps})", size, "proxy", _src(torch, how) + extra))
    nccl = _wheel(data, "nccl")
    ndev = nccl["device"]
    nsize = nccl["unpacked"] - ndev["all_stored"]
    nnotes = []
    for cap in view.capabilities:
        n, note = device_code(ndev["by_sm"], cap, 0)
        nsize += n
        nnotes += [note] if note else []
    parts.append(
        Part(
            "torch",
            "NCCL (static in libtorch_cuda)",
            nsize,
            "proxy",
            _src(nccl, "host code + the variant's SMs (NCCL compresses its own)")
            + (f"; {'; '.join(nnotes)}" if nnotes else ""),
        )
    )
    return parts


def _fatbin_evidence(data: Mapping[str, Any]) -> str:
    exp = data.get("fatbin_default") or {}
    if exp.get("cubin_default") == "none":
        return f"measured with {exp.get('tool', 'nvFatbin')}"
    return "not measured: run --measure"


def cuda_parts(data: Mapping[str, Any], sw: Switches) -> list[Part]:
    parts = []
    for lib in CUDA_LIBS:
        entry = _wheel(data, lib.key)
        archive = ""
        if lib.archive:
            archive = f"; NVIDIA archive {lib.archive / MB:,.0f} MB (.tar.xz, static libs too)"
        note = f"; {lib.note}" if lib.note else ""
        source = f"pip's {entry['file']} for nixpkgs' {lib.nixpkgs}{note}{archive}"
        if lib.switch and not getattr(sw, lib.switch):
            off = f"switched off in the spec; {source}"
            parts.append(Part("CUDA libraries", lib.label, 0, "not counted", off))
        else:
            parts.append(Part("CUDA libraries", lib.label, entry["unpacked"], "proxy", source))
    parts += [Part("CUDA libraries", name, 0, "not counted", why) for name, why in NOT_LINKED.items()]
    return parts


def runtime_parts(data: Mapping[str, Any]) -> list[Part]:
    triton = _wheel(data, "triton")
    bundled = sum((triton.get("bundled_cuda") or {}).values())
    parts = [
        Part(
            "triton",
            "triton",
            triton["unpacked"] - bundled,
            "proxy",
            _src(
                triton,
                f"less its bundled CUDA tools and headers ({bundled / MB:,.0f} MB), which nixpkgs' "
                "triton takes from cudaPackages",
            ),
        )
    ]
    nvcc = _wheel(data, "nvcc")
    missing = nvcc.get("missing_from") or {}
    if missing.get("files"):
        size = nvcc["unpacked"] + sum(missing["files"].values())
        kind = "proxy"
        src = _src(nvcc, f"+ nvcc, cudafe++, fatbinary, nvlink, bin2c from {missing['source']}")
    else:
        size, kind = nvcc["unpacked"], "lower bound"
        src = _src(nvcc, "has ptxas and cicc but not the nvcc driver, cudafe++, fatbinary, nvlink")
    parts.append(Part("JIT toolchain", "nvcc", size, kind, src))
    cccl = _wheel(data, "cccl")
    parts.append(Part("JIT toolchain", "CCCL", cccl["unpacked"], "proxy", _src(cccl, "headers")))
    tool = data.get("toolchain") or {}
    if tool.get("packages"):
        parts.append(
            Part(
                "JIT toolchain",
                "host compiler (gcc 14, binutils, libc headers)",
                sum(tool["packages"].values()),
                "proxy",
                f"{tool['source']}; torch's inductor config points at the compiler too",
            )
        )
    else:
        parts.append(Part("JIT toolchain", "host compiler", None, "unknown", "not measured: run --measure"))
    return parts


def reachable(graph: Mapping[str, Mapping[str, Any]], roots: Iterable[str]) -> set[str]:
    """Distributions the roots pull in through the recorded Requires-Dist edges, roots included. Edges are
    per extra ({"": [...], "extra": [...]}; "name[extra]" asks for one), or a plain list (every edge)."""
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [(canonical(r), "") for r in roots]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen or name not in graph:
            continue
        seen.add((name, extra))
        names.add(name)
        requires = graph[name].get("requires") or []
        if isinstance(requires, Mapping):
            deps = list(requires.get(extra, [])) + (list(requires.get("", [])) if extra else [])
        else:
            deps = list(requires)
        for dep in deps:
            dep_name, _, rest = dep.partition("[")
            todo.append((canonical(dep_name), ""))
            todo += [(canonical(dep_name), canonical(e)) for e in rest.rstrip("]").split(",") if e]
    return names


def python_parts(
    data: Mapping[str, Any], line_wheels: Iterable[str], drop: frozenset[str] = frozenset()
) -> list[Part]:
    deps = data.get("python_deps") or {}
    graph = deps.get("distributions") or {}
    if drop:
        if any("requires" not in d for d in graph.values()):
            raise KeyError("closure-sizes.json has no Requires-Dist edges: run bench/closure --measure")
        # torch stays a root: its own requirements stay whatever the spec drops.
        keep = reachable(graph, [*(i for i in deps["inputs"] if canonical(i) not in drop), "torch"])
        graph = {n: d for n, d in graph.items() if n in keep}
    dists = {n: d for n, d in graph.items() if not is_separate(n, line_wheels)}
    unknown = sorted(n for n, d in dists.items() if d.get("unpacked") is None)
    size = sum(d["unpacked"] for d in dists.values() if d.get("unpacked") is not None)
    parts = [
        Part(
            "Python",
            f"dependencies ({len(dists)} distributions)",
            size,
            "lower bound" if unknown else "proxy",
            f"pip's wheels, {deps.get('versions', 'versions unknown')}"
            + (f"; no wheel, size unknown: {', '.join(unknown)}" if unknown else ""),
        )
    ]
    cpy = data.get("cpython") or {}
    if cpy:
        parts.append(
            Part(
                "Python",
                "CPython and the C libraries it links",
                cpy["interpreter"] + sum(cpy["libraries"].values()),
                "proxy",
                cpy["source"],
            )
        )
    else:
        parts.append(Part("Python", "CPython", None, "unknown", "not measured: run --measure"))
    return parts


def closure(
    data: Mapping[str, Any], view: VariantView, lock: Mapping[str, Mapping[str, Any]], sw: Switches
) -> list[Part]:
    """Every part of the variant's closure, in print order."""
    return [
        *line_wheel_parts(view, lock),
        *torch_parts(data, view, sw),
        *cuda_parts(data, sw),
        *runtime_parts(data),
        *python_parts(data, view.wheels, sw.drop),
    ]


@dataclass(frozen=True)
class Lever:
    name: str
    switch: str  # what to write in matrix.toml
    saves: int
    costs: str


LEVERS = (
    (
        "compress torch's device code as pip's builds do",
        '[build] torch-nvcc-flags = ["-Xfatbin", "-compress-all"]',
        {"compress": True},
        "nothing at run time but a decompression when each kernel image first loads (pip's torch "
        "ships so); the torch derivation (and its hash) changes",
    ),
    (
        "build torch without cuDNN",
        "[build] torch-cuda-libraries = { cudnn = false }",
        {"cudnn": False},
        "torch's cuDNN-backed ops fall back to native CUDA kernels or fail: convolutions run slower "
        "(vision encoders' patch embeddings), the cuDNN attention backend of SDPA and cuDNN RNNs are "
        "gone; SGLang's text LLM paths use their own attention kernels",
    ),
    (
        "build torch without cuSPARSELt",
        "[build] torch-cuda-libraries = { cusparselt = false }",
        {"cusparselt": False},
        "2:4 semi-structured sparse matmuls lose their cuSPARSELt backend (torch._cslt_sparse_mm; "
        "to_sparse_semi_structured falls back to CUTLASS); dense models are unaffected",
    ),
    (
        "leave out `datasets` (and what only it pulls in: pyarrow, pandas, ...)",
        '[lines."0.5.9".wheels.sglang] move datasets from `requires` to `dropped`',
        {"drop": frozenset({"datasets"})},
        "sglang.bench_serving and sglang's eval/ and test/ scripts import datasets at module level and "
        "fail; the server never imports it",
    ),
    (
        "leave out `llguidance`",
        '[lines."0.5.9".wheels.sglang] move llguidance from `requires` to `dropped`',
        {"drop": frozenset({"llguidance"})},
        "--grammar-backend llguidance is unavailable (imported only when chosen); xgrammar, the default, "
        "and outlines remain; nixpkgs' llguidance 1.x does not meet sglang's <0.8 pin anyway",
    ),
)


EVERY_LEVER = Switches(
    cudnn=False, cusparselt=False, compress=True, drop=frozenset({"datasets", "llguidance"})
)


def levers(
    data: Mapping[str, Any], view: VariantView, lock: Mapping[str, Mapping[str, Any]], base: Switches
) -> list[Lever]:
    """Each lever's saving, measured as the difference it makes to the closure from `base`."""
    before = total(closure(data, view, lock, base)).bytes
    out = []
    for name, switch, change, costs in LEVERS:
        sw = replace(base, **change)
        if "drop" in change:
            sw = replace(sw, drop=base.drop | change["drop"])
        after = total(closure(data, view, lock, sw)).bytes
        out.append(Lever(name, switch, before - after, costs))
    return out


def verdict(tot: Total, baseline: int, target: float) -> str:
    """What may be said: a lower bound never 'meets' a target."""
    ratio = tot.bytes / baseline
    if tot.is_bound:
        head = f"at least {ratio:.3f} (a lower bound: {'; '.join(tot.incomplete)})"
        if ratio > target:
            return f"{head}: above {target} already, so the target is missed"
        return f"{head}: whether it is at most {target} cannot be told from a bound"
    return f"{ratio:.3f}: " + ("meets" if ratio <= target else "misses") + f" the target of at most {target}"


def table(parts: list[Part], baseline: int) -> list[str]:
    """The parts as printed lines: group, part, MB, share of the baseline, kind, source."""
    width = max(len(p.name) for p in parts) + 2
    lines = [f"{'part':{width + 16}} {'MB':>8} {'of pip':>7}  {'kind':12} source", "-" * 110]
    group = None
    for p in parts:
        if p.group != group:
            group = p.group
            lines.append(f"{group}")
        size = "?" if p.bytes is None else f"{p.bytes / MB:,.0f}"
        share = "" if p.bytes is None else f"{p.bytes / baseline:.3f}"
        if p.kind == "not counted":
            size, share = "-", ""
        lines.append(f"  {p.name:{width + 14}} {size:>8} {share:>7}  {p.kind:12} {p.source}")
    return lines
