"""Atomic writes are durable (the file and its folder reach the disk before the call returns) and give
files the permissions a plain ``open()`` would."""

import os
import stat

import numpy as np
import pytest

import motionflow.io.atomic as atomic
from motionflow.io import atomic_path, atomic_write_bytes, write_flow, write_image


@pytest.fixture
def umask():
    def set_umask(mask):
        old = os.umask(mask)
        restore.append(old)

    restore = []
    yield set_umask
    for old in reversed(restore):
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_new_files_get_the_mode_of_a_plain_open(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.bin"
    with open(plain, "wb") as fh:
        fh.write(b"x")
    assert atomic.current_umask() == mask
    atomic_write_bytes(tmp_path / "a.json", b"{}")
    write_flow(tmp_path / "f.flo", np.zeros((2, 3, 2), np.float32))
    write_image(tmp_path / "i.png", np.zeros((2, 3, 3), np.uint8))
    for name in ("a.json", "f.flo", "i.png"):
        assert _mode(tmp_path / name) == _mode(plain) == 0o666 & ~mask, name


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    p = tmp_path / "a.json"
    p.write_bytes(b"old")
    p.chmod(0o640)
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and _mode(p) == 0o640


def test_the_file_then_its_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", "dir" if os.path.isdir(target) else os.path.basename(target)))
        return fsync(fd)

    def spy_replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", spy_fsync)
    monkeypatch.setattr(atomic.os, "replace", spy_replace)
    with atomic_path(tmp_path / "x.npz") as tmp:
        tmp.write_bytes(b"data")
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(".x.") and events[0][1].endswith(".tmp.npz")  # the temporary file
    assert events[1:] == [("replace", "x.npz"), ("fsync", "dir")]
    assert (tmp_path / "x.npz").read_bytes() == b"data"


def test_a_failed_body_leaves_neither_target_nor_temporary_file(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(tmp_path / "x.flo") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
