"""The 0.5.23 line's acceptance: `audit --variant sglang-0_5_23-sm90-x86_64` passes on its real wheels.

The real wheels are 2.3 GB (torch 555 MB, sglang-kernel 373 MB, triton 248 MB), too big for CI. The
fixture tests/fixtures/line-0.5.23/sglang-0_5_23-sm90-x86_64.json holds, for each of the variant's 19
wheel files, what the libraries and Requires-Dist checks read from it: the METADATA header fields
(Name, Version, Requires-Python, Requires-Dist, Provides-Extra) and every x86_64 ELF object's path,
DT_SONAME and DT_NEEDED, as read from the real files in the lock's cache (`python
tests/test_audit_line0523.py VARIANT` rewrites it from there). The test rebuilds each wheel as a stand-in
with those exact members: same file name, same METADATA fields, and for each object a real ELF shared
object with the same SONAME and DT_NEEDED, so the audit runs its normal path over them (zip reading, ELF
parsing, [sonames] mapping, bundled-library lookup, Requires-Dist markers, prune rules).

What the stand-ins do not carry: GPU code (no fatbins, so `gpu-code-gaps` is checked by the local full
audit only), objects for other machines (the AMD .co code object in sglang and cutlass-dsl's aarch64
stubs), and non-ELF files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from audit_fixtures import host_elf, write_wheel

Cli = Callable[..., CompletedProcess[str]]

VARIANT = "sglang-0_5_23-sm90-x86_64"
FIXTURES = Path(__file__).parent / "fixtures" / "line-0.5.23"
LINE = 'lines."0.5.23".wheels'


def fixture(variant: str = VARIANT) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{variant}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def stand_in_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The variant's 19 wheel files rebuilt from the fixture (a few MB in all)."""
    cache = tmp_path_factory.mktemp("wheels-0.5.23")
    for filename, wheel in fixture()["wheels"].items():
        members = {wheel["metadata_member"]: ("\n".join(wheel["metadata"]) + "\n").encode()}
        for path, soname, needed in wheel["objects"]:
            members[path] = host_elf(needed, soname=soname)
        write_wheel(cache / filename, members)
    return cache


def audit(cli: Cli, cache: Path, root: Path | None = None) -> tuple[int, dict[str, Any]]:
    pre = ["--root", str(root)] if root else []
    proc = cli(*pre, "audit", "--json", "--variant", VARIANT, "--cache", str(cache))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_attr(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["attr"]: w for w in data["wheels"]}


def hard(wheel: dict[str, Any]) -> list[str]:
    return [f["message"] for f in wheel["findings"] if f["severity"] == "hard"]


def uses(wheel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["soname"]: u for u in wheel["libraries"]["needed"]}


