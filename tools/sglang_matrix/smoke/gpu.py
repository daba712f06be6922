"""The GPU checks of `sglang-matrix smoke`: each runs inside RESULT's interpreter, in its own process.

* `gpu:matmul`: a float32 matmul on CUDA against the same on the CPU;
* `gpu:flashinfer`: FlashInfer's rmsnorm against a torch reference;
* `gpu:sgl-kernel`: sgl-kernel's silu_and_mul against a torch reference;
* `gpu:server`: a tiny random-weight Llama checkpoint is written locally (transformers, and a WordLevel
  tokenizer trained on a few sentences, with a chat template: nothing is downloaded), RESULT/bin/sglang-serve
  serves it on 127.0.0.1 and a free port, and /generate, /v1/completions and /v1/chat/completions are
  called, plain and streamed (SSE until `[DONE]`); then the server's process group is stopped (SIGTERM,
  then SIGKILL) and checked to be gone.

The model has hidden size 64, 2 layers and 4 heads of head_dim 64 (set explicitly, so that attention uses
the stock head size the prebuilt FlashInfer and FA3 kernels are compiled for), float16 weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .model import Check, failed, passed
from .run import Ran, clean_env, run_python, signal_name

KERNEL_TIMEOUT_S = 600
MODEL_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 120
STOP_GRACE_S = 30
HOST = "127.0.0.1"
SERVED_NAME = "smoke-llama"

MATMUL = """
import json, torch
torch.manual_seed(0)
a, b = torch.randn(512, 512), torch.randn(512, 512)
ref = a @ b
got = (a.cuda() @ b.cuda()).cpu()
diff = (got - ref).abs().max().item()
ok = bool(torch.allclose(got, ref, rtol=1e-3, atol=1e-3))
name = torch.cuda.get_device_name(0)
print(json.dumps({"ok": ok, "detail": "512x512 float32 on %s: max |cuda - cpu| = %.2e" % (name, diff)}))
"""

FLASHINFER = """
import json, torch, flashinfer
try:
    from flashinfer.norm import rmsnorm
except ImportError:
    rmsnorm = flashinfer.rmsnorm
