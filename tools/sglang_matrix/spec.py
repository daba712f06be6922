"""Load and validate matrix.toml, the one source of truth.

Every problem is reported as a SpecError naming the file, the field (a TOML path such as
`lines."0.5.9".isas[1]`) and the offending value; nothing here writes a file.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import SpecError

if TYPE_CHECKING:
    from .weights import Weights

SCHEMA = 1
# Every pattern is anchored with \A and \Z (never ^ and $, which accept a trailing newline), so that
# .match, .fullmatch and .search all mean "the whole value"; ASCII classes only ([0-9], not \d).
CAPABILITY_RE = re.compile(r"\A[0-9]+\.[0-9]+\Z")
MAJOR_MINOR_RE = re.compile(r"\A[0-9]+\.[0-9]+\Z")
# Nix attribute names we generate must be usable unquoted in `nix build .#NAME`.
NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]*\Z")
MODULE_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
SRI_RE = re.compile(r"\Asha256-[A-Za-z0-9+/]{43}=\Z")
# A release line's key ("0.5.9"): it names the line in field paths, store names and the {line} placeholder.
LINE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
# A version as a wheel's file name spells it: PEP 440 (checked by packaging too), without the whitespace
# and other characters packaging forgives.
VERSION_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9.+!_-]*\Z")
# One part of a wheel tag (python, abi or platform: "cp312", "manylinux_2_17_x86_64.manylinux2014_x86_64").
TAG_PART_RE = re.compile(r"\A[A-Za-z0-9_.]+\Z")
URL_RE = re.compile(r"\Ahttps?://[!-~]+\Z")
# A name template: name characters and the known placeholders only.
TEMPLATE_RE = re.compile(r"\A(?:[A-Za-z0-9_-]|\{(?:target|isa|arch|python|cuda|line)\})+\Z")
# [build] max-jobs-cap: nvcc jobs at once; Nix's --cores is an unsigned 32-bit integer.
MAX_JOBS_CAP = 4096
SYSTEMS = ("x86_64-linux", "aarch64-linux")
# The keys of each table with a fixed shape (anything else is a typo and an error).
TOP_KEYS = (
    "schema", "nixpkgs", "build", "isas", "capabilities", "targets", "sonames", "lines", "plan",
    "cuda-drivers", "jit-headers", "module-distributions",
)  # fmt: skip
NIXPKGS_KEYS = ("rev", "min-nix")
BUILD_KEYS = (
    "max-jobs-cap",
    "default-variant",
    "prune-device-code",
    "torch-nvcc-flags",
    "torch-cuda-libraries",
)
# CUDA libraries torch links that [build] torch-cuda-libraries can switch off, and the environment
# variable torch's CMake reads for each (pkgs/torch.nix sets it to 0).
TORCH_CUDA_LIBRARIES = {"cudnn": "USE_CUDNN", "cusparselt": "USE_CUSPARSELT"}
ISA_KEYS = ("systems", "description", "flags", "cpu-features", "gcc-arch")
# A -march name as nixpkgs' gccarch-<name> system features spell it ("x86-64-v4", "armv8.2-a").
GCC_ARCH_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]*\Z")
CAPABILITY_KEYS = ("min-cuda", "max-cuda")
TARGET_KEYS = ("capabilities", "architecture", "gpus", "cudnn", "cudnn-reason")
LINE_KEYS = (
    "python",
    "cuda",
    "systems",
    "targets",
    "isas",
    "short-name",
    "long-name",
    "torch",
    "wheels",
    "exclude",
    "server-modules",
    "gpu-only-modules",
    "nixpkgs-versions",
    "nixpkgs",
    "module-distributions",
)
# A line's own nixpkgs pin ([lines.X.nixpkgs]): its flake input's name and the revision flake.lock holds.
LINE_NIXPKGS_KEYS = ("rev", "input")
INPUT_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9_-]*\Z")
# Where a line's torch comes from: nixpkgs' source expression, built per target and ISA (the default), or
# the line's `torch` wheel (prebuilt, one per system and Python: a line without ISAs).
TORCH_SOURCES = ("nixpkgs", "wheel")
WHEEL_KEYS = (
    "pname", "version", "tags", "url", "hash", "libraries", "requires", "dropped", "gpu-code-gaps",
    "accepted-skew", "imports", "no-import-check", "remove-deps", "native-code", "description", "homepage",
    "license", "cuda", "optional", "keep-for", "prune", "optional-imports",
)  # fmt: skip
# nixpkgs `lib.licenses` attributes a wheel may name (extend as needed: the name must exist there).
LICENSES = ("asl20", "bsd2", "bsd3", "mit", "mpl20", "unfree", "unfreeRedistributable")
# The fields an `exclude` entry may match on, as the variant names them.
EXCLUDE_FIELDS = ("python", "cuda", "system", "target", "isa")
PLACEHOLDERS = ("target", "isa", "arch", "python", "cuda", "line")
PROVIDER_SPECIALS = ("glibc", "driver")


def key(name: str) -> str:
    """A TOML key as written in a field path: bare when it can be, else a TOML basic string (quotes,
    backslashes and non-printable characters escaped: an error message stays one line)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    out = []
    for ch in name:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


@dataclass(frozen=True)
class Isa:
    name: str
    systems: tuple[str, ...]
    description: str
    flags: tuple[str, ...]
    cpu_features: tuple[str, ...]
    # The -march name builders advertise as the system feature gccarch-<name> (None: any builder).
    gcc_arch: str | None = None


@dataclass(frozen=True)
class Capability:
    name: str
    min_cuda: str
    max_cuda: str | None


