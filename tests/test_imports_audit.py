"""`sglang-matrix audit --imports`: sglang's module-level import closure (ast) against a variant's closure.

The walk is tested on small synthetic packages (kinds of imports, relative imports, package __init__ chains,
shortest chains, with hypothesis on random import graphs); the command on a synthetic sglang wheel and a
synthetic environment of installed distributions, in scratch copies of the spec with ipython and
torchvision dropped and provided (whichever state matrix.toml is in); and on the real sglang 0.5.9 wheel,
fetched through pip (`network`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from audit_fixtures import write_wheel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sglang_matrix.errors import UserError
from sglang_matrix.imports.dists import read_environment, stdlib_modules
from sglang_matrix.imports.walk import WheelModules, walk
from sglang_matrix.lockfile import fetch_index_wheel, wanted_wheels
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants

Cli = Callable[..., CompletedProcess[str]]

SGLANG = "sglang-0.5.9-py3-none-any.whl"
SGLANG_TABLE = 'lines."0.5.9".wheels.sglang'
DROPPED_REASONS = {
    "ipython": "interactive shell; not used to serve",
    "torchvision": "vision models only; would rebuild against the custom torch",
}


# --- helpers -------------------------------------------------------------------------------------------


def make_wheel(path: Path, sources: dict[str, str]) -> Path:
    """A wheel holding these module sources (member path -> text) and a dist-info."""
    name, version = path.name.split("-")[:2]
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members = {k: v.encode() for k, v in sources.items()}
    return write_wheel(path, {**members, f"{name}-{version}.dist-info/METADATA": meta})


def walk_sources(tmp_path: Path, sources: dict[str, str], *entries: str):
    with WheelModules(make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", sources)) as wheel:
        return walk(wheel, entries), {n: wheel.module(n) for n in wheel.sources}


def hops(reach) -> list[str]:
    return [site.where for site in reach.chain]


def table_body(text: str, header: str) -> tuple[int, int]:
    """The span of a TOML table's body: after its header line, up to the next header."""
    start = text.index(f"[{header}]\n") + len(f"[{header}]\n")
    end = text.find("\n[", start)
    return start, len(text) if end < 0 else end + 1


def replace_table(text: str, header: str, body: str) -> str:
    start, end = table_body(text, header)
    return text[:start] + body + "\n" + text[end:]


def set_state(text: str, provided: bool) -> str:
    """matrix.toml with ipython and torchvision in sglang's `requires` (provided) or `dropped`, whichever
    table they are in now."""
    for table in ("requires", "dropped"):
        start, end = table_body(text, f"{SGLANG_TABLE}.{table}")
        body = re.sub(r"(?m)^(ipython|torchvision) = .*\n", "", text[start:end])
        text = text[:start] + body + text[end:]
    table = "requires" if provided else "dropped"
    start, _ = table_body(text, f"{SGLANG_TABLE}.{table}")
    lines = "".join(
        f'{name} = "{name if provided else reason}"\n' for name, reason in DROPPED_REASONS.items()
    )
    return text[:start] + lines + text[start:]


def edit(project: Path, change: Callable[[str], str]) -> None:
    path = project / "matrix.toml"
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


def audit_json(cli: Cli, project: Path, *args: str | Path) -> tuple[int, dict[str, Any]]:
    # A cache of its own: without --env the audit takes a rehearsal's environment from the cache when one
    # exists for the closure, and the user's cache must not decide what these tests see.
    isolated = {"SGLANG_MATRIX_CACHE": str(project.parent / "isolated-cache")}
    proc = cli("--root", str(project), "audit", "--imports", "--json", *(str(a) for a in args), env=isolated)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout, f"no JSON (exit {proc.returncode}): {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def result(report: dict[str, Any]) -> dict[str, Any]:
    """The one variant's result."""
    (variant,) = report["variants"]
    return report["results"][variant["result"]]


def by_module(report: dict[str, Any], severity: str | None = None) -> dict[str, dict[str, Any]]:
    findings = result(report)["findings"]
    return {f["module"]: f for f in findings if severity is None or f["severity"] == severity}


def chain(finding: dict[str, Any]) -> list[str]:
    return [f"{hop['file']}:{hop['line']}" for hop in finding["chain"]]


