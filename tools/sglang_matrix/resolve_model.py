"""sglang-resolve-model: turn SGLANG_MODEL into something the server can load offline when possible.

STANDALONE: this module imports only the standard library and click (a Nix package installs just this
file and serve.py into a Python env).

Resolution of the model (the positional MODEL argument, else $SGLANG_MODEL, else the default
``microsoft/Phi-4-mini-instruct-FP8-TORCHAO``):

* an existing directory with ``config.json`` is used as is (made absolute); a directory without it, or a
  path-like value (``/…``, ``./…``, ``../…``, ``~…``) that is not a directory, is an error (exit 2);
* an HF id (``org/name``, or a legacy bare ``name``) is looked up in HF-cache layout
  (``models--org--name/refs/main`` naming a snapshot; if that ref is missing or its snapshot has no
  ``config.json``, the first snapshot in sorted order that has ``config.json``), first in the bundled hub
  dirs and then in the user's HF cache:

  - bundled: ``$SGLANG_MODELS_DIR`` (an ``os.pathsep``-separated list), default
    ``<sys.prefix>/share/models/hub`` (the Python env's prefix in a Nix build) followed by
    ``$FLOX_ENV/share/models/hub`` when FLOX_ENV is set. A hit sets ``HF_HUB_OFFLINE=1`` and
    ``SGLANG_BUNDLED_FROM=<the HF id>``;
  - user cache: ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``${XDG_CACHE_HOME:-~/.cache}/huggingface/hub`` (huggingface_hub's own order). A hit is used only if
    its weights are complete (every shard of a ``*.index.json`` present, or at least one weight file);
    it does NOT set HF_HUB_OFFLINE: the user's cache is not a sealed bundle, and a local path loads
    without the network anyway, while anything else the server may look up (e.g. remote code of another
    repo) should still be allowed to download;
  - no hit: the id is left as is and the server downloads it.

* TokenizersBackend shim: when the resolved directory's ``tokenizer_config.json`` says
  ``"tokenizer_class": "TokenizersBackend"`` (written by transformers >= 4.58, unknown to older ones), a
  shadow directory is built at ``$SGLANG_CACHE_DIR/compat/<slug>-<snapshot>`` (SGLANG_CACHE_DIR defaults
  to ``${XDG_CACHE_HOME:-~/.cache}/sglang-matrix``): a symlink to every top-level entry of the snapshot
  plus a patched ``tokenizer_config.json`` naming ``PreTrainedTokenizerFast``. It is never written into
  the snapshot or the Nix store, is built in a temp dir and renamed into place, and is reused when its
  contents already match.

The result is written atomically (temp file + ``os.replace``) to ``$SGLANG_ENV_FILE``, default
``$XDG_RUNTIME_DIR/sglang-matrix/resolved.env`` when XDG_RUNTIME_DIR is an existing directory (per-user,
per-boot: a resolution is a fact about this boot's store and caches), else
``${XDG_CACHE_HOME:-~/.cache}/sglang-matrix/resolved.env``. Each line is ``export NAME=<shlex.quote(value)>``,
so the file is safe to ``source`` from a shell; sglang-serve reads it back with :func:`parse_env_file`,
which accepts exactly that format and never runs a shell. Keys written: SGLANG_MODEL, SGLANG_RESOLVED_FROM
(the value that was resolved, which sglang-serve uses to detect a stale file), SGLANG_MODEL_SOURCE
(local, bundled, hf-cache or remote) and, for bundled hits, HF_HUB_OFFLINE and SGLANG_BUNDLED_FROM.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import click

DEFAULT_MODEL = "microsoft/Phi-4-mini-instruct-FP8-TORCHAO"
SHIM_FROM_CLASS = "TokenizersBackend"
SHIM_TO_CLASS = "PreTrainedTokenizerFast"
TOKENIZER_CONFIG = "tokenizer_config.json"
ENV_FILE_HEADER = "# Written by sglang-resolve-model; read by sglang-serve. Safe to source from a shell.\n"

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_-])?"
# \A and \Z, not ^ and $ (which would let "org/name\n" through).
_REPO_ID_RE = re.compile(rf"\A(?:{_REPO_PART}/)?{_REPO_PART}\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# One line of the env file: ``export NAME=VALUE`` where VALUE is what shlex.quote produces: a run of
# shlex's "safe" characters, ``''``-quoted pieces and the ``"'"`` piece it uses for an embedded quote.
_VALUE_PIECE = r"[A-Za-z0-9_@%+=:,./-]+|'[^']*'|\"'\""
_VALUE_PIECE_RE = re.compile(_VALUE_PIECE)
_ENV_LINE_RE = re.compile(rf"export ([A-Za-z_][A-Za-z0-9_]*)=((?:{_VALUE_PIECE})+)(?:\n|\Z)")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class ResolveError(Exception):
    """Reported as one line on stderr; exit 2 for bad input, 1 for a problem of the machine."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Resolution:
    requested: str
    model: str
    source: str  # "local" | "bundled" | "hf-cache" | "remote"
    snapshot: str | None = None
    shim: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def as_json(self, env_file: str | None) -> dict[str, object]:
        return {**dataclasses.asdict(self), "env_file": env_file}


