"""One release line ([lines.X]): its axes, name templates, torch source, own nixpkgs pin, excludes,
nixpkgs-versions and module-distributions, checked against the top-level tables."""

from __future__ import annotations

import re
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from .model import Capability, Exclude, Isa, Line, NixpkgsVersion, ServeDefault, Target, unsupported
from .reader import Reader
from .schema import (
    EXCLUDE_FIELDS,
    INPUT_RE,
    LINE_KEYS,
    LINE_NIXPKGS_KEYS,
    MAJOR_MINOR_RE,
    MODULE_RE,
    PLACEHOLDERS,
    SERVE_VARIABLE_RE,
    SYSTEMS,
    TEMPLATE_RE,
    TORCH_SOURCES,
    key,
)
from .wheels import parse_version, parse_wheel


def parse_line(
    r: Reader,
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
    systems = r.systems(t, "systems", path)

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
    torch_version = parse_version(r, torch, f"{path}.torch")
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
        attr: parse_wheel(r, attr, r.table(wheels_raw, attr, f"{path}.wheels"), f"{path}.wheels", systems)
        for attr in wheels_raw
    }
    excludes = _parse_excludes(r, t, path)
    serve_defaults = _parse_serve_defaults(r, t, path)
    server_modules = r.string_map(t, "server-modules", path)
    gpu_only_modules = r.string_map(t, "gpu-only-modules", path)
    for table, modules in (("server-modules", server_modules), ("gpu-only-modules", gpu_only_modules)):
        for module in modules:
            if not MODULE_RE.fullmatch(module):
                raise r.fail(f"{path}.{table}", module, "not a dotted Python module name")
    nixpkgs_versions = _parse_nixpkgs_versions(r, t, path)
    module_distributions = parse_module_distributions(r, t, f"{path}.")
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
    rules = [("exclude", i, rule.fields) for i, rule in enumerate(excludes)]
    rules += [("serve-defaults", i, rule.fields) for i, rule in enumerate(serve_defaults)]
    for table, i, fields in rules:
        for axis, values in fields.items():
            for value in values:
                bad = not re.fullmatch(formats[axis], value) if axis in formats else value not in known[axis]
                if bad:
                    raise r.fail(
                        f"{path}.{table}[{i}].{axis}",
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
        serve_defaults=serve_defaults,
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


def _parse_nixpkgs_versions(r: Reader, t: dict[str, Any], path: str) -> dict[str, NixpkgsVersion]:
    raw = r.table(t, "nixpkgs-versions", path, required=False)
    here = f"{path}.nixpkgs-versions"
    out: dict[str, NixpkgsVersion] = {}
    for attr in raw:
        entry = r.table(raw, attr, here)
        where = f"{here}.{key(attr)}"
        r.only(entry, where, ("version", "range", "file", "commit", "evidence"))
        version = parse_version(r, entry, where) if "version" in entry else None
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


def _parse_excludes(r: Reader, t: dict[str, Any], path: str) -> tuple[Exclude, ...]:
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


def _parse_serve_defaults(r: Reader, t: dict[str, Any], path: str) -> tuple[ServeDefault, ...]:
    rules = []
    for i, entry in enumerate(r.tables(t, "serve-defaults", path)):
        where = f"{path}.serve-defaults[{i}]"
        r.only(entry, where, (*EXCLUDE_FIELDS, "variables", "reason"))
        reason = r.string(entry, "reason", where)
        variables = r.string_map(entry, "variables", where)
        if not variables:
            raise r.fail(f"{where}.variables", variables, "name at least one SGLANG_* variable")
        for name in variables:
            if not SERVE_VARIABLE_RE.match(name):
                raise r.fail(f"{where}.variables", name, "not an SGLANG_* variable sglang-serve reads")
        fields = {
            name: r.one_or_more(entry, name, where) for name in entry if name not in ("variables", "reason")
        }
        rules.append(ServeDefault(fields, variables, reason))
    return tuple(rules)


def parse_module_distributions(r: Reader, data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """[module-distributions], or a line's own table (prefix "lines.X.")."""
    table = r.table(data, "module-distributions", prefix.rstrip("."), required=False)
    for module, dist in table.items():
        where = f"{prefix}module-distributions.{key(module)}"
        if not module.isidentifier():
            raise r.fail(where, module, "not a top-level Python module name")
        if not isinstance(dist, str) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", dist):
            raise r.fail(where, dist, "not a distribution name")
    return table
