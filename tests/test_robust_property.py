"""Issue 12 part 1: the spec can never produce a file that does not parse.

For specs whose names, descriptions, flags, GPUs, architecture and reasons are drawn at random from wide
alphabets (newlines, control, format and separator characters, quotes, `${`, pipes, backticks, HTML
comments, the README's own markers), `sglang-matrix render` either refuses the spec (one line, exit 2)
or writes files that all parse, and say what the spec says:

- every Nix file is evaluated by Nix 2.26 (one `nix-instantiate --eval` per example, over all files at
  once), against a stand-in for pkgs/build-variant.nix that hands back the strings it receives: they equal
  the variant's values, and the index names exactly the variants;
- every YAML file is read by PyYAML, and the workflow's matrix names exactly the variants;
- the README is read by markdown-it (GFM tables): each table row has the header's number of cells, each
  cell's text is the spec's value, the exclude reasons read back as written, the markers appear once;
- a second render changes nothing (`render --check` is clean).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, nix_env
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sglang_matrix.cli import main
from sglang_matrix.render import README_BEGIN, README_END
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants

yaml = pytest.importorskip("yaml", reason="PyYAML reads the workflow (pip install pyyaml)")
markdown_it = pytest.importorskip(
    "markdown_it", reason="markdown-it-py (a dependency of rich) reads the README"
)

# Pieces a careless or hostile spec might hold: syntax of every target language, and the README's markers.
NASTY = [
    '"', "'", "\\", "$", "${x}", "$${", "''", "''${", "`", "```", "|", "||", "<", ">", "&", "&amp;",
    "<!--", "-->", README_BEGIN, README_END, "#", "# ", "*", "_", "__x__", "[", "](", "~~", ":", ": ",
    "- ", "{", "}", "[x]", ",", "&lt;", "\\|", "/*", "*/", ";", "=", "é", "ß", "中文", "🚀", " ",
]  # fmt: skip
CONTROLS = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u200b", "\ufeff", "\xa0"]

# Printable characters: what the spec accepts in free text (str.isprintable).
printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
    | st.just(" "),
    max_size=12,
)
# Anything at all (but surrogates, which TOML cannot hold).
wide = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


def text_from(base: st.SearchStrategy[str], extra: list[str]) -> st.SearchStrategy[str]:
    piece = base | st.sampled_from(extra)
    return st.lists(piece, min_size=1, max_size=4).map("".join)


FREE_TEXT = (
    "isa_description",
    "flag",
    "architecture",
    "gpu",
    "cudnn_reason",
    "exclude_reason",
    "wheel_description",
)
NAMES = ("isa", "target", "line")
name_like = st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True)
line_like = st.from_regex(r"[0-9][0-9.]{0,5}", fullmatch=True)


@st.composite
def spec_values(draw: st.DrawFn) -> dict[str, str]:
    """One spec's values: mostly printable-but-hostile (the spec must render them faithfully), sometimes
    with control characters or odd names (the spec must refuse them)."""
    mode = draw(st.sampled_from(["printable", "printable", "controls", "names"]))
    values = {
        field: draw(text_from(printable, NASTY)).strip() or "x"  # empty strings are refused: keep it rare
        for field in FREE_TEXT
    }
    values["isa"] = draw(name_like)
    values["target"] = draw(name_like)
    values["line"] = draw(line_like)
    if mode == "controls":
        field = draw(st.sampled_from(FREE_TEXT))
        values[field] = draw(text_from(wide | printable, CONTROLS + NASTY))
    elif mode == "names":
        field = draw(st.sampled_from(NAMES))
        values[field] = draw(text_from(wide | printable, CONTROLS + NASTY + ["in", "let", "-", "."]))
    return values


def toml_string(value: str) -> str:
    """A TOML basic string holding any text (control characters and DEL as \\u escapes)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def spec_text(v: dict[str, str]) -> str:
    q = toml_string
    line = f"lines.{q(v['line'])}"
    return f"""schema = 1

[nixpkgs]
rev = "0182a361324364ae3f436a63005877674cf45efb"
min-nix = "2.18"

[build]
max-jobs-cap = 16
default-variant = {q(f"sglang-{v['target']}-{v['isa']}")}

[isas.{q(v["isa"])}]
systems = ["x86_64-linux"]
description = {q(v["isa_description"])}
flags = ["-mavx2", {q(v["flag"])}]
cpu-features = ["avx2"]
gcc-arch = "x86-64-v3"

[capabilities]
"9.0" = {{ min-cuda = "11.8" }}

[targets.{q(v["target"])}]
capabilities = ["9.0"]
architecture = {q(v["architecture"])}
gpus = [{q(v["gpu"])}, "H200"]
cudnn = false
cudnn-reason = {q(v["cudnn_reason"])}

[sonames]

[{line}]
python = "3.12"
cuda = "12.8"
systems = ["x86_64-linux"]
targets = [{q(v["target"])}]
isas = [{q(v["isa"])}]
short-name = "sglang-{{target}}-{{isa}}"
long-name = "sglang-python{{python}}-cuda{{cuda}}-{{target}}-{{isa}}"

[[{line}.exclude]]
python = "3.99"
reason = {q(v["exclude_reason"])}

[{line}.torch]
version = "2.9.1"

[{line}.wheels.sglang]
pname = "sglang"
version = "0.5.9"
tags = {{ any = "py3-none-any" }}
no-import-check = "a test's stand-in"
description = {q(v["wheel_description"])}
homepage = "https://example.invalid/sglang"
license = "asl20"
"""


README = f"# test\n\nbefore\n\n{README_BEGIN}\n{README_END}\n\nafter {README_END.replace('END', 'end')}\n"
# Stands in for pkgs/build-variant.nix: hands back the strings each variant file passes.
BUILD_VARIANT_STAND_IN = 'args: builtins.removeAttrs args [ "nixpkgs" "pkgsFor" ]\n'
NIX_EXPR = """
let
  dir = ./pkgs/variants;
  files = builtins.removeAttrs (builtins.readDir dir) [ "default.nix" ];
in {
  files = builtins.mapAttrs (name: _: import (dir + "/${name}") { nixpkgs = null; }) files;
  index = builtins.attrNames (import ./pkgs/variants/default.nix { nixpkgs = null; });
}
"""


def new_project(base: Path) -> Path:
    project = Path(tempfile.mkdtemp(dir=base))
    (project / "templates").symlink_to(ROOT / "templates")
    (project / "pkgs").mkdir()
    (project / "pkgs" / "build-variant.nix").write_text(BUILD_VARIANT_STAND_IN)
    (project / "README.md").write_text(README)
    return project


def cell_texts(tokens: list, start: int) -> tuple[list[str], int]:
    """The plain text of each cell of the table row opening at tokens[start] (a tr_open)."""
    cells, i = [], start + 1
    while tokens[i].type != "tr_close":
        if tokens[i].type == "inline":
            cells.append("".join(c.content for c in tokens[i].children if c.type in ("text", "code_inline")))
        i += 1
    return cells, i


def check_readme(text: str, variants: list, values: dict[str, str]) -> None:
    assert text.count(README_BEGIN) == 1 and text.count(README_END) == 1
    assert text.startswith("# test\n\nbefore\n\n") and text.endswith(README.split(README_END, 1)[1])
    section = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    md = markdown_it.MarkdownIt("commonmark").enable("table")
    tokens = md.parse(section)
    rows = []
    i = 0
    while i < len(tokens):
        if tokens[i].type == "tr_open":
            cells, i = cell_texts(tokens, i)
            rows.append(cells)
        i += 1
    isas = sorted({v.isa for v in variants})
    assert rows, section
    header, *body = rows
    assert header == ["target", "capabilities", "architecture", "GPUs", *isas]
    assert len(body) == len({v.target for v in variants})
    for row in body:
        assert len(row) == len(header), row
        assert row[:4] == [
            f"{values['target']} (no cuDNN)",
            "9.0",
            values["architecture"],
            f"{values['gpu']}, H200",
        ]
        assert row[4] == next(v.name for v in variants)
    inline = [t for t in tokens if t.type == "inline"]
    texts = [
        "".join(c.content for c in t.children if c.type in ("text", "code_inline", "softbreak"))
        for t in inline
    ]
    assert f"python 3.99: {values['exclude_reason']}" in texts, texts
    assert any(t.startswith(f"SGLang {values['line']} with torch 2.9.1: 1 variants.") for t in texts), texts


def check_nix(project: Path, nix_bin: Path, variants: list) -> None:
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", NIX_EXPR],
        cwd=project,
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert sorted(got["index"]) == sorted(v.long_name for v in variants)
    assert got["files"] == {
        f"{v.long_name}.nix": {
            "line": v.line,
            "python": v.python,
            "cuda": v.cuda,
            "system": v.system,
            "target": v.target,
            "isa": v.isa,
        }
        for v in variants
    }


def check_yaml(project: Path, written: list[str], variants: list) -> None:
    names = sorted(v.name for v in variants)
    for rel in written:
        if rel.endswith((".yml", ".yaml")):
            docs = list(yaml.safe_load_all((project / rel).read_text(encoding="utf-8")))
            assert docs, rel
            if rel == ".github/workflows/matrix.yml":
                (doc,) = docs
                for job in ("build", "smoke"):
                    entries = doc["jobs"][job]["strategy"]["matrix"]["include"]
                    assert sorted(e["name"] for e in entries) == names
                    assert {e["isa"] for e in entries if "isa" in e} <= {v.isa for v in variants}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property")


@settings(
    max_examples=int(os.environ.get("SGLANG_MATRIX_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values=spec_values())
def test_render_refuses_the_spec_or_writes_files_that_parse(
    values: dict[str, str], scratch: Path, nix_bin: Path
) -> None:
    project = new_project(scratch)
    (project / "matrix.toml").write_text(spec_text(values), encoding="utf-8")
    result = CliRunner().invoke(main, ["--root", str(project), "render", "--json"])
    event(f"exit {result.exit_code}")
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"sglang-matrix: {project / 'matrix.toml'}: "), lines
        assert result.stdout == ""
        assert sorted(p.name for p in project.iterdir()) == ["README.md", "matrix.toml", "pkgs", "templates"]
        assert [p.name for p in (project / "pkgs").iterdir()] == ["build-variant.nix"]
        return
    # A value with any non-printable character must have been refused.
    assert all(value.isprintable() for value in values.values()), values
    assert result.exit_code == 0, (result.output, result.exception)
    written = json.loads(result.stdout)["written"]
    variants = resolve_variants(load_spec(project / "matrix.toml"))
    assert len(variants) == 1
    check_nix(project, nix_bin, variants)
    check_yaml(project, written, variants)
    check_readme((project / "README.md").read_text(encoding="utf-8"), variants, values)
    again = CliRunner().invoke(main, ["--root", str(project), "render", "--check"])
    assert again.exit_code == 0, again.output
