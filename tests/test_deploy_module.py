"""The NixOS module (nix/module.nix, the flake's nixosModules.default), evaluated by Nix 2.26 with a double of
nixpkgs' module system (tests/nixos/module-system.nix: NOT nixpkgs' lib, which cannot be had here; it models
evalModules, the types, mkIf/mkMerge and priorities as nixpkgs documents them) against NixOS option
declarations mirrored from nixpkgs' sources (tests/nixos/nixos-options.nix, each cited). The unit text is
rendered as nixpkgs writes it (tests/nixos/eval.nix), and its SGLANG_* environment is fed to the real
sglang-serve (--dry-run) to see the command a user gets.

Not checked here: nixpkgs' real module system and NixOS' systemd module (no nixpkgs on these machines), a
NixOS build, and the service running under systemd with a GPU."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, nix_env

EVAL = ROOT / "tests" / "nixos" / "eval.nix"
MODULE = ROOT / "nix" / "module.nix"
# The module reads only the package's store path and name.
PACKAGE = (
    'derivation { name = "sglang-python312-cuda12_8-sm90-avx512"; system = "x86_64-linux"; '
    'builder = "/bin/sh"; }'
)
NVIDIA = 'services.xserver.videoDrivers = [ "nvidia" ];'


def evaluate(nix_bin: Path, config: str, with_enabled: bool = True) -> subprocess.CompletedProcess[str]:
    expr = f"""
      let pkg = {PACKAGE}; in
      import {EVAL} {{
        withEnabled = {"true" if with_enabled else "false"};
        modules = [ {MODULE} ({{ lib, ... }}: {{ {config} }}) ];
      }}"""
    return subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
    )


def evaluated(nix_bin: Path, config: str, with_enabled: bool = True) -> dict[str, Any]:
    proc = evaluate(nix_bin, config, with_enabled)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


TWO = f"""
  {NVIDIA}
  services.sglang.instances.chat = {{
    package = pkg;
    model = "Qwen/Qwen2.5-7B-Instruct";
    host = "0.0.0.0";
    servedModelName = "qwen";
    openFirewall = true;
    extraArgs = [ "--mem-fraction-static" "0.8" "--chat-template" "it's $HOME 100%" ];
    environment.SGLANG_TP_SIZE = "2";
  }};
  services.sglang.instances.small = {{ package = pkg; model = "HuggingFaceTB/SmolLM2-135M"; port = 30001; }};
"""


@pytest.fixture(scope="module")
def two(nix_bin: Path) -> dict[str, Any]:
    return evaluated(nix_bin, TWO)


def test_one_hardened_service_per_instance(two) -> None:
    assert two["failedAssertions"] == []
    assert set(two["services"]) == {"sglang-chat", "sglang-small"}
    chat = two["services"]["sglang-chat"]
    unit = chat["unit"].splitlines()
    out = "/nix/store/" in chat["serviceConfig"]["ExecStart"] and chat["serviceConfig"]["ExecStart"]
    store_path = json.loads(out).removesuffix("/bin/sglang-serve")
    assert store_path.endswith("-sglang-python312-cuda12_8-sm90-avx512")
    # Resolve the model, then serve: the variant's own scripts, quoted for systemd.
    assert f'ExecStartPre="{store_path}/bin/sglang-resolve-model"' in unit
    assert f'ExecStart="{store_path}/bin/sglang-serve"' in unit
    for line in (
        "DynamicUser=true",
        "StateDirectory=sglang/chat",
        "ProtectSystem=strict",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "Restart=on-failure",
        "DevicePolicy=closed",
        "DeviceAllow=char-nvidia-frontend rw",
        "DeviceAllow=char-nvidia-uvm rw",
    ):
        assert line in unit, line
    assert not any(line.startswith("PrivateDevices=") for line in unit)  # it would hide /dev/nvidia*
    assert chat["wantedBy"] == ["multi-user.target"]
    assert "network-online.target" in chat["after"]
    # Only the instance that asked opens its port.
    assert two["firewall"] == [30000]


def test_environment_is_what_sglang_serve_reads(two) -> None:
    env = two["services"]["sglang-chat"]["environment"]
    assert env == {
        "SGLANG_MODEL": "Qwen/Qwen2.5-7B-Instruct",
        "SGLANG_HOST": "0.0.0.0",
        "SGLANG_PORT": "30000",
        "SGLANG_SERVED_NAME": "qwen",
        "SGLANG_EXTRA_ARGS": env["SGLANG_EXTRA_ARGS"],
        "SGLANG_TP_SIZE": "2",
        "HOME": "/var/lib/sglang/chat",
        "HF_HOME": "/var/lib/sglang/chat/huggingface",
        "XDG_CACHE_HOME": "/var/lib/sglang/chat/cache",
    }
    # The unit carries each variable JSON-quoted (as nixpkgs writes Environment=).
    assert 'Environment="SGLANG_PORT=30000"' in two["services"]["sglang-chat"]["unit"]
    small = two["services"]["sglang-small"]["environment"]
    assert small["SGLANG_HOST"] == "127.0.0.1" and small["SGLANG_PORT"] == "30001"
    assert "SGLANG_EXTRA_ARGS" not in small and "SGLANG_SERVED_NAME" not in small


def test_sglang_serve_gets_every_extra_argument_intact(two) -> None:
    """The real launcher's parsing: each of extraArgs arrives as one argument, quotes, $ and % included."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_")}
    env.update(two["services"]["sglang-chat"]["environment"])
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix.serve", "--dry-run", "--no-env-file"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout)
    assert argv[argv.index("--model-path") + 1] == "Qwen/Qwen2.5-7B-Instruct"
    assert argv[argv.index("--port") + 1] == "30000"
    assert argv[argv.index("--tp-size") + 1] == "2"
    assert argv[-4:] == ["--mem-fraction-static", "0.8", "--chat-template", "it's $HOME 100%"]