def test_the_variant_passes_on_its_wheels(cli: Cli, stand_in_cache: Path, root: Path) -> None:
    code, data = audit(cli, stand_in_cache)
    wheels = by_attr(data)
    assert {a: hard(w) for a, w in wheels.items() if hard(w)} == {}
    assert code == 0 and data["ok"] and data["complete"] and data["counts"]["hard"] == 0
    assert len(wheels) == len(fixture()["wheels"]) == 19
    assert all(w["status"] == "ok" for w in wheels.values())

    # torch is a wheel on this line: its own libtorch*/libc10* are found in it, not asked of
    # python.pkgs.torch (which is this very package).
    torch = uses(wheels["torch"])
    for own in ("libtorch.so", "libtorch_cpu.so", "libtorch_cuda.so", "libc10.so", "libc10_cuda.so"):
        assert torch[own]["bundled"] and torch[own]["provider"] is None, own
    assert "python.pkgs.torch" not in wheels["torch"]["libraries"]["providers"]
    assert torch["libcudart.so.13"]["provider"] == "cudaPackages.cuda_cudart"
    assert torch["libnvshmem_host.so.3"]["provider"] == "cudaPackages.libnvshmem"
    assert torch["libcuda.so.1"]["provider"] == "driver"
    # zlib is for aarch64's libgfortran.so.5; the x86_64 wheel does not need it.
    assert wheels["torch"]["libraries"]["surplus"] == ["zlib"]
    # The objects that link torch 2.14.1's C++ ABI get it from the torch package.
    for attr in ("sglang", "sglang-kernel", "sgl-deep-gemm", "sgl-flash-mla", "torchvision"):
        assert uses(wheels[attr])["libc10.so"]["provider"] == "python.pkgs.torch", attr

    # torchvision carries libcudart only as torchvision.libs/libcudart.faf08d9a.so.13; _C_stable.so
    # needs plain libcudart.so.13, which autoPatchelf (file names) must find in cuda_cudart.
    cudart = uses(wheels["torchvision"])["libcudart.so.13"]
    assert (cudart["bundled"], cudart["provider"]) == (False, "cudaPackages.cuda_cudart")
    assert wheels["torchvision"]["libraries"]["surplus"] == []
    # triton's bundled CUPTI needs libutil.so.1 (glibc).
    assert uses(wheels["triton"])["libutil.so.1"]["provider"] == "glibc"

    # Requires-Dist: every requirement of the variant's environment is provided, from nixpkgs, or
    # dropped with a reason; none is missing or skewed.
    for attr, wheel in wheels.items():
        statuses = {r["name"]: r["status"] for r in wheel["requires"]["requirements"]}
        assert not {n: s for n, s in statuses.items() if s in ("missing", "skew")}, attr
    sglang = {r["name"]: r for r in wheels["sglang"]["requires"]["requirements"]}
    assert (sglang["torch"]["requirement"], sglang["torch"]["status"]) == ("torch==2.14.1", "provided")
    assert sglang["torch"]["version"] == "2.14.1"
    assert sglang["sglang-kernel"]["status"] == sglang["sgl-deep-gemm"]["status"] == "provided"
    assert sglang["sgl-deep-ep"]["status"] == sglang["flash-attn-4"]["status"] == "dropped"
    assert "decord2" not in sglang  # `platform_machine == "aarch64"` only
    torch_reqs = {r["name"]: r["status"] for r in wheels["torch"]["requires"]["requirements"]}
    assert torch_reqs["triton"] == "provided" and torch_reqs["nvidia-nccl-cu13"] == "dropped"
    # The prune rules match the wheel's members (sm90/, sm100/, FA3, FlashMLA, InfLLM).
    assert not [f for f in wheels["sglang-kernel"]["findings"] if f["check"] == "prune"]


def test_the_audit_catches_a_spec_that_drops_a_needed_library(
    cli: Cli, stand_in_cache: Path, project: Path
) -> None:
    """The checks bite: torchvision without cuda_cudart (its renamed bundled copy does not count)."""
    spec = project / "matrix.toml"
    text = spec.read_text(encoding="utf-8")
    old = 'libraries = ["cudaPackages.cuda_cudart", "stdenv.cc.cc.lib", "python.pkgs.torch"]\n'
    old += "requires = { numpy"
    assert text.count(old) == 1
    spec.write_text(text.replace(old, old.replace('"cudaPackages.cuda_cudart", ', "")), encoding="utf-8")
    code, data = audit(cli, stand_in_cache, root=project)
    assert code == 1
    (message,) = hard(by_attr(data)["torchvision"])
    assert "cudaPackages.cuda_cudart" in message and "libcudart.so.13" in message