torch.manual_seed(0)
x = torch.randn(8, 4096, dtype=torch.float16, device="cuda")
w = torch.randn(4096, dtype=torch.float16, device="cuda")
eps = 1e-6
out = rmsnorm(x, w, eps)
xf = x.float()
ref = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).half()
diff = (out.float() - ref.float()).abs().max().item()
ok = bool(torch.allclose(out, ref, rtol=1e-2, atol=1e-2))
version = getattr(flashinfer, "__version__", "?")
print(json.dumps({"ok": ok, "detail": "flashinfer %s rmsnorm 8x4096 fp16: max diff %.2e" % (version, diff)}))
"""

SGL_KERNEL = """
import json, torch, sgl_kernel
torch.manual_seed(0)
x = torch.randn(16, 2048, dtype=torch.float16, device="cuda")
out = sgl_kernel.silu_and_mul(x)
d = x.shape[-1] // 2
ref = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).half()
diff = (out.float() - ref.float()).abs().max().item()
ok = bool(torch.allclose(out, ref, rtol=1e-2, atol=1e-2))
version = getattr(sgl_kernel, "__version__", "?")
detail = "sgl_kernel %s silu_and_mul 16x2048 fp16: max diff %.2e" % (version, diff)
print(json.dumps({"ok": ok, "detail": detail}))
"""

MAKE_MODEL = """
import json, sys
from pathlib import Path
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = Path(sys.argv[1])
sentences = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a tiny model for a smoke test",
    "sglang serves language models fast on one gpu",
    "what is the capital of france ? paris is the capital",
    "user : hello ! assistant : hi , how can i help you today ?",
]
specials = ["<unk>", "<s>", "</s>", "<pad>"]
tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.train_from_iterator(sentences, trainers.WordLevelTrainer(special_tokens=specials))
fast = PreTrainedTokenizerFast(
    tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
)
fast.chat_template = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)
config = LlamaConfig(
    vocab_size=len(fast),
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=64,
    max_position_embeddings=1024,
    bos_token_id=fast.bos_token_id,
    eos_token_id=fast.eos_token_id,
    pad_token_id=fast.pad_token_id,
    tie_word_embeddings=False,
    torch_dtype="float16",
)
torch.manual_seed(0)
model = LlamaForCausalLM(config).half()
model.save_pretrained(out, safe_serialization=True)
fast.save_pretrained(out)
print(json.dumps({"ok": True, "detail": "vocab %d, %d parameters" % (len(fast), model.num_parameters())}))
"""

KERNELS = (
    ("gpu:matmul", "torch matmul on CUDA vs CPU", MATMUL),
    ("gpu:flashinfer", "FlashInfer rmsnorm vs torch", FLASHINFER),
    ("gpu:sgl-kernel", "sgl-kernel silu_and_mul vs torch", SGL_KERNEL),
)


def _outcome(cid: str, title: str, ran: Ran, timeout: int) -> Check:
    if ran.timed_out:
        return failed(cid, title, f"timed out after {timeout}s", ran.last_line() or None)
    if ran.rc < 0:
        return failed(cid, title, f"killed by {signal_name(ran.rc)}", ran.last_line() or None)
    info = ran.json()
    if ran.rc != 0 or not isinstance(info, dict):
        return failed(cid, title, ran.last_line() or f"exit status {ran.rc}")
    detail = str(info.get("detail", ""))
    return passed(cid, title, detail) if info.get("ok") else failed(cid, title, f"mismatch: {detail}")


def run_gpu_checks(
    result: Path, python: Path, device: int, server_timeout: int, say: Callable[[str], None]
) -> list[Check]:
    env = {"CUDA_VISIBLE_DEVICES": str(device)}
    checks = []
    for cid, title, code in KERNELS:
        say(title)
        checks.append(_outcome(cid, title, run_python(python, code, KERNEL_TIMEOUT_S, env), KERNEL_TIMEOUT_S))
    say("end-to-end server")
    checks.append(server_check(result, python, device, server_timeout))
    return checks


# ------------------------------------------------------------------------------------------------ server


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never a proxy


def http(
    url: str, payload: dict[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT_S
) -> tuple[int, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def sse_chunks(
    url: str, payload: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S
) -> tuple[list[Any], bool]:
    """The JSON chunks of a streamed response, and whether `data: [DONE]` ended it."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    chunks: list[Any] = []
    with _OPENER.open(request, timeout=timeout) as response:
        for raw in response:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue
            body = line[len("data:") :].strip()
            if body == "[DONE]":
                return chunks, True
            chunks.append(json.loads(body))
    return chunks, False