@dataclass(frozen=True)
class Target:
    name: str
    capabilities: tuple[str, ...]
    architecture: str
    gpus: tuple[str, ...]
    cudnn: bool
    cudnn_reason: str | None


@dataclass(frozen=True)
class PruneRule:
    """A path inside a wheel's install tree (a shell glob, relative to site-packages) that a variant drops
    when none of its capabilities uses it: kept `for` these capabilities, or for any capability
    `but` these; with neither, dropped from every variant (dead for all of them)."""

    path: str
    keep_for: tuple[str, ...]
    keep_but: tuple[str, ...]
    reason: str

    def keeps(self, capabilities: tuple[str, ...]) -> bool:
        if self.keep_for:
            return any(cap in self.keep_for for cap in capabilities)
        if self.keep_but:
            return any(cap not in self.keep_but for cap in capabilities)
        return False


@dataclass(frozen=True)
class Wheel:
    attr: str
    pname: str
    version: str
    tags: dict[str, str]
    url: dict[str, str]
    hash: dict[str, str]
    libraries: tuple[str, ...]
    requires: dict[str, str]
    dropped: dict[str, str]
    gpu_code_gaps: dict[str, str]
    accepted_skew: dict[str, str]
    imports: tuple[str, ...]
    no_import_check: str | None
    remove_deps: bool
    native_code: bool
    description: str
    homepage: str
    license: str
    cudas: tuple[str, ...] = ()
    # Why variants may go without this wheel (None: every variant needs it).
    optional: str | None = None
    # With pruning on: the wheel is left out of variants with none of these capabilities.
    keep_for: tuple[str, ...] = ()
    prune: tuple[PruneRule, ...] = ()
    # Modules the wheel's code imports only under a condition (an `if` at module level) that may go
    # unprovided: module -> why (`audit --imports` fails on any other unprovided conditional import).
    optional_imports: dict[str, str] = field(default_factory=dict)

    def kept(self, capabilities: tuple[str, ...]) -> bool:
        """Whether pruning keeps this wheel for a variant with these capabilities."""
        return not self.keep_for or any(cap in self.keep_for for cap in capabilities)

    def pruned_paths(self, capabilities: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(rule.path for rule in self.prune if not rule.keeps(capabilities))

    def available(self, system: str, cuda: str) -> bool:
        """Whether a variant on this system and CUDA gets this wheel."""
        return ("any" in self.tags or system in self.tags) and (not self.cudas or cuda in self.cudas)

    def tag(self, system: str, python: str) -> str | None:
        """The wheel's python-abi-platform tag for a system, or None when it has none there."""
        raw = self.tags.get("any", self.tags.get(system))
        return None if raw is None else raw.replace("{python}", python.replace(".", ""))

    def filename(self, system: str, python: str) -> str | None:
        tag = self.tag(system, python)
        return None if tag is None else f"{self.pname}-{self.version}-{tag}.whl"

    @property
    def pure(self) -> bool:
        return "any" in self.tags

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Attributes of the variant's Python set this wheel propagates, each once, in spec order."""
        return tuple(dict.fromkeys(self.requires.values()))


@dataclass(frozen=True)
class Exclude:
    """Leaves out the variants that match every field (each a set of accepted values)."""

    fields: dict[str, tuple[str, ...]]
    reason: str

    def matches(self, values: dict[str, str]) -> bool:
        return all(values[name] in accepted for name, accepted in self.fields.items())


@dataclass(frozen=True)
class NixpkgsVersion:
    """The version of a Python package nixpkgs has at a line's pin, and the evidence for it."""

    version: str | None  # settled (or probable, as evidence says)
    range: str | None  # where no single version can be settled: what the evidence allows (PEP 440)
    file: str
    commit: str | None
    evidence: str

    @property
    def source(self) -> str:
        at = f" @ {self.commit[:12]}" if self.commit else ""
        return f"nixpkgs {self.file}{at}: {self.evidence}"

    @property
    def specifier(self) -> str:
        """As a requirement specifier: "==4.57.1", ">=1.0,<2", or "" where nothing is known."""
        return f"=={self.version}" if self.version else (self.range or "")


@dataclass(frozen=True)
class Line:
    name: str
    pythons: tuple[str, ...]
    cudas: tuple[str, ...]
    systems: tuple[str, ...]
    targets: tuple[str, ...]
    isas: tuple[str, ...]
    short_name: str
    long_name: str
    torch_version: str
    wheels: dict[str, Wheel]
    excludes: tuple[Exclude, ...] = ()
    # Module the server loads at start-up -> who loads it (rehearse imports them, audit --imports walks them).
    server_modules: dict[str, str] = field(default_factory=dict)
    # Module (or package) -> why it cannot load without a GPU (the rehearsal stands in for it then).
    gpu_only_modules: dict[str, str] = field(default_factory=dict)
    # nixpkgs attribute of the variant's Python set -> the version nixpkgs has at the pin.
    nixpkgs_versions: dict[str, NixpkgsVersion] = field(default_factory=dict)
    # "nixpkgs" (nixpkgs' source torch, per target and ISA) or "wheel" (the line's torch wheel; no ISAs).
    torch_source: str = "nixpkgs"
    # The line's own nixpkgs ([lines.X.nixpkgs]): flake input and revision; None: the top-level [nixpkgs].
    nixpkgs_input: str | None = None
    nixpkgs_rev: str | None = None
    # Import name -> distribution, for this line only (over the top-level [module-distributions]).
    module_distributions: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> str:
        """The line's default Python (its variants get the short names)."""
        return self.pythons[0]

    @property
    def cuda(self) -> str:
        """The line's default CUDA (its variants get the short names)."""
        return self.cudas[0]


@dataclass(frozen=True)
class Spec:
    path: Path
    nixpkgs_rev: str
    min_nix: str
    max_jobs_cap: int
    default_variant: str
    prune_device_code: bool
    isas: dict[str, Isa]
    capabilities: dict[str, Capability]
    targets: dict[str, Target]
    sonames: dict[str, str]
    lines: dict[str, Line]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    # Top-level import name -> the distribution that provides it, where the names differ (audit --imports).
    module_distributions: dict[str, str] = field(default_factory=dict)
    # [cuda-drivers]: NVIDIA's driver versions per CUDA release (None when the spec has no such table).
    cuda_drivers: CudaDrivers | None = None
    # [build] torch-nvcc-flags: extra nvcc flags for torch's CUDA code (TORCH_NVCC_FLAGS).
    torch_nvcc_flags: tuple[str, ...] = ()
    # [build] torch-cuda-libraries: library -> whether torch links it (absent: it does, nixpkgs' default).
    torch_cuda_libraries: dict[str, bool] = field(default_factory=dict)
    # [plan]: the weights `plan` and the CI timeouts use (None only for a Spec built without parse_spec).
    weights: Weights | None = None

    def provider(self, soname: str) -> str | None:
        """What provides a SONAME per [sonames] (first matching glob), or None."""
        for pattern, provider in self.sonames.items():
            if fnmatch.fnmatchcase(soname, pattern):
                return provider
        return None


class _Reader:
    """Typed access to the parsed TOML that turns every problem into a SpecError."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, value: object, problem: str) -> SpecError:
        return SpecError(self.file, path, value, problem)

    def table(self, data: dict[str, Any], name: str, path: str, required: bool = True) -> dict[str, Any]:
        here = f"{path}.{key(name)}" if path else key(name)
        if name not in data:
            if required:
                raise self.fail(here, "<missing>", "required table is missing")
            return {}
        value = data[name]
        if not isinstance(value, dict):
            raise self.fail(here, value, "must be a table")
        return value

    def string(
        self, data: dict[str, Any], name: str, path: str, default: str | None = None, required: bool = True
    ) -> str:
        here = f"{path}.{key(name)}"
        if name not in data:
            if default is not None or not required:
                return default if default is not None else ""
            raise self.fail(here, "<missing>", "required field is missing")
        value = data[name]
        if not isinstance(value, str) or not value:
            raise self.fail(here, value, "must be a non-empty string")
        return value

    def strings(self, data: dict[str, Any], name: str, path: str, required: bool = True) -> tuple[str, ...]:
        here = f"{path}.{key(name)}"
        if name not in data:
            if required:
                raise self.fail(here, "<missing>", "required list is missing")
            return ()
        value = data[name]
        if not isinstance(value, list):
            raise self.fail(here, value, "must be a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail(f"{here}[{i}]", item, "must be a non-empty string")
        return tuple(value)

    def tables(self, data: dict[str, Any], name: str, path: str) -> list[dict[str, Any]]:
        """An optional array of tables ([[path.name]])."""
        raw = data.get(name, [])
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise self.fail(f"{path}.{key(name)}", raw, f"must be an array of tables ([[...{name}]])")
        return raw

    def only(self, data: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        """Reject keys this table does not have: a misspelt key must not be ignored silently."""
        for name in data:
            if name not in allowed:
                here = f"{path}.{key(name)}" if path else key(name)
                raise self.fail(here, data[name], f"unknown field (known: {', '.join(allowed)})")

    def one_or_more(self, data: dict[str, Any], name: str, path: str) -> tuple[str, ...]:
        """A field that is one string or a non-empty list of strings."""
        if isinstance(data.get(name), str):
            return (self.string(data, name, path),)
        values = self.strings(data, name, path)
        if not values:
            raise self.fail(f"{path}.{key(name)}", [], "must not be empty")
        return values

    @staticmethod
    def item(path: str, name: str, index: int, values: tuple[str, ...]) -> str:
        """The field path of one value of a one_or_more field: `x.python` or `x.python[1]`."""
        return f"{path}.{key(name)}" if len(values) == 1 else f"{path}.{key(name)}[{index}]"

    def string_map(self, data: dict[str, Any], name: str, path: str) -> dict[str, str]:
        value = self.table(data, name, path, required=False)
        here = f"{path}.{key(name)}"
        for k, v in value.items():
            if not isinstance(v, str) or not v:
                raise self.fail(f"{here}.{key(k)}", v, "must be a non-empty string")
        return dict(value)

    def boolean(self, data: dict[str, Any], name: str, path: str, default: bool) -> bool:
        value = data.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key(name)}", value, "must be true or false")
        return value


def _module_map(r: _Reader, t: dict[str, Any], name: str, path: str) -> dict[str, str]:
    """A table keyed by top-level Python module names (`IPython`, `yaml`), with string values."""
    table = r.string_map(t, name, path)
    for module in table:
        if not module.isidentifier():
            raise r.fail(f"{path}.{key(name)}.{key(module)}", module, "not a top-level Python module name")
    return table


def _parse_module_distributions(r: _Reader, data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """[module-distributions], or a line's own table (prefix "lines.X.")."""
    table = r.table(data, "module-distributions", prefix.rstrip("."), required=False)
    for module, dist in table.items():
        where = f"{prefix}module-distributions.{key(module)}"
        if not module.isidentifier():
            raise r.fail(where, module, "not a top-level Python module name")
        if not isinstance(dist, str) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", dist):
            raise r.fail(where, dist, "not a distribution name")
    return table


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


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
        raise SpecError(file, "(syntax)", _toml_excerpt(text, err), f"TOML syntax error: {err}") from None
    except RecursionError:
        raise SpecError(file, "(syntax)", "", "arrays or tables nested too deeply") from None
    return parse_spec(data, path, file)


def _toml_excerpt(text: str, err: tomllib.TOMLDecodeError) -> str:
    lineno = getattr(err, "lineno", None)
    if lineno and 0 < lineno <= len(text.splitlines()):
        return text.splitlines()[lineno - 1].strip()
    return ""


def _check_text(r: _Reader, value: object, path: str) -> None:
    """Every key and string of the spec is printable text on one line: no control characters (newline,
    tab, escape, NUL), line or paragraph separators, format characters, or spaces other than ' '. Such
    characters would reach file names, Nix strings and comments, the README and the workflow."""
    stack: list[tuple[str, object]] = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, dict):
            for name, child in reversed(item.items()):
                where = f"{here}.{key(name)}" if here else key(name)
                if not name.isprintable():
                    raise r.fail(where, name, "a key must be printable text on one line (no controls)")
                stack.append((where, child))
        elif isinstance(item, list):
            stack.extend((f"{here}[{i}]", child) for i, child in reversed(list(enumerate(item))))
        elif isinstance(item, str) and not item.isprintable():
            raise r.fail(here, item, "must be printable text on one line (no control characters)")