# ----------------------------------------------------------------------------------------------- paths


def _home_path(value: str) -> Path:
    return Path(os.path.expanduser(value))


def _xdg_cache(environ: Mapping[str, str]) -> Path:
    return _home_path(environ.get("XDG_CACHE_HOME") or "~/.cache")


def bundled_hub_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Hub dirs of bundled model packages, in lookup order."""
    configured = environ.get("SGLANG_MODELS_DIR")
    if configured:
        return [_home_path(p) for p in configured.split(os.pathsep) if p]
    dirs = [Path(sys.prefix) / "share" / "models" / "hub"]
    flox_env = environ.get("FLOX_ENV")
    if flox_env:
        dirs.append(Path(flox_env) / "share" / "models" / "hub")
    return dirs


def user_hub_dir(environ: Mapping[str, str]) -> Path:
    """The user's HF hub cache, in huggingface_hub's order of precedence."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if environ.get(name):
            return _home_path(environ[name])
    if environ.get("HF_HOME"):
        return _home_path(environ["HF_HOME"]) / "hub"
    return _xdg_cache(environ) / "huggingface" / "hub"


def cache_root(environ: Mapping[str, str]) -> Path:
    """Writable cache of this tool (shadow dirs live in ``compat/`` under it)."""
    if environ.get("SGLANG_CACHE_DIR"):
        return _home_path(environ["SGLANG_CACHE_DIR"])
    return _xdg_cache(environ) / "sglang-matrix"


def default_env_file(environ: Mapping[str, str]) -> Path:
    """Where the resolved env file is written and read: $SGLANG_ENV_FILE or the XDG default."""
    if environ.get("SGLANG_ENV_FILE"):
        return _home_path(environ["SGLANG_ENV_FILE"])
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "sglang-matrix" / "resolved.env"
    return _xdg_cache(environ) / "sglang-matrix" / "resolved.env"


# ---------------------------------------------------------------------------------------- HF cache


def is_repo_id(value: str) -> bool:
    return bool(_REPO_ID_RE.match(value)) and ".." not in value and "--" not in value


def repo_folder(repo_id: str) -> str:
    """HF-cache folder name of a model repo: ``models--org--name``."""
    return "models--" + repo_id.replace("/", "--")


def _has_config(directory: Path) -> bool:
    try:
        return (directory / "config.json").is_file()
    except OSError:  # a name too long, a directory that cannot be searched: no config there for us
        return False


