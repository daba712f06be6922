"""pkgs/sources.json: locked through pip, checked offline, never half-written."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from sglang_matrix.lockfile import LOCK_PATH, pip_download_args, read_lock, sri_sha256, wanted_wheels
from sglang_matrix.spec import load_spec

SMALL = ("sglang", "xgrammar", "apache-tvm-ffi")


def test_committed_lock_is_complete_and_well_formed(cli, root: Path) -> None:
    proc = cli("--root", str(root), "lock", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "57 wheels locked" in proc.stdout
    lock = read_lock(root)["wheels"]
    assert set(lock) == set(wanted_wheels(load_spec(root / "matrix.toml")))
    sglang = lock["sglang-0.5.9-py3-none-any.whl"]
    # FACTS.md: 5,201,033 bytes, sha256 8a936c4d...64d1 (hex) = this SRI.
    assert sglang["size"] == 5_201_033
    assert sglang["hash"] == "sha256-ipNsTSX+pgX0QlTlM8/yFExzzv+8H4c4q6OTRhu7ZNE="
    assert sglang | {"hash": "", "size": 0} == {
        "pname": "sglang", "version": "0.5.9", "dist": "py3", "python": "py3", "abi": "none",
        "platform": "any", "hash": "", "size": 0, "unpacked": 22_092_772, "prunable": {},
    }  # fmt: skip
    # Sizes for pruning, read from the real wheel: sgl-kernel's two common_ops builds and its dead lib/.
    kernel = lock["sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl"]
    assert kernel["unpacked"] == 1_664_635_131
    assert kernel["prunable"] == {
        "sgl_kernel/sm90": 360_816_664,
        "sgl_kernel/sm100": 373_739_544,
        "lib": 38_181_948,
        "_mscclpp.cpython-310-*.so": 3_840_312,
    }
    jit = lock["flashinfer_jit_cache-0.6.5+cu128-cp39-abi3-manylinux_2_28_x86_64.whl"]
    assert jit["url"].startswith("https://github.com/flashinfer-ai/flashinfer/releases/download/v0.6.5/")
    # FACTS.md's nix32 175xcc...gf5n, in SRI form.
    assert jit["hash"] == "sha256-tri3vab/cFsm15yfewHDiMb4u1p7VMCF7Z7EGydjvZw="


def rewrite_lock(project: Path, change) -> None:
    path = project / LOCK_PATH
    data = json.loads(path.read_text())
    change(data["wheels"])
    path.write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.pop("sglang-0.5.9-py3-none-any.whl"), "sglang-0.5.9-py3-none-any.whl: missing"),
        (lambda w: w.__setitem__("old-1.0-py3-none-any.whl", {}), "old-1.0-py3-none-any.whl: stale"),
        (
            lambda w: w["sglang-0.5.9-py3-none-any.whl"].__setitem__("hash", "sha256-oops"),
            "sglang-0.5.9-py3-none-any.whl: hash = 'sha256-oops': not an SRI sha256 hash",
        ),
        (
            lambda w: w["sglang-0.5.9-py3-none-any.whl"].__setitem__("platform", "linux"),
            "sglang-0.5.9-py3-none-any.whl: platform = 'linux', spec says 'any'",
        ),
        (
            lambda w: w["sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl"]["prunable"].pop("lib"),
            "sgl_kernel-0.3.21-cp310-abi3-manylinux2014_x86_64.whl: prunable = ",
        ),
    ],
    ids=["missing", "stale", "bad-hash", "wrong-field", "prune-sizes"],
)
def test_check_finds_each_problem(project: Path, cli, change, message: str) -> None:
    rewrite_lock(project, change)
    proc = cli("--root", str(project), "lock", "--check")
    assert proc.returncode == 1
    assert message in proc.stdout
    as_json = json.loads(cli("--root", str(project), "lock", "--check", "--json").stdout)
    assert as_json["ok"] is False and any(message in p for p in as_json["problems"])


def test_check_sees_a_spec_change(project: Path, cli) -> None:
    spec = project / "matrix.toml"
    spec.write_text(spec.read_text().replace('version = "0.1.27"', 'version = "0.1.28"'))
    proc = cli("--root", str(project), "lock", "--check")
    assert proc.returncode == 1
    assert (
        "xgrammar-0.1.28-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl: missing" in proc.stdout
    )


def test_pip_is_asked_for_exactly_the_locked_file(root: Path) -> None:
    wanted = wanted_wheels(load_spec(root / "matrix.toml"))
    args = pip_download_args(
        wanted["xgrammar-0.1.27-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"], Path("/d")
    )
    assert args[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in args and "--only-binary=:all:" in args
    assert args[-1] == "xgrammar==0.1.27"
    joined = " ".join(args)
    for part in (
        "--platform manylinux_2_17_x86_64",
        "--platform manylinux2014_x86_64",
        "--python-version 3.12",
        "--implementation cp",
        "--abi cp312",
    ):
        assert part in joined
    sglang = pip_download_args(wanted["sglang-0.5.9-py3-none-any.whl"], Path("/d"))
    assert "--platform" not in sglang


def test_pip_is_asked_for_a_major_only_python_tag_as_the_lines_python(root: Path) -> None:
    """sgl-deep-gemm's `py3-none-manylinux2014_*` files: `--python-version 3` makes pip reject them for
    Requires-Python >=3.10 ("No matching distribution"), so pip is asked as the line's Python would."""
    wanted = wanted_wheels(load_spec(root / "matrix.toml"))
    for arch in ("x86_64", "aarch64"):
        args = pip_download_args(
            wanted[f"sgl_deep_gemm-0.2.3.post2-py3-none-manylinux2014_{arch}.whl"], Path("/d")
        )
        joined = " ".join(args)
        assert f"--platform manylinux2014_{arch}" in joined and "--abi none" in joined
        assert "--python-version 3.12" in joined and args[-1] == "sgl_deep_gemm==0.2.3.post2"


