"""sglang-serve: the launch_server argv from SGLANG_* variables, bad values, the env file, preflight."""

from __future__ import annotations

import ast
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sglang_matrix import resolve_model, serve

DEFAULT = "microsoft/Phi-4-mini-instruct-FP8-TORCHAO"
LAUNCH = [sys.executable, "-m", "sglang.launch_server"]


def base(
    model: str = DEFAULT, served: str | None = None, host: str = "0.0.0.0", port: str = "30000"
) -> list[str]:
    return [
        *LAUNCH,
        *["--model-path", model, "--host", host, "--port", port],
        *["--served-model-name", served or model],
    ]


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No SGLANG_/HF_/XDG_ variables from the host; the env file points into tmp_path (absent)."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("SGLANG_", "HF_", "HUGGINGFACE_", "XDG_")) or name == "FLOX_ENV":
            monkeypatch.delenv(name)
    env_file = tmp_path / "resolved.env"
    monkeypatch.setenv("SGLANG_ENV_FILE", str(env_file))
    yield env_file
    # serve exports the env file's variables before exec; undo whatever it set.
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def execv(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, list(argv))))
    return calls


def invoke(env: dict[str, str], *args: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(serve.main, list(args))


def dry_run(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    result = invoke(env, "--dry-run", *args, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1, "one line"
    return shlex.split(result.stdout)


# ---------------------------------------------------------------------------------------- argv table

CASES: list[tuple[str, dict[str, str], list[str]]] = [
    ("defaults", {}, base()),
    ("empty values count as unset", {"SGLANG_MODEL": "", "SGLANG_PORT": "", "SGLANG_TP_SIZE": " "}, base()),
    ("model", {"SGLANG_MODEL": "org/other"}, base("org/other")),
    (
        "host and port",
        {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": "8080"},
        base(host="127.0.0.1", port="8080"),
    ),
    ("port is normalised", {"SGLANG_PORT": " 08080 "}, base(port="8080")),
    ("served name", {"SGLANG_SERVED_NAME": "chat"}, base(served="chat")),
    (
        "served name from bundled",
        {"SGLANG_MODEL": "/m/snap", "SGLANG_BUNDLED_FROM": "org/m"},
        base("/m/snap", "org/m"),
    ),
    (
        "explicit served name beats bundled",
        {"SGLANG_BUNDLED_FROM": "org/m", "SGLANG_SERVED_NAME": "x"},
        base(served="x"),
    ),
    (
        "served name from resolved",
        {"SGLANG_MODEL": "/c/snap", "SGLANG_RESOLVED_FROM": "o/n"},
        base("/c/snap", "o/n"),
    ),
    ("attention backend", {"SGLANG_ATTENTION_BACKEND": "triton"}, [*base(), "--attention-backend", "triton"]),
    ("disable cuda graph 1", {"SGLANG_DISABLE_CUDA_GRAPH": "1"}, [*base(), "--disable-cuda-graph"]),
    ("disable cuda graph TRUE", {"SGLANG_DISABLE_CUDA_GRAPH": "TRUE"}, [*base(), "--disable-cuda-graph"]),
    ("disable cuda graph 0", {"SGLANG_DISABLE_CUDA_GRAPH": "0"}, base()),
    ("disable cuda graph false", {"SGLANG_DISABLE_CUDA_GRAPH": "false"}, base()),
    ("dtype", {"SGLANG_DTYPE": "float16"}, [*base(), "--dtype", "float16"]),
    ("tp size", {"SGLANG_TP_SIZE": "4"}, [*base(), "--tp-size", "4"]),
    (
        "sampling params are compacted",
        {"SGLANG_PREFERRED_SAMPLING_PARAMS": '{ "temperature": 0.6, "top_p": 0.95 }'},
        [*base(), "--preferred-sampling-params", '{"temperature":0.6,"top_p":0.95}'],
    ),
    ("preflight off", {"SGLANG_PREFLIGHT": "0"}, base()),
    (
        "extra args with quotes",
        {"SGLANG_EXTRA_ARGS": "--mem-fraction-static 0.80 --chat-template 'my template.jinja' --x \"a b\""},
        [*base(), "--mem-fraction-static", "0.80", "--chat-template", "my template.jinja", "--x", "a b"],
    ),
    (
        "every variable",
        {
            "SGLANG_MODEL": "/models/it's here",
            "SGLANG_HOST": "::1",
            "SGLANG_PORT": "31000",
            "SGLANG_SERVED_NAME": "svc",
            "SGLANG_BUNDLED_FROM": "ignored/because-served-name",
            "SGLANG_ATTENTION_BACKEND": "fa3",
            "SGLANG_DISABLE_CUDA_GRAPH": "yes",
            "SGLANG_DTYPE": "bfloat16",
            "SGLANG_TP_SIZE": "2",
            "SGLANG_PREFERRED_SAMPLING_PARAMS": '{"max_new_tokens": 8}',
            "SGLANG_EXTRA_ARGS": "--context-length 4096",
            "SGLANG_PREFLIGHT": "1",
        },
        [
            *base("/models/it's here", "svc", "::1", "31000"),
            *["--attention-backend", "fa3", "--disable-cuda-graph", "--dtype", "bfloat16", "--tp-size", "2"],
            *["--preferred-sampling-params", '{"max_new_tokens":8}', "--context-length", "4096"],
        ],
    ),
]


@pytest.mark.parametrize(("env", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_dry_run_argv(env: dict[str, str], expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert dry_run(env, monkeypatch) == expected


def test_build_argv_is_pure() -> None:
    assert serve.build_argv({}, python="/py") == ["/py", *base()[1:]]


# ---------------------------------------------------------------------------------------- bad values

BAD = [
    ("SGLANG_PORT", "abc"),
    ("SGLANG_PORT", "70000"),
    ("SGLANG_PORT", "0"),
    ("SGLANG_PORT", "-1"),
    ("SGLANG_PORT", "3_0000"),
    ("SGLANG_TP_SIZE", "0"),
    ("SGLANG_TP_SIZE", "x"),
    ("SGLANG_TP_SIZE", "1.5"),
    ("SGLANG_PREFERRED_SAMPLING_PARAMS", "{broken"),
    ("SGLANG_PREFERRED_SAMPLING_PARAMS", "[1, 2]"),
    ("SGLANG_PREFERRED_SAMPLING_PARAMS", '"a string"'),
    ("SGLANG_PREFERRED_SAMPLING_PARAMS", '{"t": NaN}'),
    ("SGLANG_PREFERRED_SAMPLING_PARAMS", '{"a":\n1'),
    ("SGLANG_DISABLE_CUDA_GRAPH", "maybe"),
    ("SGLANG_PREFLIGHT", "sure"),
    ("SGLANG_EXTRA_ARGS", "--x 'unbalanced"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
@pytest.mark.parametrize("dry", [True, False])
def test_bad_value_is_one_line_exit_2(
    name: str, value: str, dry: bool, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    result = invoke({name: value}, *(["--dry-run"] if dry else []), monkeypatch=monkeypatch)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"{name}={value!r}" in lines[0]
    assert execv == []


def test_bad_value_through_the_real_entry_point(tmp_path: Path) -> None:
    tools = Path(serve.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(tools), "SGLANG_PORT": "70000"}
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix.serve", "--dry-run"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr == "sglang-serve: error: SGLANG_PORT='70000': must be between 1 and 65535\n"
    env["SGLANG_PORT"] = "30001"
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix.serve", "--dry-run"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(proc.stdout) == base(port="30001")


# ------------------------------------------------------------------------------------------ env file


def write_resolved(path: Path, **values: str) -> None:
    resolve_model.write_env_file(path, values)


def test_env_file_overrides_model(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_resolved(
        clean_env,
        SGLANG_MODEL="/store/snap",
        SGLANG_RESOLVED_FROM=DEFAULT,
        HF_HUB_OFFLINE="1",
        SGLANG_BUNDLED_FROM=DEFAULT,
    )
    assert dry_run({}, monkeypatch) == base("/store/snap", DEFAULT)
    assert dry_run({"SGLANG_MODEL": DEFAULT}, monkeypatch) == base("/store/snap", DEFAULT)


def test_stale_env_file_is_ignored_with_a_note(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_resolved(clean_env, SGLANG_MODEL="/store/snap", SGLANG_RESOLVED_FROM=DEFAULT)
    result = invoke({"SGLANG_MODEL": "org/other"}, "--dry-run", monkeypatch=monkeypatch)
    assert result.exit_code == 0
    assert shlex.split(result.stdout) == base("org/other")
    assert "ignoring" in result.stderr and "org/other" in result.stderr


def test_env_file_option_and_no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.env"
    write_resolved(other, SGLANG_MODEL="/x", SGLANG_RESOLVED_FROM="o/x")
    assert dry_run({}, monkeypatch, "--env-file", str(other)) == base("/x", "o/x")
    assert dry_run({}, monkeypatch, "--env-file", str(other), "--no-env-file") == base()


def test_malformed_env_file_is_exit_2(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env.write_text("export SGLANG_MODEL=$(touch pwned)\n")
    result = invoke({}, "--dry-run", monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1
    assert str(clean_env) in result.stderr


def bash_argv(line: str) -> list[str]:
    """What bash makes of a dry-run line (its words, NUL-separated), without running the command."""
    out = subprocess.run(
        ["bash", "-c", "set -- " + line + '\nprintf "%s\\0" "$@"'], capture_output=True, check=True
    )
    return out.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]


@pytest.mark.parametrize(
    "hostile",
    [
        '/m/it\'s "q" $(touch /tmp/pwned) `id` ${HOME} \\ * ~',
        "/m/line\nnext line\ttab\r\x01\x7f 'q' \\x41 ünï",
        "/m/undecodable-\udcff-byte",
    ],
)
def test_hostile_model_from_env_file_reaches_argv_verbatim(
    hostile: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    write_resolved(clean_env, SGLANG_MODEL=hostile, SGLANG_RESOLVED_FROM="o/n")
    result = invoke({}, "--dry-run", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1, "one line"
    assert bash_argv(result.stdout) == base(hostile, "o/n")
    result = invoke({}, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert execv == [(sys.executable, base(hostile, "o/n"))]


def test_resolve_then_serve(tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--org--m" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    monkeypatch.setenv("SGLANG_MODELS_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("SGLANG_MODEL", "org/m")
    assert CliRunner().invoke(resolve_model.main, ["-q"]).exit_code == 0
    assert dry_run({}, monkeypatch) == base(str(snap), "org/m")


# -------------------------------------------------------------------------------------------- exec


def test_exec_exports_the_env_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    write_resolved(
        clean_env,
        SGLANG_MODEL="/snap",
        SGLANG_RESOLVED_FROM="o/m",
        HF_HUB_OFFLINE="1",
        SGLANG_BUNDLED_FROM="o/m",
    )
    result = invoke({"SGLANG_TP_SIZE": "2"}, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert execv == [(sys.executable, [*base("/snap", "o/m"), "--tp-size", "2"])]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["SGLANG_MODEL"] == "/snap"


def test_exec_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: str, argv: list[str]) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(os, "execv", fail)
    result = invoke({}, monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1


# --------------------------------------------------------------------------------------- preflight


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_preflight_busy_port_is_exit_1(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    env = {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(busy_port), "SGLANG_PREFLIGHT": "1"}
    result = invoke(env, monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"sglang-serve: error: port {busy_port} on 127.0.0.1 is already in use (SGLANG_PORT={busy_port})\n"
    )
    assert execv == []


def test_preflight_free_port_execs(
    monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    port = str(free_port())
    result = invoke(
        {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": port, "SGLANG_PREFLIGHT": "1"}, monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    assert execv == [(sys.executable, base(host="127.0.0.1", port=port))]


def test_preflight_off_ignores_busy_port(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    result = invoke({"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(busy_port)}, monkeypatch=monkeypatch)
    assert result.exit_code == 0 and len(execv) == 1


def test_dry_run_skips_preflight(busy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(busy_port), "SGLANG_PREFLIGHT": "true"}
    assert dry_run(env, monkeypatch) == base(host="127.0.0.1", port=str(busy_port))


# -------------------------------------------------------------------------------------- standalone


@pytest.mark.parametrize("module", [serve, resolve_model])
def test_module_is_standalone(module: object) -> None:
    """A Nix package installs just serve.py and resolve_model.py: stdlib, click and each other only."""
    source = Path(module.__file__).read_text()  # type: ignore[attr-defined]
    allowed = set(sys.stdlib_module_names) | {"click", "resolve_model"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert [a.name for a in node.names] == ["resolve_model"], ast.unparse(node)
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed, ast.unparse(node)