def dist_info(site: Path, name: str, files: list[str], requires: tuple[str, ...] = ()) -> None:
    """An installed distribution: METADATA (with Requires-Dist) and a RECORD listing its files."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(meta, encoding="utf-8")
    record = [*files, f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("".join(f"{f.split(',')[0]},,\n" for f in record), encoding="utf-8")


# --- the walk: kinds of imports -------------------------------------------------------------------------


KINDS_SOURCE = """\
import os
from typing import TYPE_CHECKING
import hard_top
if TYPE_CHECKING:
    import only_typing
else:
    import typing_else
if not TYPE_CHECKING:
    import not_typing
if _FLAG:
    import flagged
elif other():
    import flagged_elif
try:
    import guarded_one
except ImportError:
    import fallback
try:
    import reraised
except ImportError as e:
    raise RuntimeError("install it") from e
try:
    import wrong_handler
except ValueError:
    pass
try:
    import broad
except Exception:
    broad = None
with suppress(ModuleNotFoundError):
    import suppressed
class C:
    import in_class
    def method(self):
        import in_method
def f():
    import in_function
if __name__ == "__main__":
    import in_main
"""


def test_import_kinds(tmp_path: Path) -> None:
    _, modules = walk_sources(tmp_path, {"pkg/__init__.py": "", "pkg/m.py": KINDS_SOURCE})
    kinds = {site.target: (site.kind, site.condition) for site in modules["pkg.m"].sites}
    assert kinds == {
        "os": ("module", ""),
        "typing": ("module", ""),
        "hard_top": ("module", ""),
        "only_typing": ("type-checking", ""),
        "typing_else": ("module", ""),
        "not_typing": ("module", ""),
        "flagged": ("conditional", "if _FLAG"),
        "flagged_elif": ("conditional", "if not (_FLAG); if other()"),
        "guarded_one": ("guarded", "try/except ImportError"),
        "fallback": ("conditional", "except ImportError (fallback)"),
        "reraised": ("module", ""),  # the handler re-raises: a missing module still fails the import
        "wrong_handler": ("module", ""),  # ValueError does not catch ModuleNotFoundError
        "broad": ("guarded", "try/except Exception"),
        "suppressed": ("guarded", "with suppress(ModuleNotFoundError)"),
        "in_class": ("module", ""),
        "in_method": ("function", ""),
        "in_function": ("function", ""),
        "in_main": ("main", ""),
    }
    line = {site.target: site.line for site in modules["pkg.m"].sites}
    assert line["hard_top"] == 3 and line["in_main"] == 39


def test_relative_imports_and_submodules(tmp_path: Path) -> None:
    sources = {
        "pkg/__init__.py": "",
        "pkg/a/__init__.py": "from . import b\nfrom .b import name\nfrom .. import top\n"
        "from ..c import d, attr\n",
        "pkg/a/b.py": "from . import sibling_attr\n",
        "pkg/top.py": "",
        "pkg/c/__init__.py": "",
        "pkg/c/d.py": "",
        "pkg/e.py": "from .a import b\nfrom .a.b import x\nfrom ..beyond import y\nimport pkg.c.d as dd\n",
    }
    _, modules = walk_sources(tmp_path, sources)
    targets = {name: [s.target for s in mod.sites] for name, mod in modules.items() if mod.sites}
    assert targets == {
        # `from . import b` imports the package, then its submodule b; `name` is an attribute
        "pkg.a": ["pkg.a", "pkg.a.b", "pkg.a.b", "pkg", "pkg.top", "pkg.c", "pkg.c.d"],
        "pkg.a.b": ["pkg.a"],
        # beyond the top-level package: CPython's ImportError, not a dependency
        "pkg.e": ["pkg.a", "pkg.a.b", "pkg.a.b", "pkg.c.d"],
    }


def test_init_chain_runs_every_parent_package(tmp_path: Path) -> None:
    """Importing a.b.c runs a/__init__ and a/b/__init__: their imports are on the chain."""
    sources = {
        "pkg/__init__.py": "",
        "pkg/entry.py": "import os\nfrom pkg.sub.inner.leaf import thing\n",
        "pkg/sub/__init__.py": "import from_sub_init\n",
        "pkg/sub/inner/__init__.py": "\n\nimport from_inner_init\n",
        "pkg/sub/inner/leaf.py": "import from_leaf\n",
    }
    result, _ = walk_sources(tmp_path, sources, "pkg.entry")
    assert set(result.external) == {"os", "from_sub_init", "from_inner_init", "from_leaf"}
    assert hops(result.external["from_inner_init"]["pkg.entry"]) == [
        "pkg/entry.py:2",
        "pkg/sub/inner/__init__.py:3",
    ]
    assert hops(result.external["from_leaf"]["pkg.entry"]) == ["pkg/entry.py:2", "pkg/sub/inner/leaf.py:1"]
    # An entry module's own parents run first, with no hop before them.
    result, _ = walk_sources(tmp_path, sources, "pkg.sub.inner.leaf")
    assert hops(result.external["from_sub_init"]["pkg.sub.inner.leaf"]) == ["pkg/sub/__init__.py:1"]


def test_chain_is_shortest_and_kinds_propagate(tmp_path: Path) -> None:
    sources = {
        "pkg/__init__.py": "from pkg.long1 import x\nfrom pkg.utils import y\n",
        "pkg/long1.py": "from pkg.long2 import x\n",
        "pkg/long2.py": "from pkg.utils import z\n",
        "pkg/utils.py": "import numpy\nfrom IPython.display import HTML\n",
        "pkg/opt.py": "try:\n    from pkg.heavy import h\nexcept ImportError:\n    h = None\n",
        "pkg/heavy.py": "import vllm\n",
        "pkg/plat.py": "if _is_npu:\n    import pkg.npu\n",
        "pkg/npu.py": "import torch_npu\n",
        "pkg/entry2.py": "import pkg.opt\nimport pkg.plat\n",
    }
    result, _ = walk_sources(tmp_path, sources, "pkg", "pkg.entry2")
    ipython = result.external["IPython"]
    # Python runs pkg/__init__ line 1 first (via long1, long2); the reported chain is the direct one.
    assert hops(ipython["pkg"]) == ["pkg/__init__.py:2", "pkg/utils.py:2"]
    assert ipython["pkg"].site.target == "IPython.display"
    assert hops(ipython["pkg.entry2"]) == ["pkg/__init__.py:2", "pkg/utils.py:2"]
    # Reached through a guarded import of the package's own module: guarded, whatever the leaf's kind.
    vllm = result.external["vllm"]["pkg.entry2"]
    assert vllm.kind == "guarded" and vllm.decisive.where == "pkg/opt.py:2"
    npu = result.external["torch_npu"]["pkg.entry2"]
    assert npu.kind == "conditional" and npu.decisive.condition == "if _is_npu"
    assert "vllm" not in result.external or "pkg" not in result.external["vllm"]
    assert result.modules == len(sources)


def test_missing_entry_and_unresolved_import(tmp_path: Path) -> None:
    sources = {"pkg/__init__.py": "from pkg.gone import x\n", "pkg/m.py": ""}
    result, _ = walk_sources(tmp_path, sources, "pkg", "pkg.nothere")
    assert result.missing_entries == ["pkg.nothere"]
    assert hops(result.unresolved["pkg.gone"]["pkg"]) == ["pkg/__init__.py:1"]


def test_unparsable_module_is_reported(tmp_path: Path) -> None:
    result, _ = walk_sources(tmp_path, {"pkg/__init__.py": "def broken(:\n"}, "pkg")
    assert len(result.parse_errors) == 1 and "pkg/__init__.py" in result.parse_errors[0]


# Random import graphs: module i imports some modules j (cycles allowed) and some outside modules.
graphs = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.lists(st.integers(0, n - 1), max_size=4), min_size=n, max_size=n),
        st.lists(st.lists(st.sampled_from(["ext_a", "ext_b", "ext_c"]), max_size=2), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graphs)
def test_walk_matches_reachability_and_shortest_chains(tmp_path_factory, graph) -> None:
    n, internal, external = graph
    sources = {"pkg/__init__.py": ""}
    for i in range(n):
        lines = [f"import pkg.m{j}" for j in internal[i]] + [f"import {e}.sub" for e in external[i]]
        sources[f"pkg/m{i}.py"] = "\n".join(lines) + "\n"
    result, _ = walk_sources(tmp_path_factory.mktemp("g"), sources, "pkg.m0")
    # Independent breadth-first distances over the same graph.
    dist = {0: 0}
    queue = deque([0])
    while queue:
        i = queue.popleft()
        for j in internal[i]:
            if j not in dist:
                dist[j] = dist[i] + 1
                queue.append(j)
    want = {e: min(dist[i] for i in dist if e in external[i]) for i in dist for e in external[i]}
    got = {e: per["pkg.m0"] for e, per in result.external.items()}
    assert set(got) == set(want)
    for ext, reach in got.items():
        assert len(reach.chain) == want[ext] + 1
        assert reach.kind == "module" and reach.site.target == f"{ext}.sub"
        # Every hop is in the module the previous hop imported.
        assert reach.chain[0].file == "pkg/m0.py"
        for before, after in zip(reach.chain, reach.chain[1:], strict=False):
            assert after.file == before.target.replace(".", "/") + ".py"
    assert result.modules == len(dist) + 1  # and pkg/__init__


# --- environments and the standard library -----------------------------------------------------------


def test_environment_modules_and_requirements(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist_info(site, "pyyaml", ["yaml/__init__.py", "_yaml/__init__.py"], ("pyzmq; extra == 'x'",))
    dist_info(site, "six", ["six.py"])
    dist_info(site, "toolbox", ["toolbox.cpython-312-x86_64-linux-gnu.so", "../../bin/tool"])
    env = read_environment(site)
    assert env.dists["pyyaml"].modules == {"yaml", "_yaml"}
    assert env.dists["six"].modules == {"six"}
    assert env.dists["toolbox"].modules == {"toolbox"}
    assert env.providers("yaml") == ["pyyaml"]
    # A venv is found through pyvenv.cfg.
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.12").mkdir(parents=True)
    (venv / "lib" / "python3.12" / "site-packages").symlink_to(site)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    assert set(read_environment(venv).dists) == {"pyyaml", "six", "toolbox"}
    with pytest.raises(UserError, match="neither a venv nor a site-packages"):
        read_environment(tmp_path / "site" / "six-1.0.dist-info")


def test_modules_a_pth_file_puts_on_the_path(tmp_path: Path) -> None:
    """nvidia-cutlass-dsl's `cutlass` lives under nvidia_cutlass_dsl/dsl_packages, which its .pth file puts
    on sys.path with code; libs-core's files provide it. Without reading .pth files the audit would call
    every `import cutlass` a hard miss."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    dist_info(site, "fake-dsl", ["fake_dsl.pth", "fake_dsl/__init__.py"])
    dist_info(
        site, "fake-dsl-core", ["fake_dsl/dsl_packages/cutlass/__init__.py", "fake_dsl/dsl_packages/cute.py"]
    )
    dist_info(site, "plain-pth", ["plain.pth", "vendored/inner/__init__.py"])
    (site / "fake_dsl" / "dsl_packages" / "cutlass").mkdir(parents=True)
    (site / "fake_dsl" / "__init__.py").write_text("", encoding="utf-8")
    (site / "fake_dsl" / "dsl_packages" / "cutlass" / "__init__.py").write_text("", encoding="utf-8")
    (site / "fake_dsl" / "dsl_packages" / "cute.py").write_text("", encoding="utf-8")
    pth = "import sys, os, fake_dsl; sys.path.insert(0, os.path.join(fake_dsl.__path__[0], 'dsl_packages'))\n"
    (site / "fake_dsl.pth").write_text(pth, encoding="utf-8")
    (site / "vendored" / "inner").mkdir(parents=True)
    (site / "plain.pth").write_text("# a directory line\nvendored\n", encoding="utf-8")
    env = read_environment(venv)  # through the venv's interpreter: the code line runs
    assert env.dists["fake-dsl-core"].modules == {"fake_dsl", "cutlass", "cute"}
    assert env.dists["plain-pth"].modules == {"vendored", "inner"}
    assert env.providers("cutlass") == ["fake-dsl-core"]
    # A bare site-packages (no interpreter): only the .pth files' directory lines are read.
    bare = read_environment(site)
    assert "cutlass" not in bare.dists["fake-dsl-core"].modules
    assert bare.dists["plain-pth"].modules == {"vendored", "inner"}