def find_snapshot(hub: Path, repo_id: str) -> Path | None:
    """The snapshot of ``repo_id`` in ``hub``: the one refs/main names, else the first sorted with config.

    None also where the cache cannot be searched for it (a name too long for the file system, a directory
    that cannot be read): the id then goes to the server unchanged."""
    try:
        return _find_snapshot(hub, repo_id)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:  # too long a name cannot be in any cache: nothing to say
            _note(f"not looking for {repo_id!r} in {str(hub)!r}: {exc.strerror or exc}")
        return None


def _find_snapshot(hub: Path, repo_id: str) -> Path | None:
    repo = hub / repo_folder(repo_id)
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    try:
        ref = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        ref = ""
    if ref and "/" not in ref and ref not in (".", "..") and _has_config(snapshots / ref):
        return snapshots / ref
    try:
        names = sorted(os.listdir(snapshots))
    except OSError:
        return None
    for name in names:
        if not name.startswith(".") and _has_config(snapshots / name):
            return snapshots / name
    return None


def weights_complete(directory: Path) -> tuple[bool, str]:
    """Whether a snapshot has its weights: every shard an index names, or at least one weight file."""
    for index_name in _WEIGHT_INDEXES:
        index = directory / index_name
        if index.exists():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
                shards = sorted(set(weight_map.values()))
            except (OSError, ValueError, AttributeError) as exc:
                return False, f"unreadable {index_name}: {exc}"
            missing = [s for s in shards if not (directory / s).exists()]
            if missing:
                return False, f"{len(missing)} of {len(shards)} shards missing (first: {missing[0]})"
            return True, ""
    try:
        entries = os.listdir(directory)
    except OSError as exc:
        return False, str(exc)
    if any(e.endswith(_WEIGHT_SUFFIXES) and (directory / e).exists() for e in entries):
        return True, ""
    return False, "no weight files"


# ------------------------------------------------------------------------------------ tokenizer shim


def patched_tokenizer_config(directory: Path) -> bytes | None:
    """The patched tokenizer_config.json if ``directory`` needs the shim, else None."""
    path = directory / TOKENIZER_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _note(f"not checking {path} for the tokenizer shim: {exc}")
        return None
    if not isinstance(config, dict) or config.get("tokenizer_class") != SHIM_FROM_CLASS:
        return None
    config["tokenizer_class"] = SHIM_TO_CLASS
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _shadow_matches(shadow: Path, source: Path, patched: bytes) -> bool:
    if shadow.is_symlink() or not shadow.is_dir():
        return False
    try:
        if set(os.listdir(shadow)) != set(os.listdir(source)):
            return False
        for name in os.listdir(source):
            entry = shadow / name
            if name == TOKENIZER_CONFIG:
                if entry.is_symlink() or entry.read_bytes() != patched:
                    return False
            elif not entry.is_symlink() or os.readlink(entry) != str(source / name):
                return False
    except OSError:
        return False
    return True


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def ensure_shadow(source: Path, name: str, root: Path, patched: bytes) -> Path:
    """Build (or reuse) ``root/name``: symlinks to every entry of ``source`` plus the patched config."""
    source = Path(os.path.realpath(source))
    root_real = Path(os.path.realpath(root))
    if _is_within(root_real, source):
        raise ResolveError(f"SGLANG_CACHE_DIR={str(root)!r}: the shim cache must not be inside the snapshot")
    if _is_within(root_real, Path("/nix/store")):
        raise ResolveError(f"SGLANG_CACHE_DIR={str(root)!r}: the shim cache must not be in the Nix store")
    shadow = root / name
    if _shadow_matches(shadow, source, patched):
        return shadow
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    except OSError as exc:
        raise ResolveError(f"cannot create the shim cache under {str(root)!r}: {exc}", 1) from exc
    try:
        os.chmod(tmp, 0o755)
        for entry in sorted(os.listdir(source)):
            if entry != TOKENIZER_CONFIG:
                os.symlink(source / entry, tmp / entry)
        (tmp / TOKENIZER_CONFIG).write_bytes(patched)
        old: Path | None = None
        if shadow.is_symlink() or shadow.exists():
            old = root / f".{name}.{os.getpid()}.old"
            os.replace(shadow, old)
        try:
            os.rename(tmp, shadow)
        except OSError:
            # Someone else built it at the same moment: keep theirs if it is right.
            if not _shadow_matches(shadow, source, patched):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ResolveError(f"cannot build the tokenizer shim at {str(shadow)!r}: {exc}", 1) from exc
    return shadow


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


