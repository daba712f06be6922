"""Load and validate matrix.toml, the one source of truth.

Every problem is reported as a SpecError naming the file, the field (a TOML path such as
`lines."0.5.9".isas[1]`) and the offending value; nothing here writes a file.

The package, in import order (each module imports only those above it):
- schema: the schema version, each table's keys, the value patterns, `key()` (field-path spelling);
- model: the frozen dataclasses of a parsed spec and `unsupported()`;
- reader: typed reading of the TOML and the checks on any text;
- wheels, lines, tables: a line's wheels, a release line, the top-level tables;
- load: `load_spec` and the checks across tables, which use variants, weights and jit_headers (those
  import only schema and model).
"""

from ..errors import SpecError
from .load import load_spec, load_spec_text, parse_spec
from .model import (
    Capability,
    CudaDrivers,
    Exclude,
    Isa,
    Line,
    NixpkgsVersion,
    PruneRule,
    ServeDefault,
    Spec,
    Target,
    Wheel,
    unsupported,
)
from .schema import (
    BUILD_KEYS,
    CAPABILITY_KEYS,
    CAPABILITY_RE,
    EXCLUDE_FIELDS,
    GCC_ARCH_RE,
    INPUT_RE,
    ISA_KEYS,
    LICENSES,
    LINE_KEYS,
    LINE_NIXPKGS_KEYS,
    LINE_RE,
    MAJOR_MINOR_RE,
    MAX_JOBS_CAP,
    MODULE_RE,
    NAME_RE,
    NIXPKGS_KEYS,
    PLACEHOLDERS,
    PROVIDER_SPECIALS,
    SCHEMA,
    SERVE_VARIABLE_RE,
    SRI_RE,
    SYSTEMS,
    TAG_PART_RE,
    TARGET_KEYS,
    TEMPLATE_RE,
    TOP_KEYS,
    TORCH_CUDA_LIBRARIES,
    TORCH_SOURCES,
    URL_RE,
    VERSION_RE,
    WHEEL_KEYS,
    key,
)

__all__ = [
    "BUILD_KEYS",
    "CAPABILITY_KEYS",
    "CAPABILITY_RE",
    "EXCLUDE_FIELDS",
    "GCC_ARCH_RE",
    "INPUT_RE",
    "ISA_KEYS",
    "LICENSES",
    "LINE_KEYS",
    "LINE_NIXPKGS_KEYS",
    "LINE_RE",
    "MAJOR_MINOR_RE",
    "MAX_JOBS_CAP",
    "MODULE_RE",
    "NAME_RE",
    "NIXPKGS_KEYS",
    "PLACEHOLDERS",
    "PROVIDER_SPECIALS",
    "SCHEMA",
    "SERVE_VARIABLE_RE",
    "SRI_RE",
    "SYSTEMS",
    "TAG_PART_RE",
    "TARGET_KEYS",
    "TEMPLATE_RE",
    "TOP_KEYS",
    "TORCH_CUDA_LIBRARIES",
    "TORCH_SOURCES",
    "URL_RE",
    "VERSION_RE",
    "WHEEL_KEYS",
    "Capability",
    "CudaDrivers",
    "Exclude",
    "Isa",
    "Line",
    "NixpkgsVersion",
    "PruneRule",
    "ServeDefault",
    "Spec",
    "SpecError",
    "Target",
    "Wheel",
    "key",
    "load_spec",
    "load_spec_text",
    "parse_spec",
    "unsupported",
]