def test_stdlib_follows_the_variant_python() -> None:
    assert "distutils" in stdlib_modules("3.11") and "distutils" not in stdlib_modules("3.12")
    assert "cgi" in stdlib_modules("3.12") and "cgi" not in stdlib_modules("3.13")
    assert {"os", "asyncio", "tomllib"} <= stdlib_modules("3.13")


# --- the command on a synthetic sglang wheel -----------------------------------------------------------

# sglang's own shape, cut down: `import sglang` reaches IPython by a long and a direct way, the launcher
# reaches torchvision through the server's modules; nvtx is behind a flag, vllm guarded, decord in a
# function, regex arrives only as a dependency.
FAKE_SGLANG = {
    "sglang/__init__.py": "from sglang.lang.api import gen\nimport os\nfrom sglang.utils import LazyImport\n",
    "sglang/lang/__init__.py": "",
    "sglang/lang/api.py": "from sglang.lang.interpreter import run\n",
    "sglang/lang/interpreter.py": "from sglang.utils import HTML\n",
    "sglang/utils.py": "import numpy as np\nfrom IPython.display import HTML, display\n",
    "sglang/launch_server.py": "import sys\n\nfrom sglang.srt.server_args import prepare_server_args\n",
    "sglang/srt/__init__.py": "",
    "sglang/srt/server_args.py": (
        "import regex\nfrom sglang.srt.configs import Config\nfrom sglang.srt import ops\n"
        "def later():\n    import decord\n"
    ),
    "sglang/srt/configs/__init__.py": "from .internvl import Config\n",
    "sglang/srt/configs/internvl.py": "from sglang.srt.multimodal.internvl_utils import load\n",
    "sglang/srt/multimodal/__init__.py": "",
    "sglang/srt/multimodal/internvl_utils.py": "import torchvision.transforms as T\n",
    "sglang/srt/ops.py": (
        "import os\n_FLAG = bool(os.environ.get('X'))\nif _FLAG:\n    import nvtx\n"
        "try:\n    import vllm\nexcept ImportError:\n    vllm = None\n"
    ),
}
FAKE_IPYTHON = ["sglang/__init__.py:3", "sglang/utils.py:2"]
FAKE_TORCHVISION = [
    "sglang/launch_server.py:3",
    "sglang/srt/server_args.py:2",
    "sglang/srt/configs/__init__.py:1",
    "sglang/srt/configs/internvl.py:1",
    "sglang/srt/multimodal/internvl_utils.py:1",
]


