"""Atomic, clean file writes shared by every tool (checkpoints, NIR graphs, JSON results, plots).

Why one helper: a result is either the complete new file or the old one, never half a file, a
0-byte file or a leftover temporary. The writer gets a temporary path in the target's own folder
(`.NAME.<pid>.<random>.tmp`, so the rename stays on one file system); on success it is fsync'ed and
os.replace'd over the target, on ANY failure (ENOSPC, a library error, Ctrl-C) it is removed.
Temporaries left by a process that was killed (kill -9, power loss) are removed the next time the
same file is saved.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

STALE_UNKNOWN_S = 600.0  # an old-style temporary (no pid in its name) this old is abandoned
FREE_SPACE_MARGIN = 16 << 20  # bytes kept free beyond an estimated write


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.*.tmp` files next to `path` whose writer is gone; returns what was removed.

    A temporary is stale when the pid in its name is not running, or (old names without a pid)
    when it has not been touched for STALE_UNKNOWN_S. Live writers' temporaries are kept.
    """
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    name = re.escape(path.name)
    pattern = re.compile(rf"^\.{name}\.(?:(\d+)\.)?[^/]*\.tmp$|^\.{name}\.tmp\d+$")
    now = time.time()
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or not entry.is_file():
            continue
        pid = int(m.group(1)) if m.group(1) else None
        try:
            stale = (not _pid_alive(pid)) if pid is not None and pid != os.getpid() else (
                pid is None and now - entry.stat().st_mtime > STALE_UNKNOWN_S
            )
            if stale:
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue
    return removed


def check_free_space(folder: str | os.PathLike, need_bytes: int, *, what: str) -> None:
    """Raise OSError(ENOSPC) naming `what` when `folder` cannot hold `need_bytes` (+ a margin)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: let the write itself decide
    if free < need_bytes + FREE_SPACE_MARGIN:
        raise OSError(
            errno.ENOSPC,
            f"no space left for {what}: needs ~{need_bytes / 1e6:.1f} MB, "
            f"{folder} has {free / 1e6:.1f} MB free",
        )


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Path], object] | bytes | str,
    *,
    need_bytes: int = 0,
    allow_empty: bool = False,
) -> Path:
    """Write `path` atomically: `write(tmp_path)` (or the given bytes/str) into a temporary in the same
    folder, fsync, os.replace. The temporary never survives a failure; the target is untouched unless
    the whole write succeeded. `need_bytes` > 0 checks free space first (cheap, avoids writers such as
    h5py that crash on a full disk). A result of 0 bytes is an error unless `allow_empty`."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    if need_bytes > 0:
        check_free_space(folder, need_bytes, what=str(path))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it private; the result gets normal permissions
        if isinstance(write, (bytes, str)):
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(write.encode() if isinstance(write, str) else write)
        else:
            os.close(fd)
            fd = -1
            write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if not allow_empty and tmp.stat().st_size == 0:
            raise OSError(errno.EIO, f"writing {path} produced an empty file")
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """A small text/JSON result, atomically."""
    return atomic_write(path, text, need_bytes=len(text.encode()))


def save_figure_atomic(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """matplotlib figure -> `path` atomically (format from the target's suffix, not the temporary's)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or None
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs), need_bytes=1 << 20)


def save_pyplot_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """`save_figure_atomic`, then close the pyplot figure `fig` (written or not: pyplot keeps every open
    figure alive otherwise)."""
    import matplotlib.pyplot as plt

    try:
        return save_figure_atomic(fig, path, **savefig_kwargs)
    finally:
        plt.close(fig)