def test_the_0_5_23_line_is_locked(root: Path) -> None:
    """Every wheel of the 0.5.23 variants, hashed from the real files (sizes as pip downloaded them)."""
    lock = read_lock(root)["wheels"]
    torch = lock["torch-2.14.1-cp312-cp312-manylinux_2_28_x86_64.whl"]
    # docs/release-line-0.5.23.md's appendix (pip's report): sha256 23011fe2...dae50451, in SRI form.
    assert torch["hash"] == "sha256-IwEf4pqZtZHquzoxolCAxi4sLwaQo8eYdE5UidrlBFE="
    assert (torch["python"], torch["abi"], torch["platform"]) == ("cp312", "cp312", "manylinux_2_28_x86_64")
    kernel = lock["sglang_kernel-0.4.10-cp310-abi3-manylinux2014_aarch64.whl"]
    # The aarch64 wheel has no FA3 object: its prune rule matches nothing there (null).
    assert kernel["prunable"]["sgl_kernel/flash_ops.abi3.so"] is None
    x86 = lock["sglang_kernel-0.4.10-cp310-abi3-manylinux2014_x86_64.whl"]
    assert x86["prunable"]["sgl_kernel/flash_ops.abi3.so"] == 1_122_619_080
    gemm = lock["sgl_deep_gemm-0.2.3.post2-py3-none-manylinux2014_x86_64.whl"]
    assert (gemm["dist"], gemm["python"], gemm["abi"]) == ("py3", "py3", "none")


@pytest.fixture(scope="module")
def small_wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = os.environ.get("SGLANG_MATRIX_WHEEL_CACHE")
    return Path(shared) if shared else tmp_path_factory.mktemp("wheels")


