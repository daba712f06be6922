"""Kubernetes manifests per variant: namespace, models volume, settings, Deployment and Service.

`sglang-matrix k8s VARIANT` prints them for any variant; `sglang-matrix render` writes
deploy/k8s/<variant>.yaml for the committed variants (`committed` below) and `render --check` catches drift,
like every generated file (this module registers its renderer with render.EXTRA_RENDERERS on import).

The pod runs the variant's OCI image (pkgs/image.nix: `nix build .#<variant>-image`, pushed to a registry
of yours; IMAGE_REPOSITORY and the sglang version make its default name) and lands only on a node whose
GPU it carries code for: NVIDIA's GPU feature discovery labels each GPU node with its compute capability,
`nvidia.com/gpu.compute.major` and `nvidia.com/gpu.compute.minor`, and the Deployment requires one of the
variant's capabilities (one node-selector term per capability: terms are alternatives, the expressions of
one term all hold), and the variant's CPU architecture (`kubernetes.io/arch`). The `sglang-matrix/isa` label
is the variant's ISA, or `any` for a variant without one (its torch is a prebuilt wheel: any CPU of its
system runs it).

Every value that reaches YAML goes through `scalar`, the template environment's finalize: strings come out
double-quoted and escaped, integers and booleans bare, and nothing else is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import jinja2

from . import render
from .context import Context, one_line_errors, pass_ctx
from .errors import UserError
from .spec import Spec
from .variants import Variant, find_variant

K8S_DIR = Path("deploy") / "k8s"
TEMPLATE = "k8s/manifests.yaml.j2"
IMAGE_REPOSITORY = "sglang-matrix"  # pkgs/image.nix names the image "sglang-matrix/<variant>"
NAMESPACE = "sglang"
PORT = 30000
UID = 1000  # the image's user (pkgs/image.nix)
STORAGE = "50Gi"
HF_SECRET = "sglang-hf-token"
DEFAULT_MODEL = "microsoft/Phi-4-mini-instruct-FP8-TORCHAO"  # sglang-serve's own default
STARTUP_FAILURES = 60  # x 10 s: the seed's 10 minutes
GFD_MAJOR = "nvidia.com/gpu.compute.major"
GFD_MINOR = "nvidia.com/gpu.compute.minor"
ARCH_LABEL = "kubernetes.io/arch"
GOARCH = {"x86_64-linux": "amd64", "aarch64-linux": "arm64"}
LABEL_PREFIX = "sglang-matrix/"
ANY_CPU = "any"  # the isa label of a variant without an ISA (pkgs/image.nix says the same)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def scalar(value: Any) -> str:
    """The one way a value reaches the YAML: a YAML 1.1/1.2 double-quoted scalar for a string (quotes,
    backslashes and every character outside printable ASCII escaped), bare for an int or a bool."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"k8s: {value!r} ({type(value).__name__}) cannot go into a manifest")
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class Options:
    """What a user may change from the command line (the committed files use the defaults)."""

    image: str | None = None
    model: str = DEFAULT_MODEL
    gpus: int = 1
    namespace: str = NAMESPACE
    hf_secret: str = HF_SECRET


def app_name(v: Variant) -> str:
    """A DNS-1123 name for the variant's resources (`_` is not allowed there: armv8_2 -> armv8-2)."""
    return v.name.replace("_", "-")


def isa_label(v: Variant) -> str:
    """The variant's ISA as a label value (`_` is allowed there, but armv8-2 reads as the other names do);
    `any` for a variant without an ISA."""
    return v.isa.replace("_", "-") if v.isa is not None else ANY_CPU


def image_ref(v: Variant) -> str:
    """The image's default name: what `nix build .#<variant>-image` streams (pkgs/image.nix's name, tag)."""
    return f"{IMAGE_REPOSITORY}/{v.name}:{v.versions['sglang']}"


def affinity_terms(v: Variant) -> list[list[dict[str, Any]]]:
    """One node-selector term per capability the variant carries: GPU major and minor, and the CPU arch."""
    arch = GOARCH.get(v.system)
    if arch is None:
        raise UserError(f"{K8S_DIR}: no Kubernetes architecture for system {v.system!r} (variant {v.name})")
    terms = []
    for capability in v.capabilities:
        major, minor = capability.split(".")
        terms.append(
            [
                {"key": GFD_MAJOR, "values": [major]},
                {"key": GFD_MINOR, "values": [minor]},
                {"key": ARCH_LABEL, "values": [arch]},
            ]
        )
    return terms


def min_driver(spec: Spec, v: Variant) -> tuple[str | None, str | None]:
    """[cuda-drivers]: the oldest driver for the variant's CUDA major, and its release's full driver."""
    drivers = spec.cuda_drivers
    if drivers is None:
        return None, None
    return drivers.minimum.get(v.cuda.split(".")[0]), drivers.full.get(v.cuda)


