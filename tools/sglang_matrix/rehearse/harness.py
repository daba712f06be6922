"""Runs inside the rehearsal's environment (its own interpreter, stdlib only): import modules or run one as
`python -m`, with the rehearsal's stand-ins, and write what happened as JSON.

    python harness.py CONFIG.json OUT.json

CONFIG: {"mode": "import" | "run", "modules": [...], "argv": [...], "gpu_only": {module: reason},
"torch_abi": {"packages": [...], "reason": str} | null, "torchvision_ops": bool}. Kept free of
sglang_matrix imports: the environment does not hold the tool.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import io
import json
import re
import runpy
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

# An import that fails with one of these in its message failed for want of a GPU, its driver or CUDA's
# runtime: what a machine without a GPU cannot do. Anything else is a real failure.
GPU_REASONS = re.compile(
    r"libcuda\.so|libnvrtc|libcudart|libcublas|libnvidia|libtorch_cuda|libc10_cuda|CUDA driver|"
    r"no CUDA GPUs|NVIDIA driver|cudart is not loaded|common_ops",
    re.IGNORECASE,
)

skips: dict[str, str] = {}


class StandIn(types.ModuleType):
    """What a GPU-only module becomes after its real import failed for want of a GPU: every attribute is
    a stand-in object, so `from module import name` and decorators at module level still go through."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return StandInObject(f"{self.__name__}.{name}")


class StandInObject:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, name: str) -> StandInObject:
        return StandInObject(f"{self._name}.{name}")

    def __call__(self, *args: object, **kwargs: object) -> object:
        # Used as a bare decorator: hand the function back unchanged.
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return StandInObject(f"{self._name}(...)")

    def __repr__(self) -> str:
        return f"<stand-in {self._name}>"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# An import of a package that links the line's torch (a wheel-torch line beside a stand-in torch) that fails
# with one of these failed because the stand-in is not that torch: an undefined torch/c10/ATen C++ symbol,
# a CUDA 13 library the stand-in does not bring, or the CUDA part of torch itself.
TORCH_ABI_REASONS = re.compile(
    r"undefined symbol: _Z\w*?(?:3c10|2at|5torch)\d|"
    r"lib[\w+.-]*\.so\.13: cannot open shared object file|"
    r"lib(?:torch_cuda|c10_cuda)\.so: cannot open shared object file"
)

torch_abi_skips: dict[str, str] = {}


@dataclass
class Rule:
    """Stand in for a module under one of `prefixes` whose import fails with an error matching `pattern`."""

    prefixes: tuple[str, ...]
    reasons: dict[str, str]  # prefix -> why it may fail so
    pattern: re.Pattern[str]
    table: dict[str, str]  # where the stand-ins are recorded

    def reason(self, name: str) -> str | None:
        for prefix in self.prefixes:
            if name == prefix or name.startswith(prefix + "."):
                return self.reasons[prefix]
        return None


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader, rules: list[tuple[Rule, str]]) -> None:
        self.real = real
        self.rules = rules
        self.failed = False

    def __getattr__(self, name: str) -> object:
        # get_code, get_source, is_package, get_filename...: runpy and inspect ask the loader for them.
        return getattr(self.real, name)

    def _stand_in(self, name: str, err: Exception) -> bool:
        """Whether the failure (or what caused it: torch re-raises a dlopen error as its own) is one the
        rules stand in for; if so, record it with the matching error's first line."""
        chain: list[BaseException] = []
        link: BaseException | None = err
        while link is not None and link not in chain:
            chain.append(link)
            link = link.__cause__ or link.__context__
        for rule, reason in self.rules:
            for exc in chain:
                if rule.pattern.search("".join(traceback.format_exception_only(type(exc), exc))):
                    rule.table[name] = f"{reason} ({_first_line(exc)})"
                    return True
        return False

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        try:
            return self.real.create_module(spec)
        except Exception as err:  # an extension module fails here, when it is loaded
            if not self._stand_in(spec.name, err):
                raise  # a real failure
            self.failed = True
            return StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        if self.failed:
            module.__class__ = StandIn
            return
        try:
            self.real.exec_module(module)  # type: ignore[attr-defined]
        except Exception as err:
            if not self._stand_in(module.__name__, err):
                raise  # a real failure, not the want of a GPU or of the line's torch
            keep = ("__name__", "__spec__", "__loader__", "__path__", "__file__", "__package__")
            saved = {k: module.__dict__[k] for k in keep if k in module.__dict__}
            module.__dict__.clear()
            module.__dict__.update(saved)
            module.__class__ = StandIn


