"""Find the host's NVIDIA user-space driver and expose only its libraries.

STANDALONE: the standard library only (os, sys, zlib; json for --json), no package-relative import, so
that every entry point of a variant runs it as a script before anything else:

    python -I -S .../driver.py --link

prints a private directory of symlinks to the driver's libraries (libcuda.so.1, libnvidia-ml.so.1,
libnvidia-ptxjitcompiler.so.1, libnvidia-nvvm.so.4 and the rest of libcuda*/libnvidia-*), which the
launcher puts on LD_LIBRARY_PATH. nixpkgs' glibc ignores the host's /etc/ld.so.cache, and the closure
knows only /run/opengl-driver/lib, so on any other host libcuda.so.1 is found only this way. A whole host
library directory never goes on LD_LIBRARY_PATH: its libc or libstdc++ must not mix with the closure's
(the idea of numtide's nix-gl-host).

Where it looks, in this order; the first directory with a libcuda.so.1 for this machine wins:

0. $SGLANG_MATRIX_DRIVER_DIR when it is set: that directory only;
1. /run/opengl-driver/lib (NixOS);
2. the host's linker cache, /etc/ld.so.cache (what `ldconfig -p` prints), read directly;
3. /usr/lib/x86_64-linux-gnu, /usr/lib/aarch64-linux-gnu (Debian, Ubuntu), /usr/lib64 (RHEL), /usr/lib;
4. /usr/lib/wsl/lib (WSL 2);
5. /usr/local/nvidia/lib64, /usr/local/nvidia/lib: where GKE's device plugin mounts the driver. The NVIDIA
   container toolkit injects the driver into the image's own library directory and updates the image's
   ld.so.cache, which 2 and 3 find.

SGLANG_MATRIX_DRIVER_SEARCH=0 turns the search off (the launcher does not run this at all).
SGLANG_MATRIX_HOST_ROOT prefixes every host path (tests build fake hosts under it).

The symlink directory is private and writable: $XDG_RUNTIME_DIR/sglang-matrix, else
${XDG_CACHE_HOME:-$HOME/.cache}/sglang-matrix/driver, else ${TMPDIR:-/tmp}/sglang-matrix-$UID; one
directory per driver identity (the libraries' real paths, sizes and mtimes), created under a temporary
name and renamed into place, so concurrent starts never see a half-made one.
"""

from __future__ import annotations

import os
import sys
import zlib

DRIVER_DIR_ENV = "SGLANG_MATRIX_DRIVER_DIR"
SEARCH_ENV = "SGLANG_MATRIX_DRIVER_SEARCH"
ROOT_ENV = "SGLANG_MATRIX_HOST_ROOT"
LIBCUDA = "libcuda.so.1"

NIXOS_DIR = "/run/opengl-driver/lib"
LD_CACHE = "/etc/ld.so.cache"
USUAL_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
WSL_DIR = "/usr/lib/wsl/lib"
CONTAINER_DIRS = ("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib")

# File-name stems (before ".so") of the driver's user-space libraries. WSL's libcuda loads libdxcore and
# the D3D12 user-mode driver (libnvwgf2umx, libnvdxdlkernels) from the same directory.
DRIVER_STEMS = frozenset(
    {
        "libcuda",
        "libcudadebugger",
        "libnvcuvid",
        "libnvoptix",
        "libdxcore",
        "libnvwgf2umx",
        "libnvdxdlkernels",
        "libnvdxgdmal",
    }
)
DRIVER_PREFIXES = ("libnvidia-", "libd3d12")

# ELF e_machine of the architectures sglang-matrix builds for (the ELF specification's EM_* values).
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
# ld.so.cache entry flags (glibc sysdeps/generic/ldconfig.h): FLAG_X8664_LIB64, FLAG_AARCH64_LIB64.
CACHE_ARCH_FLAGS = {"x86_64": 0x0300, "aarch64": 0x0A00}
CACHE_OLD_MAGIC = b"ld.so-1.7.0"
CACHE_NEW_MAGIC = b"glibc-ld.so.cache1.1"

MANIFEST = ".sglang-matrix-driver"


class Driver:
    """A driver found on this host: its directory and the libraries to expose (file name -> real path)."""

    __slots__ = ("directory", "libraries", "source", "version")

    def __init__(self, directory: str, source: str, libraries: dict[str, str], version: str | None) -> None:
        self.directory = directory
        self.source = source
        self.libraries = libraries
        self.version = version

    @property
    def libcuda(self) -> str:
        return os.path.join(self.directory, LIBCUDA)

    def to_json(self) -> dict[str, object]:
        return {
            "directory": self.directory,
            "source": self.source,
            "version": self.version,
            "libraries": dict(sorted(self.libraries.items())),
        }


class Search:
    """The outcome of a search: the driver or None, every place looked at, and why nothing was found."""

    __slots__ = ("driver", "looked", "problem")

    def __init__(self, driver: Driver | None, looked: list[str], problem: str | None = None) -> None:
        self.driver = driver
        self.looked = looked
        self.problem = problem

    def to_json(self) -> dict[str, object]:
        return {
            "driver": self.driver.to_json() if self.driver else None,
            "looked": list(self.looked),
            "problem": self.problem,
        }


