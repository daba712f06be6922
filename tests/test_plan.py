"""`sglang-matrix plan`: the build arithmetic on small specs, builder assignment, machines-file errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sglang_matrix.cli import main
from sglang_matrix.errors import SpecError, UserError
from sglang_matrix.plan import (
    BIG_PARALLEL,
    MAX_TIMEOUT_MINUTES,
    assign,
    ci_timeout_minutes,
    load_weights,
    local_run,
    make_plan,
    parse_machines,
    torch_key,
)
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants
from spec_edits import set_line_fields

ROOT = Path(__file__).resolve().parent.parent

# Round numbers, so the expected totals below can be worked out by hand.
WEIGHTS = """
[plan]
reference-cores = 16
torch-hours-per-capability = 1.0
torch-disk-gb = 10
cuda-libs-hours-per-capability = 0.5
cuda-libs-disk-gb = 2
variant-hours = 0.1
variant-disk-gb = 1
pure-wheels-hours = 0.02
pure-wheels-disk-gb = 0.5
torchvision-hours = 0.2
torchvision-hours-per-capability = 0.1
torchvision-disk-gb = 1
ci-timeout-factor = 2
"""
# The cut spec's ISAs and the builder features they need (matrix.toml's gcc-arch).
AVX2, AVX512 = "gccarch-x86-64-v3", "gccarch-x86-64-v4"
ISA_FEATURES = f"{AVX2},{AVX512}"


def cut_spec(
    tmp_path: Path, targets: list[str], plan: str | None = WEIGHTS, extra_line: bool = False
) -> Path:
    """A small copy of matrix.toml, independent of the real matrix's size: one Python (3.12), one CUDA
    (12.8), x86_64-linux with avx2 and avx512, the given targets, no exclude rules, and the given [plan]
    table (None: no table)."""
    text = (ROOT / "matrix.toml").read_text(encoding="utf-8")
    text = set_line_fields(
        text,
        python=["3.12"],
        cuda=["12.8"],
        systems=["x86_64-linux"],
        targets=targets,
        isas=["avx2", "avx512"],
    )
    # Only the 0.5.9 line (the wheel-torch line is planned on the real spec below).
    text = re.sub(r"(?ms)^# -+\n# SGLang 0\.5\.23 .*?(?=^# -+\n# Build-cost weights)", "", text)
    assert '[lines."0.5.23"' not in text
    # Spec tables that name that line's wheels (jit-headers.roots) keep only the 0.5.9 line's.
    wheels = set(re.findall(r'(?m)^\[lines\."0\.5\.9"\.wheels\.([A-Za-z0-9_-]+)\]', text))
    roots = re.search(r"(?ms)^\[jit-headers\.roots\]\n(.*?)(?=^\[)", text)
    if roots:
        kept = [
            line
            for line in roots.group(1).splitlines(keepends=True)
            if not re.match(r"[A-Za-z0-9_-]+ =", line) or line.split(" =")[0] in wheels
        ]
        text = text[: roots.start(1)] + "".join(kept) + text[roots.end(1) :]
    text = re.sub(r'(?ms)^\[\[lines\."0\.5\.9"\.exclude\]\]\n.*?\n(?=\[|#)', "", text)
    assert ".exclude]]" not in text
    text = re.split(r"(?m)^# -+\n# Build-cost weights", text)[0]
    text = re.split(r"(?m)^\[plan\]", text)[0]
    if extra_line:
        # A second release line with the same Python, CUDA and torch: it shares every torch build.
        start = text.index('[lines."0.5.9"]')
        second = text[start:].replace('lines."0.5.9"', 'lines."0.5.9-b"')
        second = second.replace('short-name = "sglang-', 'short-name = "sglang-b-')
        second = second.replace('long-name = "sglang-', 'long-name = "sglang-b-')
        text += "\n" + second
    if plan is not None:
        text += plan
    path = tmp_path / "matrix.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(spec: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--spec", str(spec), "plan", *args])


# ---------------------------------------------------------------------------------------------------------
# arithmetic


def test_items_hours_and_disk(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90", "all"]))
    plan = make_plan(spec)
    assert [v.name for v in plan.variants] == [
        "sglang-sm90-avx2",
        "sglang-sm90-avx512",
        "sglang-all-avx2",
        "sglang-all-avx512",
    ]
    kinds = [it.kind for it in plan.items]
    # one nixpkgs instance (CUDA libraries) per capability set, shared by both ISAs
    assert kinds.count("cuda-libs") == 2
    sm90_libs = plan.item("cuda-libs", plan.variants[0].nixpkgs_key)
    assert sm90_libs.variants == ["sglang-sm90-avx2", "sglang-sm90-avx512"]
    assert sm90_libs.hours == pytest.approx(0.5)
    assert plan.item("cuda-libs", plan.variants[2].nixpkgs_key).hours == pytest.approx(7 * 0.5)
    # the ISA changes torch: four torch builds, 1 h per capability, the fat ones 7 capabilities
    torches = [it for it in plan.items if it.kind == "torch"]
    assert [it.hours for it in torches] == pytest.approx([1, 1, 7, 7])
    # torch needs a big-parallel builder whose CPU runs the ISA (nixpkgs' gccarch-<march> feature)
    assert [it.features for it in torches] == [
        (BIG_PARALLEL, AVX2),
        (BIG_PARALLEL, AVX512),
        (BIG_PARALLEL, AVX2),
        (BIG_PARALLEL, AVX512),
    ]
    # torchvision against each torch: 0.2 h plus 0.1 h per capability; its import check loads torch
    visions = [it for it in plan.items if it.kind == "torchvision"]
    assert [it.key for it in visions] == [it.key for it in torches]
    assert [it.hours for it in visions] == pytest.approx([0.3, 0.3, 0.9, 0.9])
    assert [it.features for it in visions] == [(AVX2,), (AVX512,), (AVX2,), (AVX512,)]
    assert kinds.count("variant") == 4
    # pure wheels (sglang, flashinfer-cubin, flashinfer-python): once for the line
    pure = [it for it in plan.items if it.kind == "pure-wheels"]
    assert len(pure) == 1 and len(pure[0].variants) == 4
    assert plan.total_hours == pytest.approx(4 + 16 + 2.4 + 0.4 + 0.02)
    assert plan.total_disk_gb == pytest.approx(2 * 2 + 4 * 10 + 4 * 1 + 4 * 1 + 0.5)
    # one variant alone from an empty store: its CUDA libraries, torch, torchvision, own derivations,
    # pure wheels
    assert plan.variant_hours(plan.variants[0]) == pytest.approx(0.5 + 1 + 0.3 + 0.1 + 0.02)
    assert plan.variant_hours(plan.variants[3]) == pytest.approx(3.5 + 7 + 0.9 + 0.1 + 0.02)


def test_selected_variants_only(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90", "all"]))
    plan = make_plan(spec, ["sglang-all-avx512", "sglang-python312-cuda12_8-sm90-avx512"])
    assert [v.name for v in plan.variants] == ["sglang-sm90-avx512", "sglang-all-avx512"]
    assert plan.total_hours == pytest.approx(0.5 + 3.5 + 1 + 7 + 0.3 + 0.9 + 0.2 + 0.02)
    with pytest.raises(UserError, match="no variant named 'sglang-sm61-avx2'"):
        make_plan(spec, ["sglang-sm61-avx2"])


def test_variants_of_two_lines_share_torch(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90"], extra_line=True))
    plan = make_plan(spec)
    assert len(plan.variants) == 4
    torches = [it for it in plan.items if it.kind == "torch"]
    assert len(torches) == 2  # per ISA, not per line
    assert sorted(torches[0].variants) == ["sglang-b-sm90-avx2", "sglang-sm90-avx2"]
    assert len([it for it in plan.items if it.kind == "pure-wheels"]) == 2  # per line


def test_cores_scale_time_and_flags(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90", "all"]))
    plan = make_plan(spec)
    total, longest = plan.total_hours, plan.variant_hours(plan.variants[-1])
    ref = local_run(plan, 16)
    assert (ref.max_jobs, ref.cores_per_job, ref.factor) == (1, 16, 1)
    assert ref.hours == pytest.approx(total)
    assert ref.command.startswith("nix build --max-jobs 1 --cores 16 --print-build-logs .#sglang-sm90-avx2 ")
    half = local_run(plan, 8)
    assert (half.max_jobs, half.cores_per_job, half.factor) == (1, 8, 2)
    assert half.hours == pytest.approx(2 * total)
    # more cores than max-jobs-cap: several builds side by side, none faster than the cap allows
    big = local_run(plan, 64)
    assert (big.max_jobs, big.cores_per_job, big.factor) == (4, 16, 1)
    assert big.hours == pytest.approx(max(total / 4, longest))
    odd = local_run(plan, 20)
    assert (odd.max_jobs, odd.cores_per_job, odd.factor) == (1, 20, 1)
    with pytest.raises(UserError, match="--cores 0"):
        local_run(plan, 0)


def test_ci_timeouts(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90", "all"]))
    plan = make_plan(spec)
    # 1.92 h x 2 = 3.84 h -> 4 whole hours; 11.52 h x 2 = 23.04 h -> 24 h
    assert ci_timeout_minutes(plan, plan.variants[0]) == 4 * 60
    assert ci_timeout_minutes(plan, plan.variants[3]) == 24 * 60


def test_real_spec_weights_and_fat_builds() -> None:
    spec = load_spec(ROOT / "matrix.toml")
    weights = load_weights(spec)
    assert weights.reference_cores == 16 and weights.torch_disk_gb == 30
    plan = make_plan(spec)
    source = [v for v in plan.variants if v.torch_source == "nixpkgs"]
    fat = plan.item("torch", torch_key(next(v for v in source if v.target == "all")))
    thin = plan.item("torch", torch_key(next(v for v in source if v.target == "sm90")))
    assert fat.hours == pytest.approx(7 * thin.hours)  # the seed: "all" is about 7x one SM


def test_real_spec_counts_agree_with_the_variants() -> None:
    """The real matrix, whatever its size: the items and totals agree with its variants and weights."""
    spec = load_spec(ROOT / "matrix.toml")
    weights = load_weights(spec)
    plan = make_plan(spec)
    variants = resolve_variants(spec)
    assert [v.name for v in plan.variants] == [v.name for v in variants]
    source = [v for v in variants if v.torch_source == "nixpkgs"]
    wheel = [v for v in variants if v.torch_source == "wheel"]
    assert source and wheel  # both release lines
    # One torch build per system, capability set, ISA, CUDA, Python and torch version; one set of CUDA
    # libraries per system, CUDA and capability set (ISA and Python do not change them).
    torch_builds = {(v.system, v.capabilities, v.isa, v.cuda, v.python, v.versions["torch"]) for v in source}
    # A wheel torch: one patched copy per system, CUDA and Python, and one shared nixpkgs instance (NCCL)
    # per system and CUDA, whatever the target.
    torch_wheels = {(v.system, v.cuda, v.python, v.versions["torch"]) for v in wheel}
    instances = {(v.system, v.cuda): v.instance_capabilities for v in wheel}
    cuda_libs = {(v.system, v.cuda, v.capabilities) for v in source}
    kinds = [it.kind for it in plan.items]
    assert kinds.count("torch") == len(torch_builds)
    assert kinds.count("torchvision") == len(torch_builds)
    assert kinds.count("torch-wheel") == len(torch_wheels)
    assert kinds.count("cuda-libs") == len(cuda_libs) + len(instances)
    assert kinds.count("variant") == len(variants)
    assert kinds.count("pure-wheels") == len({(v.system, v.line) for v in variants})
    # each variant is in exactly one item of each kind it needs
    for kind, needing in (
        ("cuda-libs", variants),
        ("torch", source),
        ("torchvision", source),
        ("torch-wheel", wheel),
        ("variant", variants),
        ("pure-wheels", variants),
    ):
        names = [name for it in plan.items if it.kind == kind for name in it.variants]
        assert sorted(names) == sorted(v.name for v in needing), kind
    # the totals are the weights times those counts
    torch_hours = sum(len(caps) * weights.torch_hours_per_capability for _, caps, *_ in torch_builds)
    assert sum(it.hours for it in plan.items if it.kind == "torch") == pytest.approx(torch_hours)
    nccl_hours = sum(len(caps) * weights.nccl_hours_per_capability for caps in instances.values())
    wheel_libs = [
        it for it in plan.items if it.kind == "cuda-libs" and it.key in {v.nixpkgs_key for v in wheel}
    ]
    assert sum(it.hours for it in wheel_libs) == pytest.approx(nccl_hours)
    assert plan.total_disk_gb == pytest.approx(
        (len(cuda_libs) + len(instances)) * weights.cuda_libs_disk_gb
        + len(torch_builds) * (weights.torch_disk_gb + weights.torchvision_disk_gb)
        + len(torch_wheels) * weights.torch_wheel_disk_gb
        + len(variants) * weights.variant_disk_gb
        + kinds.count("pure-wheels") * weights.pure_wheels_disk_gb
    )
    # every variant's CI timeout covers its own chain from an empty cache, in whole hours
    for v in variants:
        timeout = ci_timeout_minutes(plan, v)
        assert timeout % 60 == 0
        assert timeout >= min(plan.variant_hours(v) * weights.ci_timeout_factor * 60, MAX_TIMEOUT_MINUTES)


def test_json_output(tmp_path: Path) -> None:
    result = run(cut_spec(tmp_path, ["sm90", "all"]), "--json", "--cores", "32", "sglang-sm90-avx512")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["variants"] == ["sglang-sm90-avx512"]
    assert data["totals"] == {"items": 5, "torchBuilds": 1, "torchWheels": 0, "hours": 1.92, "diskGb": 14.5}
    assert data["local"]["command"] == (
        "nix build --max-jobs 2 --cores 16 --print-build-logs .#sglang-sm90-avx512"
    )
    assert data["perVariant"]["sglang-sm90-avx512"]["ciTimeoutMinutes"] == 240
    assert {it["kind"] for it in data["items"]} == {
        "cuda-libs",
        "torch",
        "torchvision",
        "variant",
        "pure-wheels",
    }
    vision = next(it for it in data["items"] if it["kind"] == "torchvision")
    assert vision["hours"] == 0.3 and vision["requiredSystemFeatures"] == [AVX512]
    assert data["weights"]["torchvision-hours-per-capability"] == 0.1
    assert "builders" not in data


def test_human_output(tmp_path: Path) -> None:
    result = run(cut_spec(tmp_path, ["sm90"]))
    assert result.exit_code == 0, result.output
    assert "What to build" in result.output
    assert "2 variants, 2 torch builds" in result.output
    assert "nix build --max-jobs 1 --cores 16 --print-build-logs .#sglang-sm90-avx2 .#sglang-sm90-avx512" in (
        result.output
    )


def test_unknown_variant_exits_2(tmp_path: Path) -> None:
    result = run(cut_spec(tmp_path, ["sm90"]), "sglang-nope")
    assert result.exit_code == 2
    assert result.output.strip() == "sglang-matrix: no variant named 'sglang-nope' (see `sglang-matrix list`)"


def test_without_plan_table_uses_defaults(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90"], plan=None))
    assert load_weights(spec).torch_hours_per_capability == 2.5
    assert run(cut_spec(tmp_path, ["sm90"], plan=None), "--json").exit_code == 0


@pytest.mark.parametrize(
    ("table", "field", "problem"),
    [
        ("torch-hours-per-capabilty = 2", "plan.torch-hours-per-capabilty", "unknown field"),
        ('torch-disk-gb = "30"', "plan.torch-disk-gb", "must be a number"),
        ("variant-hours = -1", "plan.variant-hours", "must be a non-negative number"),
        ("reference-cores = 0", "plan.reference-cores", "must be a positive integer"),
        ("reference-cores = 16.5", "plan.reference-cores", "must be a positive integer"),
        ("ci-timeout-factor = 0.5", "plan.ci-timeout-factor", "must be at least 1"),
        ("pure-wheels-hours = true", "plan.pure-wheels-hours", "must be a number"),
    ],
)
def test_plan_table_errors(tmp_path: Path, table: str, field: str, problem: str) -> None:
    path = cut_spec(tmp_path, ["sm90"], plan=f"\n[plan]\n{table}\n")
    with pytest.raises(SpecError) as err:
        load_weights(load_spec(path))
    assert err.value.field == field and problem in err.value.problem
    result = run(path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sglang-matrix: {path}: {field} = ")


def test_plan_must_be_a_table(tmp_path: Path) -> None:
    path = cut_spec(tmp_path, ["sm90"], plan=None)
    path.write_text(path.read_text().replace("schema = 1\n", 'schema = 1\nplan = "fast"\n', 1))
    result = run(path)
    assert result.exit_code == 2
    assert "plan = 'fast': must be a table" in result.output


# ---------------------------------------------------------------------------------------------------------
# builders


MACHINES = f"""\
# two builders of unequal speed, one without big-parallel, one for another platform
ssh-ng://fast x86_64-linux /root/.ssh/id_ed25519 2 3 big-parallel,kvm,{ISA_FEATURES} - -
ssh-ng://slow x86_64-linux - 1 1 big-parallel,{ISA_FEATURES}
ssh-ng://small x86_64-linux - 4 10 kvm
ssh-ng://arm aarch64-linux - 1 10 big-parallel   # fast, but the wrong system
"""


def test_assignment_balances_hours_over_speed(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90", "all"]))
    plan = make_plan(spec)
    builders = parse_machines(MACHINES, "machines")
    out = {a.builder.uri: a for a in assign(plan, builders, "machines")}
    assert not out["ssh-ng://small"].variants and not out["ssh-ng://arm"].variants
    fast, slow = out["ssh-ng://fast"], out["ssh-ng://slow"]
    # Largest first: the two fat groups (11.52 h from scratch each, 8.02 h once the libraries are
    # there) both go to the 3x builder (3.84 h, then 6.51 h), still sooner than the 1x builder (11.52 h);
    # the sm90 groups (1.92 h from scratch) go to the slow one, the second reusing its CUDA libraries.
    assert [v.name for v in fast.variants] == ["sglang-all-avx2", "sglang-all-avx512"]
    assert [v.name for v in slow.variants] == ["sglang-sm90-avx2", "sglang-sm90-avx512"]
    assert fast.hours == pytest.approx((3.5 + 14 + 1.8 + 0.2 + 0.02) / 3)
    assert slow.hours == pytest.approx(0.5 + 2 + 0.6 + 0.2 + 0.02)
    assert fast.command() == (
        "nix build --builders 'ssh-ng://fast x86_64-linux /root/.ssh/id_ed25519 2 3 "
        f"big-parallel,kvm,{ISA_FEATURES} - -' "
        "--max-jobs 0 --option builders-use-substitutes true --print-build-logs "
        ".#sglang-all-avx2 .#sglang-all-avx512"
    )


def test_variants_sharing_torch_stay_together(tmp_path: Path) -> None:
    spec = load_spec(cut_spec(tmp_path, ["sm90", "sm80"], extra_line=True))
    plan = make_plan(spec)
    machines = "".join(f"{uri} x86_64-linux - 1 1 big-parallel,{ISA_FEATURES}\n" for uri in ("a", "b"))
    assignments = assign(plan, parse_machines(machines, "m"), "m")
    where = {v.name: a.builder.uri for a in assignments for v in a.variants}
    assert len(where) == 8
    for v in plan.variants:
        partner = (
            v.name.replace("sglang-b-", "sglang-")
            if "-b-" in v.name
            else v.name.replace("sglang-", "sglang-b-")
        )
        assert where[v.name] == where[partner], v.name
    loads = sorted(a.hours for a in assignments)
    assert loads[1] - loads[0] < 1.0  # balanced: 4 equal torch groups over 2 equal builders


def test_builders_cli(tmp_path: Path) -> None:
    machines = tmp_path / "machines"
    machines.write_text(MACHINES)
    spec = cut_spec(tmp_path, ["sm90", "all"])
    result = run(spec, "--json", "--builders", str(machines))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_uri = {b["uri"]: b for b in data["builders"]}
    assert by_uri["ssh-ng://fast"]["variants"] == ["sglang-all-avx2", "sglang-all-avx512"]
    assert by_uri["ssh-ng://small"]["command"] is None
    human = run(spec, "--builders", str(machines))
    assert human.exit_code == 0, human.output
    assert f"# ssh-ng://slow ({machines}:3)" in human.output
    assert (
        f"nix build --builders 'ssh-ng://slow x86_64-linux - 1 1 big-parallel,{ISA_FEATURES}' --max-jobs 0"
        in human.output
    )


@pytest.mark.parametrize(
    ("machines", "message"),
    [
        (
            "ssh-ng://a x86_64-linux - 8 1 kvm,nixos-test\n",
            "variant sglang-all-avx2 needs system feature big-parallel (torch's requiredSystemFeatures), "
            "which no x86_64-linux builder supports",
        ),
        (
            "ssh-ng://a aarch64-linux - 8 1 big-parallel\n",
            "variant sglang-all-avx2 needs system x86_64-linux, which no builder lists",
        ),
        (
            f"ssh-ng://a x86_64-linux - 8 1 big-parallel,{ISA_FEATURES} big-parallel\n",
            "every x86_64-linux builder with big-parallel has mandatory features (big-parallel)",
        ),
        # big-parallel alone no longer takes an ISA's torch: its CPU must run that ISA's code.
        (
            "ssh-ng://a x86_64-linux - 8 1 big-parallel\n",
            "variant sglang-all-avx2 needs system feature gccarch-x86-64-v3 (its ISA avx2",
        ),
        # An AVX2 builder takes the avx2 variants but not the avx512 ones.
        (
            f"ssh-ng://a x86_64-linux - 8 1 big-parallel,{AVX2}\n",
            "variant sglang-all-avx512 needs system feature gccarch-x86-64-v4 (its ISA avx512",
        ),
        (
            "ssh-ng://a x86_64-linux - 0 1 big-parallel\n",
            "needs system x86_64-linux, which no builder lists (with max-jobs > 0)",
        ),
    ],
)
def test_unsatisfiable_builders_exit_2(tmp_path: Path, machines: str, message: str) -> None:
    path = tmp_path / "machines"
    path.write_text(machines)
    result = run(cut_spec(tmp_path, ["sm90", "all"]), "--builders", str(path))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"sglang-matrix: {path}: ")
    assert message in lines[0]


# ---------------------------------------------------------------------------------------------------------
# machines file


def test_machines_parse() -> None:
    text = (
        "# comment\n\n"
        "ssh://a x86_64-linux,aarch64-linux /k 4 2.5 big-parallel,kvm benchmark c2VjcmV0\n"
        "b ; ssh-ng://c - - - - big-parallel\n"
    )
    a, b, c = parse_machines(text, "m", default_system="x86_64-linux")
    assert a.systems == ("x86_64-linux", "aarch64-linux") and a.max_jobs == 4 and a.speed == 2.5
    assert a.supported == ("big-parallel", "kvm") and a.mandatory == ("benchmark",)
    assert a.features == {"big-parallel", "kvm", "benchmark"} and a.host_key == "c2VjcmV0"
    assert a.where == "m:3"
    assert (b.uri, b.systems, b.max_jobs, b.speed, b.supported) == ("b", ("x86_64-linux",), 1, 1.0, ())
    assert c.line == "ssh-ng://c - - - - big-parallel" and c.where == "m:4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a x86_64-linux - four\n", "m:1: max-jobs 'four' (field 4) must be a non-negative integer"),
        ("a x86_64-linux - 1 fast\n", "m:1: speed factor 'fast' (field 5) must be a positive number"),
        ("a x86_64-linux - 1 0\n", "m:1: speed factor '0' (field 5) must be a positive number"),
        ("a x86_64-linux - 1 -2\n", "m:1: speed factor '-2' (field 5) must be a positive number"),
        ("\na b c d e f g h i\n", "m:2: 9 fields, at most 8 (URI SYSTEMS"),
        ("a x86_64\n", "m:1: system 'x86_64' is not a Nix system such as x86_64-linux"),
        ("@/etc/nix/machines\n", "m:1: '@/etc/nix/machines': included machine files are not supported"),
        ("- x86_64-linux\n", "m:1: the machine's URI (first field) is missing"),
        ("# nothing\n\n", "m: no machines listed"),
    ],
)
def test_machines_errors(text: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        parse_machines(text, "m", default_system="x86_64-linux")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_machines_file_missing_exits_2(tmp_path: Path) -> None:
    result = run(cut_spec(tmp_path, ["sm90"]), "--builders", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert result.output.strip() == f"sglang-matrix: {tmp_path / 'nope'}: no such machines file"


# ---------------------------------------------------------------------------------------------------------
# A line whose torch is a prebuilt wheel (0.5.23), on the real spec


WHEEL_NAMES = (
    "sglang-0_5_23-sm90-x86_64",
    "sglang-0_5_23-all-x86_64",
    "sglang-0_5_23-python313-cuda13_0-sm90-x86_64",
    "sglang-0_5_23-sm90-aarch64",
)


def test_a_wheel_torch_costs_no_source_build() -> None:
    spec_path = ROOT / "matrix.toml"
    spec = load_spec(spec_path)
    w = load_weights(spec)
    result = run(spec_path, "--json", *WHEEL_NAMES)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    kinds = [it["kind"] for it in data["items"]]
    # No torch or torchvision source build, no torch-hours-per-capability anywhere.
    assert "torch" not in kinds and "torchvision" not in kinds
    assert data["totals"]["torchBuilds"] == 0 and data["totals"]["torchWheels"] == 3
    items = {(it["kind"], it["key"]): it for it in data["items"]}
    # One patched torch per system, CUDA and Python: sm90 and all share x86_64's Python 3.12 one.
    x86 = items[("torch-wheel", "nixpkgs-0_5_23-x86_64-linux-cuda13.0-python3.12-torch2.14.1-wheel")]
    assert x86["variants"] == ["sglang-0_5_23-sm90-x86_64", "sglang-0_5_23-all-x86_64"]
    assert (x86["hours"], x86["diskGb"]) == (w.torch_wheel_hours, w.torch_wheel_disk_gb)
    # One nixpkgs instance per system and CUDA for every target (NCCL for the union of capabilities).
    libs = items[("cuda-libs", "nixpkgs-0_5_23-x86_64-linux-cuda13.0")]
    assert libs["variants"] == [
        "sglang-0_5_23-sm90-x86_64",
        "sglang-0_5_23-all-x86_64",
        "sglang-0_5_23-python313-cuda13_0-sm90-x86_64",
    ]
    x86_caps = next(v for v in resolve_variants(spec) if v.name == WHEEL_NAMES[0]).instance_capabilities
    assert len(x86_caps) == 8  # 7.5 (all) through 12.0, 10.3 included
    assert libs["hours"] == pytest.approx(8 * w.nccl_hours_per_capability, abs=1e-3)
    arm = items[("cuda-libs", "nixpkgs-0_5_23-aarch64-linux-cuda13.0")]
    assert arm["hours"] == pytest.approx(3 * w.nccl_hours_per_capability, abs=1e-3)  # 9.0, 10.0, 10.3
    # No builder feature: torch-bin-style wheels and NCCL set no requiredSystemFeatures.
    assert all(it["requiredSystemFeatures"] == [] for it in data["items"])
    # A single-SM and the fat variant cost the same: the device code is prebuilt.
    per = data["perVariant"]
    chain = 8 * w.nccl_hours_per_capability + w.torch_wheel_hours + w.variant_hours + w.pure_wheels_hours
    assert per["sglang-0_5_23-sm90-x86_64"]["hours"] == per["sglang-0_5_23-all-x86_64"]["hours"]
    assert per["sglang-0_5_23-sm90-x86_64"]["hours"] == pytest.approx(chain, abs=1e-3)
    assert per["sglang-0_5_23-sm90-x86_64"]["ciTimeoutMinutes"] == 60 * -(-chain * w.ci_timeout_factor // 1)
    text = run(spec_path, *WHEEL_NAMES).output
    assert "4 variants, 0 torch builds and 3 torch wheel(s) to patch" in text
    assert "torch-wheel" in text


def test_a_wheel_torch_line_leaves_the_source_line_s_costs_alone() -> None:
    spec = load_spec(ROOT / "matrix.toml")
    alone = make_plan(spec, ["sglang-sm90-avx512", "sglang-all-avx2"])
    both = make_plan(spec, ["sglang-sm90-avx512", "sglang-all-avx2", *WHEEL_NAMES])
    for v in alone.variants:
        assert both.variant_hours(v) == alone.variant_hours(v)
        assert ci_timeout_minutes(both, v) == ci_timeout_minutes(alone, v)
    assert both.total_hours == pytest.approx(
        alone.total_hours + make_plan(spec, list(WHEEL_NAMES)).total_hours
    )


def test_a_wheel_torch_variant_needs_no_big_parallel_or_gccarch_builder(tmp_path: Path) -> None:
    machines = tmp_path / "machines"
    machines.write_text("ssh://plain x86_64-linux,aarch64-linux - 4 1\n", encoding="utf-8")
    result = run(ROOT / "matrix.toml", "--json", "--builders", str(machines), *WHEEL_NAMES)
    assert result.exit_code == 0, result.output
    (builder,) = json.loads(result.output)["builders"]
    assert sorted(builder["variants"]) == sorted(WHEEL_NAMES)
    # The same plain builder cannot take a source-torch variant.
    result = run(ROOT / "matrix.toml", "--builders", str(machines), "sglang-sm90-avx512")
    assert result.exit_code == 2
    assert f"needs system feature {BIG_PARALLEL}" in result.output