class _StandInFinder(importlib.abc.MetaPathFinder):
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        rules = [(rule, reason) for rule in self.rules if (reason := rule.reason(name)) is not None]
        if not rules:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _StandInFinder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _StandInLoader(spec.loader, rules)
                return spec
        return None


def declare_torchvision_ops() -> list[str]:
    """PyPI's torchvision is built against PyPI's CUDA torch: beside a CPU torch its compiled operators
    (_C) do not load, and its Python code fails at `register_fake("torchvision::nms")`. Declare the
    operator names it registers (read from its own source, without kernels) so its Python modules
    import; calling one of those operators would still fail. The variant's torchvision is nixpkgs'
    build against the variant's torch and needs none of this."""
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return []
    source = Path(next(iter(spec.submodule_search_locations)), "_meta_registrations.py")
    if not source.is_file():
        return []
    ops = sorted(set(re.findall(r"register_fake\(\s*[\"']torchvision::(\w+)[\"']", source.read_text())))
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")
    declared = []
    for op in ops:
        with contextlib.suppress(RuntimeError):  # already there: the real operators loaded after all
            lib.define(f"{op}(Tensor[] args) -> Tensor")
            declared.append(op)
    # Keep the library object alive for the life of the process.
    globals()["_torchvision_fragment"] = lib
    return declared


def import_chain(err: BaseException, site_roots: list[str]) -> list[dict[str, object]]:
    """The `import` statements the failure passed through, outermost first (file:line in site-packages)."""
    chain = []
    for frame in traceback.extract_tb(err.__traceback__):
        line = (frame.line or "").strip()
        if not line.startswith(("import ", "from ")):
            continue
        where = frame.filename
        for root in site_roots:
            if where.startswith(root):
                where = where[len(root) :].lstrip("/")
                break
        chain.append({"file": where, "line": frame.lineno, "code": line})
    return chain


def root_cause(err: BaseException) -> BaseException:
    """transformers and others re-raise import errors as their own: the first cause is what is missing."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if nxt is None:
            break
        err = nxt
    return err


def describe(err: BaseException, site_roots: list[str]) -> dict[str, object]:
    cause = root_cause(err)
    chain = import_chain(err, site_roots)
    if cause is not err:
        chain += [c for c in import_chain(cause, site_roots) if c not in chain]
    return {
        "error": _first_line(err),
        "cause": _first_line(cause),
        "missing": getattr(cause, "name", None) if isinstance(cause, ModuleNotFoundError) else None,
        "chain": chain,
    }


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    site_roots = sorted((p for p in sys.path if p.endswith("site-packages")), key=len, reverse=True)
    result: dict[str, object] = {"python": sys.version.split()[0], "results": []}
    rules = []
    abi = config.get("torch_abi")
    if abi:  # first: beside a stand-in torch, what links the line's torch fails for that reason first
        packages = tuple(abi["packages"])
        rules.append(
            Rule(packages, dict.fromkeys(packages, abi["reason"]), TORCH_ABI_REASONS, torch_abi_skips)
        )
    if config.get("gpu_only"):
        gpu = config["gpu_only"]
        rules.append(Rule(tuple(gpu), gpu, GPU_REASONS, skips))
    if rules:
        sys.meta_path.insert(0, _StandInFinder(rules))
    if config.get("torchvision_ops"):
        result["torchvision_ops"] = declare_torchvision_ops()
    results: list[dict[str, object]] = []
    if config["mode"] == "import":
        for module in config["modules"]:
            start = time.monotonic()
            entry: dict[str, object] = {"module": module}
            try:
                importlib.import_module(module)
                entry["ok"] = True
            except BaseException as err:  # an import may raise anything, SystemExit included
                entry.update(ok=False, **describe(err, site_roots))
            entry["seconds"] = round(time.monotonic() - start, 2)
            results.append(entry)
    else:
        module, argv = config["module"], config.get("argv", [])
        stdout = io.StringIO()
        entry = {"module": module, "argv": argv}
        sys.argv = [module, *argv]
        try:
            with contextlib.redirect_stdout(stdout):
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            code: object = 0
        except SystemExit as stop:
            code = stop.code if stop.code is not None else 0
        except BaseException as err:
            code = 1
            entry.update(describe(err, site_roots))
        entry["exit_code"] = code if isinstance(code, int) else 1
        entry["ok"] = entry["exit_code"] == 0
        entry["stdout"] = stdout.getvalue()[-(1 << 20) :]
        results.append(entry)
    result["results"] = results
    result["stand_ins"] = skips
    result["torch_abi_stand_ins"] = torch_abi_skips
    out_path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