@pytest.mark.network
def test_lock_through_pip_reproduces_the_committed_hashes(
    project: Path, cli, small_wheel_cache: Path
) -> None:
    """Download the small wheels through pip (the user's pip configuration applies) and lock only them."""
    lock_before = (project / LOCK_PATH).read_text()
    proc = cli(
        "--root", str(project), "lock", "--upgrade", "sglang==0.5.9", "--line", "0.5.9",
        "--cache", str(small_wheel_cache),
    )  # fmt: skip
    if proc.returncode == 2 and "pip download" in proc.stderr:
        pytest.skip(f"the package index is not reachable through pip: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert (project / LOCK_PATH).read_text() == lock_before  # same version, same hash: unchanged
    for name in SMALL:
        proc = cli(
            "--root",
            str(project),
            "lock",
            "--upgrade",
            f"{name}=={version(project, name)}",
            "--line",
            "0.5.9",
            "--cache",
            str(small_wheel_cache),
        )
        assert proc.returncode == 0, proc.stderr
    assert (project / LOCK_PATH).read_text() == lock_before
    lock = read_lock(project)["wheels"]
    for path in small_wheel_cache.glob("*.whl"):
        if path.name in lock:
            assert sri_sha256(path) == lock[path.name]["hash"], path.name
            assert path.stat().st_size == lock[path.name]["size"]


def version(project: Path, name: str) -> str:
    return load_spec(project / "matrix.toml").lines["0.5.9"].wheels[name].version


@pytest.mark.network
def test_upgrade_edits_the_spec_and_relocks_one_package(project: Path, cli, small_wheel_cache: Path) -> None:
    before = (project / "matrix.toml").read_text()
    proc = cli(
        "--root",
        str(project),
        "lock",
        "--upgrade",
        "apache-tvm-ffi==0.1.8",
        "--line",
        "0.5.9",
        "--cache",
        str(small_wheel_cache),
    )
    if proc.returncode == 2 and "pip download" in proc.stderr and "0.1.8" not in proc.stderr:
        pytest.skip(f"the package index is not reachable through pip: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    after = (project / "matrix.toml").read_text()
    assert after.replace('version = "0.1.8"', 'version = "0.1.9"', 1) == before  # one line changed
    lock = read_lock(project)["wheels"]
    assert "apache_tvm_ffi-0.1.8-cp312-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl" in lock
    assert not any(name.startswith("apache_tvm_ffi-0.1.9") for name in lock)
    assert cli("--root", str(project), "lock", "--check").returncode == 0
    assert cli("--root", str(project), "render", "--check").returncode == 0


def test_failures_leave_the_lock_untouched(project: Path, cli, tmp_path: Path) -> None:
    before = (project / LOCK_PATH).read_bytes()
    # No index reachable (as when the network is down): pip fails, the lock stays as it was.
    empty_cache = tmp_path / "cache"
    proc = cli(
        "--root",
        str(project),
        "lock",
        "--cache",
        str(empty_cache),
        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)},
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("sglang-matrix: pip download ") and "No matching distribution" in line
    assert (project / LOCK_PATH).read_bytes() == before
    assert not list((project / "pkgs").glob(".sources.json.*"))  # no temp file left behind


def test_hash_mismatch_of_a_url_wheel_is_an_error(project: Path, cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    # A cached file under the jit-cache wheel's name whose bytes do not match the spec's hash.
    (cache / "flashinfer_jit_cache-0.6.5+cu128-cp39-abi3-manylinux_2_28_x86_64.whl").write_bytes(b"not it")
    for name in wanted_wheels(load_spec(project / "matrix.toml")):
        if not (cache / name).exists():
            with zipfile.ZipFile(cache / name, "w") as stand_in:  # stand-ins for the index wheels
                stand_in.writestr("placeholder.txt", "")
    before = (project / LOCK_PATH).read_bytes()
    proc = cli("--root", str(project), "lock", "--cache", str(cache))
    assert proc.returncode == 2
    assert "hash mismatch" in proc.stderr and "flashinfer_jit_cache" in proc.stderr
    assert (project / LOCK_PATH).read_bytes() == before


def test_a_failed_upgrade_leaves_spec_and_lock_as_they_were(project: Path, cli, tmp_path: Path) -> None:
    spec_before = (project / "matrix.toml").read_bytes()
    lock_before = (project / LOCK_PATH).read_bytes()
    proc = cli(
        "--root", str(project), "lock", "--upgrade", "sglang==0.0.0.1", "--line", "0.5.9",
        "--cache", str(tmp_path / "c"),
        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2 and "pip download" in proc.stderr
    assert (project / "matrix.toml").read_bytes() == spec_before
    assert (project / LOCK_PATH).read_bytes() == lock_before


def test_upgrade_refuses_a_wheel_fetched_by_url(project: Path, cli) -> None:
    before = (project / "matrix.toml").read_bytes()
    proc = cli("--root", str(project), "lock", "--upgrade", "flashinfer-jit-cache==0.6.6")
    assert proc.returncode == 2
    assert "flashinfer-jit-cache is fetched by URL: change its version, url and hash together" in proc.stderr
    assert (project / "matrix.toml").read_bytes() == before


def test_an_upgrade_in_one_line_leaves_the_same_wheel_of_other_lines(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lock --upgrade sglang==X --line 0.5.9` relocks 0.5.9's sglang only: the 0.5.23 sglang files keep
    their entries instead of being fetched again (offline here: pip has no index to ask)."""
    from sglang_matrix.lockfile import LockError, resolve_lock

    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "sglang-0.5.9-py3-none-any.whl", "w") as stand_in:
        stand_in.writestr("sglang/__init__.py", "# a stand-in\n")
    spec = load_spec(project / "matrix.toml")
    before = read_lock(project)["wheels"]
    text, _ = resolve_lock(spec, project, cache, only=["sglang"], only_line="0.5.9")
    after = json.loads(text)["wheels"]
    stand_in = cache / "sglang-0.5.9-py3-none-any.whl"
    assert after["sglang-0.5.9-py3-none-any.whl"]["hash"] == sri_sha256(stand_in)
    assert {k: v for k, v in after.items() if not k.startswith("sglang-0.5.9")} == {
        k: v for k, v in before.items() if not k.startswith("sglang-0.5.9")
    }
    with pytest.raises(LockError, match=r"pip download sglang==0\.5\.23"):
        resolve_lock(spec, project, cache, only=["sglang"])  # every line's sglang: 0.5.23 is fetched