def parse_spec(data: dict[str, Any], path: Path, file: str) -> Spec:
    r = _Reader(file)
    schema = data.get("schema")
    if schema != SCHEMA:
        raise r.fail("schema", schema if schema is not None else "<missing>", f"must be {SCHEMA}")

    r.only(data, "", TOP_KEYS)
    _check_text(r, data, "")
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
    torch_nvcc_flags = _parse_nvcc_flags(r, build)
    libraries = r.table(build, "torch-cuda-libraries", "build", required=False)
    r.only(libraries, "build.torch-cuda-libraries", tuple(TORCH_CUDA_LIBRARIES))
    torch_cuda_libraries = {
        name: r.boolean(libraries, name, "build.torch-cuda-libraries", True) for name in libraries
    }

    isas = _parse_isas(r, r.table(data, "isas", ""))
    capabilities = _parse_capabilities(r, r.table(data, "capabilities", ""))
    targets = _parse_targets(r, r.table(data, "targets", ""), capabilities)
    sonames = _parse_sonames(r, r.table(data, "sonames", ""))
    lines_raw = r.table(data, "lines", "")
    if not lines_raw:
        raise r.fail("lines", "{}", "at least one release line is required")
    for name in lines_raw:
        if not LINE_RE.match(name):
            raise r.fail(f"lines.{key(name)}", name, "a release line's key is letters, digits and . _ + -")
    lines = {
        name: _parse_line(r, name, r.table(lines_raw, name, "lines"), isas, targets, capabilities)
        for name in lines_raw
    }
    from .weights import parse_weights  # here: weights imports this module

    weights = parse_weights(data, file)
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
        cuda_drivers=_parse_cuda_drivers(r, data, lines),
        module_distributions=_parse_module_distributions(r, data),
        torch_nvcc_flags=torch_nvcc_flags,
        torch_cuda_libraries=torch_cuda_libraries,
        weights=weights,
    )
    # Names are checked when variants resolve (they depend on every line at once).
    from .variants import resolve_variants  # here: variants imports this module

    variants = resolve_variants(spec)
    from .jit_headers import load_table  # here: jit_headers imports this module

    load_table(spec)  # [jit-headers], validated with the rest of the file
    if default_variant not in {v.name for v in variants} | {v.long_name for v in variants}:
        raise r.fail("build.default-variant", default_variant, "names no variant of the matrix")
    return spec


