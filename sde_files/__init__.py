"""File plumbing every sde package needs, at the very bottom: it imports no sde package.

Two rules hold for everything sde-kit writes. Modes follow the user's umask (temp files and folders
are created owner-only, then get what a plain open/mkdir would give, or group members could not read
what the user shares). Nothing is ever half-written: a file or folder is built under a hidden temp
name beside its target and renamed into place when complete, so a crash leaves the old version or
nothing, never a mix.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask_mode(directory: bool) -> int:
    """The mode a plain mkdir/open would give under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def follow_umask(folder: Path) -> None:
    """Give a folder and everything in it the modes a plain mkdir/open would (some writers use owner-only)."""
    os.chmod(folder, umask_mode(directory=True))
    for path in Path(folder).rglob("*"):
        os.chmod(path, umask_mode(directory=path.is_dir()))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file through a temp file in the same folder and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w", **({} if isinstance(data, bytes) else
                                                                      {"encoding": "utf-8"})) as handle:
            handle.write(data)
        os.chmod(tmp, umask_mode(directory=False))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def swap_into_place(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`; an old `out` is moved aside first, then removed."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temp folder beside `out` to build in; when the block ends without error everything in it follows the
    umask and it replaces `out`, else it is removed. Every folder sde-kit writes is written through it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        follow_umask(tmp)
        swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
