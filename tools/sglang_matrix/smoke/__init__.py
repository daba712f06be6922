"""`sglang-matrix smoke`: check a built variant (a Python environment) the way a user would run it.

RESULT is what `nix build .#VARIANT` made (a store path or the `result` symlink), or any prefix with
`bin/python3` and `lib/pythonX.Y/site-packages` (a venv: the tests use one). Every check ends as passed,
failed or skipped, with a reason; the exit status is 0 only when no check failed (skips do not fail),
1 otherwise, 2 for bad input (RESULT missing, unknown variant).

Static checks (no GPU):

* `variant`, `python`: what RESULT says about itself (`nix-support/sglang-matrix-variant.json`, the
  variant's `Variant.to_json()`) matches the variant under test, and its interpreter is the variant's Python.
* `import:<module>`: RESULT's interpreter, in an environment holding only PATH and HOME (no PYTHONPATH,
  no PYTHONHOME), imports sglang, torch, xgrammar, flashinfer and sgl_kernel, each in its own process. An
  import that fails because libcuda.so.1 is missing is skipped when the launchers' driver search finds no
  NVIDIA driver on this host (it is a failure when it finds one); one that
  dies of SIGILL on a CPU that lacks the variant's ISA is skipped with that reason.
* `torch-arch`: the CUDA code in every shared object under torch/lib (the fatbin entries, read with the
  audit parsers) is for exactly the variant's capabilities: cubin sm_90 is "9.0" (an arch-specific sm_90a
  counts as 9.0, since it runs only there), PTX is "compute_90" (never a capability, so always extra);
  `torch.cuda.get_arch_list()` must say the same when torch imports.
* `sglang-metadata`: the installed sglang's METADATA has no Requires-Dist (the Nix build strips them).
* `shared-libs`: every DT_NEEDED of every shared object in the closure resolves inside the closure, except
  libcuda.so.1 (the driver). The closure is `nix-store -qR RESULT` when RESULT is a store path and
  nix-store is on PATH; otherwise it is approximated by RESULT's tree, the interpreter's prefix and this
  host's system library directories, and the report says so. Resolution follows the object's
  RUNPATH/RPATH ($ORIGIN expanded), then any object of the closure with that file name.

GPU checks (`smoke.gpu`) run only when a GPU is visible, its capability is one of the variant's and this
CPU has the ISA's cpu-features; otherwise each is skipped with the exact reason.

The modules, imported one way (each only from those above it): `model` (checks, reports, the variant and
host as the checks see them), `variant` (which variant RESULT is), `hosts` (this host, through
`sglang_matrix.host.probe` and the launchers' own driver search), `run` (running RESULT's interpreter),
`checks`, `closure` (DT_NEEDED resolution), `gpu` (the GPU checks), `report` (JUnit, the table), `cli`.
"""

from __future__ import annotations

from .cli import smoke

__all__ = ["smoke"]