def _parse_nvcc_flags(r: _Reader, build: dict[str, Any]) -> tuple[str, ...]:
    """nvcc flags for torch: torch's CMake splits TORCH_NVCC_FLAGS at spaces, so each flag is one word of
    printable characters (a space or a control character would split or corrupt the command line)."""
    flags = r.strings(build, "torch-nvcc-flags", "build", required=False)
    for i, flag in enumerate(flags):
        if not re.fullmatch(r"[!-~]+", flag):
            raise r.fail(f"build.torch-nvcc-flags[{i}]", flag, "must be one word of printable ASCII")
    return flags


def _parse_isas(r: _Reader, raw: dict[str, Any]) -> dict[str, Isa]:
    isas = {}
    for name in raw:
        path = f"isas.{key(name)}"
        if not NAME_RE.match(name):
            raise r.fail(path, name, "ISA names must be letters, digits, '_' or '-'")
        t = r.table(raw, name, "isas")
        r.only(t, path, ISA_KEYS)
        systems = r.strings(t, "systems", path)
        for i, system in enumerate(systems):
            if system not in SYSTEMS:
                raise r.fail(f"{path}.systems[{i}]", system, f"unknown system (known: {', '.join(SYSTEMS)})")
        flags = r.strings(t, "flags", path)
        gcc_arch = r.string(t, "gcc-arch", path, required=False) or None
        if gcc_arch is not None and not GCC_ARCH_RE.match(gcc_arch):
            raise r.fail(f"{path}.gcc-arch", gcc_arch, 'a -march name such as "x86-64-v4" or "armv9-a"')
        description = r.string(t, "description", path)
        isas[name] = Isa(name, systems, description, flags, r.strings(t, "cpu-features", path), gcc_arch)
    return isas


