"""sglang-serve: the launch_server argv from SGLANG_* variables, bad values, the env file, preflight (on by
default; the host's side of it is tests/test_host_preflight.py)."""

from __future__ import annotations

import ast
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from host_fixtures import ROOT, Stubs, make_host, stub_env
from sglang_matrix import resolve_model, serve
from sglang_matrix.host.record import matrix_from_spec
from sglang_matrix.spec import load_spec

DEFAULT = "microsoft/Phi-4-mini-instruct-FP8-TORCHAO"
LAUNCH = [sys.executable, "-m", "sglang.launch_server"]
WHICH = ROOT / "tests" / "fixtures" / "which"


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
    # This machine has no GPU: the tests of the argv and the exec turn the (default) preflight off; those
    # of the preflight turn it on, with a stub driver.
    monkeypatch.setenv("SGLANG_PREFLIGHT", "0")
    for name in ("CUDA_VISIBLE_DEVICES", "STUB_GPUS", "STUB_CUDA_VERSION"):
        monkeypatch.delenv(name, raising=False)
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


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    return Stubs(tmp_path_factory.mktemp("stubs"))


def stub_host(tmp_path: Path, stubs: Stubs, gpus: str = "NVIDIA H100 80GB HBM3:9.0") -> dict[str, str]:
    """The variables of a fake Ubuntu host with a stub driver, as sglang-sm90-avx512's launcher runs it."""
    root = tmp_path / "host"
    make_host(root, "ubuntu", stubs)
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text((WHICH / "h100.cpuinfo").read_text())
    record = tmp_path / "record.json"
    record.write_text(
        json.dumps(matrix_from_spec(load_spec(ROOT / "matrix.toml"), "sglang-sm90-avx512").to_json())
    )
    return {"SGLANG_MATRIX_HOST_ROOT": str(root), "SGLANG_MATRIX_RECORD": str(record), **stub_env(gpus)}