@pytest.fixture
def fake(project: Path, tmp_path: Path) -> dict[str, Path]:
    """A scratch project whose server modules are the launcher only, a cache holding the fake sglang wheel
    under the real file name, and an environment with ipython, torchvision, transformers (-> regex)."""
    edit(
        project, lambda t: replace_table(t, 'lines."0.5.9".server-modules', '"sglang.launch_server" = "test"')
    )
    edit(project, lambda t: replace_table(t, f"{SGLANG_TABLE}.optional-imports", 'nvtx = "profiling only"'))
    edit(
        project,
        lambda t: replace_table(t, 'lines."0.5.23".server-modules', '"sglang.launch_server" = "test"'),
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    # Every sglang file of the spec (0.5.23's are platform wheels) holds the fake: no download here.
    for name in {v.wheels["sglang"] for v in resolve_variants(load_spec(project / "matrix.toml"))}:
        make_wheel(cache / name, FAKE_SGLANG)
    site = tmp_path / "site"
    dist_info(site, "ipython", ["IPython/__init__.py", "IPython/display.py"])
    dist_info(site, "torchvision", ["torchvision/__init__.py"])
    dist_info(
        site,
        "transformers",
        ["transformers/__init__.py"],
        ("regex", 'oldonly; python_version < "3.12"', 'newonly; python_version >= "3.12"'),
    )
    dist_info(site, "regex", ["regex/__init__.py"])
    return {"project": project, "cache": cache, "env": site}


@pytest.mark.parametrize("with_env", [True, False], ids=["env", "no-env"])
def test_dropped_then_provided(cli: Cli, fake: dict[str, Path], with_env: bool) -> None:
    """The misses appear with ipython and torchvision dropped, and vanish once they are provided."""
    project, cache = fake["project"], fake["cache"]
    env = ["--env", fake["env"]] if with_env else []
    edit(project, lambda t: set_state(t, provided=False))
    code, report = audit_json(cli, project, "--cache", cache, *env)
    assert code == 1 and not report["ok"]
    hard = by_module(report, "hard")
    assert set(hard) == {"IPython", "torchvision"}
    assert hard["IPython"]["entry"] == "sglang" and chain(hard["IPython"]) == FAKE_IPYTHON
    assert hard["torchvision"]["entry"] == "sglang.launch_server"
    assert chain(hard["torchvision"]) == FAKE_TORCHVISION
    for module, dist in (("IPython", "ipython"), ("torchvision", "torchvision")):
        assert hard[module]["distribution"] == dist
        assert hard[module]["dropped"] == {"wheel": "sglang", "reason": DROPPED_REASONS[dist]}
    if with_env:  # installed there, but outside the variant's closure: still a miss
        assert "outside the variant's closure" in hard["IPython"]["message"]

    edit(project, lambda t: set_state(t, provided=True))
    code, report = audit_json(cli, project, "--cache", cache, *env)
    assert {"IPython", "torchvision"}.isdisjoint(by_module(report))
    variant = result(report)
    if with_env:
        assert code == 0 and report["ok"], by_module(report, "hard")
        assert variant["provided"]["IPython"] == ["ipython"]
        # regex comes only with transformers; markers are evaluated for the variant's Python 3.12
        assert [d["distribution"] for d in variant["dependency_only"]] == ["regex"]
        assert variant["dependency_only"][0]["via"] == ["transformers"]
        names = {d["name"] for d in variant["distributions"]}
        assert "newonly" in names and "oldonly" not in names
    else:  # without an environment regex cannot be attributed: a warning, never a hard miss
        assert code == 0 and report["ok"]
        assert by_module(report, "warning")["regex"]["kind"] == "module"


def test_conditional_is_hard_unless_optional(cli: Cli, fake: dict[str, Path]) -> None:
    project, cache, env = fake["project"], fake["cache"], fake["env"]
    edit(project, lambda t: set_state(t, provided=True))
    edit(project, lambda t: replace_table(t, f"{SGLANG_TABLE}.optional-imports", ""))
    code, report = audit_json(cli, project, "--cache", cache, "--env", env)
    nvtx = by_module(report)["nvtx"]
    assert code == 1 and nvtx["severity"] == "hard" and nvtx["kind"] == "conditional"
    assert "if _FLAG" in nvtx["message"] and "optional-imports" in nvtx["message"]
    assert chain(nvtx) == ["sglang/launch_server.py:3", "sglang/srt/server_args.py:3", "sglang/srt/ops.py:4"]
    info = by_module(report, "info")
    assert info["vllm"]["kind"] == "guarded" and info["decord"]["kind"] == "function"
    assert info["decord"]["sites"] == [{"file": "sglang/srt/server_args.py", "line": 5, "imports": "decord",
                                        "kind": "function"}]  # fmt: skip

    optional = 'nvtx = "profiling only"\nregex = "stale"\nnothere = "typo"'
    edit(project, lambda t: replace_table(t, f"{SGLANG_TABLE}.optional-imports", optional))
    code, report = audit_json(cli, project, "--cache", cache, "--env", env)
    found = by_module(report)
    assert code == 0 and found["nvtx"]["severity"] == "info"
    assert "optional: profiling only" in found["nvtx"]["message"]
    # Spec entries the data contradicts are reported, never silently kept.
    assert (
        found["regex"]["severity"] == "info" and "provided after all, by regex" in found["regex"]["message"]
    )
    assert found["nothere"]["severity"] == "warning" and "does not import it" in found["nothere"]["message"]


def test_module_distributions_checked_against_the_environment(cli: Cli, fake: dict[str, Path]) -> None:
    project, cache, env = fake["project"], fake["cache"], fake["env"]
    edit(project, lambda t: set_state(t, provided=True))
    dist_info(env, "pyzmq", ["zmq_renamed/__init__.py"])
    code, report = audit_json(cli, project, "--cache", cache, "--env", env)
    zmq = by_module(report, "warning")["zmq"]
    assert (
        code == 0
        and zmq["message"] == "module-distributions.zmq = pyzmq: the environment's pyzmq provides zmq_renamed"
    )


def test_human_output_and_all_variants(cli: Cli, fake: dict[str, Path]) -> None:
    project, cache = fake["project"], fake["cache"]
    edit(project, lambda t: set_state(t, provided=False))
    args = ("--root", str(project), "audit", "--imports", "--all", "--cache", str(cache))
    proc = cli(*args, env={"COLUMNS": "200"})
    assert proc.returncode == 1, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "hard findings" in out and "IPython" in out and "import sglang.launch_server" in out
    assert "sglang/srt/multimodal/internvl_utils.py:1" in out and "dropped: interactive shell" in out
    listed = json.loads(cli("--root", str(project), "list", "--json").stdout)
    n, n_059 = len(listed), sum(1 for v in listed if v["line"] == "0.5.9")
    # Only 0.5.9 drops them: 0.5.23 provides ipython (sglang's requires) and torchvision (a line wheel).
    assert f"{n} variant(s)" in out and f"{n_059} variant(s) with hard findings" in out
    # --json: every variant, each pointing at a result that variants reading the same share
    code, report = audit_json(cli, project, "--all", "--cache", cache)
    assert code == 1 and len(report["variants"]) == n and len(report["results"]) < n
    for variant in report["variants"]:
        found = report["results"][variant["result"]]
        missing = {"IPython", "torchvision"} & {
            f["module"] for f in found["findings"] if f["severity"] == "hard"
        }
        assert (not variant["ok"], missing) == (
            ((True, {"IPython", "torchvision"})) if variant["line"] == "0.5.9" else (False, set())
        )
        assert (found["python"], found["system"]) == (variant["python"], variant["system"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--imports", "--variant", "nope"), "no variant named 'nope'"),
        (("--imports", "--env", "/nonexistent/env"), "--env /nonexistent/env: no such directory"),
        (("--all",), "--all and --env go with --imports"),
        (("--imports", "--all", "--variant", "sglang-sm90-avx512"), "--variant VARIANT or --all"),
    ],
)
def test_bad_input_exits_2(cli: Cli, args: tuple[str, ...], needle: str) -> None:
    proc = cli("audit", *args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_unreadable_wheel_and_bad_spec_exit_2(cli: Cli, fake: dict[str, Path]) -> None:
    project, cache = fake["project"], fake["cache"]
    (cache / SGLANG).write_bytes(b"not a zip")
    proc = cli("--root", str(project), "audit", "--imports", "--cache", str(cache))
    assert proc.returncode == 2 and "not a readable wheel" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    edit(project, lambda t: t.replace("[module-distributions]\n", '[module-distributions]\n"a.b" = "x"\n'))
    proc = cli("--root", str(project), "audit", "--imports", "--cache", str(cache))
    assert proc.returncode == 2 and 'module-distributions."a.b"' in proc.stderr
    edit(project, lambda t: t.replace('"a.b" = "x"\n', ""))
    edit(project, lambda t: replace_table(t, f"{SGLANG_TABLE}.optional-imports", "nvtx = 3"))
    proc = cli("--root", str(project), "audit", "--imports", "--cache", str(cache))
    assert proc.returncode == 2 and f"{SGLANG_TABLE}.optional-imports.nvtx" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_entry_module_is_hard(cli: Cli, fake: dict[str, Path]) -> None:
    project, cache = fake["project"], fake["cache"]
    edit(project, lambda t: set_state(t, provided=True))
    modules = '"sglang.srt.gone" = "test"\n"sglang.launch_server" = "test"'
    edit(project, lambda t: replace_table(t, 'lines."0.5.9".server-modules', modules))
    code, report = audit_json(cli, project, "--cache", cache, "--env", fake["env"])
    assert code == 1 and by_module(report, "hard")["sglang.srt.gone"]["kind"] == "entry"
    # An import of sglang's own name that the wheel lacks fails like a missing distribution.
    make_wheel(cache / SGLANG, {**FAKE_SGLANG, "sglang/srt/ops.py": "from sglang.srt.missing import x\n"})
    code, report = audit_json(cli, project, "--cache", cache, "--env", fake["env"])
    missing = by_module(report, "hard")["sglang.srt.missing"]
    assert code == 1 and missing["kind"] == "unresolved"
    assert chain(missing) == [
        "sglang/launch_server.py:3",
        "sglang/srt/server_args.py:3",
        "sglang/srt/ops.py:1",
    ]


# --- the real sglang 0.5.9 wheel (network) -------------------------------------------------------------


def wheel_cache_with(tmp_path_factory: pytest.TempPathFactory, root: Path, filename: str) -> Path:
    """A wheel cache holding the spec's FILENAME (fetched through pip), or a skip where pip cannot."""
    cache = Path(os.environ.get("SGLANG_MATRIX_WHEEL_CACHE") or tmp_path_factory.mktemp("wheels"))
    wanted = wanted_wheels(load_spec(root / "matrix.toml"))
    assert filename in wanted, f"{filename} is no longer in the spec: update this test"
    try:
        fetch_index_wheel(wanted[filename], cache)
    except (UserError, OSError) as e:
        pytest.skip(f"cannot download {filename} through pip: {e}")
    return cache


@pytest.fixture(scope="session")
def sglang_cache(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    return wheel_cache_with(tmp_path_factory, root, SGLANG)


@pytest.mark.network
def test_real_sglang_ipython_and_torchvision(cli: Cli, project: Path, sglang_cache: Path) -> None:
    edit(project, lambda t: set_state(t, provided=False))
    code, report = audit_json(cli, project, "--cache", sglang_cache)
    hard = by_module(report, "hard")
    assert code == 1 and {"IPython", "torchvision"} <= set(hard)
    assert hard["IPython"]["entry"] == "sglang"
    assert chain(hard["IPython"]) == ["sglang/__init__.py:37", "sglang/utils.py:26"]
    assert hard["IPython"]["chain"][-1]["imports"] == "IPython.display"
    assert hard["torchvision"]["entry"] == "sglang.launch_server"
    assert chain(hard["torchvision"]) == [
        "sglang/launch_server.py:7",
        "sglang/srt/server_args.py:69",
        "sglang/srt/utils/hf_transformers_utils.py:46",
        "sglang/srt/configs/__init__.py:21",
        "sglang/srt/configs/nano_nemotron_vl.py:22",
        "sglang/srt/multimodal/internvl_utils.py:3",
    ]
    assert hard["torchvision"]["dropped"]["reason"] == DROPPED_REASONS["torchvision"]

    edit(project, lambda t: set_state(t, provided=True))
    code, report = audit_json(cli, project, "--cache", sglang_cache)
    assert {"IPython", "torchvision"}.isdisjoint(by_module(report))
    assert by_module(report, "info")["modelscope"]["kind"] == "conditional"  # optional, per the spec


# --- the real sglang 0.5.23 wheel (network) ------------------------------------------------------------

SGLANG_0523 = "sglang-0.5.23-cp312-cp312-manylinux_2_34_x86_64.whl"
VARIANT_0523 = "sglang-0_5_23-sm90-x86_64"
TABLE_0523 = 'lines."0.5.23".wheels.sglang'


@pytest.fixture(scope="session")
def sglang_0523_cache(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    return wheel_cache_with(tmp_path_factory, root, SGLANG_0523)


def drop_requires(text: str, names: dict[str, str]) -> str:
    """0.5.23's sglang table with these `requires` entries moved to `dropped` (name -> reason)."""
    start, end = table_body(text, f"{TABLE_0523}.requires")
    body = text[start:end]
    for name in names:
        body, n = re.subn(rf"(?m)^{re.escape(name)} = .*\n", "", body)
        assert n == 1, name
    text = text[:start] + body + text[end:]
    start, _ = table_body(text, f"{TABLE_0523}.dropped")
    return text[:start] + "".join(f'{k} = "{v}"\n' for k, v in names.items()) + text[start:]


# Requirements of sglang 0.5.23 that its start-up imports at module level, with the module each provides,
# the first entry module that reaches it and the chain from there (read from the real wheel).
LOAD_BEARING_0523 = {
    "ipython": ("IPython", "sglang", ["sglang/__init__.py:57", "sglang/utils.py:25"]),
    "pyzmq": (
        "zmq",
        "sglang",
        ["sglang/__init__.py:21", "sglang/srt/utils/__init__.py:3", "sglang/srt/utils/network.py:14"],
    ),
    "fastapi": (
        "fastapi",
        "sglang.srt.entrypoints.http_server",
        ["sglang/srt/entrypoints/http_server.py:52"],
    ),
    "msgspec": ("msgspec", "sglang", ["sglang/__init__.py:48", "sglang/lang/backend/runtime_endpoint.py:9"]),
}


@pytest.mark.network
def test_real_sglang_0_5_23_fails_without_a_providers(
    cli: Cli, project: Path, sglang_0523_cache: Path
) -> None:
    """Each module-level import of 0.5.23's start-up closure has its provider in the spec: the audit of the
    spec as it stands has no hard finding, and dropping a provider makes its module a hard miss, with the
    chain from the entry module that reaches it."""
    code, report = audit_json(cli, project, "--variant", VARIANT_0523, "--cache", sglang_0523_cache)
    assert code == 0 and by_module(report, "hard") == {}, [
        f["message"] for f in by_module(report, "hard").values()
    ]
    edit(project, lambda t: drop_requires(t, {d: "test: dropped" for d in LOAD_BEARING_0523}))
    code, report = audit_json(cli, project, "--variant", VARIANT_0523, "--cache", sglang_0523_cache)
    hard = by_module(report, "hard")
    assert code == 1
    for dist, (module, entry, hops) in LOAD_BEARING_0523.items():
        assert module in hard, (module, sorted(hard))
        assert hard[module]["distribution"] == dist and hard[module]["dropped"]["reason"] == "test: dropped"
        assert hard[module]["entry"] == entry and chain(hard[module]) == hops