def test_sglang_requires_dist_matches_the_spec_on_every_variant_kind(root: Path) -> None:
    """sglang 0.5.23's Requires-Dist (identical in all six files) for each system and Python of the
    line: every applicable name is in the wheel's `requires` or `dropped` (or is a wheel/torch itself)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from sglang_matrix.spec import load_spec

    line = load_spec(root / "matrix.toml").lines["0.5.23"]
    sglang = line.wheels["sglang"]
    (meta,) = [w["metadata"] for w in fixture()["wheels"].values() if w["attr"] == "sglang"]
    lines = [m.removeprefix("Requires-Dist: ") for m in meta if m.startswith("Requires-Dist: ")]
    assert len(lines) == 139
    known = {canonicalize_name(n) for n in (*sglang.requires, *sglang.dropped)}
    for machine in ("x86_64", "aarch64"):
        for python in line.python:
            env = {**default_environment(), "platform_machine": machine, "sys_platform": "linux"}
            env |= {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}
            names = {
                canonicalize_name(r.name)
                for r in map(Requirement, lines)
                if r.marker is None or r.marker.evaluate(env)
            }
            assert names - known == set(), (machine, python)
            assert ("decord2" in names) == (machine == "aarch64")


def regenerate(variant: str) -> None:
    """Rewrite the fixture from the real wheels in the lock's cache (run by hand, never in CI)."""
    import email.parser

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from sglang_matrix.audit.sharedlibs import audit_shared_libs
    from sglang_matrix.audit.wheelzip import WheelReader
    from sglang_matrix.fsutil import cache_dir
    from sglang_matrix.spec import load_spec
    from sglang_matrix.variants import find_variant

    spec = load_spec(Path(__file__).resolve().parent.parent / "matrix.toml")
    found = find_variant(spec, variant)
    assert found is not None, variant
    out: dict[str, Any] = {"variant": variant, "wheels": {}}
    keep = ("Metadata-Version", "Name", "Version", "Requires-Python", "Requires-Dist", "Provides-Extra")
    for attr, filename in sorted(found.wheels.items()):
        path = cache_dir("wheels") / filename
        with WheelReader(path) as reader:
            (member,) = [
                m
                for m in reader.members()
                if m.name.count("/") == 1 and m.name.endswith(".dist-info/METADATA")
            ]
            head = member.read().split(b"\n\n", 1)[0].decode()
        message = email.parser.Parser().parsestr(head)
        objects = audit_shared_libs(path).objects
        out["wheels"][filename] = {
            "attr": attr,
            "metadata_member": member.name,
            "metadata": [f"{k}: {v}" for k, v in message.items() if k in keep],
            "objects": [[o.name, o.soname, list(o.needed)] for o in objects if o.machine == "EM_X86_64"],
            "other_machines": sorted(f"{o.name} ({o.machine})" for o in objects if o.machine != "EM_X86_64"),
        }
    (FIXTURES / f"{variant}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    regenerate(sys.argv[1] if len(sys.argv) > 1 else VARIANT)


def test_a_prune_rule_scoped_to_other_systems_is_not_about_this_wheel(tmp_path: Path) -> None:
    """sglang-kernel 0.4.10's FA3 object exists in its x86_64 wheel only: the rule says so (`systems`),
    and the audit holds only the x86_64 file to it (a rule that matches nothing stops the Nix build)."""
    import zipfile

    from sglang_matrix.audit.findings import Finding
    from sglang_matrix.audit.report import check_prune_rules
    from sglang_matrix.spec import load_spec

    wheel = load_spec(Path(__file__).parent.parent / "matrix.toml").lines["0.5.23"].wheels["sglang-kernel"]
    rule = next(r for r in wheel.prune if r.path == "sgl_kernel/flash_ops.abi3.so")
    assert rule.systems == ("x86_64-linux",)
    found: dict[str, list[Finding]] = {}
    for arch in ("x86_64", "aarch64"):
        path = tmp_path / f"sglang_kernel-0.4.10-cp310-abi3-manylinux2014_{arch}.whl"
        with zipfile.ZipFile(path, "w") as z:  # every other rule's path, but no FA3 object
            for member in ("sgl_kernel/sm90/common_ops.abi3.so", "sgl_kernel/sm100/common_ops.abi3.so"):
                z.writestr(member, b"x")
            z.writestr("sgl_kernel/flashmla_ops.abi3.so", b"x")
            z.writestr("sgl_kernel/infllm_ops.cpython-310-x86_64-linux-gnu.so", b"x")
        found[arch] = []
        check_prune_rules(path, wheel, found[arch])
    assert [f.message for f in found["x86_64"]] == [
        "prune path 'sgl_kernel/flash_ops.abi3.so' matches nothing in this wheel"
    ]
    assert found["aarch64"] == []
