"""sglang-resolve-model: HF-cache lookup, the TokenizersBackend shim and the env file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sglang_matrix import resolve_model as rm

REPO = "acme/Tiny-Model"
CONFIG = '{"model_type": "llama"}'
HOSTILE_VALUES = [
    "it's",
    "a'b\"c",
    "line1\nline2\n",
    "cr\r\nlf\x01\x7f",
    "undecodable \udcff byte",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "with  spaces\tand tab",
    "$HOME ${HOME} \\ ; | & > < * ? ~ # !",
    "",
    "'",
    "''",
    '"\'"',
    "ünïcödé ☃",
    "-n",
    "plain/path-1.0_x@y%z+w=v:u,t",
]


def make_snapshot(
    hub: Path,
    repo_id: str,
    commit: str,
    files: dict[str, str] | None = None,
    *,
    ref: str | None = None,
) -> Path:
    """An HF-cache model folder: snapshots/<commit>/<files>, and refs/main when ``ref`` is given."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, text in (files if files is not None else {"config.json": CONFIG}).items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_text(text)
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(ref)
    return snap


def complete(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"config.json": CONFIG, "model.safetensors": "weights", **(extra or {})}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated environment: bundled hub, user HF cache, shim cache and env file all under tmp_path."""
    for name in list(os.environ):
        if name.startswith(("SGLANG_", "HF_", "HUGGINGFACE_", "XDG_")) or name == "FLOX_ENV":
            monkeypatch.delenv(name)
    values = {
        "SGLANG_MODELS_DIR": str(tmp_path / "bundled"),
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "SGLANG_CACHE_DIR": str(tmp_path / "cache"),
        "SGLANG_ENV_FILE": str(tmp_path / "run" / "resolved.env"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def tree_state(root: Path) -> dict[str, tuple[bool, bytes | str, int]]:
    """Every entry under root: (is link, content or link target, mtime_ns) — to prove nothing changed."""
    state: dict[str, tuple[bool, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                state[str(path)] = (True, os.readlink(path), st.st_mtime_ns)
            elif path.is_dir():
                state[str(path)] = (False, "dir", st.st_mtime_ns)
            else:
                state[str(path)] = (False, path.read_bytes(), st.st_mtime_ns)
    state[str(root)] = (False, "dir", root.stat().st_mtime_ns)
    return state


# ------------------------------------------------------------------------------------------- local


def test_local_dir_with_config_is_used_as_is(tmp_path: Path, env: dict[str, str]) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(CONFIG)
    res = rm.resolve(str(model), env)
    assert (res.source, res.model, res.shim) == ("local", str(model), None)
    assert res.env == {
        "SGLANG_MODEL": str(model),
        "SGLANG_RESOLVED_FROM": str(model),
        "SGLANG_MODEL_SOURCE": "local",
    }


def test_relative_local_dir_is_made_absolute(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    assert rm.resolve("./m", env).model == str(tmp_path / "m")


@pytest.mark.parametrize("make_dir", [True, False])
def test_bad_local_path_is_exit_2(tmp_path: Path, env: dict[str, str], make_dir: bool) -> None:
    model = tmp_path / "no-config"
    if make_dir:
        model.mkdir()
        (model / "tokenizer.json").write_text("{}")
    result = CliRunner().invoke(rm.main, [str(model)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1
    assert "SGLANG_MODEL=" in result.stderr and str(model) in result.stderr
    assert not Path(env["SGLANG_ENV_FILE"]).exists()


# ---------------------------------------------------------------------------------------- HF cache


def test_bundled_hit_follows_refs_main(env: dict[str, str]) -> None:
    hub = Path(env["SGLANG_MODELS_DIR"])
    make_snapshot(hub, REPO, "0000aaaa")  # sorts first, but refs/main names the other one
    snap = make_snapshot(hub, REPO, "ffff1111", ref="ffff1111\n")
    res = rm.resolve(REPO, env)
    assert (res.source, res.model, res.snapshot) == ("bundled", str(snap), str(snap))
    assert res.env == {
        "SGLANG_MODEL": str(snap),
        "SGLANG_RESOLVED_FROM": REPO,
        "SGLANG_MODEL_SOURCE": "bundled",
        "HF_HUB_OFFLINE": "1",
        "SGLANG_BUNDLED_FROM": REPO,
    }


@pytest.mark.parametrize("ref", [None, "deadbeef", "../../escape"])
def test_missing_or_bad_ref_falls_back_to_first_sorted_snapshot_with_config(
    env: dict[str, str], ref: str | None
) -> None:
    hub = Path(env["SGLANG_MODELS_DIR"])
    make_snapshot(hub, REPO, "aaa", {"README.md": "no config here"}, ref=ref)
    make_snapshot(hub, REPO, "ccc")
    expected = make_snapshot(hub, REPO, "bbb")
    if ref == "deadbeef":
        make_snapshot(hub, REPO, "deadbeef", {"README.md": "ref target without config"})
    assert rm.resolve(REPO, env).model == str(expected)


def test_snapshots_without_config_are_not_used(env: dict[str, str]) -> None:
    hub = Path(env["SGLANG_MODELS_DIR"])
    make_snapshot(hub, REPO, "aaa", {"model.safetensors": "w"}, ref="aaa")
    res = rm.resolve(REPO, env)
    assert (res.source, res.model) == ("remote", REPO)
    assert "HF_HUB_OFFLINE" not in res.env


def test_bundled_wins_over_user_cache(env: dict[str, str]) -> None:
    make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "user", complete(), ref="user")
    bundled = make_snapshot(Path(env["SGLANG_MODELS_DIR"]), REPO, "bundle", ref="bundle")
    assert rm.resolve(REPO, env).model == str(bundled)


def test_models_dir_is_a_search_path(tmp_path: Path, env: dict[str, str]) -> None:
    second = make_snapshot(tmp_path / "second", REPO, "abc")
    environ = {
        **env,
        "SGLANG_MODELS_DIR": os.pathsep.join([str(tmp_path / "empty"), str(tmp_path / "second")]),
    }
    assert rm.resolve(REPO, environ).model == str(second)


def test_user_cache_hit_uses_snapshot_without_offline(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "c0ffee", complete(), ref="c0ffee")
    res = rm.resolve(REPO, env)
    assert (res.source, res.model) == ("hf-cache", str(snap))
    assert res.env == {
        "SGLANG_MODEL": str(snap),
        "SGLANG_RESOLVED_FROM": REPO,
        "SGLANG_MODEL_SOURCE": "hf-cache",
    }


def test_incomplete_user_cache_snapshot_is_left_to_download(env: dict[str, str]) -> None:
    index = json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    )
    files = {
        "config.json": CONFIG,
        "model.safetensors.index.json": index,
        "model-00001-of-00002.safetensors": "w",
    }
    make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "c0ffee", files, ref="c0ffee")
    assert rm.resolve(REPO, env).source == "remote"
    make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "c0ffee", {"model-00002-of-00002.safetensors": "w"})
    assert rm.resolve(REPO, env).source == "hf-cache"


def test_config_only_user_cache_snapshot_is_left_to_download(env: dict[str, str]) -> None:
    make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "c0ffee", ref="c0ffee")
    assert rm.resolve(REPO, env).model == REPO


def test_no_hit_leaves_the_id(env: dict[str, str]) -> None:
    res = rm.resolve("someone/else", env)
    assert (res.source, res.model, res.snapshot) == ("remote", "someone/else", None)


def test_bare_legacy_id_is_looked_up(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["SGLANG_MODELS_DIR"]), "gpt2", "abc")
    assert rm.resolve("gpt2", env).model == str(snap)


def test_user_hub_dir_order(tmp_path: Path) -> None:
    assert rm.user_hub_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert rm.user_hub_dir({"HF_HOME": "/b", "XDG_CACHE_HOME": "/c"}) == Path("/b/hub")
    assert rm.user_hub_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/hub")
    assert rm.user_hub_dir({}) == Path(os.path.expanduser("~/.cache/huggingface/hub"))


def test_default_bundled_dirs() -> None:
    prefix_hub = Path(sys.prefix) / "share" / "models" / "hub"
    assert rm.bundled_hub_dirs({}) == [prefix_hub]
    assert rm.bundled_hub_dirs({"FLOX_ENV": "/f"}) == [prefix_hub, Path("/f/share/models/hub")]
    assert rm.bundled_hub_dirs({"SGLANG_MODELS_DIR": "/x"}) == [Path("/x")]


def test_default_env_file(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    assert rm.default_env_file({"SGLANG_ENV_FILE": "/e/f.env"}) == Path("/e/f.env")
    assert (
        rm.default_env_file({"XDG_RUNTIME_DIR": str(runtime)}) == runtime / "sglang-matrix" / "resolved.env"
    )
    missing = {"XDG_RUNTIME_DIR": str(tmp_path / "gone"), "XDG_CACHE_HOME": "/c"}
    assert rm.default_env_file(missing) == Path("/c/sglang-matrix/resolved.env")


# ---------------------------------------------------------------------------------- tokenizer shim


def shim_files(tokenizer_class: str = "TokenizersBackend") -> dict[str, str]:
    tok = {"tokenizer_class": tokenizer_class, "model_max_length": 4096, "bos_token": "<s>"}
    return complete(
        {"tokenizer_config.json": json.dumps(tok), "tokenizer.json": "{}", "original/params.json": "{}"}
    )


def test_tokenizers_backend_gets_a_shadow_dir(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["SGLANG_MODELS_DIR"]), REPO, "abc123", shim_files(), ref="abc123")
    before = tree_state(snap.parents[2])
    res = rm.resolve(REPO, env)
    shadow = Path(env["SGLANG_CACHE_DIR"]) / "compat" / "acme--Tiny-Model-abc123"
    assert (res.source, res.model, res.shim, res.snapshot) == ("bundled", str(shadow), str(shadow), str(snap))
    assert res.env["SGLANG_MODEL"] == str(shadow)
    assert res.env["SGLANG_BUNDLED_FROM"] == REPO
    assert sorted(os.listdir(shadow)) == sorted(os.listdir(snap))
    for name in os.listdir(snap):
        entry = shadow / name
        if name == "tokenizer_config.json":
            assert entry.is_file() and not entry.is_symlink()
            patched = json.loads(entry.read_text())
            assert patched == {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": 4096,
                "bos_token": "<s>",
            }
        else:
            assert entry.is_symlink() and os.readlink(entry) == str(snap / name)
    assert (shadow / "original" / "params.json").read_text() == "{}"
    assert tree_state(snap.parents[2]) == before, "the snapshot must not be written to"
    assert json.loads((snap / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    assert [p.name for p in shadow.parent.iterdir()] == [shadow.name], "no temp dirs left behind"


def test_shadow_is_reused_then_rebuilt_when_the_snapshot_changes(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "abc123", shim_files(), ref="abc123")
    shadow = Path(rm.resolve(REPO, env).model)
    first = tree_state(shadow)
    assert rm.resolve(REPO, env).model == str(shadow)
    assert tree_state(shadow) == first, "an up-to-date shadow is reused untouched"
    (snap / "generation_config.json").write_text("{}")
    assert rm.resolve(REPO, env).model == str(shadow)
    assert os.readlink(shadow / "generation_config.json") == str(snap / "generation_config.json")
    (shadow / "tokenizer_config.json").write_text("{}")  # tampered: rebuilt
    rm.resolve(REPO, env)
    assert (
        json.loads((shadow / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )
    assert sorted(p.name for p in shadow.parent.iterdir()) == [shadow.name]


def test_shim_applies_to_local_dirs(tmp_path: Path, env: dict[str, str]) -> None:
    model = tmp_path / "local model"
    for name, text in shim_files().items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_text(text)
    res = rm.resolve(str(model), env)
    assert res.source == "local" and res.shim is not None
    assert Path(res.shim).parent == Path(env["SGLANG_CACHE_DIR"]) / "compat"
    assert Path(res.shim).name.startswith("local-model-")


def test_other_tokenizer_classes_are_left_alone(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["SGLANG_MODELS_DIR"]), REPO, "abc", shim_files("LlamaTokenizerFast"))
    res = rm.resolve(REPO, env)
    assert (res.model, res.shim) == (str(snap), None)
    assert not (Path(env["SGLANG_CACHE_DIR"]) / "compat").exists()


def test_shim_cache_inside_the_snapshot_is_refused(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["SGLANG_MODELS_DIR"]), REPO, "abc", shim_files())
    before = tree_state(snap)
    with pytest.raises(rm.ResolveError, match="SGLANG_CACHE_DIR"):
        rm.resolve(REPO, {**env, "SGLANG_CACHE_DIR": str(snap / "cache")})
    assert tree_state(snap) == before


def test_default_shim_cache_is_under_xdg_cache(tmp_path: Path) -> None:
    assert rm.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "sglang-matrix"
    assert rm.cache_root({"SGLANG_CACHE_DIR": "/s"}) == Path("/s")


# ---------------------------------------------------------------------------------------- env file


def test_env_file_round_trips_hostile_values() -> None:
    env = {f"V{i}": value for i, value in enumerate(HOSTILE_VALUES)}
    text = rm.format_env_file(env)
    assert rm.parse_env_file(text) == env
    assert text.startswith("#") and text.count("\nexport V") == len(env)


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_env_file_is_safe_to_source(tmp_path: Path, value: str) -> None:
    canary = tmp_path / "pwned"
    value = value.replace("/tmp/pwned", str(canary))
    path = tmp_path / "resolved.env"
    rm.write_env_file(path, {"SGLANG_MODEL": value, "OTHER": "x"})
    assert rm.read_env_file(path) == {"SGLANG_MODEL": value, "OTHER": "x"}
    out = subprocess.run(
        ["bash", "-c", 'source "$1"; printf %s "$SGLANG_MODEL"', "bash", str(path)],
        capture_output=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
    )
    assert out.stdout.decode("utf-8", "surrogateescape") == value
    assert out.stderr == b""
    assert not canary.exists()


@pytest.mark.parametrize(
    "text",
    [
        "export A=$(touch x)\n",
        "A=b\n",
        "export A=b c\n",
        "export A='unterminated\n",
        "source /etc/profile\n",
        "export A=`x`\n",
        'export A="b"\n',
        "export 1A=b\n",
        "  export A=b\n",
        "export A=b; touch x\n",
    ],
)
def test_env_file_parser_accepts_only_the_written_format(text: str) -> None:
    with pytest.raises(rm.ResolveError, match=r"<env file>:1: not an 'export NAME=VALUE' line"):
        rm.parse_env_file(text)


def test_env_file_parser_reports_the_line() -> None:
    with pytest.raises(rm.ResolveError, match=r"f\.env:4:"):
        rm.parse_env_file("# c\nexport A='x\ny'\nbad\n", "f.env")


def test_write_env_file_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "d" / "resolved.env"
    rm.write_env_file(path, {"A": "1"})
    rm.write_env_file(path, {"A": "2"})
    assert rm.read_env_file(path) == {"A": "2"}
    assert os.listdir(path.parent) == ["resolved.env"]
    assert rm.read_env_file(tmp_path / "missing.env") is None


# --------------------------------------------------------------------------------------------- cli


def test_cli_writes_env_file_and_prints(env: dict[str, str]) -> None:
    snap = make_snapshot(Path(env["SGLANG_MODELS_DIR"]), REPO, "abc", ref="abc")
    result = CliRunner().invoke(rm.main, ["--print", REPO])
    assert result.exit_code == 0, result.output
    written = rm.read_env_file(Path(env["SGLANG_ENV_FILE"]))
    assert written is not None and written["SGLANG_MODEL"] == str(snap)
    assert rm.parse_env_file(result.stdout) == written
    assert "bundled" in result.stderr


def test_cli_json_and_no_write(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGLANG_MODEL", "nobody/nothing")
    result = CliRunner().invoke(rm.main, ["--json", "--no-write", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "nobody/nothing" and data["source"] == "remote" and data["env_file"] is None
    assert result.stderr == ""
    assert not Path(env["SGLANG_ENV_FILE"]).exists()


def test_cli_default_model(env: dict[str, str]) -> None:
    result = CliRunner().invoke(rm.main, ["--json", "-q"])
    assert (
        json.loads(result.stdout)["requested"]
        == rm.DEFAULT_MODEL
        == "microsoft/Phi-4-mini-instruct-FP8-TORCHAO"
    )


def test_cli_print_and_json_are_exclusive(env: dict[str, str]) -> None:
    result = CliRunner().invoke(rm.main, ["--print", "--json"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_hostile_local_path_round_trips_through_cli_and_shell(tmp_path: Path, env: dict[str, str]) -> None:
    canary = tmp_path / "pwned"  # the commands below are relative: bash runs in tmp_path
    model = tmp_path / 'we\'ird "dir" $(touch pwned) `touch pwned` ${HOME}\nline2 '
    model.mkdir()
    (model / "config.json").write_text(CONFIG)
    result = CliRunner().invoke(rm.main, [str(model)])
    assert result.exit_code == 0, result.output
    env_file = env["SGLANG_ENV_FILE"]
    assert rm.read_env_file(Path(env_file)) == {
        "SGLANG_MODEL": str(model),
        "SGLANG_RESOLVED_FROM": str(model),
        "SGLANG_MODEL_SOURCE": "local",
    }
    out = subprocess.run(
        ["bash", "-c", 'source "$1"; printf %s "$SGLANG_MODEL"', "bash", env_file],
        capture_output=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.decode() == str(model)
    assert not canary.exists()


def test_entry_point_module_runs_without_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    tools = Path(rm.__file__).resolve().parents[1]
    run_env = {**os.environ, "PYTHONPATH": str(tools)}
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix.resolve_model", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=run_env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------------------- hostile ids


@pytest.mark.parametrize("length", [255, 300, 5000])
def test_overlong_id_passes_through_unchanged(tmp_path: Path, env: dict[str, str], length: int) -> None:
    """An id too long for any cache folder name (ENAMETOOLONG) with both caches present: no traceback, the
    id goes to the server as given (issue 12)."""
    (tmp_path / "bundled").mkdir()
    (tmp_path / "hf").mkdir()
    model = "acme/" + "m" * length
    result = CliRunner().invoke(rm.main, [model, "--json", "-q"])
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(result.stdout)
    assert (data["model"], data["source"]) == (model, "remote")
    assert rm.parse_env_file(Path(env["SGLANG_ENV_FILE"]).read_text())["SGLANG_MODEL"] == model


def test_a_trailing_newline_is_not_an_hf_id(env: dict[str, str]) -> None:
    """`$` would accept "acme/Tiny-Model\\n" as an HF id; it is not one (nor a path): left as given."""
    make_snapshot(Path(env["HF_HUB_CACHE"]), REPO, "c0ffee", complete())
    assert rm.is_repo_id(REPO) and not rm.is_repo_id(REPO + "\n")
    res = rm.resolve(REPO + "\n", env)
    assert (res.model, res.source) == (REPO + "\n", "remote")
