"""sglang-serve: build the ``launch_server`` argv from SGLANG_* variables and exec it.

STANDALONE: this module imports only the standard library, click, resolve_model and, to run the
preflight, the `host` package (stdlib only); a Nix package (pkgs/runtime-scripts.nix) installs just these
files into a variant's Python env.

It runs ``sys.executable -m sglang.launch_server`` rather than ``sglang serve``: the ``sglang serve``
entry point eagerly imports multimodal/diffusion modules (remote_pdb, diffusers, ...) that a lean build
does not ship, while ``launch_server`` does not.

Order of operations:

1. The env file written by sglang-resolve-model (``--env-file``, else ``$SGLANG_ENV_FILE``, else the
   resolver's default, see resolve_model) is loaded if it exists, with a strict parser (never a shell).
   Like the seed runtime, which sources it, the file's values OVERRIDE the environment: it rewrites
   SGLANG_MODEL to the local snapshot (or shim dir) and sets HF_HUB_OFFLINE / SGLANG_BUNDLED_FROM for
   bundled models. One guard against a stale file: when SGLANG_MODEL is set and is neither the value the
   file was resolved from (SGLANG_RESOLVED_FROM) nor the file's SGLANG_MODEL, the file belongs to another
   model and is ignored, with a note on stderr. ``--no-env-file`` skips it.
2. The variables are read and validated; a bad value is one line on stderr naming the variable and the
   value, exit 2. Empty variables count as unset.

   - SGLANG_MODEL -> --model-path; default microsoft/Phi-4-mini-instruct-FP8-TORCHAO
   - SGLANG_HOST -> --host; default 0.0.0.0
   - SGLANG_PORT -> --port (integer 1-65535); default 30000
   - SGLANG_SERVED_NAME -> --served-model-name; default $SGLANG_BUNDLED_FROM, else
     $SGLANG_RESOLVED_FROM (the HF id a cache hit was resolved from), else the model
   - SGLANG_ATTENTION_BACKEND -> --attention-backend
   - SGLANG_DISABLE_CUDA_GRAPH -> --disable-cuda-graph when true
   - SGLANG_DTYPE -> --dtype
   - SGLANG_TP_SIZE -> --tp-size (positive integer)
   - SGLANG_PREFERRED_SAMPLING_PARAMS -> --preferred-sampling-params (must be a JSON object; passed
     re-serialised compactly)
   - SGLANG_EXTRA_ARGS -> shlex-split and appended last
   - SGLANG_PREFLIGHT -> on by default; 0/false/no/off skips the preflight (below)

   Booleans accept 1/true/yes/on and 0/false/no/off (any case); anything else is an error.
3. ``--dry-run`` prints the argv, shell-quoted on one line (shlex.quote; an argument with a control
   character such as a newline uses bash's ``$'...'`` instead), and exits 0 (no preflight). Otherwise, with
   SGLANG_PREFLIGHT on (the default), the host preflight runs (``host/preflight.py``: the NVIDIA driver,
   its CUDA against the variant's, every visible GPU against the variant's targets, the CPU against its
   ISA; findings on stderr, a refusal is exit 2), then a port already bound on SGLANG_HOST is one line on
   stderr and exit 1; then the env file's variables are exported and the process execs the server
   (os.execv).
4. ``--preflight`` runs the host preflight alone: its findings on stdout (``--json`` for scripts),
   each refusal as one line on stderr, exit 0 or 2; nothing starts. The variant is ``--variant NAME``,
   else the environment's own record ($SGLANG_MATRIX_RECORD, exported by the variant's launchers); with
   neither, only the driver and the GPUs it shows are checked. ``--variant`` looks names up in that
   record, else in the matrix.toml of the current directory or a parent (a checkout).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

try:
    from . import resolve_model
except ImportError:  # installed as top-level modules
    import resolve_model  # type: ignore[no-redef]

DEFAULT_MODEL = resolve_model.DEFAULT_MODEL
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 30000
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_UINT_RE = re.compile(r"[0-9]+")


class ServeError(Exception):
    """Reported as one line on stderr; exit 2 for a bad value, 1 for a busy port or a failed exec."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value and value.strip() else None


def _bad(name: str, value: str, problem: str) -> ServeError:
    return ServeError(f"{name}={value!r}: {problem}")


