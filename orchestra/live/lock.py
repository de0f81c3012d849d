"""The state directory's writer lock and the store's error type (no heavy imports: ``orch-live``
takes the lock before it loads anything, so a second process is refused at once)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar


class StoreError(RuntimeError):
    """The state directory cannot be used (another config, another version, a broken file,
    another process running it)."""


LOCK_NAME = "lock"


class StateLock:
    """One writer per state directory: an exclusive ``flock`` on ``<state>/lock``, held for the
    writer's life. The OS releases it on any death (``kill -9`` included), so a crashed run never
    leaves a stale lock; a second writer is refused at once, naming the holder's pid.

    Re-entrant within a process (``orch-live`` takes it before loading anything, so a second
    process is refused in a fraction of a second; the store then takes it again): the lock goes
    with the last :meth:`release`."""

    _held: ClassVar[dict[Path, list]] = {}  # resolved directory -> [fd, count]

    def __init__(self, directory: Path):
        import fcntl

        self.key = Path(directory).resolve()
        self.path = directory / LOCK_NAME
        self.held = True
        entry = StateLock._held.get(self.key)
        if entry is not None:
            entry[1] += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{directory} is in use by another orch-live process (pid {holder}): stop that "
                "one first, or use another --state directory (orch-live status reads it "
                "meanwhile)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        StateLock._held[self.key] = [fd, 1]

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        entry = StateLock._held[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])  # closing the descriptor releases the lock
            del StateLock._held[self.key]


__all__ = ["LOCK_NAME", "StateLock", "StoreError"]
