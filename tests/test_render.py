"""The generator: byte-identical output, --check finds every kind of drift, hand-written files survive."""

from __future__ import annotations

import json
from pathlib import Path

from sglang_matrix.render import GENERATED_MARK, README_BEGIN, README_END


def tree_state(project: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(project)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in project.rglob("*")
        if p.is_file()
    }


def test_committed_files_match_the_spec(cli, root: Path) -> None:
    proc = cli("--root", str(root), "render", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_render_is_deterministic_and_touches_nothing_when_clean(project: Path, cli) -> None:
    generated = sorted((project / "pkgs" / "variants").glob("*.nix"))
    assert len(generated) == 162  # 139 variants of 0.5.9, 22 of 0.5.23 and the index
    for path in generated:
        path.unlink()
    first = cli("--root", str(project), "render")
    assert first.returncode == 0, first.stderr
    state = tree_state(project)
    second = cli("--root", str(project), "render")
    assert second.returncode == 0
    assert "0 written, 0 deleted" in second.stdout
    assert tree_state(project) == state  # same bytes and same mtimes: nothing was rewritten
    # And the same bytes as the committed files.
    root = Path(__file__).resolve().parent.parent
    for path in generated:
        assert path.read_bytes() == (root / path.relative_to(project)).read_bytes()


def test_check_lists_edited_missing_and_stale_files(project: Path, cli) -> None:
    variants = project / "pkgs" / "variants"
    edited = variants / "sglang-python312-cuda12_8-sm90-avx512.nix"
    edited.write_text(edited.read_text().replace('isa = "avx512"', 'isa = "avx2"'))
    missing = variants / "sglang-python312-cuda12_8-sm61-avx2.nix"
    missing.unlink()
    stale = variants / "sglang-python312-cuda12_8-sm70-avx2.nix"
    stale.write_text(f"# {GENERATED_MARK} from matrix.toml: do not edit\n{{ }}\n")
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("`sglang-sm89-avx2`", "`sglang-sm89-avx3`"))
    before = tree_state(project)

    proc = cli("--root", str(project), "render", "--check")
    assert proc.returncode == 1
    assert f"drifted: {edited.relative_to(project)}" in proc.stdout
    assert f"missing: {missing.relative_to(project)}" in proc.stdout
    assert f"stale: {stale.relative_to(project)}" in proc.stdout
    assert "drifted: README.md" in proc.stdout
    assert tree_state(project) == before  # --check writes nothing

    as_json = json.loads(cli("--root", str(project), "render", "--check", "--json").stdout)
    assert as_json["stale"] == [str(stale.relative_to(project))]

    fixed = cli("--root", str(project), "render")
    assert fixed.returncode == 0
    assert f"deleted {stale.relative_to(project)}" in fixed.stdout
    assert not stale.exists() and missing.exists()
    assert cli("--root", str(project), "render", "--check").returncode == 0


def test_hand_written_files_survive(project: Path, cli) -> None:
    variants = project / "pkgs" / "variants"
    mine = variants / "my-experiment.nix"
    mine.write_text("# hand-written: no generated header\n{ }\n")
    spec = (project / "matrix.toml").read_text()
    spec = spec.replace('isas = ["avx", "avx2", "avx512", "avx512bf16", "avx512vnni",', 'isas = ["avx2",')
    spec = spec.replace('default-variant = "sglang-sm90-avx512"', 'default-variant = "sglang-sm90-avx2"')
    (project / "matrix.toml").write_text(spec)
    proc = cli("--root", str(project), "render")
    assert proc.returncode == 0, proc.stderr
    assert mine.read_text() == "# hand-written: no generated header\n{ }\n"
    assert not (variants / "sglang-python312-cuda12_8-sm90-avx512.nix").exists()
    assert (variants / "sglang-python312-cuda12_8-sm90-avx2.nix").exists()
    table = (project / "README.md").read_text().split(README_BEGIN)[1].split(README_END)[0]
    assert "sglang-sm90-avx512" not in table and "`sglang-sm90-avx2`" in table


def test_readme_table_sits_between_markers_and_the_rest_is_kept(project: Path, cli) -> None:
    readme = project / "README.md"
    text = readme.read_text()
    head, tail = text.split(README_BEGIN)[0], text.split(README_END)[1]
    readme.write_text(head + README_BEGIN + "\nold table\n" + README_END + tail)
    assert cli("--root", str(project), "render").returncode == 0
    new = readme.read_text()
    assert new.startswith(head) and new.endswith(README_END + tail)
    table = new.split(README_BEGIN)[1].split(README_END)[0]
    assert "| sm90 | 9.0 | Hopper |" in table and "`sglang-sm90-avx512`" in table
    # Short names are spelled out for the default Python and CUDA (0.5.9: 47, 0.5.23: 11); other groups are
    # marked.
    assert table.count("` |") == 47 + 11
    assert "| sm90 | 9.0 | Hopper | H100, H200 | `sglang-0_5_23-sm90-x86_64` |" in table
    assert "*Python 3.13, CUDA 12.9, x86_64-linux* (20; names like `sglang-python313-cuda12_9-" in table
    assert "Left out on purpose:" in table and "xgrammar 0.1.27 has no cp313 aarch64 wheel" in table


def test_variant_file_names_its_parameters(root: Path) -> None:
    text = (root / "pkgs" / "variants" / "sglang-python312-cuda12_8-sm61-avx2.nix").read_text()
    assert GENERATED_MARK in text.splitlines()[0]
    for line in ('line = "0.5.9";', 'system = "x86_64-linux";', 'target = "sm61";', 'isa = "avx2";'):
        assert line in text
    assert "without cuDNN" in text
    assert len(text.splitlines()) < 25