def _parse_capabilities(r: _Reader, raw: dict[str, Any]) -> dict[str, Capability]:
    caps = {}
    for name in raw:
        path = f"capabilities.{key(name)}"
        if not CAPABILITY_RE.match(name):
            raise r.fail(path, name, 'a capability must look like "9.0"')
        t = r.table(raw, name, "capabilities")
        r.only(t, path, CAPABILITY_KEYS)
        min_cuda = r.string(t, "min-cuda", path)
        max_cuda = r.string(t, "max-cuda", path, required=False) or None
        for fname, value in (("min-cuda", min_cuda), ("max-cuda", max_cuda)):
            if value is not None and not MAJOR_MINOR_RE.match(value):
                raise r.fail(f"{path}.{fname}", value, 'a CUDA version must look like "12.8"')
        caps[name] = Capability(name, min_cuda, max_cuda)
    return caps


def _parse_targets(r: _Reader, raw: dict[str, Any], capabilities: dict[str, Capability]) -> dict[str, Target]:
    targets = {}
    for name in raw:
        path = f"targets.{key(name)}"
        if not NAME_RE.match(name):
            raise r.fail(path, name, "target names must be letters, digits, '_' or '-'")
        t = r.table(raw, name, "targets")
        r.only(t, path, TARGET_KEYS)
        caps = r.strings(t, "capabilities", path)
        if not caps:
            raise r.fail(f"{path}.capabilities", [], "a target needs at least one capability")
        for i, cap in enumerate(caps):
            if not CAPABILITY_RE.match(cap):
                raise r.fail(f"{path}.capabilities[{i}]", cap, 'a capability must look like "9.0"')
            if cap not in capabilities:
                raise r.fail(
                    f"{path}.capabilities[{i}]", cap, "not in [capabilities] (say which CUDA can build it)"
                )
        if len(set(caps)) != len(caps):
            raise r.fail(f"{path}.capabilities", list(caps), "lists a capability twice")
        cudnn = r.boolean(t, "cudnn", path, True)
        reason = r.string(t, "cudnn-reason", path, required=False) or None
        if not cudnn and not reason:
            raise r.fail(f"{path}.cudnn-reason", "<missing>", "say why cuDNN is off for this target")
        targets[name] = Target(
            name=name,
            capabilities=caps,
            architecture=r.string(t, "architecture", path),
            gpus=r.strings(t, "gpus", path),
            cudnn=cudnn,
            cudnn_reason=reason,
        )
    return targets


def _check_provider(r: _Reader, path: str, value: str) -> None:
    if value in PROVIDER_SPECIALS:
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*", value):
        raise r.fail(path, value, 'must be a nixpkgs attribute path, "glibc" or "driver"')


def _parse_sonames(r: _Reader, raw: dict[str, Any]) -> dict[str, str]:
    sonames = r.string_map({"sonames": raw}, "sonames", "")
    for pattern, provider in sonames.items():
        _check_provider(r, f"sonames.{key(pattern)}", provider)
    return sonames


