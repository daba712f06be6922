"""Kubernetes manifests per variant (tools/sglang_matrix/k8s.py, templates/k8s/): every variant renders, every
document is valid against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail), the
node affinity lets a pod onto exactly the nodes whose GPU the variant carries code for (simulated nodes with
NVIDIA GPU feature discovery's labels), every value is escaped, and the committed files match the spec.

Not checked here: a real cluster (none can run on these machines): whether GFD labels the nodes, whether the
image pulls and the pod becomes ready."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from sglang_matrix import cli, k8s, render  # noqa: F401  (cli registers the renderer)
from sglang_matrix.spec import load_spec
from sglang_matrix.variants import Variant, resolve_variants

K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# Kubernetes' own syntax for label values and DNS-1123 names (apimachinery validation).
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "matrix.toml")


@pytest.fixture(scope="module")
def variants(spec) -> list[Variant]:
    return resolve_variants(spec)


@pytest.fixture(scope="module")
def rendered(spec, variants) -> dict[str, list[dict[str, Any]]]:
    env = render.environment(ROOT)
    return {v.name: list(yaml.safe_load_all(k8s.manifests(spec, v, env))) for v in variants}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def schedulable(deployment: dict[str, Any], node_labels: dict[str, str]) -> bool:
    """Kubernetes' rule for requiredDuringScheduling node affinity: any term whose expressions all hold."""
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]

    def holds(expr: dict[str, Any]) -> bool:
        assert expr["operator"] == "In", expr
        return node_labels.get(expr["key"]) in expr["values"]

    return any(all(holds(e) for e in term["matchExpressions"]) for term in terms)


def gfd_node(capability: str, arch: str = "amd64") -> dict[str, str]:
    major, minor = capability.split(".")
    return {
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
        "kubernetes.io/arch": arch,
        "nvidia.com/gpu.present": "true",
    }


