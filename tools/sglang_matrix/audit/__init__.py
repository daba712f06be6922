"""Audit prebuilt wheels without installing them: shared-library needs and GPU code per SM.

Modules (each imports only those above it):
  blob       -- random access to a member's bytes: in memory, in place in the wheel, or spooled to disk
  wheelzip   -- stream a wheel's members (no extraction), rejecting unsafe or corrupt ones
  elf        -- host ELF facts (DT_NEEDED, SONAME, RPATH/RUNPATH, CPython tag, where .nv_fatbin is)
  fatbin     -- NVIDIA fatbin containers: entries per SM, kind, compression (headers only)
  cubin      -- standalone CUDA ELF (.cubin): target SM and 'a'/'f' suffix
  sharedlibs -- per wheel: DT_NEEDED of every object, objects that cannot load on a given CPython
  gpucode    -- per wheel: bytes of device code per (sm, suffix, kind), runnable vs dead per target GPU
  findings   -- `Finding` and `AuditEnv` (what a wheel is audited for), shared by the checks below
  libraries, coverage, requires -- the checks against the spec: SONAMEs, GPU code, Requires-Dist
  report     -- one wheel's report from those checks; matching files to the spec's wheels

The audit keeps in memory only what the checks need (headers, dynamic sections, fatbin entry headers):
peak RSS stays near 100 MB on any wheel (bench/audit).

Every parser raises only `AuditError` on bad input; the CLI prints it as one line.
"""

from __future__ import annotations

from sglang_matrix.errors import UserError


class AuditError(UserError):
    """A file (a wheel, or a member inside one) that cannot be audited: `file: message`."""

    def __init__(self, file: str, message: str) -> None:
        self.file = file
        self.message = message
        super().__init__(f"{file}: {message}")


__all__ = ["AuditError"]
