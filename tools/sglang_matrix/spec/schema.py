"""What matrix.toml may say: the schema version, each fixed table's keys, the patterns values must match, and
`key()`, which spells a TOML key as a field path writes it. Imports nothing of the project."""

from __future__ import annotations

import re

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
    "serve-defaults",
)
# [[lines.X.serve-defaults]]: SGLANG_* variables sglang-serve reads, defaulted by the variant's launchers.
SERVE_VARIABLE_RE = re.compile(r"\ASGLANG_[A-Z0-9_]+\Z")
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
