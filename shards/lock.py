"""One writer per shard set: a lock file at the root, on local disks and fsspec stores alike.

    with writer_lock("s3://bucket/k400"):      # refused (SetLocked) while another run holds it
        ... extract ...

The lock is `<out>/.motion_mae.lock`, JSON {host, pid, started, heartbeat, token, command},
created complete or not at all, and exclusively, so of two runs started together exactly one
gets it: on a local or NFS disk the JSON is written to a temporary file that is then hard-linked
into place (`os.link` fails if the lock exists, and a run killed mid-write leaves only the
temporary file); on an object store by a conditional PUT (`open(..., "xb")`, If-None-Match on
S3: the object appears whole). A store with neither gets check + write + read back after
`SETTLE_S`. The holder rewrites `heartbeat` every `HEARTBEAT_S` seconds from a daemon thread.

A lock left by a run that died (kill -9, a pre-empted node) is taken over when
  - it names this host and its pid is gone (or a zombie), or
  - its heartbeat is older than `STALE_AFTER_S` (another host: we cannot see its processes), or
  - it names no owner (empty or damaged, as an older writer or a full disk could leave it)
    and is older than `UNREADABLE_GRACE_S`: a new run waits out that grace, then takes over.
Takeover deletes the stale lock, creates ours exclusively and reads it back after
`SETTLE_S`: of two runs that took over the same stale lock at the same moment, the one whose
lock was deleted by the other sees a foreign token and is refused. Dask workers do not lock:
they write for the driver that holds it (the driver waits for tasks an earlier driver left
running on a shared cluster, see preprocess.dask_driver.wait_for_orphans).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass

import fsspec

from .errors import SetLocked

LOCK_NAME = ".motion_mae.lock"
HEARTBEAT_S = 30.0
# Ten minutes of silence: twenty missed heartbeats, far beyond a GC pause or a slow PUT, and
# short next to the hours a pre-empted extraction would otherwise wait for a person.
STALE_AFTER_S = 600.0
SETTLE_S = 0.5
# A lock without a readable owner is never one of ours being written (ours appear whole), so
# a few seconds only cover a store that shows a new object before its bytes.
UNREADABLE_GRACE_S = 5.0


# os.link on a file system without hard links (FAT, some FUSE mounts): the next way is used
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int | None
    started: float
    heartbeat: float
    token: str
    command: str = ""
    readable: bool = True  # False: an empty or damaged lock, which names no owner

    def describe(self, now: float) -> str:
        if not self.readable:
            return f"a lock that names no owner, written {max(0.0, now - self.heartbeat):.0f} s ago"
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"host {self.host}, pid {self.pid}, started {started}, "
                f"last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago")


def stale_reason(holder: Holder, host: str, pid_alive, now: float, stale_after: float = STALE_AFTER_S,
                 grace: float = UNREADABLE_GRACE_S) -> str | None:
    """Why a lock held by `holder` may be taken over (None: it may not). `pid_alive(pid)`
    answers for this host's processes."""
    if not holder.readable and now - holder.heartbeat > grace:
        return (f"it names no owner (empty or damaged), and is {now - holder.heartbeat:.0f} s old "
                f"(> {grace:g} s)")
    if holder.host == host and holder.pid is not None and not pid_alive(holder.pid):
        return f"its process {holder.pid} on this host is gone"
    if now - holder.heartbeat > stale_after:
        return f"its heartbeat is {now - holder.heartbeat:.0f} s old (> {stale_after:.0f} s)"
    return None


def pid_alive(pid: int) -> bool:
    """A live process of this host (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _parse(data: bytes, modified: float) -> Holder:
    """A lock's holder; an unreadable lock (garbage, half-written by a dead run) is held by
    an unknown process whose heartbeat is the file's modification time."""
    try:
        d = json.loads(data)
        return Holder(host=str(d["host"]), pid=d.get("pid"), started=float(d["started"]),
                      heartbeat=float(d["heartbeat"]), token=str(d["token"]),
                      command=str(d.get("command", "")))
    except (ValueError, KeyError, TypeError):
        return Holder(host="?", pid=None, started=modified, heartbeat=modified, token="?", readable=False)


