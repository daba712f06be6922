"""A release line's wheels ([lines.X.wheels.NAME]): their fields, prune rules, license and version."""

from __future__ import annotations

import re
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .model import PruneRule, Wheel
from .reader import Reader, check_provider
from .schema import (
    CAPABILITY_RE,
    LICENSES,
    PROVIDER_SPECIALS,
    SRI_RE,
    SYSTEMS,
    TAG_PART_RE,
    URL_RE,
    VERSION_RE,
    WHEEL_KEYS,
    key,
)


def parse_version(r: Reader, t: dict[str, Any], path: str) -> str:
    version = r.string(t, "version", path)
    try:
        Version(version)
    except InvalidVersion:
        raise r.fail(f"{path}.version", version, "not a valid version") from None
    if not VERSION_RE.match(version):
        raise r.fail(f"{path}.version", version, "not a version as a wheel's file name spells it")
    return version


def _module_map(r: Reader, t: dict[str, Any], name: str, path: str) -> dict[str, str]:
    """A table keyed by top-level Python module names (`IPython`, `yaml`), with string values."""
    table = r.string_map(t, name, path)
    for module in table:
        if not module.isidentifier():
            raise r.fail(f"{path}.{key(name)}.{key(module)}", module, "not a top-level Python module name")
    return table


def _license(r: Reader, t: dict[str, Any], path: str) -> str:
    value = r.string(t, "license", path)
    if value not in LICENSES:
        raise r.fail(
            f"{path}.license", value, f"not a nixpkgs lib.licenses name known here ({', '.join(LICENSES)})"
        )
    return value


def _parse_prune(r: Reader, t: dict[str, Any], path: str) -> tuple[PruneRule, ...]:
    rules = []
    for i, entry in enumerate(r.tables(t, "prune", path)):
        where = f"{path}.prune[{i}]"
        r.only(entry, where, ("path", "keep-for", "keep-but", "reason", "systems"))
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
        systems = r.systems(entry, "systems", where, required=False)
        rules.append(PruneRule(rel, keep_for, keep_but, r.string(entry, "reason", where), systems))
    return tuple(rules)


def parse_wheel(r: Reader, attr: str, t: dict[str, Any], parent: str, systems: tuple[str, ...]) -> Wheel:
    path = f"{parent}.{key(attr)}"
    if canonicalize_name(attr) != attr:
        raise r.fail(path, attr, "a wheel's key is its canonical name (lowercase, '-' between the words)")
    r.only(t, path, WHEEL_KEYS)
    version = parse_version(r, t, path)
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
        check_provider(r, f"{path}.libraries[{i}]", lib)
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