def _pgroup_members(pgid: int) -> list[int]:
    """Pids whose process group is `pgid` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def stop_group(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> tuple[bool, str]:
    """SIGTERM the process group, wait, SIGKILL what is left; (everything gone, what happened)."""
    pgid = proc.pid
    how = "SIGTERM"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _pgroup_members(pgid):
            break
        time.sleep(0.5)
    else:
        how = f"SIGTERM, then SIGKILL after {grace:.0f}s"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for _ in range(20):
        if not _pgroup_members(pgid):
            break
        time.sleep(0.5)
    left = _pgroup_members(pgid)
    if left:
        return False, f"{how}: processes {' '.join(map(str, left))} of group {pgid} are still running"
    return True, f"{how}: process group {pgid} is gone"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def exercise(base: str) -> list[str]:
    """Call every endpoint; return the problems (empty when all answered as expected)."""
    problems: list[str] = []
    sampling = {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True}

    def call(label: str, path: str, payload: dict[str, Any]) -> Any:
        try:
            status, body = http(base + path, payload)
        except (OSError, urllib.error.URLError) as err:
            problems.append(f"{label}: {err}")
            return None
        if status != 200:
            problems.append(f"{label}: HTTP {status}: {body[:200].decode(errors='replace')}")
            return None
        try:
            return json.loads(body)
        except ValueError:
            problems.append(f"{label}: not JSON: {body[:200].decode(errors='replace')}")
            return None

    got = call("/generate", "/generate", {"text": "hello world", "sampling_params": sampling})
    if got is not None:
        tokens = (got.get("meta_info") or {}).get("completion_tokens")
        if "text" not in got or tokens != 8:
            problems.append(f"/generate: expected text and 8 completion tokens, got {str(got)[:200]}")
    common = {"model": SERVED_NAME, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    completion = {**common, "prompt": "the quick brown fox"}
    chat = {**common, "messages": [{"role": "user", "content": "hello !"}]}
    got = call("/v1/completions", "/v1/completions", completion)
    if got is not None and not (got.get("choices") and "text" in got["choices"][0]):
        problems.append(f"/v1/completions: no choices[0].text in {str(got)[:200]}")
    got = call("/v1/chat/completions", "/v1/chat/completions", chat)
    if got is not None and not (got.get("choices") and "content" in (got["choices"][0].get("message") or {})):
        problems.append(f"/v1/chat/completions: no choices[0].message.content in {str(got)[:200]}")
    for label, path, payload in (
        ("/v1/completions stream", "/v1/completions", completion),
        ("/v1/chat/completions stream", "/v1/chat/completions", chat),
    ):
        try:
            chunks, done = sse_chunks(base + path, {**payload, "stream": True})
        except (OSError, urllib.error.URLError, ValueError) as err:
            problems.append(f"{label}: {err}")
            continue
        if not done:
            problems.append(f"{label}: the stream ended without data: [DONE] ({len(chunks)} chunks)")
        elif not any(isinstance(c, dict) and c.get("choices") for c in chunks):
            problems.append(f"{label}: no chunk with choices ({len(chunks)} chunks)")
    return problems


def server_check(result: Path, python: Path, device: int, timeout: int) -> Check:
    cid, title = "gpu:server", "sglang-serve end to end (tiny random Llama)"
    serve = result / "bin" / "sglang-serve"
    if not serve.is_file():
        return failed(cid, title, f"RESULT has no {serve.relative_to(result)}")
    work = Path(tempfile.mkdtemp(prefix="sglang-smoke-"))
    try:
        model = work / "model"
        ran = run_python(python, MAKE_MODEL, MODEL_TIMEOUT_S, args=[str(model)])
        made = _outcome(cid, title, ran, MODEL_TIMEOUT_S)
        if made.status != "passed":
            return failed(cid, title, f"cannot write the tiny checkpoint: {made.reason}", made.details)
        port = free_port()
        env = clean_env(
            {
                "SGLANG_MODEL": str(model),
                "SGLANG_HOST": HOST,
                "SGLANG_PORT": str(port),
                "SGLANG_SERVED_NAME": SERVED_NAME,
                "SGLANG_DISABLE_CUDA_GRAPH": "1",
                "SGLANG_EXTRA_ARGS": "--mem-fraction-static 0.3",
                "CUDA_VISIBLE_DEVICES": str(device),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
            }
        )
        log = work / "server.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [str(serve), "--no-env-file"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://{HOST}:{port}"
        problems: list[str] = []
        started = time.monotonic()
        try:
            ready = False
            while time.monotonic() - started < timeout:
                if proc.poll() is not None:
                    problems.append(
                        f"the server exited with status {proc.returncode} before /health answered"
                    )
                    break
                with contextlib.suppress(OSError, urllib.error.URLError):
                    status, _ = http(base + "/health", timeout=5)
                    if status == 200:
                        ready = True
                        break
                time.sleep(1)
            else:
                problems.append(f"/health did not answer 200 within {timeout}s")
            if ready:
                problems += exercise(base)
        finally:
            gone, stopped = stop_group(proc)
        if not gone:
            problems.append(stopped)
        waited = time.monotonic() - started
        if problems:
            return failed(cid, title, "; ".join(problems), {"stop": stopped, "log_tail": _tail(log)})
        return passed(
            cid,
            title,
            f"healthy, 5 calls answered (2 streamed to [DONE]) in {waited:.0f}s; {stopped}",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
