"""Read matrix.toml and check it whole: every table, then what depends on all of them at once (variant
names, [plan], [jit-headers], the default variant). Every command loads the spec here, so a bad spec fails
before any work with one line naming file, field and value.

variants, weights and jit_headers import only this package's schema and model; this module imports them.
It binds the modules, not their names: importing one of them first runs this package's __init__ (and so
this module) while that one is still half-initialised, and its functions are looked up only when called.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .. import jit_headers, variants, weights
from ..errors import SpecError
from .lines import parse_line, parse_module_distributions
from .model import Spec
from .reader import Reader, check_text, toml_excerpt
from .schema import (
    BUILD_KEYS,
    LINE_RE,
    MAJOR_MINOR_RE,
    MAX_JOBS_CAP,
    NIXPKGS_KEYS,
    SCHEMA,
    TOP_KEYS,
    TORCH_CUDA_LIBRARIES,
    key,
)
from .tables import (
    parse_capabilities,
    parse_cuda_drivers,
    parse_isas,
    parse_nvcc_flags,
    parse_sonames,
    parse_targets,
)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a matrix spec; raise SpecError on the first problem."""
    path = Path(path)
    file = path.name if path.parent == Path(".") else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(file, "(file)", str(path), "no such file") from None
    except OSError as err:
        raise SpecError(file, "(file)", str(path), f"cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(file, "(file)", str(path), "not UTF-8 text") from None
    return load_spec_text(text, path)


def load_spec_text(text: str, path: str | Path) -> Spec:
    """Validate a spec's text as if it were the file at `path` (which is neither read nor written)."""
    path = Path(path)
    file = path.name if path.parent == Path(".") else str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(file, "(syntax)", toml_excerpt(text, err), f"TOML syntax error: {err}") from None
    except RecursionError:
        raise SpecError(file, "(syntax)", "", "arrays or tables nested too deeply") from None
    return parse_spec(data, path, file)


def parse_spec(data: dict[str, Any], path: Path, file: str) -> Spec:
    r = Reader(file)
    schema = data.get("schema")
    if schema != SCHEMA:
        raise r.fail("schema", schema if schema is not None else "<missing>", f"must be {SCHEMA}")

    r.only(data, "", TOP_KEYS)
    check_text(r, data, "")
    nixpkgs = r.table(data, "nixpkgs", "")
    r.only(nixpkgs, "nixpkgs", NIXPKGS_KEYS)
    rev = r.string(nixpkgs, "rev", "nixpkgs")
    if not re.fullmatch(r"[0-9a-f]{40}", rev):
        raise r.fail("nixpkgs.rev", rev, "must be a 40-digit lowercase hex commit")
    min_nix = r.string(nixpkgs, "min-nix", "nixpkgs")
    if not MAJOR_MINOR_RE.match(min_nix):
        raise r.fail("nixpkgs.min-nix", min_nix, 'must look like "2.18"')

    build = r.table(data, "build", "")
    r.only(build, "build", BUILD_KEYS)
    cap = build.get("max-jobs-cap", "<missing>")
    if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= MAX_JOBS_CAP:
        raise r.fail("build.max-jobs-cap", cap, f"must be an integer from 1 to {MAX_JOBS_CAP}")
    default_variant = r.string(build, "default-variant", "build")
    prune_device_code = r.boolean(build, "prune-device-code", "build", False)
    torch_nvcc_flags = parse_nvcc_flags(r, build)
    libraries = r.table(build, "torch-cuda-libraries", "build", required=False)
    r.only(libraries, "build.torch-cuda-libraries", tuple(TORCH_CUDA_LIBRARIES))
    torch_cuda_libraries = {
        name: r.boolean(libraries, name, "build.torch-cuda-libraries", True) for name in libraries
    }

    isas = parse_isas(r, r.table(data, "isas", ""))
    capabilities = parse_capabilities(r, r.table(data, "capabilities", ""))
    targets = parse_targets(r, r.table(data, "targets", ""), capabilities)
    sonames = parse_sonames(r, r.table(data, "sonames", ""))
    lines_raw = r.table(data, "lines", "")
    if not lines_raw:
        raise r.fail("lines", "{}", "at least one release line is required")
    for name in lines_raw:
        if not LINE_RE.match(name):
            raise r.fail(f"lines.{key(name)}", name, "a release line's key is letters, digits and . _ + -")
    lines = {
        name: parse_line(r, name, r.table(lines_raw, name, "lines"), isas, targets, capabilities)
        for name in lines_raw
    }
    plan_weights = weights.parse_weights(data, file)
    spec = Spec(
        path=path,
        nixpkgs_rev=rev,
        min_nix=min_nix,
        max_jobs_cap=cap,
        default_variant=default_variant,
        prune_device_code=prune_device_code,
        isas=isas,
        capabilities=capabilities,
        targets=targets,
        sonames=sonames,
        lines=lines,
        raw=data,
        cuda_drivers=parse_cuda_drivers(r, data, lines),
        module_distributions=parse_module_distributions(r, data),
        torch_nvcc_flags=torch_nvcc_flags,
        torch_cuda_libraries=torch_cuda_libraries,
        weights=plan_weights,
    )
    # Names are checked when variants resolve (they depend on every line at once).
    resolved = variants.resolve_variants(spec)
    jit_headers.load_table(spec)  # [jit-headers], validated with the rest of the file
    if default_variant not in {v.name for v in resolved} | {v.long_name for v in resolved}:
        raise r.fail("build.default-variant", default_variant, "names no variant of the matrix")
    return spec
