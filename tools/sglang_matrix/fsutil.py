"""Small file helpers: atomic writes, a lock on the tree, stray temp files, the repository root, the cache.

Interruption loses nothing: a file is replaced by a rename of a complete temp file, with SIGINT, SIGTERM
and SIGHUP held back while the temp file exists (delivered as soon as it is renamed or removed), and it
keeps the mode the file had. What no handler can catch (SIGKILL, a power cut) may leave a temp file:
`stray_temps` finds those by their name (`.NAME.RANDOM.tmp` beside NAME), `render --check` reports them
and `render` removes them, under `tree_lock` so that it never takes a running writer's file for one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import os
import re
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

SPEC_NAME = "matrix.toml"
# The signals that end a command from the terminal or a service manager; held back while a write is open.
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# `.NAME.RANDOM.tmp`: write_atomic's temp files (RANDOM: 16 hex digits; mkstemp's 8 characters before).
_TEMP_NAME = re.compile(r"\.(.+)\.[A-Za-z0-9_]+\.tmp")


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP for the block, then deliver the first that came, as it would
    have been (KeyboardInterrupt for SIGINT, death by the signal where its handler is the default).

    Python runs signal handlers in the main thread only, so this works whatever other threads (a rich
    progress display) are doing; outside the main thread it cannot install handlers and does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        pending.append(signum)

    previous = {}
    try:
        for signum in DEFERRED_SIGNALS:
            previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if pending:
            _redeliver(pending[0], previous.get(pending[0]))


def _redeliver(signum: int, handler: object) -> None:
    if handler is signal.SIG_IGN:
        return
    if callable(handler):
        handler(signum, None)  # Python's default SIGINT handler raises KeyboardInterrupt
        return
    os.kill(os.getpid(), signum)  # the default action: the process ends by this signal
    raise SystemExit(128 + signum)  # (only if it did not end at once)


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode the written file gets: the existing file's, else 0666 less the umask (as open() gives)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"


def write_atomic(path: Path, text: str) -> bool:
    """Write text to path through a temp file and a rename; return False when it was already so.

    The file keeps its mode (a new one gets 0666 less the umask); a symbolic link is followed, so the link
    stays and its target is replaced. No temp file outlives the call: signals wait until it is renamed or
    removed, and any error removes it. An OSError (no space, no permission) is a one-line UserError."""
    try:
        return _write_atomic(path, text)
    except OSError as err:
        raise UserError(f"{path}: cannot write: {err.strerror or err}") from None


def _write_atomic(path: Path, text: str) -> bool:
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    with deferred_signals():
        mode = _mode_for(path)
        while True:
            tmp = temp_name(path)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue  # another writer's name (16 random hex digits): draw again
            break
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return True


def stray_temps(directory: Path, pattern: str) -> list[Path]:
    """Temp files write_atomic left in `directory` for files whose name matches the glob `pattern` (only a
    process killed outright leaves one): `.NAME.RANDOM.tmp`, RANDOM being letters, digits or `_`."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if match and fnmatch.fnmatchcase(match.group(1), pattern):
            found.append(directory / name)
    return sorted(found)


def remove_stray_temps(directory: Path, pattern: str) -> list[Path]:
    removed = stray_temps(directory, pattern)
    for stray in removed:
        stray.unlink(missing_ok=True)  # another cleaner may have been first
    return removed


@contextlib.contextmanager
def tree_lock(root: Path, shared: bool = False) -> Iterator[None]:
    """An advisory lock on the repository (flock on its directory: nothing is written for it).

    Commands that write generated files take it exclusively, `--check` shared: two renders (or a render and
    a lock) run one after the other instead of deleting each other's files or temp files."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise UserError(f"{root}: cannot open the repository: {err.strerror}") from None
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"sglang-matrix: waiting for another sglang-matrix command in {root}", file=sys.stderr)
                fcntl.flock(fd, mode)
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise UserError(f"{root}: cannot lock the repository: {err.strerror}") from None
            print(f"sglang-matrix: {root}: file locking unsupported here; not locked", file=sys.stderr)
        yield
    finally:
        os.close(fd)  # releases the lock


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` that holds matrix.toml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / SPEC_NAME).is_file():
            return candidate
    raise UserError(f"{SPEC_NAME}: not found in {here} or any parent directory (use --root)")


def cache_dir(*parts: str) -> Path:
    base = os.environ.get("SGLANG_MATRIX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sglang-matrix"
    )
    return Path(base, *parts)