def _parse_line(
    r: _Reader,
    name: str,
    t: dict[str, Any],
    isas: dict[str, Isa],
    targets: dict[str, Target],
    capabilities: dict[str, Capability],
) -> Line:
    path = f"lines.{key(name)}"
    r.only(t, path, LINE_KEYS)
    pythons = r.one_or_more(t, "python", path)
    for i, python in enumerate(pythons):
        if not re.fullmatch(r"3\.[0-9]+", python):
            raise r.fail(r.item(path, "python", i, pythons), python, 'must look like "3.12"')
    cudas = r.one_or_more(t, "cuda", path)
    for i, cuda in enumerate(cudas):
        if not MAJOR_MINOR_RE.match(cuda):
            raise r.fail(r.item(path, "cuda", i, cudas), cuda, 'a CUDA version must look like "12.8"')
    systems = r.strings(t, "systems", path)
    for i, system in enumerate(systems):
        if system not in SYSTEMS:
            raise r.fail(f"{path}.systems[{i}]", system, f"unknown system (known: {', '.join(SYSTEMS)})")

    line_targets = r.strings(t, "targets", path)
    for i, target in enumerate(line_targets):
        if target not in targets:
            raise r.fail(f"{path}.targets[{i}]", target, f"unknown target (known: {', '.join(targets)})")
        # A target needs one of the line's CUDA releases that builds all its capabilities; with several
        # releases, the others simply leave it out.
        problems = [
            problem
            for cuda in cudas
            if (problem := unsupported(capabilities, targets[target].capabilities, cuda)) is not None
        ]
        if len(problems) == len(cudas):
            raise r.fail(f"{path}.targets[{i}]", target, problems[0])

    torch = r.table(t, "torch", path)
    r.only(torch, f"{path}.torch", ("version", "source"))
    torch_version = _version(r, torch, f"{path}.torch")
    torch_source = r.string(torch, "source", f"{path}.torch", required=False) or "nixpkgs"
    if torch_source not in TORCH_SOURCES:
        raise r.fail(f"{path}.torch.source", torch_source, f"must be one of {', '.join(TORCH_SOURCES)}")
    # A prebuilt torch is the same file for every CPU of a system: ISA variants would be byte-identical.
    if torch_source == "wheel":
        if "isas" in t:
            raise r.fail(
                f"{path}.isas",
                t["isas"],
                "a line whose torch is a wheel has no ISAs (its variants would differ only in name)",
            )
        line_isas: tuple[str, ...] = ()
    else:
        line_isas = r.strings(t, "isas", path)
    for i, isa in enumerate(line_isas):
        if isa not in isas:
            raise r.fail(f"{path}.isas[{i}]", isa, f"unknown ISA (known: {', '.join(isas)})")
        if not set(isas[isa].systems) & set(systems):
            raise r.fail(
                f"{path}.isas[{i}]",
                isa,
                f"fits {', '.join(isas[isa].systems)}, not this line's systems ({', '.join(systems)})",
            )

    templates = {}
    for field_name in ("short-name", "long-name"):
        template = r.string(t, field_name, path)
        for placeholder in re.findall(r"\{([^}]*)\}", template):
            if placeholder not in PLACEHOLDERS:
                raise r.fail(
                    f"{path}.{field_name}",
                    template,
                    f"unknown placeholder {{{placeholder}}} (known: {', '.join(PLACEHOLDERS)})",
                )
        if not TEMPLATE_RE.match(template):
            raise r.fail(
                f"{path}.{field_name}",
                template,
                "a name template is letters, digits, '_', '-' and {placeholders}",
            )
        if not line_isas and "{isa}" in template:
            raise r.fail(f"{path}.{field_name}", template, "{isa} in a line without ISAs (use {arch})")
        templates[field_name] = template

    own_nixpkgs = r.table(t, "nixpkgs", path, required=False)
    r.only(own_nixpkgs, f"{path}.nixpkgs", LINE_NIXPKGS_KEYS)
    nixpkgs_input = nixpkgs_rev = None
    if own_nixpkgs:
        nixpkgs_rev = r.string(own_nixpkgs, "rev", f"{path}.nixpkgs")
        if not re.fullmatch(r"[0-9a-f]{40}", nixpkgs_rev):
            raise r.fail(f"{path}.nixpkgs.rev", nixpkgs_rev, "must be a 40-digit lowercase hex commit")
        nixpkgs_input = r.string(own_nixpkgs, "input", f"{path}.nixpkgs")
        if not INPUT_RE.match(nixpkgs_input) or nixpkgs_input in ("nixpkgs", "self"):
            raise r.fail(
                f"{path}.nixpkgs.input",
                nixpkgs_input,
                "a flake input name of its own (letters, digits, '_', '-'; not nixpkgs or self)",
            )

    wheels_raw = r.table(t, "wheels", path)
    wheels = {
        attr: _parse_wheel(r, attr, r.table(wheels_raw, attr, f"{path}.wheels"), f"{path}.wheels", systems)
        for attr in wheels_raw
    }
    excludes = _parse_excludes(r, t, path)
    server_modules = r.string_map(t, "server-modules", path)
    gpu_only_modules = r.string_map(t, "gpu-only-modules", path)
    for table, modules in (("server-modules", server_modules), ("gpu-only-modules", gpu_only_modules)):
        for module in modules:
            if not MODULE_RE.fullmatch(module):
                raise r.fail(f"{path}.{table}", module, "not a dotted Python module name")
    nixpkgs_versions = _parse_nixpkgs_versions(r, t, path)
    module_distributions = _parse_module_distributions(r, t, f"{path}.")
    if torch_source == "wheel":
        wheel = wheels.get("torch")
        if wheel is None:
            raise r.fail(f"{path}.torch.source", "wheel", f"needs a [{path}.wheels.torch] table")
        if wheel.version != torch_version:
            raise r.fail(f"{path}.wheels.torch.version", wheel.version, f"must be {path}.torch.version")
    elif "torch" in wheels:
        raise r.fail(f"{path}.wheels.torch", "torch", 'a torch wheel needs torch.source = "wheel"')
    # An exclude value must name something the spec knows (a typo would silently exclude nothing); it need
    # not be on this line (a rule may outlive a value the line dropped).
    known = {"system": SYSTEMS, "target": tuple(targets), "isa": tuple(isas)}
    formats = {"python": r"3\.[0-9]+", "cuda": r"[0-9]+\.[0-9]+"}
    for i, rule in enumerate(excludes):
        for axis, values in rule.fields.items():
            for value in values:
                bad = not re.fullmatch(formats[axis], value) if axis in formats else value not in known[axis]
                if bad:
                    raise r.fail(
                        f"{path}.exclude[{i}].{axis}",
                        value,
                        f"not a known {axis}: the rule would match nothing",
                    )
    for attr, wheel in wheels.items():
        for cuda in wheel.cudas:
            if cuda not in cudas:
                raise r.fail(
                    f"{path}.wheels.{key(attr)}.cuda",
                    cuda,
                    f"not one of the line's CUDA releases ({', '.join(cudas)})",
                )
        for cap in wheel.keep_for:
            if cap not in capabilities:
                raise r.fail(f"{path}.wheels.{key(attr)}.keep-for", cap, "not in [capabilities]")
        for cap in wheel.gpu_code_gaps:
            if cap != "*" and cap not in capabilities:
                raise r.fail(
                    f"{path}.wheels.{key(attr)}.gpu-code-gaps.{key(cap)}", cap, "not in [capabilities]"
                )
    return Line(
        name=name,
        pythons=pythons,
        cudas=cudas,
        excludes=excludes,
        systems=systems,
        targets=line_targets,
        isas=line_isas,
        short_name=templates["short-name"],
        long_name=templates["long-name"],
        torch_version=torch_version,
        wheels=wheels,
        server_modules=server_modules,
        gpu_only_modules=gpu_only_modules,
        nixpkgs_versions=nixpkgs_versions,
        torch_source=torch_source,
        nixpkgs_input=nixpkgs_input,
        nixpkgs_rev=nixpkgs_rev,
        module_distributions=module_distributions,
    )