def parse_bool(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = _get(environ, name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _bad(name, value, "not a boolean (use 1/true/yes/on or 0/false/no/off)")


def parse_int(environ: Mapping[str, str], name: str, low: int, high: int | None = None) -> int | None:
    value = _get(environ, name)
    if value is None:
        return None
    if not _UINT_RE.fullmatch(value.strip()):
        raise _bad(name, value, "not an integer")
    if len(value.strip().lstrip("0")) > 18:  # int() refuses over 4,300 digits; no bound needs 19
        raise _bad(name, value, "too large")
    number = int(value.strip())
    if number < low or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise _bad(name, value, f"must be {bounds}")
    return number


def _reject_constant(constant: str) -> object:
    raise ValueError(f"{constant} is not valid JSON")


def parse_json_object(environ: Mapping[str, str], name: str) -> str | None:
    value = _get(environ, name)
    if value is None:
        return None
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _bad(name, value, f"invalid JSON: {str(exc).splitlines()[0]}") from exc
    if not isinstance(parsed, dict):
        raise _bad(name, value, f"must be a JSON object, not {type(parsed).__name__}")
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)


def port_of(environ: Mapping[str, str]) -> int:
    port = parse_int(environ, "SGLANG_PORT", 1, 65535)
    return DEFAULT_PORT if port is None else port


def host_of(environ: Mapping[str, str]) -> str:
    host = _get(environ, "SGLANG_HOST")
    return DEFAULT_HOST if host is None else host.strip()


def build_argv(environ: Mapping[str, str], python: str | None = None) -> list[str]:
    """The full launch_server argv for ``environ``; raises ServeError for a bad value."""
    model = _get(environ, "SGLANG_MODEL") or DEFAULT_MODEL
    served = (
        _get(environ, "SGLANG_SERVED_NAME")
        or _get(environ, "SGLANG_BUNDLED_FROM")
        or _get(environ, "SGLANG_RESOLVED_FROM")
        or model
    )
    argv = [python or sys.executable, "-m", "sglang.launch_server"]
    argv += ["--model-path", model, "--host", host_of(environ), "--port", str(port_of(environ))]
    argv += ["--served-model-name", served]
    backend = _get(environ, "SGLANG_ATTENTION_BACKEND")
    if backend is not None:
        argv += ["--attention-backend", backend.strip()]
    if parse_bool(environ, "SGLANG_DISABLE_CUDA_GRAPH"):
        argv.append("--disable-cuda-graph")
    dtype = _get(environ, "SGLANG_DTYPE")
    if dtype is not None:
        argv += ["--dtype", dtype.strip()]
    tp_size = parse_int(environ, "SGLANG_TP_SIZE", 1, 65536)
    if tp_size is not None:
        argv += ["--tp-size", str(tp_size)]
    sampling = parse_json_object(environ, "SGLANG_PREFERRED_SAMPLING_PARAMS")
    if sampling is not None:
        argv += ["--preferred-sampling-params", sampling]
    extra = _get(environ, "SGLANG_EXTRA_ARGS")
    if extra is not None:
        try:
            argv += shlex.split(extra)
        except ValueError as exc:
            raise _bad("SGLANG_EXTRA_ARGS", extra, f"cannot split: {exc}") from exc
    parse_bool(environ, "SGLANG_PREFLIGHT")  # validated here so --dry-run reports a bad value too
    return argv


def quote_arg(arg: str) -> str:
    """shlex.quote, except that control characters use bash's $'...' so the command stays on one line."""
    if not any(ord(c) < 32 or ord(c) == 127 or 0xDC80 <= ord(c) <= 0xDCFF for c in arg):
        return shlex.quote(arg)
    escapes = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for char in arg:
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif code < 32 or code == 127:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(char)
    return "$'" + "".join(out) + "'"


def format_argv(argv: list[str]) -> str:
    """The argv as one shell line (bash syntax) that reproduces it exactly."""
    return " ".join(quote_arg(arg) for arg in argv)


def resolved_overrides(environ: Mapping[str, str], path: Path) -> tuple[dict[str, str], str | None]:
    """The env file's variables to apply over ``environ`` (and a note when the file is ignored)."""
    try:
        values = resolve_model.read_env_file(path)
    except resolve_model.ResolveError as exc:
        raise ServeError(str(exc), exc.exit_code) from exc
    if not values:
        return {}, None
    wanted = _get(environ, "SGLANG_MODEL")
    if wanted is not None and wanted not in (values.get("SGLANG_RESOLVED_FROM"), values.get("SGLANG_MODEL")):
        origin = values.get("SGLANG_RESOLVED_FROM") or values.get("SGLANG_MODEL")
        note = (
            f"ignoring {str(path)!r}: it was resolved for {origin!r} but SGLANG_MODEL={wanted!r} "
            "(run sglang-resolve-model first)"
        )
        return {}, note
    return values, None


def check_port_free(host: str, port: int) -> None:
    """Raise ServeError (exit 1) when ``host:port`` cannot be bound, e.g. because a server holds it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"SGLANG_HOST={host!r}: cannot resolve: {exc.strerror}", 1) from exc
    family, socktype, proto, _, address = infos[0]
    with socket.socket(family, socktype, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"port {port} on {host} is already in use (SGLANG_PORT={port})", 1) from exc
            raise ServeError(f"cannot bind {host}:{port}: {exc.strerror or exc}", 1) from exc


def preflight_matrix(variant: str | None, environ: Mapping[str, str]) -> Any:
    """The variants to check against: the environment's record (``$SGLANG_MATRIX_RECORD``), else the
    checkout's matrix.toml for ``--variant``; None when neither names a variant."""
    from .errors import UserError
    from .host.record import RECORD_ENV, load_record, matrix_from_spec

    try:
        path = _get(environ, RECORD_ENV)
        if path is not None:
            matrix = load_record(path.strip())
            return matrix.select(variant) if variant else matrix
        if variant is None:
            return None
        from .fsutil import SPEC_NAME, find_root
        from .spec import load_spec

        return matrix_from_spec(load_spec(find_root() / SPEC_NAME), variant)
    except UserError as exc:
        raise ServeError(str(exc), exc.exit_code) from exc
    except ImportError as exc:
        raise ServeError(
            f"--variant {variant!r}: no ${RECORD_ENV} here, and the spec's modules are missing ({exc})"
        ) from exc


def run_host_preflight(variant: str | None, environ: Mapping[str, str], as_json: bool, alone: bool) -> int:
    """Run the host preflight and print it (alone: findings on stdout; before a start: on stderr)."""
    try:
        from .host import preflight
    except ImportError as exc:  # a runtime package without the host modules: say so, never a traceback
        raise ServeError(f"cannot run the preflight: {exc} (SGLANG_PREFLIGHT=0 skips it)") from exc
    outcome = preflight.run_preflight(preflight_matrix(variant, environ), environ)
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        return outcome.exit_code
    lines, refusals = preflight.render(outcome, "" if alone else "sglang-serve: ")
    for line in lines:
        click.echo(line, err=not alone)
    for line in refusals:
        click.echo(f"sglang-serve: {line}" if alone else line, err=True)
    return outcome.exit_code


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dry-run", is_flag=True, help="Print the launch_server argv (shell-quoted) and exit.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Env file from sglang-resolve-model [default: $SGLANG_ENV_FILE, else the resolver's default].",
)
@click.option("--no-env-file", is_flag=True, help="Do not load the resolved env file.")
@click.option(
    "--preflight",
    "preflight_only",
    is_flag=True,
    help="Check this host (driver, CUDA, GPUs, CPU) against the variant, print the findings and exit 0, "
    "or 2 on a refusal; start nothing.",
)
@click.option(
    "--variant",
    metavar="NAME",
    help="The variant to check against [default: this environment's own, $SGLANG_MATRIX_RECORD].",
)
@click.option("--json", "as_json", is_flag=True, help="With --preflight: print the findings as JSON.")
def main(
    dry_run: bool,
    env_file: Path | None,
    no_env_file: bool,
    preflight_only: bool,
    variant: str | None,
    as_json: bool,
) -> None:
    """Launch the SGLang server (python -m sglang.launch_server) configured by SGLANG_* variables.

    Before it starts, a preflight checks this host against the variant (SGLANG_PREFLIGHT=0 skips it).
    """
    try:
        environ = dict(os.environ)
        if as_json and not preflight_only:
            raise ServeError("--json goes with --preflight")
        if preflight_only:
            sys.exit(run_host_preflight(variant, environ, as_json, alone=True))
        overrides: dict[str, str] = {}
        if not no_env_file:
            path = env_file if env_file is not None else resolve_model.default_env_file(environ)
            overrides, note = resolved_overrides(environ, path)
            if note:
                click.echo(f"sglang-serve: {note}", err=True)
        environ.update(overrides)
        argv = build_argv(environ)
        if dry_run:
            click.echo(format_argv(argv))
            return
        if parse_bool(environ, "SGLANG_PREFLIGHT", default=True):
            code = run_host_preflight(variant, environ, False, alone=False)
            if code:
                sys.exit(code)
            check_port_free(host_of(environ), port_of(environ))
        os.environ.update(overrides)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv(argv[0], argv)
        except OSError as exc:
            raise ServeError(f"cannot exec {argv[0]!r}: {exc.strerror or exc}", 1) from exc
    except ServeError as exc:
        click.echo(f"sglang-serve: error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
