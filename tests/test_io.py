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
