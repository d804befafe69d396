"""Every file clipscope writes goes through here: atomic replacement, exclusive locks, and
one-line errors for a full or read-only disk.

- :func:`atomic_path` yields a temporary name in the target's folder; the caller writes it
  (h5py, matplotlib, text), and on success it is fsynced and moved over the target with
  ``os.replace``. A reader therefore sees the old file or the new one, never half of one; on any
  failure the temporary file is removed and the target is untouched. The result gets the
  permissions a plain ``open()`` would give (``0o666`` less the umask), not ``mkstemp``'s 0600.
- :func:`exclusive` takes an advisory lock (``fcntl.flock`` through ``filelock``) on
  ``<target>.lock`` for the whole of a read-modify-write, so two processes writing one cache
  (two ``extract`` runs, two analyses extracting into the content-keyed cache, ``invert``
  adding datasets) take turns instead of mixing rows. The kernel drops the lock when a process
  dies, so a killed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
from pathlib import Path

from clipscope.errors import ClipscopeError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Test hook: CLIPSCOPE_FAULT=<point>:<n> kills the process (SIGKILL) at the n-th time it reaches
# the named commit point; tests/test_faults.py drives it to check every crash leaves valid state.
_FAULT_ENV = "CLIPSCOPE_FAULT"
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here, as ``kill -9`` would, when the fault-injection hook names this point."""
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
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


@contextlib.contextmanager
def exclusive(target: str | os.PathLike, *, quiet: bool = False):
    """Hold an exclusive lock on ``target`` (file ``<target>.lock``) for the block.

    A second process waits, saying so once on stderr, and continues when the first is done.
    """
    from filelock import FileLock, Timeout

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # is_singleton: a process that already holds this lock re-enters instead of deadlocking.
    lock = FileLock(str(target) + ".lock", is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not quiet:
            print(f"clipscope: waiting for another process writing {target} (lock {lock.lock_file})",
                  file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
