"""Atomic writes and the output-directory lock."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from zoo import io
from zoo.errors import ZooError


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "config.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["config.json"]  # no temporary file left behind


def _hold_lock(directory, ready, release):
    with io.directory_lock(directory):
        ready.set()
        release.wait(30)


def test_second_writer_is_refused_and_lock_is_freed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path / "out", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(ZooError, match=rf"out is being written by another zoo run \(pid {holder.pid}\)"):
            with io.directory_lock(tmp_path / "out"):
                pass
    finally:
        release.set()
        holder.join(30)
    with io.directory_lock(tmp_path / "out"):  # free again once the holder is gone
        pass


def test_lock_of_a_killed_process_is_not_stale(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path / "out", ready, release))
    holder.start()
    assert ready.wait(30)
    holder.kill()
    holder.join(30)
    with io.directory_lock(tmp_path / "out"):
        pass


def test_the_lock_file_is_removed_when_the_run_ends_or_fails(tmp_path):
    with io.directory_lock(tmp_path / "out"):
        assert (tmp_path / ".out.lock").is_file()
    with pytest.raises(RuntimeError):
        with io.directory_lock(tmp_path / "out"):
            raise RuntimeError("the run failed")
    assert os.listdir(tmp_path) == []  # nothing beside the output: no .out.lock


def test_a_lock_file_removed_by_its_last_holder_is_not_trusted(tmp_path, monkeypatch):
    """Between our open() and flock() the previous holder may remove the file and a third run create a new
    one; the lock taken must be on the file now at the path, or two runs would both write."""
    import fcntl

    real_flock, lock_path = fcntl.flock, tmp_path / ".out.lock"
    raced = []

    def flock_after_a_race(fd, operation):
        if not raced:  # the file we opened goes away and another takes its place
            raced.append(True)
            lock_path.unlink()
            lock_path.write_text("")
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_race)
    with io.directory_lock(tmp_path / "out"):
        assert raced
        with pytest.raises(
            ZooError, match="is being written by another zoo run"
        ):  # the lock is on the new file
            with io.directory_lock(tmp_path / "out"):
                pass
    assert not lock_path.exists()
