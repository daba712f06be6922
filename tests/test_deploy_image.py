"""The OCI image of every variant (pkgs/image.nix, `packages.<system>.<variant>-image`), evaluated by Nix 2.26
against the nixpkgs test double (its dockerTools.streamLayeredImage takes exactly the arguments nixpkgs
documents; tests/nixpkgs-double/docker-tools.nix), in one evaluation over every image of every system.

What this checks: each image is the variant's own environment, started by the seed's resolve-then-serve
chain, as uid 1000, with /models as the HF cache, the SGLANG_* defaults and the labels the spec gives; the
name and tag are the ones `sglang-matrix k8s` puts in the Deployment. Not checked here (no nixpkgs, no
registry, no container runtime on these machines): building and loading the image, how nixpkgs' layering
splits this closure, and that the NVIDIA container toolkit's mounts are found inside a running container
(tests/test_host_driver.py runs the driver search on fake hosts laid out like those mounts)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, eval_packages_of_copy, nix_env
from sglang_matrix import k8s
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import resolve_variants

DOUBLE = ROOT / "tests" / "nixpkgs-double"

IMAGES = """
ps: builtins.mapAttrs (system: p:
  builtins.mapAttrs (name: i: {
    inherit (i) name imageName imageTag drvPath isExe;
    args = i.doubleArgs // { contents = map (c: c.outPath) i.doubleArgs.contents; };
    entrypoint = { path = i.entrypoint.outPath; text = i.entrypoint.text; };
    etc = i.etc.buildCommand;
    variant = i.variant.longName;
    env = p.${i.variant.name}.outPath;
    description = i.meta.description;
  }) (removeAttrs p (builtins.filter (n: builtins.match ".*-image" n == null) (builtins.attrNames p)))
) ps
"""


@pytest.fixture(scope="module")
def images(nix_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """{system: {name: facts}} for every `*-image` package: one `nix eval` over a scratch copy (a path flake,
    so files not yet committed count)."""
    return eval_packages_of_copy(nix_bin, tmp_path_factory.mktemp("deploy-image") / "project", IMAGES)


def test_every_variant_has_an_image_under_both_names(images) -> None:
    spec = load_spec(ROOT / "matrix.toml")
    variants = resolve_variants(spec)
    for v in variants:
        mine = images[v.system]
        short, long = mine[f"{v.name}-image"], mine[f"{v.long_name}-image"]
        assert short["drvPath"] == long["drvPath"], v.name
        assert short["variant"] == v.long_name
        # The reference the Kubernetes manifests run.
        assert f"{short['imageName']}:{short['imageTag']}" == k8s.image_ref(v), v.name
        assert short["name"] == f"stream-{v.name}" and short["isExe"] is True
        labels = short["args"]["config"]["Labels"]
        minimum, full = k8s.min_driver(spec, v)
        assert labels["sglang-matrix.variant"] == v.name
        # A variant without an ISA (0.5.23: torch is a prebuilt wheel) says "any": a label is a string.
        assert labels["sglang-matrix.isa"] == (v.isa if v.isa is not None else "any"), v.name
        assert all(isinstance(value, str) for value in labels.values()), v.name
        assert labels["sglang-matrix.capabilities"].split() == list(v.capabilities)
        assert labels["sglang-matrix.cuda"] == v.cuda
        assert labels["sglang-matrix.driver.minimum"] == minimum
        assert labels["sglang-matrix.driver.full"] == full
        assert labels["org.opencontainers.image.version"] == v.versions["sglang"]
    assert any(v.isa is None for v in variants) and any(v.isa is not None for v in variants)
    # Short and long names (a variant outside the default Python and CUDA has only its long name).
    assert sum(len(m) for m in images.values()) == sum(len({v.name, v.long_name}) for v in variants)
    # Images of different variants are different images.
    assert len({i["drvPath"] for m in images.values() for i in m.values()}) == len(variants)


def test_the_image_serves_its_variant_as_the_seed_does(images) -> None:
    for system, mine in images.items():
        for name, image in mine.items():
            args, env = image["args"], image["env"]
            assert env in args["contents"], name
            config = args["config"]
            # Entrypoint: resolve the model, then exec the server, both from this variant's bin/.
            assert config["Entrypoint"] == [image["entrypoint"]["path"]] and config["Cmd"] == []
            lines = [line for line in image["entrypoint"]["text"].splitlines() if not line.startswith("#")]
            assert lines == [
                f"{env}/bin/sglang-resolve-model || exit $?",
                f'exec {env}/bin/sglang-serve "$@"',
            ], name
            # Not root; the volume and home belong to the user; /tmp is shared and sticky.
            assert config["User"] == "1000:1000"
            assert "sglang:x:1000:1000:" in image["etc"]
            assert "chown 1000:1000 ./models ./home/sglang" in args["fakeRootCommands"]
            assert "chmod 1777 ./tmp" in args["fakeRootCommands"]
            assert config["Volumes"] == {"/models": {}}
            assert config["ExposedPorts"] == {"30000/tcp": {}}
            environment = dict(e.split("=", 1) for e in config["Env"])
            assert environment["HF_HUB_CACHE"] == "/models"
            assert environment["XDG_CACHE_HOME"].startswith("/models/")
            assert (environment["SGLANG_HOST"], environment["SGLANG_PORT"]) == ("0.0.0.0", "30000")
            assert environment["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
            assert "NVIDIA_VISIBLE_DEVICES" not in environment  # the runtime's to set, not the image's
            assert environment["SSL_CERT_FILE"].endswith("/etc/ssl/certs/ca-bundle.crt")
            assert 1 < args["maxLayers"] <= 125
            assert args["architecture"] == {"x86_64-linux": "amd64", "aarch64-linux": "arm64"}[system]
            assert args["includeStorePaths"] is True


def test_images_stay_out_of_hydra_jobs() -> None:
    flake = (ROOT / "flake.nix").read_text()
    start = flake.index("hydraJobs = lib.listToAttrs")
    hydra = flake[start : flake.index("};", start)]
    assert "image" not in hydra


STRICT = [
    ('{ name = "x"; maxLayer = 10; }', "unexpected argument 'maxLayer'"),
    ('{ name = "x"; layeringPipeline = [ ]; }', "unexpected argument 'layeringPipeline'"),
    ('{ name = "x"; config.Envs = [ ]; }', "Envs are not in the OCI image config"),
    ('{ name = "x"; maxLayers = 1; }', "must be greather than 1"),
]


@pytest.mark.parametrize(("args", "error"), STRICT)
def test_the_double_refuses_what_streamlayeredimage_does_not_take(
    nix_bin: Path, args: str, error: str
) -> None:
    expr = f'(import ./. {{ system = "x86_64-linux"; }}).dockerTools.streamLayeredImage {args}'
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--expr", f"({expr}).drvPath"],
        cwd=DOUBLE,
        env=nix_env(nix_bin),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert error in proc.stderr, proc.stderr[-2000:]
