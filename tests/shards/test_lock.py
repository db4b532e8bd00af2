"""The writer lock: one run per shard set, a dead run's lock taken over, on disk and fsspec."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import fsspec
import pytest

from shards.lock import LOCK_NAME, Holder, SetLocked, stale_reason, writer_lock


def _holder(host="h", pid=10, heartbeat=1000.0) -> Holder:
    return Holder(host=host, pid=pid, started=900.0, heartbeat=heartbeat, token="t")


def test_stale_rule():
    alive, dead = (lambda pid: True), (lambda pid: False)
    assert stale_reason(_holder(), "h", alive, now=1000.0 + 599) is None
    assert "gone" in stale_reason(_holder(), "h", dead, now=1001.0)
    # another host: its pids say nothing here, only the heartbeat counts
    assert stale_reason(_holder(host="other"), "h", dead, now=1001.0) is None
    assert "601 s old" in stale_reason(_holder(host="other"), "h", alive, now=1000.0 + 601)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(url: str, host: str, pid: int | None, heartbeat: float) -> None:
    fs, root = fsspec.core.url_to_fs(url)
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root.rstrip('/')}/{LOCK_NAME}", json.dumps(
        {"host": host, "pid": pid, "started": heartbeat, "heartbeat": heartbeat, "token": "old"}).encode())


@pytest.fixture(params=["local", "memory"])
def url(request, tmp_path) -> str:
    return str(tmp_path / "set") if request.param == "local" else f"memory://lock-{uuid.uuid4().hex}/set"


def test_second_writer_is_refused_with_the_holder_named(url):
    with writer_lock(url) as lock:
        with pytest.raises(SetLocked) as err:
            writer_lock(url)
        msg = str(err.value)
        assert f"host {socket.gethostname()}, pid {lock.holder.pid}, started 20" in msg
        assert "heartbeat 0 s ago" in msg
    with writer_lock(url):  # released: the next run takes it
        pass
    fs, root = fsspec.core.url_to_fs(url)
    assert not fs.exists(f"{root}/{LOCK_NAME}")


def test_dead_or_silent_holder_is_taken_over(url):
    lines: list[str] = []
    _plant(url, socket.gethostname(), _dead_pid(), time.time())
    with writer_lock(url, log=lines.append):
        pass
    assert "is gone" in lines[-1]
    _plant(url, "node-17", 4242, time.time() - 3600)  # pre-empted on another host an hour ago
    with writer_lock(url, log=lines.append):
        pass
    assert "node-17 pid 4242" in lines[-1] and "3600 s old" in lines[-1]
    _plant(url, "node-17", 4242, time.time() - 60)  # another host, alive a minute ago: refused
    with pytest.raises(SetLocked, match="node-17, pid 4242"):
        writer_lock(url)


@pytest.mark.parametrize("content", [b"", b"\xff\x00 half a lock", b"[1, 2]"])
def test_a_lock_without_a_readable_owner_blocks_no_longer_than_the_grace(tmp_path, content):
    (tmp_path / LOCK_NAME).write_bytes(content)  # what a run killed mid-write by an older writer left
    lines: list[str] = []
    start = time.monotonic()
    with writer_lock(str(tmp_path), log=lines.append, grace=0.5) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.holder.token
    assert 0.5 <= time.monotonic() - start < 5  # waited out the grace, not the ten stale minutes
    (line,) = lines
    assert f"taking over the writer lock {tmp_path / LOCK_NAME}: it names no owner (empty or damaged)" in line


def test_an_old_empty_lock_is_taken_over_at_once(tmp_path):
    lock_file = tmp_path / LOCK_NAME
    lock_file.write_bytes(b"")
    old = time.time() - 60
    os.utime(lock_file, (old, old))
    start = time.monotonic()
    with writer_lock(str(tmp_path), log=lambda line: None):
        pass
    assert time.monotonic() - start < 2


def test_the_lock_appears_whole_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Created by a hard link of a finished file: at the moment the lock exists it parses."""
    seen: list[dict] = []
    real = os.link

    def link(src, dst, *a, **kw):
        real(src, dst, *a, **kw)
        seen.append(json.loads(open(dst, "rb").read()))

    monkeypatch.setattr(os, "link", link)
    with writer_lock(str(tmp_path)) as lock:
        assert [d["token"] for d in seen] == [lock.holder.token]
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]


def test_heartbeat_moves(tmp_path):
    with writer_lock(str(tmp_path), heartbeat_s=0.05) as lock:
        first = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > first
        assert not lock.lost
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_store_without_exclusive_create(tmp_path, monkeypatch):
    """Check, write, read back: still one holder, still the refusal naming it."""
    from fsspec.implementations.local import LocalFileSystem

    real = LocalFileSystem.open

    def no_x(self, path, mode="rb", *a, **kw):
        if "x" in mode:
            raise ValueError(f"mode {mode!r} not supported")
        return real(self, path, mode, *a, **kw)

    def no_link(src, dst, *a, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")  # a file system without hard links

    monkeypatch.setattr(LocalFileSystem, "open", no_x)
    monkeypatch.setattr(os, "link", no_link)
    with writer_lock(str(tmp_path)) as lock:
        with pytest.raises(SetLocked, match=f"pid {lock.holder.pid}"):
            writer_lock(str(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()