def test_every_variant_renders_five_documents(rendered, variants) -> None:
    assert len(rendered) == len(variants) > 100
    for name, docs in rendered.items():
        kinds = [d["kind"] for d in docs]
        assert kinds == ["Namespace", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service"], name


def test_manifests_are_schema_valid(spec, variants, rendered) -> None:
    # Every committed variant, and one variant of every (system, target) besides.
    sample = {v.name for v in k8s.committed(spec, variants)}
    sample |= {
        next(v.name for v in variants if (v.system, v.target) == key)
        for key in {(v.system, v.target) for v in variants}
    }
    for version in K8S_VERSIONS:
        for name in sorted(sample):
            for doc in rendered[name]:
                kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field(rendered) -> None:
    """The check above is a real one: strict validation fails on a field Kubernetes does not have."""
    deployment = copy.deepcopy(by_kind(rendered["sglang-sm90-avx512"], "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["startupProbee"] = container.pop("startupProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_affinity_admits_exactly_the_variants_capabilities(spec, variants, rendered) -> None:
    every_capability = sorted({c for t in spec.targets.values() for c in t.capabilities} | {"7.0", "12.1"})
    for v in variants:
        deployment = by_kind(rendered[v.name], "Deployment")
        arch = k8s.GOARCH[v.system]
        admitted = [c for c in every_capability if schedulable(deployment, gfd_node(c, arch))]
        assert admitted == sorted(v.capabilities, key=every_capability.index), v.name
        # Never on a node of the other CPU architecture, nor on a node GFD has not labelled.
        other = "arm64" if arch == "amd64" else "amd64"
        assert not any(schedulable(deployment, gfd_node(c, other)) for c in v.capabilities), v.name
        assert not schedulable(deployment, {"kubernetes.io/arch": arch}), v.name


def test_sm90_lands_on_hopper_only_and_all_on_each_of_its_capabilities(rendered, variants) -> None:
    sm90 = by_kind(rendered["sglang-sm90-avx512"], "Deployment")
    terms = sm90["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.compute.major", "operator": "In", "values": ["9"]},
                {"key": "nvidia.com/gpu.compute.minor", "operator": "In", "values": ["0"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            ]
        }
    ]
    assert not schedulable(sm90, gfd_node("8.6"))
    assert not schedulable(sm90, gfd_node("10.0"))
    fat = next(v for v in variants if v.name == "sglang-all-avx512")
    assert len(fat.capabilities) == 7
    deployment = by_kind(rendered[fat.name], "Deployment")
    assert all(schedulable(deployment, gfd_node(c)) for c in fat.capabilities)
    assert not schedulable(deployment, gfd_node("6.1"))


def test_deployment_runs_the_image_like_the_seed(spec, rendered) -> None:
    docs = rendered["sglang-sm90-avx512"]
    deployment = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "sglang-matrix/sglang-sm90-avx512:0.5.9"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # model loading time
    assert container["ports"] == [{"name": "http", "containerPort": 30000, "protocol": "TCP"}]
    assert container["envFrom"] == [{"configMapRef": {"name": "sglang-sm90-avx512-config"}}]
    (token,) = container["env"]
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "sglang-hf-token", "key": "token", "optional": True}},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1000
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/models"] == "models"
    assert by_kind(docs, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"] == "50Gi"
    service = by_kind(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 30000
    assert by_kind(docs, "ConfigMap")["data"] == {
        "SGLANG_MODEL": k8s.DEFAULT_MODEL,
        "SGLANG_HOST": "0.0.0.0",
        "SGLANG_PORT": "30000",
    }
    notes = deployment["metadata"]["annotations"]
    drivers = spec.cuda_drivers
    assert notes["sglang-matrix/driver-minimum"] == drivers.minimum["12"]
    assert notes["sglang-matrix/driver-full"] == drivers.full["12.8"]
    assert notes["sglang-matrix/capabilities"] == "9.0"


def test_names_and_labels_follow_kubernetes_syntax(rendered) -> None:
    for name, docs in rendered.items():
        for doc in docs:
            meta = doc["metadata"]
            assert DNS_1123.fullmatch(meta["name"]) and len(meta["name"]) <= 63, (name, meta["name"])
            for value in meta.get("labels", {}).values():
                assert LABEL_VALUE.fullmatch(value) and len(value) <= 63, (name, value)


def test_the_isa_label_of_a_variant_without_an_isa_is_any(variants, rendered) -> None:
    """0.5.23's variants have no ISA (torch is a prebuilt wheel): their label says `any`, others their ISA."""
    seen = set()
    for v in variants:
        labels = by_kind(rendered[v.name], "Deployment")["metadata"]["labels"]
        assert labels["sglang-matrix/isa"] == (v.isa.replace("_", "-") if v.isa else "any"), v.name
        seen.add(v.isa is None)
    assert seen == {True, False}
    proc = run_cli("k8s", "sglang-0_5_23-sm100-aarch64")
    assert proc.returncode == 0, proc.stderr
    deployment = by_kind(list(yaml.safe_load_all(proc.stdout)), "Deployment")
    assert deployment["metadata"]["labels"]["sglang-matrix/isa"] == "any"
    assert schedulable(deployment, gfd_node("10.0", "arm64"))
    assert not schedulable(deployment, gfd_node("10.0", "amd64"))
    annotations = deployment["metadata"]["annotations"]
    assert (annotations["sglang-matrix/cuda"], annotations["sglang-matrix/driver-minimum"]) == ("13.0", "580")


# ---- escaping --------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_scalar_round_trips_any_string(value: str) -> None:
    assert yaml.safe_load(f"key: {k8s.scalar(value)}") == {"key": value}


def test_scalar_refuses_what_it_cannot_write() -> None:
    assert k8s.scalar(True) == "true" and k8s.scalar(3) == "3"
    with pytest.raises(TypeError):
        k8s.scalar(None)
    with pytest.raises(TypeError):
        k8s.scalar(1.5)


def test_a_hostile_model_name_stays_one_value(spec, variants) -> None:
    model = 'evil"\n  injected: true # x: {a: b}\\ ümlaut \u2028 ok'
    v = next(v for v in variants if v.name == "sglang-sm90-avx512")
    text = k8s.manifests(spec, v, render.environment(ROOT), k8s.Options(model=model))
    config = by_kind(list(yaml.safe_load_all(text)), "ConfigMap")
    assert config["data"]["SGLANG_MODEL"] == model
    assert "injected" not in config["data"]


# ---- the command and the committed files -----------------------------------------------------------------


def test_committed_files_match_the_spec(spec, variants) -> None:
    planned = k8s.render_k8s(spec, variants, render.environment(ROOT))
    # One file per GPU target of the default variant's Python, CUDA, system and ISA; and of the 0.5.23 line
    # (no ISA) one per target of its own default Python and CUDA on that system.
    default = next(v for v in variants if v.name == spec.default_variant)
    same = [
        v
        for v in variants
        if (v.python, v.cuda, v.system, v.isa) == (default.python, default.cuda, default.system, default.isa)
    ]
    new = [
        v
        for v in variants
        if (v.line, v.python, v.cuda, v.system, v.isa) == ("0.5.23", "3.12", "13.0", default.system, None)
    ]
    assert sorted(planned) == sorted(k8s.k8s_file(v) for v in same + new)
    assert len(planned) == len({v.target for v in same}) + len({v.target for v in new}) == 9 + 8
    for path, content in planned.items():
        assert (ROOT / path).read_text(encoding="utf-8") == content, (
            f"{path} drifted: run `sglang-matrix render`"
        )
        assert render.is_generated(ROOT / path)
    on_disk = {p.relative_to(ROOT) for p in (ROOT / k8s.K8S_DIR).glob("*.yaml")}
    assert on_disk == set(planned), "deploy/k8s/ holds a file the spec no longer produces"


def test_render_writes_the_manifests() -> None:
    assert k8s.render_k8s in render.EXTRA_RENDERERS


def test_command_prints_the_committed_manifests_and_refuses_bad_input() -> None:
    proc = run_cli("k8s", "sglang-sm90-avx512")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "deploy" / "k8s" / "sglang-sm90-avx512.yaml").read_text()
    proc = run_cli("k8s", "sglang-python313-cuda12_9-sm103-avx2", "--gpus", "4", "--image", "r.example/x:1")
    docs = list(yaml.safe_load_all(proc.stdout))
    container = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "r.example/x:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert by_kind(docs, "ConfigMap")["data"]["SGLANG_TP_SIZE"] == "4"
    for args, needle in (
        (("k8s", "sglang-sm91-avx512"), "no such variant"),
        (("k8s", "sglang-sm90-avx512", "--namespace", "Bad_NS"), "DNS-1123"),
        (("k8s", "sglang-sm90-avx512", "--gpus", "0"), "--gpus"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, args
        assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert run_cli("k8s", "--help").returncode == 0


def test_k8s_dir_is_under_deploy() -> None:
    assert Path("deploy") / "k8s" == k8s.K8S_DIR
