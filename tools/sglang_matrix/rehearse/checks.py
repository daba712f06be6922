"""What the rehearsal runs in its environment: what the Nix build and the launcher run.

1. each locked wheel's `imports` (the build's pythonImportsCheck: no GPU and no stand-in for one, HOME
   unwritable as in the build sandbox);
2. `python -m sglang.launch_server --help`;
3. the modules the server's processes load (the spec's `server-modules`), with GPU-only modules stood in
   for where they fail for want of a GPU;
4. `sglang-serve --dry-run`, and every option it passes must be one `launch_server --help` lists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .closure import Closure
from .env import Environment

HARNESS = Path(__file__).resolve().parent / "harness.py"
# What the launcher's environment keeps of the caller's (the rest is scrubbed, as for a fresh user).
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
# The build sandbox's HOME: it does not exist and cannot be created.
SANDBOX_HOME = "/homeless-shelter"
TIMEOUT = 600


@dataclass
class CheckResult:
    name: str
    what: str  # what the check stands for in the real build or run
    status: str  # "pass", "fail" or "skip"
    details: list[dict] = field(default_factory=list)
    stand_ins: dict[str, str] = field(default_factory=dict)  # GPU-only module -> why it was stood in for
    # Module linking the line's torch -> why it was stood in for (beside a stand-in torch only).
    torch_abi_stand_ins: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return vars(self).copy()


def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    env.update(HOME=home, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")
    env.setdefault("PATH", "/usr/bin:/bin")
    return env


def run_harness(env: Environment, config: dict, home: str) -> dict:
    start = time.monotonic()
    data = _run_harness(env, config, home)
    data["seconds"] = round(time.monotonic() - start, 1)
    return data


def _run_harness(env: Environment, config: dict, home: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="sglang-matrix-rehearse-") as tmp:
        cfg, out = Path(tmp, "config.json"), Path(tmp, "out.json")
        cfg.write_text(json.dumps(config))
        proc = subprocess.run(
            [str(env.python), str(HARNESS), str(cfg), str(out)],
            cwd=tmp,
            env=_env(home if home != "tmp" else tmp),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if not out.is_file():
            tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
            return {"crashed": f"the harness died (exit {proc.returncode}): {tail}", "results": []}
        return json.loads(out.read_text())


def _result(name: str, what: str, data: dict, gpu_only: bool) -> CheckResult:
    results = data.get("results", [])
    status = "pass" if results and all(r.get("ok") for r in results) else "fail"
    check = CheckResult(name, what, status, details=results, stand_ins=data.get("stand_ins", {}))
    check.torch_abi_stand_ins = data.get("torch_abi_stand_ins", {})
    if "crashed" in data:
        check.notes.append(data["crashed"])
    if data.get("torchvision_ops"):
        check.notes.append(
            f"torchvision operators declared by name only (stand-in): {', '.join(data['torchvision_ops'])}"
        )
    if not gpu_only and check.stand_ins:  # cannot happen: no GPU-only finder was installed
        check.status = "fail"
    check.seconds = data.get("seconds", 0.0)
    return check


def _stand_ins(env: Environment) -> dict[str, object]:
    """The stand-ins every check gets from the environment (none for a GPU: that is per check)."""
    return {"torchvision_ops": env.declare_torchvision_ops, "torch_abi": env.torch_abi}


def build_imports(env: Environment, wheel_imports: dict[str, tuple[str, ...]]) -> list[CheckResult]:
    """Each wheel's import check, as pythonImportsCheck runs it: one process per package, no GPU."""
    checks = []
    for attr, modules in wheel_imports.items():
        if not modules:
            continue
        config = {"mode": "import", "modules": list(modules), **_stand_ins(env)}
        data = run_harness(env, config, SANDBOX_HOME)
        what = f"the {attr} package's import check in the Nix build"
        checks.append(_result(f"imports: {attr}", what, data, False))
    return checks


def launch_server_help(closure: Closure, env: Environment) -> tuple[CheckResult, str]:
    config = {
        "mode": "run",
        "module": "sglang.launch_server",
        "argv": ["--help"],
        "gpu_only": closure.gpu_only,
        **_stand_ins(env),
    }
    data = run_harness(env, config, "tmp")
    check = _result("launch_server --help", "`python -m sglang.launch_server --help`", data, True)
    out = (data.get("results") or [{}])[0].pop("stdout", "")
    return check, out


def server_modules(closure: Closure, env: Environment) -> CheckResult:
    config = {
        "mode": "import",
        "modules": list(closure.server_modules),
        "gpu_only": closure.gpu_only,
        **_stand_ins(env),
    }
    data = run_harness(env, config, "tmp")
    for entry in data.get("results", []):
        entry["loaded_by"] = closure.server_modules.get(entry["module"], "")
    return _result("server modules", "the modules the server's processes load at start-up", data, True)


def serve_dry_run(env: Environment, help_text: str, defaults: dict[str, str] | None = None) -> CheckResult:
    """`sglang-serve --dry-run` prints the launch_server argv; every option in it must be one sglang has.
    `defaults`: the variables the variant's launchers default (serve-defaults), set as they set them."""
    start = time.monotonic()
    defaults = defaults or {}
    with tempfile.TemporaryDirectory(prefix="sglang-matrix-serve-") as tmp:
        run_env = _env(tmp)
        run_env.update(SGLANG_MODEL="Qwen/Qwen2.5-0.5B-Instruct", SGLANG_PREFLIGHT="0", **defaults)
        proc = subprocess.run(
            [str(env.python), "-m", "sglang_matrix.serve", "--dry-run", "--no-env-file"],
            cwd=tmp,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    what = "`sglang-serve --dry-run`, the launcher's command line"
    check = CheckResult("sglang-serve --dry-run", what, "pass", seconds=round(time.monotonic() - start, 1))
    # No GPU or driver here: the host preflight is tested against a stub driver (tests/test_host_*.py).
    check.notes.append("run with SGLANG_PREFLIGHT=0: there is no GPU or NVIDIA driver here")
    if defaults:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(defaults.items()))
        check.notes.append(f"with the variant's launch defaults (serve-defaults): {shown}")
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    check.details.append({"exit_code": proc.returncode, "argv": line, "stderr": proc.stderr.strip()[-500:]})
    if proc.returncode != 0 or not line:
        check.status = "fail"
        return check
    argv = shlex.split(line)
    known = set(re.findall(r"(--[A-Za-z0-9][A-Za-z0-9-]*)", help_text))
    passed = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
    unknown = [a for a in passed if a not in known]
    if "sglang.launch_server" not in argv:
        check.status = "fail"
        check.notes.append("the argv does not run sglang.launch_server")
    if not known:
        check.status = "fail"
        check.notes.append("launch_server --help listed no options to compare with")
    elif unknown:
        check.status = "fail"
        check.notes.append(f"options launch_server does not know: {', '.join(unknown)}")
    else:
        check.notes.append(f"all {len(passed)} options it passes are in launch_server --help")
    # A launch default's value must be one sglang offers (the option's choices are in its --help text).
    absent = [value for value in defaults.values() if value not in argv or value not in help_text]
    if absent:
        check.status = "fail"
        check.notes.append(f"launch defaults not passed, or not in launch_server --help: {', '.join(absent)}")
    return check
