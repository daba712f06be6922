"""Audit prebuilt wheels without installing them: shared-library needs and GPU code per SM.

Modules:
  wheelzip   -- stream a wheel's members (no extraction to disk), rejecting unsafe or corrupt ones
  elf        -- host ELF facts (DT_NEEDED, SONAME, RPATH/RUNPATH, CPython tag, .nv_fatbin)
  fatbin     -- NVIDIA fatbin containers: entries per SM, kind, compression (never decompressed)
  cubin      -- standalone CUDA ELF (.cubin): target SM and 'a'/'f' suffix
  gpucode    -- per wheel: bytes of device code per (sm, suffix, kind), runnable vs dead per target GPU
  sharedlibs -- per wheel: DT_NEEDED of every object, objects that cannot load on a given CPython

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
