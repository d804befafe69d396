"""Every file clipscope writes goes through here: atomic replacement, exclusive locks, and
one-line errors for a full or read-only disk.

- :func:`atomic_path` yields a temporary name in the target's folder; the caller writes it
  (h5py, matplotlib, text), and on success it is fsynced and moved over the target with
  ``os.replace``. A reader therefore sees the old file or the new one, never half of one; on any
  failure the temporary file is removed and the target is untouched. The result gets the
  permissions a plain ``open()`` would give (``0o666`` less the umask), not ``mkstemp``'s 0600.
- :func:`exclusive` takes an advisory lock (``fcntl.flock``) on ``<target>.lock`` for the whole
  of a read-modify-write, so two processes writing one cache (two ``extract`` runs, two analyses
  extracting into the content-keyed cache, ``invert`` adding datasets) take turns instead of
  mixing rows. The kernel drops the lock when a process dies, so a killed writer never leaves a
  held lock behind, and a clean release removes the lock file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

from clipscope.errors import ClipscopeError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Test hook: CLIPSCOPE_FAULT=<point>:<n> kills the process (SIGKILL) at the n-th time it reaches
# the named commit point; tests/test_faults.py drives it to check every crash leaves valid state.
_FAULT_ENV = "CLIPSCOPE_FAULT"
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here, as ``kill -9`` would, when the fault-injection hook names this point
    (``<point>:<n>``), or wait here until a file exists (``<point>:wait:<file>``), so a test can
    change the world at exactly this point."""
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return
    if spec.startswith(f"{name}:wait:"):
        import time

        go = Path(spec[len(f"{name}:wait:"):])
        Path(str(go) + ".waiting").touch()
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    point, _, n = spec.rpartition(":")
    if point != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] == int(n):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def disk_error(exc: BaseException, target: str | os.PathLike, keep: str = "") -> ClipscopeError | None:
    """A one-line error for a full, quota-limited or read-only disk, or None for other errors.

    h5py reports a failed write as an OSError whose errno may be unset, with the system's
    message inside its text, so both are checked.
    """
    text = str(exc)
    code = getattr(exc, "errno", None)
    after = f"; {keep}" if keep else ""
    if code in _NO_SPACE or "No space left" in text or "Disk quota exceeded" in text:
        return ClipscopeError(f"no space left on the device while writing {target}: free some space (or choose "
                              f"another folder) and rerun{after}")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or "Read-only file system" in text or "Permission denied" in text:
        return ClipscopeError(f"cannot write {target} ({os.strerror(code) if code else text.splitlines()[0]}): "
                              f"choose a writable location{after}")
    return None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, keep: str = ""):
    """Yield a temporary path beside ``target``; on success move it over ``target`` atomically.

    ``keep`` is appended to a disk-full error (e.g. that the journal is kept for a rerun).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise disk_error(e, target, keep) or e from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        fault_point(f"before-replace{target.suffix}")  # e.g. before-replace.h5
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            err = disk_error(e, target, keep)
            if err is not None:
                raise err from None
        raise


def ensure_space(folder: str | os.PathLike, nbytes: int, target: str | os.PathLike, keep: str = "") -> None:
    """Fail with one line when ``folder``'s file system has less than ``nbytes`` (+10%) free.

    HDF5 cannot close a file whose flush failed and crashes the process at exit (SIGSEGV), so a
    cache is never written where it would not fit: the check comes before HDF5 is involved.
    """
    import shutil

    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    need = int(nbytes * 1.1) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        after = f"; {keep}" if keep else ""
        raise ClipscopeError(f"no space left on the device for {target}: it needs about {need / 1e6:.1f} MB, "
                             f"{free / 1e6:.1f} MB are free; free some space (or choose another folder) and rerun{after}")


def remove_stale_temps(target: str | os.PathLike) -> None:
    """Remove temporaries of ``target`` left by a killed writer. Call only under :func:`exclusive`
    on ``target``: every writer of it holds that lock, so no temporary of a live one exists."""
    target = Path(target)
    import glob

    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_json(path: str | os.PathLike, obj, *, keep: str = "") -> None:
    """Write ``obj`` as JSON to ``path`` atomically (journal state, manifests)."""
    with atomic_path(path, keep=keep) as tmp:
        tmp.write_text(json.dumps(obj, sort_keys=True), encoding="utf-8")


def check_writable(path: str | os.PathLike, *, folder: bool) -> None:
    """Fail before any work when ``path`` (a folder to create, or a file's folder) cannot be written."""
    p = Path(path)
    d = p if folder else p.parent
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    what = "--out" if folder else str(path)
    if probe.exists() and not probe.is_dir():
        raise ClipscopeError(f"{what}: {probe} is a file, not a folder; choose another location")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ClipscopeError(f"{what}: {probe} is not writable; choose a writable location")


class LockBusy(ClipscopeError):
    """Another process holds the lock (raised by :func:`exclusive` with ``wait=False``)."""


_held: dict[str, dict] = {}  # lock path -> {"rlock", "fd", "depth"} for the locks this process holds
_held_guard = threading.Lock()


@contextlib.contextmanager
def exclusive(target: str | os.PathLike, *, quiet: bool = False, wait: bool = True):
    """Hold an exclusive lock on ``target`` (file ``<target>.lock``) for the block.

    A second process waits, saying so once on stderr, and continues when the first is done
    (``wait=False``: :class:`LockBusy` instead). The thread that holds it may re-enter; other
    threads of the process wait their turn. The lock file is removed on release, so a clean
    exit leaves nothing beside the target.

    Why not filelock: it leaves ``<target>.lock`` behind on every release, since removing a
    flock'd file is only safe with the check below (a waiter can lock a file the holder has just
    removed; it notices that the name no longer leads to its file and locks the new one).
    """
    import fcntl

    target = Path(target)
    path = os.path.abspath(str(target)) + ".lock"
    with _held_guard:
        entry = _held.setdefault(path, {"rlock": threading.RLock(), "fd": None, "depth": 0})
    if not entry["rlock"].acquire(blocking=wait):
        raise LockBusy(f"{target} is being written by another thread of this process")
    try:
        if entry["depth"] == 0:
            entry["fd"] = _take_flock(path, target, fcntl, quiet=quiet, wait=wait)
        entry["depth"] += 1
        try:
            yield
        finally:
            entry["depth"] -= 1
            if entry["depth"] == 0:
                fd, entry["fd"] = entry["fd"], None
                with contextlib.suppress(OSError):
                    os.unlink(path)  # while still held: a waiter that got this file will retry
                os.close(fd)  # releases the flock
    finally:
        entry["rlock"].release()


def _take_flock(path: str, target: Path, fcntl, *, quiet: bool, wait: bool) -> int:
    """An fd holding the flock of the file now at ``path`` (created if absent)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(e, target) or e from None
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise disk_error(e, path) or e from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise LockBusy(f"{target} is being written by another process") from None
                if not (announced or quiet):
                    print(f"clipscope: waiting for another process writing {target} (lock {path})",
                          file=sys.stderr, flush=True)
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed this file after we opened it: lock the one there now


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def _report_command(path: Path) -> str | None:
    """The command of a clipscope report at ``path``, or None when it is not one."""
    if path.suffix.lower() != ".json":
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("command") if isinstance(doc, dict) and "schema_version" in doc and "metrics" in doc else None


def input_paths(values) -> list[Path]:
    """The existing files named by option values: plain paths, and the path parts of specs such
    as ``captions:FILE``, ``coco:ANN:DIR``, ``ids:FILE`` or ``mmvp:DIR`` (lists are walked)."""
    out = []
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple, set)):
            stack.extend(v)
            continue
        if not isinstance(v, (str, os.PathLike)) or not str(v):
            continue
        text = str(v)
        parts = text.split(":")
        for candidate in {text, *parts[1:], ":".join(parts[1:])}:
            if candidate and not candidate.startswith("-"):
                p = Path(candidate).expanduser()
                try:
                    if p.is_file():
                        out.append(p)
                except OSError:
                    continue
    return out


def guard_outputs(outputs, *, inputs=(), report_command: str | None = None) -> None:
    """Refuse, before any work, an output that would destroy something: a file the run reads
    (``inputs``), an existing HDF5 file (a cache), or an existing clipscope report, unless the
    output is itself a report of ``report_command`` replacing an earlier one. ``outputs``:
    (option, path) pairs."""
    ins = [Path(p) for p in inputs]
    for flag, path in outputs:
        if path in (None, "-"):
            continue
        p = Path(path).expanduser()
        try:
            exists = p.exists()
        except OSError:
            continue
        if not exists or p.is_dir():
            continue
        for src in ins:
            try:
                same = os.path.samefile(p, src)
            except OSError:
                same = False
            if same:
                alias = "" if p.resolve() == src.resolve() else f" (the same file as {src})"
                raise ClipscopeError(f"{flag} {path}{alias} is an input this run reads; writing there would destroy "
                                     "it: choose another path")
        if _is_hdf5(p):
            raise ClipscopeError(f"{flag} {path} is an HDF5 file (a cache?); clipscope never writes a report over one: "
                                 "choose another path")
        command = _report_command(p)
        if command is not None and command != report_command:
            raise ClipscopeError(f"{flag} {path} holds a clipscope {command} report; writing "
                                 f"{'a ' + report_command + ' report' if report_command else 'this output'} there "
                                 "would destroy it: choose another path")