def test_preflight_is_on_by_default_and_refuses_before_exec(
    tmp_path: Path, stubs: Stubs, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    monkeypatch.delenv("SGLANG_PREFLIGHT")
    result = invoke(stub_host(tmp_path, stubs, "NVIDIA A40:8.6"), monkeypatch=monkeypatch)
    assert result.exit_code == 2, result.output
    assert execv == []
    refused = [line for line in result.stderr.splitlines() if "refused:" in line]
    assert refused == [
        "sglang-serve: refused: GPU 0 (NVIDIA A40, capability 8.6) cannot run sglang-sm90-avx512, built for "
        "9.0 only: use sglang-sm86-avx512 (8.6)"
    ]
    assert result.stdout == ""


def test_preflight_without_a_driver_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    monkeypatch.setenv("SGLANG_MATRIX_HOST_ROOT", str(tmp_path))
    result = invoke({"SGLANG_PREFLIGHT": "1"}, monkeypatch=monkeypatch)
    assert result.exit_code == 2 and execv == []
    assert "sglang-serve: refused: no NVIDIA driver found" in result.stderr


def test_preflight_busy_port_is_exit_1(
    tmp_path: Path,
    stubs: Stubs,
    busy_port: int,
    monkeypatch: pytest.MonkeyPatch,
    execv: list[tuple[str, list[str]]],
) -> None:
    env = {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(busy_port), "SGLANG_PREFLIGHT": "1"}
    result = invoke({**env, **stub_host(tmp_path, stubs)}, monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        f"sglang-serve: error: port {busy_port} on 127.0.0.1 is already in use (SGLANG_PORT={busy_port})"
    )
    assert "sglang-serve: ok: GPU 0: NVIDIA H100 80GB HBM3, capability 9.0" in result.stderr
    assert execv == []


def test_preflight_that_passes_execs(
    tmp_path: Path, stubs: Stubs, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    port = str(free_port())
    env = {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": port, "SGLANG_PREFLIGHT": "yes"}
    result = invoke({**env, **stub_host(tmp_path, stubs)}, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert execv == [(sys.executable, base(host="127.0.0.1", port=port))]
    assert result.stdout == ""  # the findings go to stderr: stdout is the server's


def test_preflight_off_ignores_busy_port_and_host(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch, execv: list[tuple[str, list[str]]]
) -> None:
    monkeypatch.setenv("SGLANG_MATRIX_HOST_ROOT", str(tmp_path))  # no driver at all
    result = invoke(
        {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(busy_port), "SGLANG_PREFLIGHT": "off"},
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 0 and len(execv) == 1
    assert result.stderr == ""


def test_json_goes_with_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke({}, "--json", monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert result.stderr == "sglang-serve: error: --json goes with --preflight\n"


def test_dry_run_skips_preflight(busy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SGLANG_HOST": "127.0.0.1", "SGLANG_PORT": str(busy_port), "SGLANG_PREFLIGHT": "true"}
    assert dry_run(env, monkeypatch) == base(host="127.0.0.1", port=str(busy_port))


# -------------------------------------------------------------------------------------- standalone

# What a variant's runtime package (pkgs/runtime-scripts.nix) must install for sglang-serve to run, its
# preflight included: serve's own imports, followed through the package (checkout-only imports excepted).
RUNTIME_MODULES = set(json.loads((ROOT / "pkgs" / "runtime-modules.json").read_text()))
# Imported only in a checkout, behind a fallback (serve.preflight_matrix, host.record.matrix_from_spec).
CHECKOUT_ONLY = {"fsutil", "spec", "variants"}
TOOLS = Path(serve.__file__).resolve().parent


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(third-party top-level names, package modules as paths relative to TOOLS) that `path` imports."""
    outside: set[str] = set()
    inside: set[str] = set()
    here = path.parent.relative_to(TOOLS)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            outside |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            outside.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = here
            for _ in range(node.level - 1):
                base = base.parent
            parts = (node.module or "").split(".") if node.module else []
            if parts and parts[0] in CHECKOUT_ONLY:
                continue
            target = base.joinpath(*parts) if parts else base
            if (TOOLS / target).is_dir():
                # sglang_matrix itself is installed as a namespace package (no __init__.py); host is not.
                if target != Path("."):
                    inside.add(str(target / "__init__.py"))
                inside |= {
                    str(target / f"{a.name}.py")
                    for a in node.names
                    if (TOOLS / target / f"{a.name}.py").exists()
                }
            else:
                inside.add(str(target) + ".py")
    return outside - {"__future__"}, inside


def test_runtime_closure_of_sglang_serve() -> None:
    """serve.py's imports, followed through the package, need the standard library and click only, and
    exactly the files of RUNTIME_MODULES."""
    seen: set[str] = set()
    todo = ["serve.py"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        outside, inside = imports_of(TOOLS / name)
        # pynvml: tried inside try/except ImportError (host.probe._probe_nvml), never required.
        assert outside <= set(sys.stdlib_module_names) | {"click", "resolve_model", "pynvml"}, (name, outside)
        todo += sorted(inside - seen)
    assert seen == RUNTIME_MODULES


def test_the_runtime_package_installs_that_closure() -> None:
    """pkgs/runtime-scripts.nix installs every module sglang-serve needs: without host/, a variant's
    sglang-serve could not run its preflight."""
    nix = (ROOT / "pkgs" / "runtime-scripts.nix").read_text()
    assert "builtins.readFile ./runtime-modules.json" in nix


def test_resolve_model_is_standalone() -> None:
    outside, inside = imports_of(TOOLS / "resolve_model.py")
    assert outside <= set(sys.stdlib_module_names) | {"click"} and inside == set()


@pytest.mark.parametrize("value", ["9" * 5000, "70000", "0" * 30 + "1" * 19])
def test_a_huge_tp_size_is_one_line_not_a_traceback(value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix.serve", "--dry-run", "--no-env-file"],
        env={**os.environ, "SGLANG_TP_SIZE": value, "SGLANG_PREFLIGHT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "SGLANG_TP_SIZE" in proc.stderr