def unsupported(capabilities: dict[str, Capability], caps: tuple[str, ...], cuda: str) -> str | None:
    """Why CUDA `cuda` cannot build these capabilities, or None when it can."""
    for cap in caps:
        info = capabilities[cap]
        if _version_tuple(cuda) < _version_tuple(info.min_cuda):
            return f"capability {cap} needs CUDA >= {info.min_cuda}, but this line uses CUDA {cuda}"
        if info.max_cuda is not None and _version_tuple(cuda) > _version_tuple(info.max_cuda):
            return f"capability {cap} needs CUDA <= {info.max_cuda}, but this line uses CUDA {cuda}"
    return None


def _parse_nixpkgs_versions(r: _Reader, t: dict[str, Any], path: str) -> dict[str, NixpkgsVersion]:
    raw = r.table(t, "nixpkgs-versions", path, required=False)
    here = f"{path}.nixpkgs-versions"
    out: dict[str, NixpkgsVersion] = {}
    for attr in raw:
        entry = r.table(raw, attr, here)
        where = f"{here}.{key(attr)}"
        r.only(entry, where, ("version", "range", "file", "commit", "evidence"))
        version = _version(r, entry, where) if "version" in entry else None
        bracket = r.string(entry, "range", where, required=False) or None
        if version and bracket:
            raise r.fail(f"{where}.range", bracket, "give a version or a range, not both")
        if bracket:
            try:
                SpecifierSet(bracket)
            except InvalidSpecifier:
                raise r.fail(f"{where}.range", bracket, 'not a version range (like ">=1.0,<2")') from None
        commit = r.string(entry, "commit", where, required=False) or None
        if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise r.fail(f"{where}.commit", commit, "must be a full 40-digit nixpkgs commit")
        out[attr] = NixpkgsVersion(
            version=version,
            range=bracket,
            file=r.string(entry, "file", where),
            commit=commit,
            evidence=r.string(entry, "evidence", where),
        )
    return out


def _parse_excludes(r: _Reader, t: dict[str, Any], path: str) -> tuple[Exclude, ...]:
    excludes = []
    for i, entry in enumerate(r.tables(t, "exclude", path)):
        where = f"{path}.exclude[{i}]"
        r.only(entry, where, (*EXCLUDE_FIELDS, "reason"))
        reason = r.string(entry, "reason", where)
        fields = {name: r.one_or_more(entry, name, where) for name in entry if name != "reason"}
        if not fields:
            raise r.fail(where, entry, "matches every variant: name at least one field")
        excludes.append(Exclude(fields, reason))
    return tuple(excludes)


def _license(r: _Reader, t: dict[str, Any], path: str) -> str:
    value = r.string(t, "license", path)
    if value not in LICENSES:
        raise r.fail(
            f"{path}.license", value, f"not a nixpkgs lib.licenses name known here ({', '.join(LICENSES)})"
        )
    return value


def _parse_prune(r: _Reader, t: dict[str, Any], path: str) -> tuple[PruneRule, ...]:
    rules = []
    for i, entry in enumerate(r.tables(t, "prune", path)):
        where = f"{path}.prune[{i}]"
        r.only(entry, where, ("path", "keep-for", "keep-but", "reason"))
        rel = r.string(entry, "path", where)
        if rel.startswith("/") or ".." in rel.split("/") or not re.fullmatch(r"[A-Za-z0-9_.*/+-]+", rel):
            raise r.fail(
                f"{where}.path", rel, "must be a relative path inside site-packages (a glob at most)"
            )
        keep_for = r.strings(entry, "keep-for", where, required=False)
        keep_but = r.strings(entry, "keep-but", where, required=False)
        if keep_for and keep_but:
            raise r.fail(f"{where}.keep-but", list(keep_but), "give keep-for or keep-but, not both")
        for name, caps in (("keep-for", keep_for), ("keep-but", keep_but)):
            for j, cap in enumerate(caps):
                if not CAPABILITY_RE.match(cap):
                    raise r.fail(f"{where}.{name}[{j}]", cap, 'a capability must look like "9.0"')
        rules.append(PruneRule(rel, keep_for, keep_but, r.string(entry, "reason", where)))
    return tuple(rules)


def _version(r: _Reader, t: dict[str, Any], path: str) -> str:
    version = r.string(t, "version", path)
    try:
        Version(version)
    except InvalidVersion:
        raise r.fail(f"{path}.version", version, "not a valid version") from None
    if not VERSION_RE.match(version):
        raise r.fail(f"{path}.version", version, "not a version as a wheel's file name spells it")
    return version


