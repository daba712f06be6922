"""Hostile specs (issue 12, parts 1 and 2): every one is refused by every command alike, as one line naming
the file, field and value, exit code 2, with nothing written.

Each case here was accepted by the version before this test (render wrote files that Nix cannot parse,
or `list` accepted a [plan] that `render` then crashed on)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_cli

# Every command that reads the spec: they must agree on what a valid spec is.
COMMANDS = (["render"], ["list", "--json"], ["show", "sglang-sm90-avx512"], ["lock", "--check"], ["plan"])


def snapshot(tree: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(tree)): (p.stat().st_mtime_ns, p.stat().st_mode, p.read_bytes())
        for p in tree.rglob("*")
        if p.is_file()
    }


def edit(path: Path, *edits: tuple[str, str, int]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new, count in edits:
        assert old in text, f"fixture edit: {old!r} not in {path.name}"
        text = text.replace(old, new, count)
    path.write_text(text, encoding="utf-8")


HOSTILE = [
    pytest.param(
        [("[isas.avx2]", '[isas."avx2\\n"]', 1), ('isas = ["avx", "avx2",', 'isas = ["avx", "avx2\\n",', 1)],
        r'isas\."avx2\\u000a" = \'avx2\\n\': a key must be printable',
        id="isa-name-trailing-newline",
    ),
    pytest.param(
        [
            (
                '"9.0" = { min-cuda = "11.8" }',
                '"9.0" = { min-cuda = "11.8" }\n"9.0\\n" = { min-cuda = "11.8" }',
                1,
            ),
            ('capabilities = ["9.0"]', 'capabilities = ["9.0\\n"]', 1),
        ],
        r'capabilities\."9\.0\\u000a" = \'9\.0\\n\': a key must be printable',
        id="capability-trailing-newline",
    ),
    pytest.param(
        [('description = "Haswell and newer', 'description = "Haswell\\nand newer', 1)],
        r"isas\.avx2\.description = 'Haswell\\nand newer.*': must be printable text on one line",
        id="multi-line-description",
    ),
    pytest.param(
        [('gpus = ["H100", "H200"]', 'gpus = ["H100\\tSXM", "H200"]', 1)],
        r"targets\.sm90\.gpus\[0\] = 'H100\\tSXM': must be printable",
        id="tab-in-gpu",
    ),
    pytest.param(
        [('reason = "Pascal-era hosts', 'reason = "\\u2028Pascal-era hosts', 1)],
        r"exclude\[0\]\.reason = \"\\u2028Pascal-era hosts.*\": must be printable",
        id="line-separator-in-reason",
    ),
    pytest.param(
        [('lines."0.5.9"', 'lines."0.5.9\\""', -1)],
        r'lines\."0\.5\.9\\"" = \'0\.5\.9"\': a release line\'s key is letters, digits',
        id="quote-in-line-name",
    ),
    pytest.param(
        [('pname = "sglang"\nversion = "0.5.9"', 'pname = "sglang"\nversion = "0.5.9 "', 1)],
        r"wheels\.sglang\.version = '0\.5\.9 ': not a version as a wheel's file name spells it",
        id="version-with-space",
    ),
    pytest.param(
        [("ci-timeout-factor = 2.0", "ci-timeout-factor = nan", 1)],
        r"plan\.ci-timeout-factor = nan: must be at least 1, at most 100 \(and finite\)",
        id="timeout-factor-nan",
    ),
    pytest.param(
        [("ci-timeout-factor = 2.0", "ci-timeout-factor = inf", 1)],
        r"plan\.ci-timeout-factor = inf: must be at least 1",
        id="timeout-factor-inf",
    ),
    pytest.param(
        [("ci-timeout-factor = 2.0", "ci-timeout-factor = 1e308", 1)],
        r"plan\.ci-timeout-factor = 1e\+308: must be at least 1, at most 100",
        id="timeout-factor-1e308",
    ),
    pytest.param(
        [("torch-hours-per-capability = 2.5", "torch-hours-per-capability = 1e308", 1)],
        r"plan\.torch-hours-per-capability = 1e\+308: must be a non-negative number, at most 10000",
        id="torch-hours-1e308",
    ),
    pytest.param(
        [("reference-cores = 16", "reference-cores = 9223372036854775807", 1)],
        r"plan\.reference-cores = 9223372036854775807: must be a positive integer, at most 65536",
        id="reference-cores-huge",
    ),
    pytest.param(
        [("max-jobs-cap = 16", "max-jobs-cap = 9223372036854775807", 1)],
        r"build\.max-jobs-cap = 9223372036854775807: must be an integer from 1 to 4096",
        id="max-jobs-cap-huge",
    ),
    pytest.param(
        [("wheels.xgrammar", "wheels.XGrammar", -1)],
        r"wheels\.XGrammar = 'XGrammar': a wheel's key is its canonical name",
        id="wheel-key-not-canonical",
    ),
    pytest.param(
        [('tags = { any = "py3-none-any" }', 'tags = { any = "py3-none-any linux" }', 1)],
        r"wheels\.sglang\.tags\.any = 'py3-none-any linux': must be python-abi-platform",
        id="tag-with-space",
    ),
    pytest.param(
        [('url = { x86_64-linux = "https://', 'url = { x86_64-linux = "file:///etc/passwd#https://', 1)],
        r"url\.x86_64-linux = 'file:///etc/passwd#https://.*': must be an http\(s\) URL",
        id="url-not-http",
    ),
    pytest.param(
        [('long-name = "sglang-python{python}', 'long-name = "sglang.python{python}', 1)],
        r"long-name = 'sglang\.python\{python\}.*': a name template is letters, digits",
        id="template-with-dot",
    ),
]


@pytest.mark.parametrize(("edits", "message"), HOSTILE)
def test_hostile_spec_is_refused_alike_by_every_command(project: Path, edits, message: str) -> None:
    edit(project / "matrix.toml", *edits)
    # Make render want to write something, so that "nothing written" is a real check.
    (project / "pkgs" / "variants" / "sglang-python312-cuda12_8-sm90-avx512.nix").unlink()
    before = snapshot(project)
    for args in COMMANDS:
        proc = run_cli("--root", str(project), *args)
        assert proc.returncode == 2, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith(f"sglang-matrix: {project / 'matrix.toml'}: "), lines[0]
        assert re.search(message, lines[0]), lines[0]
        assert snapshot(project) == before, args


def test_every_pattern_of_the_spec_rejects_a_trailing_newline() -> None:
    """The module's own patterns, used with .match as the callers do: `$` would accept "x\\n"."""
    from sglang_matrix import spec

    patterns = [value for value in vars(spec).values() if isinstance(value, re.Pattern)]
    assert len(patterns) >= 8
    samples = {
        spec.CAPABILITY_RE: "9.0",
        spec.MAJOR_MINOR_RE: "12.8",
        spec.NAME_RE: "sglang-sm90",
        spec.MODULE_RE: "sglang.srt",
        spec.SRI_RE: "sha256-" + "A" * 43 + "=",
        spec.GCC_ARCH_RE: "x86-64-v3",
        spec.LINE_RE: "0.5.9",
        spec.VERSION_RE: "0.6.5+cu128",
        spec.TEMPLATE_RE: "sglang-{target}-{isa}",
        spec.TAG_PART_RE: "manylinux_2_17_x86_64.manylinux2014_x86_64",
        spec.URL_RE: "https://example.org/a+b.whl",
        spec.INPUT_RE: "nixpkgs-0_5_23",
        spec.SERVE_VARIABLE_RE: "SGLANG_ATTENTION_BACKEND",
    }
    assert set(samples) == set(patterns), "a new pattern in the spec package: add a sample here"
    for pattern, good in samples.items():
        assert pattern.match(good), pattern.pattern
        for bad in (good + "\n", good + "\r\n", "\n" + good, good + " ", good + "\u2028"):
            assert not pattern.match(bad), (pattern.pattern, bad)
            assert not pattern.search(bad), (pattern.pattern, bad)