# ------------------------------------------------------------------------------------------------ files


def machine() -> str:
    return os.uname().machine


def is_driver_library(name: str) -> bool:
    """libcuda.so.1, libnvidia-ml.so.570.124.06, libdxcore.so, ... (not libcudart: that is the toolkit's)."""
    stem, sep, rest = name.partition(".so")
    if not sep or (rest and not rest.startswith(".")):
        return False
    return stem in DRIVER_STEMS or stem.startswith(DRIVER_PREFIXES)


def elf_fits(path: str, arch: str | None = None) -> bool:
    """Whether `path` is a 64-bit little-endian ELF object for this machine (or any, on other machines)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(20)
    except OSError:
        return False
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return False
    wanted = ELF_MACHINES.get(arch or machine())
    return wanted is None or int.from_bytes(head[18:20], "little") == wanted


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def _string(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset : end if end >= 0 else len(data)].decode("utf-8", "surrogateescape")


def parse_ld_cache(data: bytes, only: str | None = None) -> list[tuple[str, int, str]]:
    """(library name, flags, path) of every entry of an ld.so.cache (glibc's new format, alone or after the
    old one; the old format alone as a fallback), or of the entries named `only` (compared as bytes: a
    start reads one name, not all of them). Layouts: glibc sysdeps/generic/dl-cache.h."""
    wanted = None if only is None else only.encode() + b"\0"
    if wanted is not None and wanted not in data:  # most hosts without a driver: no loop at all
        return []

    def entry(at: int, strings: int) -> tuple[str, int, str] | None:
        key, value = strings + _u32(data, at + 4), strings + _u32(data, at + 8)
        if wanted is not None and data[key : key + len(wanted)] != wanted:
            return None
        flags = int.from_bytes(data[at : at + 4], "little", signed=True)
        return _string(data, key), flags, _string(data, value)

    start = -1
    if data.startswith(CACHE_NEW_MAGIC):
        start = 0
    elif data.startswith(CACHE_OLD_MAGIC):
        old_count = _u32(data, 12)
        start = data.find(CACHE_NEW_MAGIC, 16 + 12 * old_count)
        if start < 0:  # old format only: offsets are relative to the string table after the entries
            strings = 16 + 12 * old_count
            found = (entry(16 + 12 * i, strings) for i in range(old_count))
            return [e for e in found if e is not None]
    if start < 0:
        return []
    # New format: a 48-byte header, 24-byte entries, string offsets relative to the header.
    count = min(_u32(data, start + 20), max(0, (len(data) - start - 48) // 24))
    found = (entry(start + 48 + 24 * i, start) for i in range(count))
    return [e for e in found if e is not None]


def cache_dirs(root: str, arch: str) -> list[str]:
    """Directories the host's linker cache names for libcuda.so.1 on this architecture, in cache order."""
    try:
        with open(root + LD_CACHE, "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    wanted = CACHE_ARCH_FLAGS.get(arch)
    dirs = []
    for _, flags, path in parse_ld_cache(data, LIBCUDA):
        if not path.startswith("/"):
            continue
        if wanted is not None and flags & 0xFF00 != wanted:
            continue
        directory = os.path.dirname(path)
        if directory not in dirs:
            dirs.append(directory)
    return dirs


def driver_version(libraries: dict[str, str]) -> str | None:
    """The driver release from its versioned file name (libcuda.so.570.124.06), when it has one."""
    for name in (os.path.basename(libraries.get(LIBCUDA, "")), *sorted(libraries)):
        if name.startswith("libcuda.so."):
            rest = name[len("libcuda.so.") :]
            parts = rest.split(".")
            if len(parts) >= 2 and all(p.isascii() and p.isdigit() for p in parts) and int(parts[0]) >= 100:
                return rest
    return None


def libraries_in(directory: str) -> dict[str, str]:
    """The driver libraries of `directory`: file name -> real path (dangling links left out)."""
    out = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    for name in names:
        if is_driver_library(name):
            real = os.path.realpath(os.path.join(directory, name))
            if os.path.isfile(real):
                out[name] = real
    return out


def _driver_at(directory: str, source: str, arch: str) -> Driver | None:
    if not elf_fits(os.path.join(directory, LIBCUDA), arch):
        return None
    libraries = libraries_in(directory)
    if LIBCUDA not in libraries:
        return None
    return Driver(directory, source, libraries, driver_version(libraries))


def find_driver(environ: dict[str, str] | None = None, arch: str | None = None) -> Search:
    """Search this host for the NVIDIA driver in the documented order."""
    env = os.environ if environ is None else environ
    arch = arch or machine()
    root = (env.get(ROOT_ENV) or "").rstrip("/")
    given = env.get(DRIVER_DIR_ENV) or ""
    if given:
        where = f"{DRIVER_DIR_ENV}={given}"
        found = _driver_at(given, DRIVER_DIR_ENV, arch)
        if found is None:
            return Search(None, [where], f"{where} holds no {LIBCUDA} for {arch}")
        return Search(found, [where])
    candidates: list[tuple[str, str]] = [(NIXOS_DIR, "NixOS")]
    candidates += [(d, "ld.so.cache") for d in cache_dirs(root, arch)]
    candidates += [(d, "usual directory") for d in USUAL_DIRS]
    candidates += [(WSL_DIR, "WSL"), *((d, "container mount") for d in CONTAINER_DIRS)]
    looked: list[str] = []
    for directory, source in candidates:
        label = LD_CACHE if source == "ld.so.cache" else directory
        if label not in looked:
            looked.append(label)
        found = _driver_at(root + directory, source, arch)
        if found is not None:
            return Search(found, looked)
    if LD_CACHE not in looked:
        looked.insert(1, LD_CACHE)
    return Search(None, looked, f"no {LIBCUDA} for {arch} in " + ", ".join(looked))


# ------------------------------------------------------------------------------------------------ links


def manifest_of(driver: Driver) -> str:
    lines = []
    for name, real in sorted(driver.libraries.items()):
        try:
            st = os.stat(real)
        except OSError:
            continue
        lines.append(f"{name}\t{real}\t{st.st_size}\t{st.st_mtime_ns}")
    return "\n".join(lines) + "\n"


def _usable_base(path: str) -> bool:
    """A directory we own, not writable by others, that we can write (made with mode 0700 if missing)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and os.access(path, os.W_OK | os.X_OK)


def link_bases(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    bases = []
    runtime = environ.get("XDG_RUNTIME_DIR") or ""
    if runtime.startswith("/"):
        bases.append(os.path.join(runtime, "sglang-matrix"))
    cache = environ.get("XDG_CACHE_HOME") or ""
    if not cache.startswith("/") and (environ.get("HOME") or "").startswith("/"):
        cache = os.path.join(environ["HOME"], ".cache")
    if cache.startswith("/"):
        bases.append(os.path.join(cache, "sglang-matrix", "driver"))
    tmp = environ.get("TMPDIR") or ""
    bases.append(os.path.join(tmp if tmp.startswith("/") else "/tmp", f"sglang-matrix-{os.getuid()}"))
    return bases


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def _remove_tree(path: str) -> None:
    """Remove a directory of symlinks and small files (what link_driver makes)."""
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        pass


def link_driver(driver: Driver, environ: dict[str, str] | None = None) -> str:
    """The private directory of symlinks to `driver`'s libraries, made if missing; raises OSError."""
    env = os.environ if environ is None else environ
    manifest = manifest_of(driver)
    key = zlib.crc32(manifest.encode("utf-8", "surrogateescape"))
    name = f"driver-{driver.version or 'unversioned'}-{key:08x}"
    problems = []
    for base in link_bases(env):
        if not _usable_base(base):
            problems.append(f"{base}: not a private writable directory")
            continue
        final = os.path.join(base, name)
        if _read(os.path.join(final, MANIFEST)) == manifest:
            return final
        tmp = os.path.join(base, f".{name}.{os.getpid()}.tmp")
        try:
            _remove_tree(tmp)
            os.mkdir(tmp, 0o700)
            for lib, real in sorted(driver.libraries.items()):
                os.symlink(real, os.path.join(tmp, lib))
            with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(manifest)
            try:
                os.rename(tmp, final)
            except OSError:
                # Another start won the race (same manifest: use it), or a stale directory of that name.
                if _read(os.path.join(final, MANIFEST)) != manifest:
                    stale = f"{final}.{os.getpid()}.stale"
                    os.rename(final, stale)
                    _remove_tree(stale)
                    os.rename(tmp, final)
            return final
        except OSError as err:
            problems.append(f"{base}: {err.strerror or err}")
        finally:
            _remove_tree(tmp)
    raise OSError("cannot make the driver's link directory: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------ CLI


def note(text: str) -> None:
    sys.stderr.write(f"sglang-matrix: {text}\n")


def main(argv: list[str]) -> int:
    """`--link`: print the link directory (nothing, with a note on stderr, when no driver is found);
    `--json`: the search as JSON; no argument: a human summary."""
    if argv not in ([], ["--link"], ["--json"]):
        note("usage: driver.py [--link | --json]")
        return 2
    search = find_driver()
    if argv == ["--json"]:
        import json

        print(json.dumps(search.to_json(), indent=2))
        return 0
    driver = search.driver
    if driver is None:
        note(
            f"no NVIDIA driver found ({search.problem}): CUDA is unavailable, CPU-only use works "
            f"(set {DRIVER_DIR_ENV}=DIR to name the directory of libcuda.so.1, {SEARCH_ENV}=0 to skip this)"
        )
        return 0
    if argv == ["--link"]:
        try:
            print(link_driver(driver))
        except OSError as err:
            note(f"driver {driver.version or '?'} found in {driver.directory} but not exposed: {err}")
        return 0
    print(f"driver {driver.version or '(unversioned)'} in {driver.directory} ({driver.source})")
    for lib, real in sorted(driver.libraries.items()):
        print(f"  {lib} -> {real}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
