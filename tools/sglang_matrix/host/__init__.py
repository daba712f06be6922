"""This host as sglang-matrix sees it, and whether a variant can run on it.

* `driver`: find the NVIDIA driver's libraries on any Linux host and expose only them (standalone: the
  variants' launchers run it as a script);
* `probe`: the GPUs (NVML, the driver API through ctypes, nvidia-smi), the driver, the CPU (flags and
  architecture from /proc/cpuinfo), and recorded forms of both for tests and bug reports;
* `record`: the variants as preflight needs them, from the spec or from an environment's own record;
* `preflight`: the checks `sglang-serve --preflight` runs (driver, CUDA compatibility, GPUs, CPU).

Imports go one way: driver <- probe <- preflight, record <- preflight; nothing here imports the CLI, and
only the standard library is needed (a variant's runtime package installs these files without the rest of
the tool).
"""