def test_the_driver_must_be_enabled(nix_bin: Path) -> None:
    one = 'services.sglang.instances.a = { package = pkg; model = "m"; };'
    failed = evaluated(nix_bin, one)["failedAssertions"]
    assert len(failed) == 1 and "NVIDIA driver is not enabled" in failed[0]
    assert evaluated(nix_bin, one + NVIDIA)["failedAssertions"] == []
    assert evaluated(nix_bin, one + "hardware.nvidia.datacenter.enable = true;")["failedAssertions"] == []
    # Where nixpkgs has no hardware.nvidia.enabled, the module reads the driver options themselves.
    assert evaluated(nix_bin, one + NVIDIA, with_enabled=False)["failedAssertions"] == []
    assert len(evaluated(nix_bin, one, with_enabled=False)["failedAssertions"]) == 1
    # No instance, no requirement.
    assert evaluated(nix_bin, "")["failedAssertions"] == []


def test_a_port_used_twice_is_refused(nix_bin: Path) -> None:
    config = (
        NVIDIA
        + 'services.sglang.instances.a = { package = pkg; model = "m"; };'
        + 'services.sglang.instances.b = { package = pkg; model = "n"; port = 30000; };'
    )
    (failed,) = evaluated(nix_bin, config)["failedAssertions"]
    assert "a (port 30000), b (port 30000)" in failed and "same port" in failed


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            'services.sglang.instances.a = { package = pkg; modle = "m"; };',
            "services.sglang.instances.a.modle",
        ),
        ('services.sglang.instances.a = { package = pkg; model = "m"; port = 70000; };', "is not of type"),
        (
            'services.sglang.instances.a = { package = pkg; model = "m"; };'
            ' systemd.services.sglang-a.serviceConfig.Restart = lib.mkForce "on-failur";',
            "systemd.services.sglang-a.serviceConfig",
        ),
        (
            'services.sglang.instances.a = { package = pkg; model = "m"; }; systemd.service.x = { };',
            "does not exist",
        ),
    ],
)
def test_the_mirror_refuses_what_nixos_refuses(nix_bin: Path, config: str, error: str) -> None:
    proc = evaluate(nix_bin, NVIDIA + config)
    assert proc.returncode != 0
    assert error in proc.stderr, proc.stderr[-2000:]


def test_priorities_let_a_user_override_the_module(nix_bin: Path) -> None:
    config = (
        NVIDIA
        + 'services.sglang.instances.a = { package = pkg; model = "m"; };'
        + 'systemd.services.sglang-a.serviceConfig.Restart = lib.mkForce "always";'
    )
    service = evaluated(nix_bin, config)["services"]["sglang-a"]
    assert service["serviceConfig"]["Restart"] == "always"


def test_the_flake_exposes_the_module() -> None:
    assert "nixosModules.default = import ./nix/module.nix;" in (ROOT / "flake.nix").read_text()
