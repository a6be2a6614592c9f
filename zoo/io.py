"""Atomic file writes: write a temporary file in the same directory, fsync, then rename over."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600, and some writers (safetensors) recreate the file as 0600: set the mode a
        # plain open() would give (0644 under umask 022) after the writer is done, before the rename.
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: str | os.PathLike, *, missing_ok: bool = False) -> Any:
    """A JSON file's content; an unreadable or invalid file is one ZooError naming it. ``missing_ok``: {}
    for a file that does not exist."""
    from .errors import ZooError

    path = Path(path)
    if missing_ok and not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ZooError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ZooError(f"{path}: not valid JSON ({exc})") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | os.PathLike, overwrite: bool) -> None:
    """An output must be absent or an empty directory, unless ``overwrite`` allows replacing a directory."""
    from .errors import ZooError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ZooError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ZooError(f"{path} already exists and is not empty; pass --overwrite to replace it")


@contextmanager
def staged_directory(target: str | os.PathLike, suffix: str = ".partial") -> Iterator[Path]:
    """Yield a hidden directory beside ``target`` to build in. When the block succeeds it becomes ``target``
    (an existing ``target`` is swapped out only then); when it fails it is removed: all or nothing."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent))
    try:
        yield work
        os.chmod(work, 0o777 & ~current_umask())
        if target.is_dir():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(work, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


@contextmanager
def directory_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if needed) while a run writes into it.

    The lock is ``flock`` on a file beside the directory, so it outlives ``--overwrite`` removing the
    directory and is released by the kernel if the process dies: a crash never leaves a stale lock.
    The holder removes the file when it is done (a killed holder leaves it, unlocked, for the next run).
    """
    from .errors import ZooError

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / f".{directory.name}.lock"
    fd = _lock_file(lock_path)
    if fd is None:
        raise ZooError(
            f"{directory} is being written by another zoo run (pid {_holder(lock_path)}); "
            "wait for it or choose another output"
        )
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield directory
    finally:
        lock_path.unlink(missing_ok=True)  # removed while still locked, so no one else holds this file
        os.close(fd)  # closing releases the lock


def _lock_file(path: Path) -> int | None:
    """An open, flock-ed descriptor of the file at ``path``, or None when another process holds it.

    A holder removes the file on exit, so the file we opened may have left ``path`` before we locked it;
    then it locks nothing anyone else sees, and we try again with the file now at ``path``."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            return fd
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[:32] or "another process"
    except OSError:
        return "another process"


def prepare_output(path: str | Path, overwrite: bool) -> Path:
    """An output directory that is new or empty; an existing one needs ``--overwrite``."""
    path = Path(path)
    check_output(path, overwrite)
    if path.is_dir() and any(path.iterdir()):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
