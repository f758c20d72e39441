"""A JSON-lines file that is appended to and, now and then, rewritten with what is still worth keeping:
the two journals behind Event calls (admit/journal.py, record/results.py).

Appends are flushed (and fsynced when asked) one line at a time. The owner says what a rewrite keeps;
the file is rewritten atomically (a temporary file, fsynced, renamed over it: a crash leaves the old
file or the new one). While running, a rewrite comes once the lines appended since the last one reach
twice those it kept (and `compact_min_lines`), so the cost per append stays constant however long the
run. The owner holds its lock (given here) around every method.

A rewrite while running is not made under that lock: a day of Event calls keeps a day of ended ids,
and writing 200,000 of them took 1.5 s, during which every Event call's 202 waited. `append` returns
it instead, for the appending thread to run once it has let the lock go: the owner's `snapshot` is
taken under the lock (copies of what to keep, as of that line) and written out without it; lines
appended meanwhile go to the old file as before and are kept aside, and under the lock again they
are added to the new file, which then replaces the old one.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger("mk1.jsonl")

Build = Callable[[], Iterable[dict]]   # what a rewrite keeps, from a snapshot: run without the lock
Rewrite = Callable[[], None]


def line(entry: dict) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


class JsonLines:
    def __init__(self, path: Path, compact_min_lines: int, lock: threading.Lock):
        self.path, self.compact_min, self._lock = path, compact_min_lines, lock
        self._file = None
        self._appended, self._kept = 0, 0
        self._aside: list[bytes] | None = None   # lines appended during a rewrite under way
        self._closed = False

    def size(self) -> int:
        """The bytes written so far (a snapshot of a file read back: what it holds up to here)."""
        return self._file.tell() if self._file is not None else (self.path.stat().st_size if self.path.exists() else 0)

    def append(self, entry: dict, sync: bool, snapshot: Callable[[], Build]) -> Rewrite | None:
        """One line. If a rewrite is due, the snapshot is taken now and the rewrite returned: the
        caller runs it once it has released the lock."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
        raw = line(entry)
        self._file.write(raw)
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        if self._aside is not None:
            self._aside.append(raw)
            return None
        self._appended += 1
        if self._appended < max(self.compact_min, 2 * self._kept):
            return None
        build = snapshot()
        self._aside = []
        return lambda: self._rewrite_unlocked(build)

    def _rewrite_unlocked(self, build: Build) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                kept = self._write(f, build())
                with self._lock:
                    aside, self._aside = self._aside or [], None
                    if self._closed:
                        tmp.unlink(missing_ok=True)   # the old file holds every line
                        return
                    f.writelines(aside)
                    f.flush()
                    os.fsync(f.fileno())
                    os.replace(tmp, self.path)
                    self._close_file()   # appends go to the new file from here on
                    self._appended, self._kept = len(aside), kept
        except OSError as e:   # the appends stand (each flushed, in the old file); try again later
            log.warning("could not compact %s: %s", self.path, e)
            with self._lock:
                self._aside, self._appended = None, 0

    def rewrite(self, entries: Iterable[dict]) -> None:
        """The file becomes these entries (which may be read from it as they are written), now."""
        self._close_file()   # appends go to the new file from here on
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            kept = self._write(f, entries)
        os.replace(tmp, self.path)
        self._appended, self._kept = 0, kept

    @staticmethod
    def _write(f, entries: Iterable[dict]) -> int:
        kept = 0
        for entry in entries:
            f.write(line(entry))
            kept += 1
        f.flush()
        os.fsync(f.fileno())
        return kept

    def close(self) -> None:
        self._closed = True
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
