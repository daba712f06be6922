"""Issue 12 part 3 for `lock`: an interrupted `lock --upgrade` leaves matrix.toml and pkgs/sources.json as
they were (or both updated, never one without the other); rewritten files keep their mode; a malformed
sources.json is one line, exit 2.

Downloads are real subprocesses of a stand-in pip: a `pip` package first on PYTHONPATH, which
`python -m pip download` runs instead of pip. It records its pid, sleeps as long as FAKE_PIP_SLEEP says
(the moment a user presses Ctrl-C) and then writes the wheel it was asked for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, slow_rename
from sglang_matrix.lockfile import LOCK_PATH, read_lock

FAKE_PIP = r"""
import json, os, pathlib, sys, time, zipfile
args = sys.argv[1:]
assert args[0] == "download", args
dest = pathlib.Path(args[args.index("-d") + 1])
name, version = args[-1].split("==")
pathlib.Path(os.environ["FAKE_PIP_MARKER"]).write_text(json.dumps({"pid": os.getpid(), "req": args[-1]}))
time.sleep(float(os.environ.get("FAKE_PIP_SLEEP", "0")))
with zipfile.ZipFile(dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
    wheel.writestr(f"{name}/__init__.py", "# a stand-in for the real wheel\\n")
"""

# `sglang-matrix ARGS...` with os.replace slowed down at the first rename into matrix.toml: it writes
# READY and sleeps SECONDS there (the moment between writing the spec and writing the lock).
SLOW_SPEC_RENAME = slow_rename('str(dst).endswith("matrix.toml")')

UPGRADE = ("lock", "--upgrade", "sglang==0.5.10", "--line", "0.5.9")


@pytest.fixture
def fake_pip(tmp_path: Path) -> dict[str, str]:
    """The environment that puts the stand-in pip first, with a marker file it writes when it starts."""
    pkg = tmp_path / "fake-pip" / "pip"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_PIP)
    path = [str(pkg.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "FAKE_PIP_MARKER": str(tmp_path / "pip-started"),
        "FAKE_PIP_SLEEP": "0",
    }


def files(project: Path) -> dict[str, tuple[bytes, int]]:
    return {
        name: ((project / name).read_bytes(), (project / name).stat().st_mode & 0o7777)
        for name in ("matrix.toml", str(LOCK_PATH))
    }


def temp_files(tree: Path) -> list[Path]:
    return sorted(tree.rglob(".*.tmp"))


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


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_interrupted_upgrade_changes_neither_file(
    project: Path, tmp_path: Path, fake_pip: dict[str, str], signum: int
) -> None:
    before = files(project)
    env = {**fake_pip, "FAKE_PIP_SLEEP": "60"}
    cmd = [
        sys.executable,
        "-m",
        "sglang_matrix",
        "--root",
        str(project),
        *UPGRADE,
        "--cache",
        str(tmp_path / "c"),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = Path(fake_pip["FAKE_PIP_MARKER"])
    wait_for(marker, proc)  # the moment: pip is downloading
    pip = json.loads(marker.read_text())
    assert pip["req"] == "sglang==0.5.10"
    try:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        kill_quietly(pip["pid"])
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err
    assert files(project) == before  # neither the spec nor the lock moved
    assert temp_files(project) == []
    assert not list((tmp_path / "c").glob("sglang-*.whl"))  # no partial wheel under its name in the cache
    assert run_cli("--root", str(project), "lock", "--check").returncode == 0


def test_a_signal_between_the_two_writes_is_held_until_both_are_done(
    project: Path, tmp_path: Path, fake_pip: dict[str, str]
) -> None:
    ready = tmp_path / "ready"
    args = [str(ready), "1.5", "--root", str(project), *UPGRADE, "--cache", str(tmp_path / "c")]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SPEC_RENAME, *args],
        env=fake_pip,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(ready, proc)  # the moment: the new spec is about to replace matrix.toml
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, (out, err)  # it still ends by the signal, afterwards
    assert 'version = "0.5.10"' in (project / "matrix.toml").read_text()
    assert "sglang-0.5.10-py3-none-any.whl" in read_lock(project)["wheels"]
    assert temp_files(project) == []
    assert run_cli("--root", str(project), "lock", "--check").returncode == 0


def test_upgrade_writes_both_files_and_keeps_their_modes(
    project: Path, tmp_path: Path, fake_pip: dict[str, str]
) -> None:
    (project / "matrix.toml").chmod(0o640)
    (project / LOCK_PATH).chmod(0o604)
    spec_before = (project / "matrix.toml").read_text()
    proc = run_cli("--root", str(project), *UPGRADE, "--cache", str(tmp_path / "c"), env=fake_pip)
    assert proc.returncode == 0, proc.stderr
    spec_after = (project / "matrix.toml").read_text()
    assert spec_after.replace('version = "0.5.10"', 'version = "0.5.9"', 1) == spec_before
    lock = read_lock(project)["wheels"]
    assert "sglang-0.5.10-py3-none-any.whl" in lock and "sglang-0.5.9-py3-none-any.whl" not in lock
    assert (project / "matrix.toml").stat().st_mode & 0o7777 == 0o640
    assert (project / LOCK_PATH).stat().st_mode & 0o7777 == 0o604
    assert run_cli("--root", str(project), "lock", "--check").returncode == 0


SGLANG = "sglang-0.5.9-py3-none-any.whl"


def set_entry(value: object):
    def change(data: dict) -> None:
        data["wheels"][SGLANG] = value

    return change


def set_field(name: str, value: object):
    def change(data: dict) -> None:
        data["wheels"][SGLANG][name] = value

    return change


MALFORMED = [
    pytest.param(
        set_entry("sha256-abc"), rf"wheels\.\"{SGLANG}\" = 'sha256-abc': must be a table", id="string"
    ),
    pytest.param(set_entry(["a", 1]), r"= \['a', 1\]: must be a table", id="list"),
    pytest.param(set_entry(None), r"= None: must be a table", id="null"),
    pytest.param(set_field("size", "5MB"), r"\.size = '5MB': must be an integer or null", id="size-string"),
    pytest.param(set_field("prunable", [1]), r"\.prunable = \[1\]: must be a table", id="prunable-list"),
    pytest.param(
        set_field("prunable", {"x": "big"}), r"\.prunable\.x = 'big': must be an integer", id="prune-size"
    ),
    pytest.param(set_field("hash", 7), r"\.hash = 7: must be a string", id="hash-number"),
    pytest.param(set_field("verified", 1), r"\.verified = 1: must be true or false", id="verified-number"),
    pytest.param(
        lambda data: data.__setitem__("wheels", []), r"wheels = \[\]: must be a table", id="wheels-list"
    ),
]


@pytest.mark.parametrize(("change", "message"), MALFORMED)
def test_malformed_sources_json_is_one_line(project: Path, tmp_path: Path, change, message: str) -> None:
    import re

    path = project / LOCK_PATH
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    for args in (
        ["lock", "--check"],
        ["show", "sglang-sm90-avx512"],
        ["lock", "--cache", str(tmp_path / "c")],
    ):
        proc = run_cli("--root", str(project), *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("sglang-matrix: pkgs/sources.json: "), (args, lines)
        assert re.search(message, lines[0]), lines[0]


def test_sources_json_that_is_a_directory_is_one_line(project: Path, tmp_path: Path) -> None:
    path = project / LOCK_PATH
    path.unlink()
    path.mkdir()
    for args in (
        ["lock", "--check"],
        ["show", "sglang-sm90-avx512"],
        ["lock", "--cache", str(tmp_path / "c")],
    ):
        proc = run_cli("--root", str(project), *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.splitlines()
        assert lines == ["sglang-matrix: pkgs/sources.json: cannot read: Is a directory"], (args, lines)
    assert path.is_dir() and not list(path.iterdir())


def test_lock_check_reports_a_stray_temp_file_and_lock_removes_it(
    project: Path, tmp_path: Path, fake_pip: dict[str, str]
) -> None:
    """A temp file of a lock killed outright (SIGKILL) beside sources.json or matrix.toml."""
    strays = [LOCK_PATH.parent / ".sources.json.0123456789abcdef.tmp", Path(".matrix.toml.k9j8h7g6.tmp")]
    for rel in strays:
        (project / rel).write_text("half a file")
    check = run_cli("--root", str(project), "lock", "--check")
    assert check.returncode == 1
    for rel in strays:
        assert f"{rel}: a temp file an interrupted writer left" in check.stdout
    proc = run_cli("--root", str(project), *UPGRADE, "--cache", str(tmp_path / "c"), env=fake_pip)
    assert proc.returncode == 0, proc.stderr
    assert temp_files(project) == []
    assert run_cli("--root", str(project), "lock", "--check").returncode == 0
