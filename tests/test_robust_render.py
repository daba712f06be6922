"""Issue 12 part 3 for `render`: interruption, concurrency and permissions lose nothing.

Each test runs the real command as a subprocess and interrupts it for real: a wrapper holds it at the
exact moment named (a temp file written, not yet renamed; a stale file about to be deleted), then the test
sends the signal or starts the second render."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, slow_rename
from sglang_matrix.render import GENERATED_MARK, README_BEGIN, README_END, planned_files
from sglang_matrix.spec import load_spec

VARIANTS = Path("pkgs") / "variants"
SM90 = VARIANTS / "sglang-python312-cuda12_8-sm90-avx512.nix"

# Runs `sglang-matrix ARGS...` with os.replace slowed down: when the first temp file is about to be renamed
# into place, it writes that temp file's name to READY and sleeps SECONDS (the window a signal hits).
SLOW_RENAME = slow_rename('str(src).endswith(".tmp")')

# Runs `sglang-matrix ARGS...` so that its first deletion of a generated .nix file waits (up to SECONDS)
# until the other render given the same BARRIER directory reaches its own first deletion.
DELETE_TOGETHER = r"""
import pathlib, sys, time
barrier, me, seconds = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
real = pathlib.Path.unlink
def unlink(self, *args, **kwargs):
    if self.suffix == ".nix" and not (barrier / me).exists():
        (barrier / me).touch()
        deadline = time.monotonic() + seconds
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    return real(self, *args, **kwargs)
pathlib.Path.unlink = unlink
from sglang_matrix.cli import main
sys.argv = ["sglang-matrix", *sys.argv[4:]]
main()
"""


def start(code: str, *args: str, umask: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended before the moment: {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the command never reached the moment")
        time.sleep(0.02)


def read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def temp_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob(".*.tmp"))


def change_sm90_gpus(project: Path) -> None:
    """An edit that rewrites the sm90 variant files (their comment names the GPUs) and the README."""
    spec = project / "matrix.toml"
    text = spec.read_text(encoding="utf-8")
    assert 'gpus = ["H100", "H200"]' in text
    spec.write_text(
        text.replace('gpus = ["H100", "H200"]', 'gpus = ["H100", "H200", "H20"]'), encoding="utf-8"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"])
def test_a_signal_between_temp_file_and_rename_leaves_no_temp_file(
    project: Path, tmp_path: Path, signum: int
) -> None:
    change_sm90_gpus(project)
    planned = planned_files(load_spec(project / "matrix.toml"), project)
    before = {rel: read(project / rel) for rel in planned}
    assert sum(before[rel] != content for rel, content in planned.items()) > 2
    ready = tmp_path / "ready"
    proc = start(SLOW_RENAME, str(ready), "4", "--root", str(project), "render")
    wait_for(ready, proc)
    assert Path(ready.read_text()).exists()  # the moment: a temp file written, not yet renamed
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err
    assert temp_files(project) == []
    for rel, content in planned.items():  # every file whole: as it was, or as the spec now says
        assert read(project / rel) in (before[rel], content), rel
    assert run_cli("--root", str(project), "render").returncode == 0
    assert run_cli("--root", str(project), "render", "--check").returncode == 0


def test_check_reports_a_stray_temp_file_and_render_removes_it(project: Path) -> None:
    """What a process killed outright (SIGKILL, power loss) may leave: --check reports it, render removes it;
    a file of the same shape beside a hand-written file is not ours and stays."""
    strays = [
        VARIANTS / f".{SM90.name}.ab12cd34.tmp",
        VARIANTS / ".sglang-python399-gone.nix.0123456789abcdef.tmp",
        Path(".README.md.q1w2e3r4.tmp"),
        Path(".github") / "workflows" / ".matrix.yml.zz_9_yy8.tmp",
    ]
    for rel in strays:
        (project / rel).write_text("half a file")
    mine = project / "docs" / ".notes.md.ab12cd34.tmp"
    mine.parent.mkdir()
    mine.write_text("not render's")
    check = run_cli("--root", str(project), "render", "--check")
    assert check.returncode == 1
    assert sorted(line for line in check.stdout.splitlines() if line.startswith("stray: ")) == sorted(
        f"stray: {rel}" for rel in strays
    )
    fixed = run_cli("--root", str(project), "render")
    assert fixed.returncode == 0, fixed.stderr
    assert not any((project / rel).exists() for rel in strays) and mine.exists()
    assert run_cli("--root", str(project), "render", "--check").returncode == 0


def test_two_renders_at_once_both_succeed(project: Path, tmp_path: Path) -> None:
    """Both renders reach the deletion of the same stale files at the same moment (a barrier holds the
    first until the second arrives, or 4 s): neither may fail, and the tree ends clean."""
    template = (project / SM90).read_text(encoding="utf-8")
    assert GENERATED_MARK in template
    for i in range(20):
        (project / VARIANTS / f"sglang-python399-cuda99_{i}-gone.nix").write_text(template)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [start(DELETE_TOGETHER, str(barrier), me, "4", "--root", str(project), "render") for me in "ab"]
    results = [(proc.wait(timeout=300), *proc.communicate()) for proc in procs]
    for code, out, err in results:
        assert code == 0, (out, err)
    deleted = [line for _, out, _ in results for line in out.splitlines() if line.startswith("deleted ")]
    assert len(deleted) == 20  # each stale file deleted once, by one of them
    assert not list((project / VARIANTS).glob("sglang-python399-*"))
    assert run_cli("--root", str(project), "render", "--check").returncode == 0


def test_rewritten_files_keep_their_mode_and_new_ones_follow_the_umask(project: Path) -> None:
    change_sm90_gpus(project)
    kept = {SM90: 0o640, Path("README.md"): 0o604}
    for rel, mode in kept.items():
        (project / rel).chmod(mode)
    fresh = VARIANTS / "sglang-python312-cuda12_8-sm90-avx2.nix"
    (project / fresh).unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_matrix", "--root", str(project), "render"],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o027),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for rel in (SM90, Path("README.md"), fresh):
        assert f"wrote {rel}" in proc.stdout
    for rel, mode in kept.items():
        assert (project / rel).stat().st_mode & 0o7777 == mode, rel
    assert (project / fresh).stat().st_mode & 0o7777 == 0o640  # 0666 less the umask 027


def test_text_that_looks_like_the_readme_markers_stays_text(project: Path) -> None:
    """A reason holding the README's end marker and a GPU name with a pipe: the table keeps its columns and
    its place, and a second render finds nothing to change."""
    spec = project / "matrix.toml"
    text = spec.read_text(encoding="utf-8")
    text = text.replace(
        'reason = "Pascal-era hosts (Xeon E5 v4)',
        f'reason = "{README_END} `x` | *y* <b>z</b> Pascal-era hosts (Xeon E5 v4)',
    )
    text = text.replace('gpus = ["H100", "H200"]', 'gpus = ["H100 | SXM", "H200 ${x} \\"q\\""]')
    spec.write_text(text, encoding="utf-8")
    first = run_cli("--root", str(project), "render")
    assert first.returncode == 0, first.stderr
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert readme.count(README_END) == 1
    assert "H100 \\| SXM" in readme and "&lt;!-- END sglang-matrix variants --&gt;" in readme
    tables: list[list[int]] = [[]]
    section = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    for row in section.splitlines():
        if row.startswith("|"):
            tables[-1].append(row.replace("\\|", "").count("|"))
        elif tables[-1]:
            tables.append([])
    tables = [t for t in tables if t]
    # 0.5.23: 4 tables (its Pythons and systems), 0.5.9: 6; columns as in each header.
    assert len(tables) == 10 and all(len(set(t)) == 1 for t in tables), tables
    again = run_cli("--root", str(project), "render", "--check")
    assert again.returncode == 0, again.stdout