# ------------------------------------------------------------------------------------------ resolve


def _is_path_like(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..")


def resolve(requested: str, environ: Mapping[str, str]) -> Resolution:
    """Resolve a model id or path; raises ResolveError for a bad local path."""
    if not requested:
        raise ResolveError("SGLANG_MODEL is empty")
    expanded = os.path.expanduser(requested)
    local: Path | None = None
    if os.path.isdir(expanded):
        if _has_config(Path(expanded)):
            local = Path(os.path.abspath(expanded))
        elif _is_path_like(requested) or not is_repo_id(requested):
            raise ResolveError(f"SGLANG_MODEL={requested!r}: directory has no config.json")
    elif _is_path_like(requested):
        raise ResolveError(f"SGLANG_MODEL={requested!r}: no such directory")

    if local is not None:
        digest = hashlib.sha256(os.path.realpath(local).encode("utf-8", "surrogateescape")).hexdigest()
        shim_name = f"{_slug(local.name)}-{digest[:12]}"
        return _finish(requested, "local", local, shim_name, environ, {})

    if not is_repo_id(requested):
        return _finish(requested, "remote", None, None, environ, {})

    for hub in bundled_hub_dirs(environ):
        snap = find_snapshot(hub, requested)
        if snap is not None:
            extra = {"HF_HUB_OFFLINE": "1", "SGLANG_BUNDLED_FROM": requested}
            return _finish(requested, "bundled", snap, _shim_name(requested, snap), environ, extra)

    hub = user_hub_dir(environ)
    snap = find_snapshot(hub, requested)
    if snap is not None:
        complete, why = weights_complete(snap)
        if complete:
            return _finish(requested, "hf-cache", snap, _shim_name(requested, snap), environ, {})
        _note(f"not using {snap}: {why}; the server will download {requested}")
    return _finish(requested, "remote", None, None, environ, {})


def _shim_name(repo_id: str, snapshot: Path) -> str:
    return f"{_slug(repo_id.replace('/', '--'))}-{_slug(snapshot.name)}"


def _finish(
    requested: str,
    source: str,
    snapshot: Path | None,
    shim_name: str | None,
    environ: Mapping[str, str],
    extra: dict[str, str],
) -> Resolution:
    model = requested if snapshot is None else str(snapshot)
    shim: Path | None = None
    if snapshot is not None and shim_name is not None:
        patched = patched_tokenizer_config(snapshot)
        if patched is not None:
            shim = ensure_shadow(snapshot, shim_name, cache_root(environ) / "compat", patched)
            model = str(shim)
    env = {
        "SGLANG_MODEL": model,
        "SGLANG_RESOLVED_FROM": requested,
        "SGLANG_MODEL_SOURCE": source,
        **extra,
    }
    return Resolution(
        requested=requested,
        model=model,
        source=source,
        snapshot=None if snapshot is None else str(snapshot),
        shim=None if shim is None else str(shim),
        env=env,
    )


# ----------------------------------------------------------------------------------------- env file


def format_env_file(env: Mapping[str, str]) -> str:
    """``export NAME=<shlex.quote(value)>`` lines; a value may hold any character but NUL."""
    lines = [ENV_FILE_HEADER]
    for name, value in env.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        if "\0" in value:
            raise ValueError(f"{name}: value contains a NUL byte")
        lines.append(f"export {name}={shlex.quote(value)}\n")
    return "".join(lines)


def _unquote(value: str) -> str:
    out = []
    for piece in _VALUE_PIECE_RE.findall(value):
        if piece == '"\'"':
            out.append("'")
        elif piece.startswith("'"):
            out.append(piece[1:-1])
        else:
            out.append(piece)
    return "".join(out)


def parse_env_file(text: str, source: str = "<env file>") -> dict[str, str]:
    """Inverse of :func:`format_env_file`; anything else (blank and ``#`` lines aside) is an error."""
    env: dict[str, str] = {}
    pos = 0
    lineno = 1
    while pos < len(text):
        if text[pos] == "\n":
            pos += 1
            lineno += 1
            continue
        if text[pos] == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
            continue
        match = _ENV_LINE_RE.match(text, pos)
        if match is None:
            end = text.find("\n", pos)
            bad = text[pos:] if end < 0 else text[pos:end]
            raise ResolveError(f"{source}:{lineno}: not an 'export NAME=VALUE' line: {bad[:80]!r}")
        env[match.group(1)] = _unquote(match.group(2))
        consumed = match.group(0)
        lineno += consumed.count("\n")
        pos = match.end()
    return env


def read_env_file(path: Path) -> dict[str, str] | None:
    """The env file's variables, or None when there is no file."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:  # keep \r
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResolveError(f"cannot read {str(path)!r}: {exc}", 1) from exc
    return parse_env_file(text, str(path))


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """Atomically replace ``path`` with the env file for ``env``."""
    content = format_env_file(env)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ResolveError(f"cannot write {str(path)!r}: {exc}", 1) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ResolveError(f"cannot write {str(path)!r}: {exc}", 1) from exc


# ------------------------------------------------------------------------------------------------ cli


def _note(message: str) -> None:
    click.echo(f"sglang-resolve-model: {message}", err=True)


def _describe(res: Resolution) -> str:
    where = {
        "local": "local directory",
        "bundled": "bundled, offline",
        "hf-cache": "from the HF cache",
        "remote": "will download",
    }[res.source]
    shim = " (tokenizer shim)" if res.shim else ""
    if res.model == res.requested:
        return f"{res.requested!r} ({where})"
    return f"{res.requested!r} -> {res.model!r} ({where}){shim}"


def _format_for_print(env: Iterable[tuple[str, str]]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=False)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Env file to write [default: $SGLANG_ENV_FILE, else $XDG_RUNTIME_DIR/sglang-matrix/resolved.env, "
    "else ${XDG_CACHE_HOME:-~/.cache}/sglang-matrix/resolved.env].",
)
@click.option("--no-write", is_flag=True, help="Resolve (and build the shim) but do not write the env file.")
@click.option("--print", "print_env", is_flag=True, help="Print the resolved variables as export lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as a JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
def main(
    model: str | None, env_file: Path | None, no_write: bool, print_env: bool, as_json: bool, quiet: bool
) -> None:
    """Resolve MODEL (default: $SGLANG_MODEL, else microsoft/Phi-4-mini-instruct-FP8-TORCHAO).

    Prefers a bundled snapshot (offline), then the user's HF cache, then leaves the HF id for the server
    to download; applies the TokenizersBackend shim; writes the env file that sglang-serve loads.
    """
    if print_env and as_json:
        raise click.UsageError("--print and --json are mutually exclusive")
    environ = dict(os.environ)
    requested = model if model is not None else (environ.get("SGLANG_MODEL") or DEFAULT_MODEL)
    path = env_file if env_file is not None else default_env_file(environ)
    try:
        res = resolve(requested, environ)
        if not no_write:
            write_env_file(path, res.env)
    except ResolveError as exc:
        click.echo(f"sglang-resolve-model: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if not quiet:
        _note(_describe(res) + ("" if no_write else f"; wrote {path}"))
    if as_json:
        click.echo(json.dumps(res.as_json(None if no_write else str(path)), indent=2))
    elif print_env:
        click.echo(_format_for_print(res.env.items()), nl=False)


if __name__ == "__main__":
    main()