def _parse_wheel(r: _Reader, attr: str, t: dict[str, Any], parent: str, systems: tuple[str, ...]) -> Wheel:
    path = f"{parent}.{key(attr)}"
    if canonicalize_name(attr) != attr:
        raise r.fail(path, attr, "a wheel's key is its canonical name (lowercase, '-' between the words)")
    r.only(t, path, WHEEL_KEYS)
    version = _version(r, t, path)
    pname = r.string(t, "pname", path)
    if not re.fullmatch(r"[A-Za-z0-9_.]+", pname) or "-" in pname:
        raise r.fail(f"{path}.pname", pname, "must be spelled as in the wheel's file name (no '-')")
    tags = r.string_map(t, "tags", path)
    if not tags:
        raise r.fail(f"{path}.tags", "<missing>", "required table is missing")
    for system, tag in tags.items():
        if system != "any" and system not in SYSTEMS:
            raise r.fail(
                f"{path}.tags.{key(system)}", system, f"unknown system (known: any, {', '.join(SYSTEMS)})"
            )
        parts = tag.replace("{python}", "312").split("-")
        if len(parts) != 3 or not all(TAG_PART_RE.match(part) for part in parts):
            raise r.fail(
                f"{path}.tags.{key(system)}",
                tag,
                "must be python-abi-platform, e.g. cp312-cp312-manylinux2014_x86_64",
            )
    optional = r.string(t, "optional", path, required=False) or None
    if "any" not in tags and not optional:
        for system in systems:
            if system not in tags:
                raise r.fail(
                    f"{path}.tags",
                    sorted(tags),
                    f"has no wheel for the line's system {system} (mark it optional)",
                )
    keep_for = r.strings(t, "keep-for", path, required=False)
    for i, cap in enumerate(keep_for):
        if not CAPABILITY_RE.match(cap):
            raise r.fail(f"{path}.keep-for[{i}]", cap, 'a capability must look like "9.0"')
    if keep_for and not optional:
        raise r.fail(
            f"{path}.keep-for", list(keep_for), "a wheel pruning may leave out must be optional (say why)"
        )
    if "cuda" in t and not optional:
        raise r.fail(
            f"{path}.cuda", t["cuda"], "a wheel for some CUDA releases only must be optional (say why)"
        )
    url = r.string_map(t, "url", path)
    for system, address in url.items():
        if not URL_RE.match(address):
            raise r.fail(f"{path}.url.{key(system)}", address, "must be an http(s) URL without spaces")
    hashes = r.string_map(t, "hash", path)
    for system in url:
        if system not in hashes:
            raise r.fail(f"{path}.hash.{key(system)}", "<missing>", "a wheel fetched by URL needs its hash")
    for system, value in hashes.items():
        if not SRI_RE.match(value):
            raise r.fail(f"{path}.hash.{key(system)}", value, "must be an SRI sha256 hash (sha256-...=)")
        if system not in url:
            raise r.fail(f"{path}.url.{key(system)}", "<missing>", "a hash is given but no URL")
    libraries = r.strings(t, "libraries", path, required=False)
    for i, lib in enumerate(libraries):
        _check_provider(r, f"{path}.libraries[{i}]", lib)
        if lib in PROVIDER_SPECIALS:
            raise r.fail(f"{path}.libraries[{i}]", lib, "must be a nixpkgs attribute path")
    requires = r.string_map(t, "requires", path)
    dropped = r.string_map(t, "dropped", path)
    for req in requires:
        if req in dropped:
            raise r.fail(f"{path}.dropped.{key(req)}", dropped[req], "is also listed in requires")
    gpu_code_gaps = r.string_map(t, "gpu-code-gaps", path)
    for cap in gpu_code_gaps:
        if cap != "*" and not CAPABILITY_RE.match(cap):
            raise r.fail(f"{path}.gpu-code-gaps.{key(cap)}", cap, 'must be "*" or a capability like "9.0"')
    accepted_skew = r.string_map(t, "accepted-skew", path)
    for req in accepted_skew:
        if req not in requires:
            raise r.fail(f"{path}.accepted-skew.{key(req)}", req, "names no entry of requires")
    imports = r.strings(t, "imports", path, required=False)
    no_check = r.string(t, "no-import-check", path, required=False) or None
    if not imports and not no_check:
        raise r.fail(
            f"{path}.imports",
            "<missing>",
            "name the modules to import-check, or say why not (no-import-check)",
        )
    return Wheel(
        attr=attr,
        pname=pname,
        version=version,
        tags=tags,
        url=url,
        hash=hashes,
        libraries=libraries,
        requires=requires,
        dropped=dropped,
        gpu_code_gaps=gpu_code_gaps,
        accepted_skew=accepted_skew,
        imports=imports,
        no_import_check=no_check,
        remove_deps=r.boolean(t, "remove-deps", path, False),
        native_code=r.boolean(t, "native-code", path, False),
        cudas=tuple(r.one_or_more(t, "cuda", path)) if "cuda" in t else (),
        optional=optional,
        keep_for=keep_for,
        prune=_parse_prune(r, t, path),
        optional_imports=_module_map(r, t, "optional-imports", path),
        description=r.string(t, "description", path),
        homepage=r.string(t, "homepage", path),
        license=_license(r, t, path),
    )


@dataclass(frozen=True)
class CudaDrivers:
    """[cuda-drivers]: `minimum` per CUDA major (the oldest driver that runs it through minor-version
    compatibility), `full` per CUDA release (the driver of its GA: every feature and its PTX)."""

    minimum: dict[str, str]
    full: dict[str, str]


def _parse_cuda_drivers(r: _Reader, data: dict[str, Any], lines: dict[str, Line]) -> CudaDrivers | None:
    if "cuda-drivers" not in data:
        return None
    t = r.table(data, "cuda-drivers", "")
    r.only(t, "cuda-drivers", ("minimum", "full"))
    tables: dict[str, dict[str, str]] = {}
    for name, key_re, example in (("minimum", r"[0-9]+", '"12"'), ("full", r"[0-9]+\.[0-9]+", '"12.8"')):
        table = r.string_map(t, name, "cuda-drivers")
        for cuda, driver in table.items():
            if not re.fullmatch(key_re, cuda):
                raise r.fail(f"cuda-drivers.{name}", cuda, f"must be a CUDA version like {example}")
            if not re.fullmatch(r"[0-9]+(\.[0-9]+){0,2}", driver):
                raise r.fail(
                    f"cuda-drivers.{name}.{key(cuda)}", driver, 'must be a driver version like "570.26"'
                )
        tables[name] = table
    for line_name, line in lines.items():
        for cuda in line.cudas:
            for name, wanted in (("minimum", cuda.split(".")[0]), ("full", cuda)):
                if wanted not in tables[name]:
                    raise r.fail(
                        f"cuda-drivers.{name}", wanted, f"no entry for CUDA {cuda} (lines.{key(line_name)})"
                    )
    return CudaDrivers(tables["minimum"], tables["full"])