class WriterLock:
    """The held lock; `release()` (or leaving the `with`) removes it."""

    def __init__(self, out: str, heartbeat_s: float = HEARTBEAT_S):
        self.out = out
        self.fs, root = fsspec.core.url_to_fs(out)
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{LOCK_NAME}"
        now = time.time()
        self.holder = Holder(host=socket.gethostname(), pid=os.getpid(), started=now, heartbeat=now,
                             token=uuid.uuid4().hex, command=" ".join(sys.argv)[:500])
        self.heartbeat_s = heartbeat_s
        self.lost = False  # set when the heartbeat finds another run's lock in place of ours
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self, heartbeat: float) -> bytes:
        h = self.holder
        return json.dumps({"host": h.host, "pid": h.pid, "started": h.started, "heartbeat": heartbeat,
                           "token": h.token, "command": h.command}).encode()

    def _create(self) -> bool:
        if _is_local(self.fs):
            try:
                return self._create_linked()
            except OSError as err:
                if err.errno not in NO_HARD_LINKS:
                    raise
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(self._payload(time.time()))
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # a store without exclusive create
            if self.fs.exists(self.path):
                return False
            # check, write, read back after a pause: two runs starting within SETTLE_S of
            # each other may both write, and the one whose lock was overwritten backs off
            self.fs.pipe_file(self.path, self._payload(time.time()))
            time.sleep(SETTLE_S)
            current = self._read()
            return current is not None and current.token == self.holder.token

    def _create_linked(self) -> bool:
        """Write the lock beside its place, then hard-link it there: it appears whole or not at all."""
        tmp = f"{self.root}/.{LOCK_NAME}.{self.holder.token}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(self._payload(time.time()))
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _read(self) -> Holder | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        try:
            modified = self.fs.modified(self.path).timestamp()
        except (FileNotFoundError, NotImplementedError, AttributeError):
            modified = time.time()
        return _parse(data, modified)

    def acquire(self, stale_after: float = STALE_AFTER_S, log=None,
                grace: float = UNREADABLE_GRACE_S) -> "WriterLock":
        self.fs.makedirs(self.root, exist_ok=True)
        for _ in range(3):  # a lock released between our create and read: try again
            if self._create():
                break
            holder = self._read()
            if holder is not None and not holder.readable and time.time() - holder.heartbeat <= grace:
                time.sleep(max(0.0, holder.heartbeat + grace - time.time()) + 0.1)  # wait out the grace
                holder = self._read()
            if holder is None:
                continue
            reason = stale_reason(holder, self.holder.host, pid_alive, time.time(), stale_after, grace)
            if reason is None:
                raise SetLocked(
                    f"{self.out} is being written by another run ({holder.describe(time.time())}). "
                    f"Wait for it to finish, or use another --out. A lock is taken over by itself "
                    f"once its process is gone (same host) or its heartbeat is older than "
                    f"{stale_after / 60:.0f} min; {self.path} is the lock.")
            if log:
                whose = f"of {holder.host} pid {holder.pid}" if holder.readable else self.path
                log(f"taking over the writer lock {whose}: {reason}")
            try:
                self.fs.rm(self.path)
            except FileNotFoundError:
                pass
            if self._create():
                time.sleep(SETTLE_S)
                now = self._read()
                if now is None or now.token != self.holder.token:
                    raise SetLocked(f"{self.out}: another run took over the stale writer lock at the "
                                    f"same moment ({now.describe(time.time()) if now else 'then released it'})")
                break
        else:
            raise SetLocked(f"{self.out}: could not take the writer lock {self.path}")
        self._thread = threading.Thread(target=self._beat, name="motion-mae-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            current = self._read()
            if current is None or current.token != self.holder.token:
                self.lost = True
                return
            tmp = f"{self.root}/.{LOCK_NAME}.{self.holder.token}.tmp"
            try:
                # write then rename: a reader never sees half a lock (a PUT is atomic anyway)
                self.fs.pipe_file(tmp, self._payload(time.time()))
                self.fs.mv(tmp, self.path)
            except OSError:
                pass  # a missed heartbeat; the next one retries, ten minutes of them are allowed

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self._read()
        if current is not None and current.token == self.holder.token:
            self.fs.rm(self.path)

    def __enter__(self) -> "WriterLock":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def live_holder(out: str, stale_after: float = STALE_AFTER_S) -> Holder | None:
    """The run that holds the writer lock of the set at `out` and is alive by the takeover
    rules (a stale lock, or none: None). For readers that must not take a half-written set
    for a finished one (`python -m shards pack`)."""
    lock = WriterLock(os.fspath(out))
    holder = lock._read()
    if holder is None or stale_reason(holder, lock.holder.host, pid_alive, time.time(), stale_after) is not None:
        return None
    return holder


def writer_lock(out: str, stale_after: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S,
                log=None, grace: float = UNREADABLE_GRACE_S) -> WriterLock:
    """Take the writer lock of the shard set at `out` (directory or fsspec URL) or raise
    SetLocked naming the run that holds it."""
    return WriterLock(os.fspath(out), heartbeat_s).acquire(stale_after, log, grace)


def _is_local(fs) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol
