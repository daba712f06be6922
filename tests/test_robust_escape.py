"""The one escaping function per target language (sglang_matrix.escape), each read back by that language's
own reader: Nix 2.26, PyYAML, markdown-it (GFM tables). And the template environment refuses a value that
skipped them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import nix_env
from hypothesis import given, settings
from hypothesis import strategies as st
from sglang_matrix import escape, render
from sglang_matrix.errors import UserError

yaml = pytest.importorskip("yaml", reason="PyYAML reads YAML (pip install pyyaml)")
markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (a dependency of rich)")

HOSTILE = ['"', "\\", "$", "${x}", "$${x}", "\\${", "''${", "`", "|", "<!--", "-->", "\n", "\r", "\t", "#"]
texts = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=8)
    | st.sampled_from(HOSTILE),
    max_size=5,
).map("".join)


@settings(max_examples=20, deadline=None, database=None)
@given(values=st.lists(texts, min_size=1, max_size=20))
def test_nix_strings_and_attributes_read_back_as_written(values: list[str], nix_bin: Path) -> None:
    attrs = " ".join(f"{escape.nix_attr(f'a{i}{v}')} = {escape.nix_string(v)};" for i, v in enumerate(values))
    comments = "".join(f"# {escape.nix_comment(v)}\n" for v in values)
    expr = f"{comments}[ {' '.join(escape.nix_string(v) for v in values)} ] ++ [ {{ {attrs} }} ]"
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, (expr, proc.stderr)
    *strings, attrset = json.loads(proc.stdout)
    assert strings == values
    assert attrset == {f"a{i}{v}": v for i, v in enumerate(values)}


def test_nix_bare_names_and_keywords() -> None:
    assert escape.nix_attr("sglang-sm90-avx512") == "sglang-sm90-avx512"
    assert escape.nix_attr("let") == '"let"' and escape.nix_attr("in") == '"in"'
    assert escape.nix_attr("9x") == '"9x"'
    with pytest.raises(ValueError):
        escape.nix_string("a\0b")
    for bad in ("a b", "a/b", "..", "a\nb", ""):
        with pytest.raises(ValueError):
            escape.nix_path_part(bad)


@settings(max_examples=200, deadline=None, database=None)
@given(value=texts)
def test_yaml_scalars_read_back_as_written(value: str) -> None:
    doc = yaml.safe_load(
        f"key: {escape.yaml_scalar(value)}\nflow: {{ a: {escape.yaml_scalar(value)}, b: 1 }}\n"
    )
    assert doc == {"key": value, "flow": {"a": value, "b": 1}}


def test_yaml_plain_where_unambiguous() -> None:
    assert escape.yaml_scalar("sglang-sm90-avx512") == "sglang-sm90-avx512"
    for special in ("on", "Off", "yes", "null", "true", "y"):
        assert yaml.safe_load(f"k: {escape.yaml_scalar(special)}") == {"k": special}


def cells(line: str) -> list[str]:
    md = markdown_it.MarkdownIt("commonmark").enable("table")
    tokens = md.parse(f"| a | b | c |\n| --- | --- | --- |\n{line}\n")
    rows, current = [], None
    for token in tokens:
        if token.type == "tr_open":
            current = []
        elif token.type == "inline" and current is not None:
            current.append("".join(c.content for c in token.children if c.type in ("text", "code_inline")))
        elif token.type == "tr_close":
            rows.append(current)
            current = None
    return rows[1]


printable = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
    ),
    max_size=10,
)
md_texts = st.lists(
    printable | st.sampled_from([*HOSTILE[:-4], "*", "_", "[", "]", "&amp;", "~~"]), max_size=5
).map("".join)


@settings(max_examples=200, deadline=None, database=None)
@given(value=md_texts, name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True))
def test_markdown_cells_read_back_as_written(value: str, name: str) -> None:
    """Three cells of a GFM table: text, a code span, text; no value changes the count or the text."""
    row = f"| {escape.md_text(value)} | {escape.md_code(name)} | {escape.md_text(value + '|')} |"
    assert cells(row) == [value.strip(), name, (value + "|").strip()]
    assert "<!--" not in escape.md_text(value)


def test_templates_refuse_an_unescaped_value(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("x = {{ value }};\n")
    (tmp_path / "templates" / "ok.j2").write_text("x = {{ value | nix_string }}; n = {{ n }};\n")
    env = render.environment(tmp_path)
    with pytest.raises(UserError, match=r"templates/t\.j2: .*'a\\n\"b' is printed unescaped"):
        render._render(env, "t.j2", value='a\n"b')
    assert render._render(env, "ok.j2", value='a\n"b', n=3) == 'x = "a\\n\\"b"; n = 3;\n'