def context(spec: Spec, v: Variant, options: Options) -> dict[str, Any]:
    minimum, full = min_driver(spec, v)
    settings = {
        "SGLANG_MODEL": options.model,
        "SGLANG_HOST": "0.0.0.0",
        "SGLANG_PORT": str(PORT),
    }
    if options.gpus > 1:
        settings["SGLANG_TP_SIZE"] = str(options.gpus)
    annotations = {
        LABEL_PREFIX + "capabilities": " ".join(v.capabilities),
        LABEL_PREFIX + "cuda": v.cuda,
        LABEL_PREFIX + "driver-minimum": minimum or "",
        LABEL_PREFIX + "driver-full": full or "",
    }
    return {
        "app": app_name(v),
        "namespace": options.namespace,
        "storage": STORAGE,
        "settings": sorted(settings.items()),
        "variant_labels": [
            (LABEL_PREFIX + "variant", v.name),
            (LABEL_PREFIX + "target", v.target),
            (LABEL_PREFIX + "isa", isa_label(v)),
        ],
        "annotations": sorted(annotations.items()),
        "uid": UID,
        "terms": affinity_terms(v),
        "image": options.image or image_ref(v),
        "secret": options.hf_secret,
        "port": PORT,
        "gpus": options.gpus,
        "startup_failures": STARTUP_FAILURES,
        "startup_minutes": STARTUP_FAILURES * 10 // 60,
    }


def _environment(env: jinja2.Environment) -> jinja2.Environment:
    """The render environment's templates, with `scalar` as finalize: no value leaves unescaped."""
    return jinja2.Environment(
        loader=env.loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=scalar,
    )


def manifests(spec: Spec, v: Variant, env: jinja2.Environment, options: Options | None = None) -> str:
    try:
        body = _environment(env).get_template(TEMPLATE).render(**context(spec, v, options or Options()))
    except jinja2.TemplateError as err:
        raise UserError(f"templates/{TEMPLATE}: {err.__class__.__name__}: {err}") from None
    about = f"# Variant {v.name} ({v.long_name}): `sglang-matrix k8s {v.name}` prints it."
    return f"# {render.HEADER}\n{about}\n{body}"


def committed(spec: Spec, variants: list[Variant]) -> list[Variant]:
    """The variants with a file in deploy/k8s/: every target of the default variant's Python, CUDA, system
    and ISA (one per GPU family), and of every other release line every target of its own default Python
    and CUDA on that system, with the same ISA or, on a line without ISAs, none; `sglang-matrix k8s
    VARIANT` prints the manifests of any other."""
    default = next((v for v in variants if spec.default_variant in (v.name, v.long_name)), None)
    if default is None:
        return []

    def chosen(v: Variant) -> bool:
        line = spec.lines[v.line]
        isa = default.isa if line.isas else None
        return (v.python, v.cuda, v.system, v.isa) == (line.python, line.cuda, default.system, isa)

    same = (default.line, default.python, default.cuda, default.system, default.isa)
    return [
        v
        for v in variants
        if (v.line, v.python, v.cuda, v.system, v.isa) == same or (v.line != default.line and chosen(v))
    ]


def k8s_file(v: Variant) -> Path:
    return K8S_DIR / f"{v.name}.yaml"


def render_k8s(spec: Spec, variants: list[Variant], env: jinja2.Environment) -> dict[Path, str]:
    try:
        env.get_template(TEMPLATE)
    except jinja2.TemplateNotFound:
        return {}  # a checkout without the template (a test's cut-down copy) renders no manifests
    return {k8s_file(v): manifests(spec, v, env) for v in committed(spec, variants)}


@click.command("k8s")
@click.argument("variant")
@click.option("--image", help="Image reference to run [default: sglang-matrix/<variant>:<sglang version>].")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="SGLANG_MODEL in the ConfigMap.")
@click.option(
    "--gpus",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="GPUs per pod (nvidia.com/gpu); more than one also sets SGLANG_TP_SIZE.",
)
@click.option("--namespace", default=NAMESPACE, show_default=True, help="Namespace of every resource.")
@click.option(
    "--hf-secret", default=HF_SECRET, show_default=True, help="Secret whose key `token` becomes HF_TOKEN."
)
@pass_ctx
@one_line_errors
def k8s(
    ctx: Context, variant: str, image: str | None, model: str, gpus: int, namespace: str, hf_secret: str
) -> None:
    """Print the Kubernetes manifests of VARIANT (namespace, volume, ConfigMap, Deployment, Service)."""
    spec = ctx.spec
    v = find_variant(spec, variant)
    if v is None:
        raise UserError(f"variant {variant!r}: no such variant (see `sglang-matrix list`)")
    for name, value in (("--namespace", namespace), ("--hf-secret", hf_secret)):
        if not _DNS_LABEL.fullmatch(value):
            raise UserError(f"{name} {value!r}: must be a DNS-1123 label (lowercase letters, digits, '-')")
    options = Options(image=image, model=model, gpus=gpus, namespace=namespace, hf_secret=hf_secret)
    click.echo(manifests(spec, v, render.environment(ctx.root), options), nl=False)


if render_k8s not in render.EXTRA_RENDERERS:
    render.EXTRA_RENDERERS.append(render_k8s)
